//! The runtime as channels see it: [`Ingest`] (visitor messages in, and the
//! staff actions an agent console such as Slack performs), and the channels'
//! background work.
//!
//! A channel's receive loop (Telegram polling, the Discord gateway, Slack
//! Socket Mode) and a console's event follower are singleton work: one node
//! of those sharing the database runs each, under a lease in `singletons`
//! that it takes again every [`NODE_HEARTBEAT`]. A node that hangs stops
//! taking it; once the row is older than [`NODE_TIMEOUT`] another node takes
//! it, within `NODE_TIMEOUT + TAKE_EVERY` (12 s) of the hang. The holder
//! acts on a console only within [`ACT_WITHIN`] of its last confirmation, so
//! a node that wakes from a hang does not post beside the one that took
//! over; it finds its lease gone at its next take and stops the work.
//!
//! A console follows the events from a cursor kept in `channel_state`
//! (`console:{kind}`, `cursor`): the node that takes it over (or this node,
//! started again) first replays what was committed after the cursor, then
//! follows the hub. An event is acted on at least once; twice only when a
//! node stopped between acting and moving the cursor.

use crate::runtime::{NODE_HEARTBEAT, NODE_TIMEOUT};
use crate::{Error, Runtime};
use async_trait::async_trait;
use baton_channel::{AgentAct, Channel, Inbound, Ingest, Ingested};
use baton_model::Message;
use baton_model::{AgentRef, ChannelKind, Conversation, Input, TransitionError};
use baton_store::StoredEvent;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// How often a node asks for a singleton it does not hold, and how often
/// the holder takes it again.
const TAKE_EVERY: Duration = NODE_HEARTBEAT;
/// How long after its last confirmation the holder still acts: well inside
/// [`NODE_TIMEOUT`], after which another node may take the lease (the rest
/// is room for an act under way and for clocks that differ a little).
pub(crate) const ACT_WITHIN: Duration = Duration::from_secs(6);
/// How long work told to stop (lease lost, node stopping) has to finish
/// what it is doing before it is cut.
const FINISH_WITHIN: Duration = Duration::from_secs(3);
/// Events read at a time when a console replays from its cursor.
const REPLAY_PAGE: i64 = 1000;

/// This node's hold on a piece of singleton work, as the work sees it.
#[derive(Clone)]
pub(crate) struct Lease {
    /// When the last take that confirmed the lease was sent.
    confirmed: Arc<Mutex<Instant>>,
    /// Turns true when the work must stop: the lease is lost, or the node stops.
    ended: watch::Receiver<bool>,
}

impl Lease {
    fn confirm(&self, sent: Instant) {
        *self.confirmed.lock().unwrap_or_else(|p| p.into_inner()) = sent;
    }

    fn age(&self) -> Duration {
        self.confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    /// Resolves when the work must stop.
    async fn ended(&self) {
        let mut ended = self.ended.clone();
        let _ = ended.wait_for(|e| *e).await;
    }

    /// Waits until the holder may act: true once the lease is confirmed
    /// recently enough, false if it ends first.
    async fn may_act(&self) -> bool {
        loop {
            if *self.ended.borrow() {
                return false;
            }
            if self.age() < ACT_WITHIN {
                return true;
            }
            tokio::select! {
                () = self.ended() => return false,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    }
}

/// A console following events: where it is and what lets it act.
struct Follow<'a> {
    channel: &'a Arc<dyn Channel>,
    ingest: &'a Arc<dyn Ingest>,
    lease: &'a Lease,
    owner: &'a str,
    cursor: &'a mut i64,
}

/// Why a node let go of a singleton.
enum LetGo {
    Ended,
    Lost,
    Stopping,
}

impl Runtime {
    /// Spawns each channel's receive loop and, for consoles, its event follower.
    pub(crate) fn start_channels(&self) {
        for channel in self.channels() {
            let kind = channel.kind();
            if kind == ChannelKind::Web {
                continue;
            }
            let rt = self.clone();
            let ch = channel.clone();
            self.tasks().spawn_held(async move {
                rt.singleton(&format!("channel:{kind}"), |lease: Lease| {
                    let ch = ch.clone();
                    let ingest: Arc<dyn Ingest> = Arc::new(rt.clone());
                    async move {
                        tokio::select! {
                            r = ch.run(ingest) => if let Err(e) = r {
                                warn!(channel = %kind, error = %e, "channel receive loop stopped");
                            },
                            () = lease.ended() => {}
                        }
                    }
                })
                .await;
            });
            if channel.observes_events() {
                let rt = self.clone();
                self.tasks().spawn_held(async move {
                    rt.singleton(&format!("console:{kind}"), |lease: Lease| {
                        let rt = rt.clone();
                        let ch = channel.clone();
                        async move { rt.observe(ch, lease).await }
                    })
                    .await;
                });
            }
        }
    }

    /// Runs `work` while this node holds the named lease, taking it again
    /// every [`TAKE_EVERY`]. Lost to another node, the work is told to stop
    /// and this node asks again; ended or stopped, the lease is let go.
    async fn singleton<F, Fut>(&self, name: &str, work: F)
    where
        F: Fn(Lease) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut stopping = self.stopping();
        loop {
            if *stopping.borrow() {
                return;
            }
            let sent = Instant::now();
            match self.take_singleton(name).await {
                Ok(true) => {
                    info!(work = name, "this node runs it");
                    let (end, ended) = watch::channel(false);
                    let lease = Lease {
                        confirmed: Arc::new(Mutex::new(sent)),
                        ended,
                    };
                    let job = work(lease.clone());
                    tokio::pin!(job);
                    let why = tokio::select! {
                        () = &mut job => LetGo::Ended,
                        () = self.keep(name, &lease) => LetGo::Lost,
                        _ = stopping.wait_for(|s| *s) => LetGo::Stopping,
                    };
                    if !matches!(why, LetGo::Ended) {
                        end.send_replace(true);
                        let _ = tokio::time::timeout(FINISH_WITHIN, &mut job).await;
                    }
                    match why {
                        LetGo::Lost => warn!(work = name, "lost it to another node: it stops here"),
                        LetGo::Ended | LetGo::Stopping => {
                            if let Err(e) =
                                self.store().release_singleton(name, self.node_id()).await
                            {
                                warn!(work = name, error = %e, "cannot let go of the lease");
                            }
                            return;
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => warn!(work = name, error = %e, "cannot take the singleton lease"),
            }
            tokio::select! {
                () = tokio::time::sleep(TAKE_EVERY) => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
    }

    async fn take_singleton(&self, name: &str) -> baton_store::Result<bool> {
        self.store()
            .take_singleton(name, self.node_id(), self.now(), self.alive_since())
            .await
    }

    /// Takes the lease again every [`TAKE_EVERY`]; returns once it is lost
    /// (another node holds it, or it could not be confirmed for
    /// [`NODE_TIMEOUT`]).
    async fn keep(&self, name: &str, lease: &Lease) {
        loop {
            tokio::time::sleep(TAKE_EVERY).await;
            let sent = Instant::now();
            match self.take_singleton(name).await {
                Ok(true) => lease.confirm(sent),
                Ok(false) => return,
                Err(e) => {
                    warn!(work = name, error = %e, "cannot take the singleton lease again");
                    if lease.age() >= NODE_TIMEOUT {
                        return;
                    }
                }
            }
        }
    }

    /// Feeds every committed event to a console, in commit order, from its
    /// cursor: first what was committed after it, then the hub.
    async fn observe(&self, channel: Arc<dyn Channel>, lease: Lease) {
        let kind = channel.kind();
        let owner = format!("console:{kind}");
        // Subscribed before the replay, so nothing falls between the two.
        let mut events = self.bus().subscribe();
        let ingest: Arc<dyn Ingest> = Arc::new(self.clone());
        let mut cursor = match self.console_cursor(&owner).await {
            Some(c) => c,
            None => return,
        };
        let mut replayed = HashSet::new();
        let mut follow = Follow {
            channel: &channel,
            ingest: &ingest,
            lease: &lease,
            owner: &owner,
            cursor: &mut cursor,
        };
        if !self.replay(&mut follow, &mut replayed).await {
            return;
        }
        loop {
            let event = tokio::select! {
                biased;
                () = lease.ended() => return,
                event = events.recv() => event,
            };
            match event {
                Ok(event) => {
                    if replayed.remove(&event.seq) {
                        continue;
                    }
                    if !self.follow_one(&mut follow, &event).await {
                        return;
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(channel = %kind, missed = n, "console fell behind: it replays from its cursor");
                    if !self.replay(&mut follow, &mut replayed).await {
                        return;
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    }

    /// Hands a console every event committed after its cursor, noting each
    /// in `replayed` (the hub may bring them again). False when the lease
    /// ended first.
    async fn replay(&self, follow: &mut Follow<'_>, replayed: &mut HashSet<i64>) -> bool {
        loop {
            let page = tokio::select! {
                page = self.store().events_after(*follow.cursor, REPLAY_PAGE) => page,
                () = follow.lease.ended() => return false,
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    warn!(console = follow.owner, error = %e, "console cannot replay events; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(TAKE_EVERY) => continue,
                        () = follow.lease.ended() => return false,
                    }
                }
            };
            let full = page.len() as i64 == REPLAY_PAGE;
            for event in page {
                if !self.follow_one(follow, &event).await {
                    return false;
                }
                replayed.insert(event.seq);
            }
            if !full {
                return true;
            }
        }
    }

    /// Where a console left off; at its first start, the newest event (it
    /// does not replay the history). `None` when the node stops first.
    async fn console_cursor(&self, owner: &str) -> Option<i64> {
        let mut stopping = self.stopping();
        loop {
            let found = match self.store().channel_state(owner, "cursor").await {
                Ok(Some(c)) => c.parse::<i64>().map_err(|e| e.to_string()),
                Ok(None) => self.start_cursor(owner).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match found {
                Ok(c) => return Some(c),
                Err(e) => warn!(console = owner, error = %e, "cannot read the console's cursor"),
            }
            tokio::select! {
                () = tokio::time::sleep(TAKE_EVERY) => {}
                _ = stopping.wait_for(|s| *s) => return None,
            }
        }
    }

    /// A console's first cursor: the newest event, kept at once (an event
    /// after it that is not followed before a crash is replayed).
    async fn start_cursor(&self, owner: &str) -> baton_store::Result<i64> {
        let seq = self.store().last_event_seq().await?;
        self.store()
            .set_channel_state(owner, "cursor", &seq.to_string(), self.now())
            .await?;
        Ok(seq)
    }

    /// Hands one event to a console once the lease allows it, then moves the
    /// cursor. False when the lease ended first (the event is left for the
    /// next holder).
    async fn follow_one(&self, follow: &mut Follow<'_>, event: &StoredEvent) -> bool {
        if !follow.lease.may_act().await {
            return false;
        }
        let observed = follow
            .channel
            .observe(&event.envelope, follow.ingest.clone())
            .await;
        if let Err(e) = observed {
            warn!(channel = %follow.channel.kind(), event = event.envelope.id, error = %e, "console could not follow an event");
        }
        if event.seq > *follow.cursor {
            *follow.cursor = event.seq;
            let saved = self
                .store()
                .set_channel_state(follow.owner, "cursor", &event.seq.to_string(), self.now())
                .await;
            if let Err(e) = saved {
                warn!(console = follow.owner, error = %e, "cannot move the console's cursor");
            }
        }
        true
    }
}

fn channel_error(e: Error) -> baton_channel::Error {
    use baton_channel::Error as C;
    match e {
        Error::Transition(TransitionError::AlreadyClaimed { by }) => {
            C::Refused(format!("already claimed by {}", by.name))
        }
        // Both pass: the store comes back, a busy conversation calms down.
        Error::Store(e) => C::Other(e.to_string()),
        Error::Conflict(e) => C::Other(e),
        other => C::Refused(other.to_string()),
    }
}

#[async_trait]
impl Ingest for Runtime {
    async fn ingest(&self, inbound: Inbound) -> baton_channel::Result<Ingested> {
        self.ingest_inbound(inbound).await.map_err(channel_error)
    }

    async fn has_thread(
        &self,
        channel: ChannelKind,
        thread_key: &str,
    ) -> baton_channel::Result<bool> {
        let found = self
            .store()
            .conversation_by_thread(channel, thread_key)
            .await
            .map_err(|e| channel_error(e.into()))?;
        Ok(found.is_some())
    }

    async fn staff_by_email(&self, email: &str) -> baton_channel::Result<Option<AgentRef>> {
        let user = self
            .store()
            .user_by_email(email)
            .await
            .map_err(|e| channel_error(e.into()))?;
        Ok(user.map(|u| AgentRef {
            id: u.id,
            name: u.name,
        }))
    }

    async fn agent_act(
        &self,
        conversation_id: &str,
        agent: &AgentRef,
        act: AgentAct,
    ) -> baton_channel::Result<Conversation> {
        let result = match act {
            AgentAct::Claim => self.claim(conversation_id, agent).await,
            AgentAct::HandBack => {
                let by = agent.clone();
                self.apply(conversation_id, move |_| Input::HandBack { by })
                    .await
            }
            AgentAct::Resolve => {
                let by = Some(agent.clone());
                self.apply(conversation_id, move |_| Input::Resolve { by })
                    .await
            }
            AgentAct::Reply { text, client_id } => {
                match self
                    .agent_message_once(conversation_id, agent, text, false, client_id)
                    .await
                {
                    Ok(_) => self.conversation(conversation_id).await,
                    Err(e) => Err(e),
                }
            }
        };
        result.map_err(channel_error)
    }

    async fn conversation(
        &self,
        conversation_id: &str,
    ) -> baton_channel::Result<Option<Conversation>> {
        match Runtime::conversation(self, conversation_id).await {
            Ok(c) => Ok(Some(c)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(e) => Err(channel_error(e)),
        }
    }

    async fn recent_messages(
        &self,
        conversation_id: &str,
        n: usize,
    ) -> baton_channel::Result<Vec<Message>> {
        let conv = Runtime::conversation(self, conversation_id)
            .await
            .map_err(channel_error)?;
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        let mut messages = self
            .store()
            .messages(conversation_id, (conv.last_seq - n).max(0), false, n)
            .await
            .map_err(|e| channel_error(e.into()))?;
        messages.retain(|m| !m.internal);
        Ok(messages)
    }

    async fn link(
        &self,
        console: &str,
        conversation_id: &str,
        external: &str,
    ) -> baton_channel::Result<()> {
        self.store()
            .link(console, conversation_id, external, self.now())
            .await
            .map_err(|e| channel_error(e.into()))
    }

    async fn linked_conversation(
        &self,
        console: &str,
        external: &str,
    ) -> baton_channel::Result<Option<String>> {
        self.store()
            .linked_conversation(console, external)
            .await
            .map_err(|e| channel_error(e.into()))
    }

    async fn conversation_link(
        &self,
        console: &str,
        conversation_id: &str,
    ) -> baton_channel::Result<Option<String>> {
        self.store()
            .conversation_link(console, conversation_id)
            .await
            .map_err(|e| channel_error(e.into()))
    }

    async fn state(
        &self,
        channel: ChannelKind,
        key: &str,
    ) -> baton_channel::Result<Option<String>> {
        self.store()
            .channel_state(channel.as_str(), key)
            .await
            .map_err(|e| channel_error(e.into()))
    }

    async fn set_state(
        &self,
        channel: ChannelKind,
        key: &str,
        value: &str,
    ) -> baton_channel::Result<()> {
        self.store()
            .set_channel_state(channel.as_str(), key, value, self.now())
            .await
            .map_err(|e| channel_error(e.into()))
    }

    async fn notice(&self, conversation_id: &str, text: &str) -> baton_channel::Result<()> {
        self.system_message(conversation_id, text.to_owned())
            .await
            .map(|_| ())
            .map_err(channel_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> (watch::Sender<bool>, Lease) {
        let (end, ended) = watch::channel(false);
        let lease = Lease {
            confirmed: Arc::new(Mutex::new(Instant::now())),
            ended,
        };
        (end, lease)
    }

    #[tokio::test(start_paused = true)]
    async fn a_holder_acts_only_within_its_window_since_the_last_confirmation() {
        let (_end, lease) = lease();
        assert!(lease.may_act().await, "a fresh lease acts at once");
        tokio::time::advance(ACT_WITHIN + Duration::from_secs(1)).await;
        // Stale (say, woken from a hang): it waits, and acts once confirmed.
        let waiting = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.may_act().await })
        };
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiting.is_finished(), "a stale lease must not act");
        lease.confirm(Instant::now());
        assert!(waiting.await.unwrap(), "confirmed again, it acts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_holder_whose_lease_ends_never_acts() {
        let (end, lease) = lease();
        tokio::time::advance(ACT_WITHIN).await;
        let waiting = {
            let lease = lease.clone();
            tokio::spawn(async move { lease.may_act().await })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        end.send_replace(true);
        assert!(!waiting.await.unwrap());
        assert!(!lease.may_act().await, "an ended lease never acts");
    }
}
