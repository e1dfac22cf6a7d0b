//! The event hub: committed events to whoever follows them, on this node.
//!
//! - The staff topic carries every event (the inbox streams filter what
//!   each agent may see; consoles such as Slack follow them all).
//! - Each conversation has a topic of its own, open while someone follows
//!   it (a widget socket): its events, its place in the queue when that
//!   moves, the bot's reply as it is being written, the agent typing. A
//!   socket hears of its own conversation only, and never asks the database
//!   what an event meant.
//! - Queue places are computed once per transition, for each department
//!   whose queue it moved, and sent only to the waiting conversations whose
//!   place changed.
//!
//! Where events come from: on SQLite (one node) from the store's
//! announcements, in commit order. On PostgreSQL every node, the writing one
//! too, learns of them through `LISTEN baton_events`, whose payload carries
//! the event when it fits; so all nodes see the same events, and none sees
//! one whose transaction rolled back. After a lost connection the listener
//! catches up from the outbox, asking for every sequence number it has not
//! seen, including numbers below the highest it saw (a transaction that took
//! its number first can commit last), for as long as such a gap could still
//! fill.

use crate::Runtime;
use baton_model::{EventKind, Status};
use baton_store::StoredEvent;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tracing::{debug, warn};

/// Subscribers that lag this far behind lose the oldest events and must resync.
const CAPACITY: usize = 4096;
/// A conversation's topic holds this many signals for a slow socket (one
/// that falls further behind resyncs from the store). Every slot is
/// allocated up front, for each followed conversation: 256 cost about
/// 16 KiB per idle widget.
const TOPIC_CAPACITY: usize = 32;
/// How long a missing sequence number is looked for after a reconnect: a
/// transaction that took it and has not committed by then has rolled back.
const GAP_TIMEOUT: Duration = Duration::from_secs(60);
/// Gaps remembered at most (a huge jump in numbers is not thousands of gaps).
const MAX_GAPS: usize = 10_000;

/// A committed event as the hub carries it.
#[derive(Debug)]
pub struct HubEvent {
    pub event: Arc<StoredEvent>,
    /// The conversation's place in its queue right after this event, when it waits.
    pub queue_position: Option<usize>,
    /// The event as a frame for the conversation's followers, rendered once
    /// by the first who needs it (the web layer knows the shape).
    pub rendered: OnceLock<Arc<str>>,
}

/// What a conversation's followers hear.
#[derive(Clone, Debug)]
pub enum Signal {
    Event(Arc<HubEvent>),
    /// Its place in the queue moved (others were claimed or left).
    Queue(usize),
    /// The bot's reply so far, while it is being written (LLM streaming);
    /// this node only, never stored.
    Draft(Arc<str>),
    /// Someone is typing (the agent's name, or `visitor`).
    Typing(Arc<str>),
}

/// Followers of one conversation; dropping it stops following.
pub struct Feed {
    pub rx: broadcast::Receiver<Signal>,
}

#[derive(Default)]
struct Topics {
    by_conversation: HashMap<String, broadcast::Sender<Signal>>,
    /// Where each followed, waiting conversation stands: department and place.
    places: HashMap<String, (Option<String>, usize)>,
}

#[derive(Clone)]
pub struct EventBus {
    staff: broadcast::Sender<Arc<StoredEvent>>,
    topics: Arc<Mutex<Topics>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (staff, _) = broadcast::channel(CAPACITY);
        Self {
            staff,
            topics: Arc::default(),
        }
    }

    /// Every event: the staff topic.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.staff.subscribe()
    }

    /// Follows one conversation.
    pub fn follow(&self, conversation_id: &str) -> Feed {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let tx = topics
            .by_conversation
            .entry(conversation_id.to_owned())
            .or_insert_with(|| broadcast::channel(TOPIC_CAPACITY).0);
        Feed { rx: tx.subscribe() }
    }

    /// A fleeting signal to a conversation's followers (typing, drafts).
    pub fn signal(&self, conversation_id: &str, signal: Signal) {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = topics.by_conversation.get(conversation_id) {
            let _ = tx.send(signal);
        }
    }

    /// Sends an event to the staff topic and to its conversation's followers.
    fn publish(&self, event: Arc<HubEvent>) {
        let _ = self.staff.send(event.event.clone());
        let id = &event.event.envelope.data.conversation.id;
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let gone = match topics.by_conversation.get(id) {
            Some(tx) => tx.send(Signal::Event(event.clone())).is_err(),
            None => false,
        };
        // Nobody follows it any more: the topic goes.
        if gone {
            topics.by_conversation.remove(id);
            topics.places.remove(id);
        }
    }

    /// A follower's conversation waits in `department` at `place` (what its
    /// socket showed on connecting), so that moves in that queue reach it.
    pub fn waits(&self, conversation_id: &str, department: Option<String>, place: usize) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if topics.by_conversation.contains_key(conversation_id) {
            topics
                .places
                .insert(conversation_id.to_owned(), (department, place));
        }
    }

    /// The queues an event may have moved that some follower waits in: the
    /// event's conversation's department (it joined, left or moved within
    /// its queue), and the one it waited in before, as far as known.
    fn departments_to_refresh(&self, event: &StoredEvent) -> Vec<Option<String>> {
        let conv = &event.envelope.data.conversation;
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidates = vec![conv.department.clone()];
        if let Some((dept, _)) = topics.places.get(&conv.id)
            && !candidates.contains(dept)
        {
            candidates.push(dept.clone());
        }
        let followed_waiting =
            conv.status == Status::Waiting && topics.by_conversation.contains_key(&conv.id);
        candidates
            .into_iter()
            .filter(|dept| {
                (followed_waiting && *dept == conv.department)
                    || topics.places.values().any(|(d, _)| d == dept)
            })
            .collect()
    }

    /// Records a department's queue and tells the followers whose place moved.
    fn queue_now(&self, department: &Option<String>, queue: &[String]) {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let Topics {
            by_conversation,
            places,
        } = &mut *topics;
        // Those who were in this queue and are not any more.
        places.retain(|id, (d, _)| d != department || queue.contains(id));
        for (i, id) in queue.iter().enumerate() {
            let Some(tx) = by_conversation.get(id) else {
                continue;
            };
            let place = i + 1;
            let before = places.insert(id.clone(), (department.clone(), place));
            // A follower that just came (unknown place) hears it too; the
            // widget ignores a place it already shows.
            if before.is_none_or(|(d, p)| d != *department || p != place) {
                let _ = tx.send(Signal::Queue(place));
            }
        }
    }
}

/// Whether an event changes who waits where.
fn moves_queues(kind: EventKind) -> bool {
    !matches!(kind, EventKind::MessageCreated | EventKind::Started)
}

impl Runtime {
    /// Hands committed events to the hub, in order, with queue places
    /// computed once per transition.
    pub(crate) async fn publish(&self, events: Vec<StoredEvent>) {
        let bus = self.bus();
        for event in events {
            let mut position = None;
            if moves_queues(event.envelope.kind) {
                let conv = &event.envelope.data.conversation;
                for dept in bus.departments_to_refresh(&event) {
                    match self.store().queue(dept.as_deref()).await {
                        Ok(queue) => {
                            let ids: Vec<String> = queue.into_iter().map(|(id, _)| id).collect();
                            if conv.status == Status::Waiting && conv.department == dept {
                                position = ids.iter().position(|id| *id == conv.id).map(|i| i + 1);
                            }
                            bus.queue_now(&dept, &ids);
                        }
                        Err(e) => warn!(error = %e, "cannot read a queue for the widgets"),
                    }
                }
            }
            bus.publish(Arc::new(HubEvent {
                event: Arc::new(event),
                queue_position: position,
                rendered: OnceLock::new(),
            }));
        }
    }

    /// Runs the PostgreSQL listener until the process ends, reconnecting as
    /// needed; it publishes every event after `from` (read before the node
    /// started serving, so nothing committed since is skipped).
    pub(crate) async fn listen_postgres(self, from: i64) {
        let mut seen = Seen::new(from);
        loop {
            match self.listen_once(&mut seen).await {
                Ok(()) => {}
                Err(e) => warn!(error = %e, "event listener lost its connection; reconnecting"),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn listen_once(&self, seen: &mut Seen) -> Result<(), sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect(self.store().url()).await?;
        listener.listen(baton_store::NOTIFY_CHANNEL).await?;
        // Whatever committed while we were away is read from the outbox.
        self.catch_up(seen).await;
        loop {
            match listener.try_recv().await? {
                Some(note) => {
                    let payload = note.payload();
                    let (seq, body) = match payload.split_once(' ') {
                        Some((seq, body)) => (seq, Some(body)),
                        None => (payload, None),
                    };
                    let Ok(seq) = seq.parse::<i64>() else {
                        warn!(payload, "ignoring a malformed event notification");
                        continue;
                    };
                    if !seen.take(seq) {
                        continue;
                    }
                    let event = match body {
                        Some(body) => StoredEvent::from_body(seq, body.to_owned()).ok(),
                        None => self.store().event_by_seq(seq).await.ok().flatten(),
                    };
                    match event {
                        Some(event) => self.publish(vec![event]).await,
                        None => debug!(seq, "notified event is gone"),
                    }
                }
                // The connection dropped: notifications may have been missed.
                None => self.catch_up(seen).await,
            }
        }
    }

    async fn catch_up(&self, seen: &mut Seen) {
        seen.expire();
        let mut found = match self.store().events_at(seen.gaps()).await {
            Ok(events) => events,
            Err(e) => {
                warn!(error = %e, "cannot look for late events");
                Vec::new()
            }
        };
        match self.store().events_after(seen.highest, 1000).await {
            Ok(events) => found.extend(events),
            Err(e) => warn!(error = %e, "cannot catch up on events"),
        }
        found.sort_by_key(|e| e.seq);
        let fresh: Vec<StoredEvent> = found.into_iter().filter(|e| seen.take(e.seq)).collect();
        self.publish(fresh).await;
    }
}

/// Which sequence numbers a listener has published: everything up to
/// `highest`, except the gaps, each with when it was noticed.
struct Seen {
    highest: i64,
    gaps: BTreeMap<i64, Instant>,
}

impl Seen {
    fn new(from: i64) -> Self {
        Self {
            highest: from,
            gaps: BTreeMap::new(),
        }
    }

    /// Whether `seq` is new (then it counts as seen).
    fn take(&mut self, seq: i64) -> bool {
        if seq > self.highest {
            let now = Instant::now();
            let first_gap = (self.highest + 1).max(seq - MAX_GAPS as i64);
            for missing in first_gap..seq {
                self.gaps.insert(missing, now);
            }
            self.highest = seq;
            while self.gaps.len() > MAX_GAPS {
                self.gaps.pop_first();
            }
            true
        } else {
            self.gaps.remove(&seq).is_some()
        }
    }

    fn expire(&mut self) {
        self.gaps.retain(|_, at| at.elapsed() < GAP_TIMEOUT);
    }

    fn gaps(&self) -> Vec<i64> {
        self.gaps.keys().copied().take(1000).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_number_below_the_highest_is_still_taken_once() {
        let mut seen = Seen::new(10);
        assert!(seen.take(12));
        assert_eq!(seen.gaps(), [11]);
        assert!(seen.take(11), "the late commit is new");
        assert!(!seen.take(11), "but only once");
        assert!(!seen.take(12));
        assert!(!seen.take(9));
        assert!(seen.gaps().is_empty());
    }
}
