//! The outbox: every lifecycle event, in the transaction that caused it.

use crate::db::{Conn, Row, query};
use crate::rows::json;
use crate::{Backend, Result, Store, new_id};
use baton_model::wire::{ConversationView, EventData, EventEnvelope, MessageView};
use baton_model::{EventKind, Message, Timestamp};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// An event as stored: its place in the outbox, its envelope and the exact body sent.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: i64,
    pub envelope: EventEnvelope,
    /// The serialized envelope; webhooks sign and send exactly these bytes.
    pub body: String,
}

impl StoredEvent {
    /// An event from its outbox row's parts.
    pub fn from_body(seq: i64, body: String) -> Result<Self> {
        Ok(StoredEvent {
            seq,
            envelope: json(&body, "event body")?,
            body,
        })
    }
}

fn stored_event(row: &Row) -> Result<StoredEvent> {
    StoredEvent::from_body(row.try_get("seq")?, row.try_get("body")?)
}

/// The channel the PostgreSQL outbox notifies on. The payload is
/// `"<seq> <body>"` when the body fits (under 7,000 bytes; NOTIFY takes
/// 8,000), else `"<seq>"` and listeners read the body from the table.
pub const NOTIFY_CHANNEL: &str = "baton_events";

/// The webhook subscriptions, kept between events: which hooks take which
/// types. Invalidated when this node changes one; with several nodes on
/// PostgreSQL, read again after [`HOOKS_TTL`] at most, so a subscription
/// made on another node takes effect within a second.
#[derive(Default)]
pub(crate) struct HookCache {
    hooks: RwLock<Option<(Instant, Hooks)>>,
}

/// Each active webhook's id and the event types it takes.
type Hooks = Vec<(String, Vec<String>)>;

pub(crate) const HOOKS_TTL: Duration = Duration::from_secs(1);

impl HookCache {
    pub(crate) fn invalidate(&self) {
        *self.hooks.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    async fn get(&self, c: &mut dyn Conn) -> Result<Hooks> {
        let sqlite = c.backend() == Backend::Sqlite;
        let fresh = |at: &Instant| sqlite || at.elapsed() < HOOKS_TTL;
        if let Some((at, hooks)) = &*self.hooks.read().unwrap_or_else(|p| p.into_inner())
            && fresh(at)
        {
            return Ok(hooks.clone());
        }
        let rows = query("SELECT id, events FROM webhooks WHERE active = 1")
            .fetch_all(&mut *c)
            .await?;
        let mut hooks = Vec::with_capacity(rows.len());
        for row in rows {
            let events: String = row.try_get("events")?;
            hooks.push((row.try_get("id")?, json(&events, "webhook events")?));
        }
        *self.hooks.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Instant::now(), hooks.clone()));
        Ok(hooks)
    }
}

/// Appends an event to the outbox with the conversation as it is at the end
/// of its transaction, queues a delivery for every webhook that takes its
/// type, and (on PostgreSQL) notifies the other nodes once the transaction
/// commits.
pub(crate) async fn insert_event(
    c: &mut dyn Conn,
    hooks: &HookCache,
    kind: EventKind,
    conversation: &ConversationView,
    message: Option<&Message>,
    now: Timestamp,
) -> Result<StoredEvent> {
    let envelope = EventEnvelope {
        id: new_event_id(),
        kind,
        created_at: now,
        data: EventData {
            conversation: conversation.clone(),
            message: message.map(MessageView::from),
        },
    };
    let body = serde_json::to_string(&envelope)
        .map_err(|e| crate::Error::Corrupt(format!("event body: {e}")))?;
    let sql = match c.backend() {
        Backend::Sqlite => {
            "INSERT INTO events (id, type, conversation_id, created_at, body) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq"
        }
        // The notification goes out (to every node, this one too) when, and
        // only if, the transaction commits.
        Backend::Postgres => {
            "WITH e AS (INSERT INTO events (id, type, conversation_id, created_at, body) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq) \
             SELECT seq, pg_notify('baton_events', CASE WHEN octet_length($5) < 7000 \
             THEN seq::text || ' ' || $5 ELSE seq::text END) AS notified FROM e"
        }
    };
    let row = query(sql)
        .bind(envelope.id.as_str())
        .bind(kind.as_str())
        .bind(envelope.data.conversation.id.as_str())
        .bind(now.millis())
        .bind(body.as_str())
        .fetch_one(&mut *c)
        .await?;
    let seq: i64 = row.try_get("seq")?;
    for (hook_id, events) in hooks.get(c).await? {
        if !events.iter().any(|e| e == "*" || e == kind.as_str()) {
            continue;
        }
        query(
            "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, status, \
                 attempts, next_attempt_at, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
        )
        .bind(new_id())
        .bind(hook_id)
        .bind(envelope.id.as_str())
        .bind(kind.as_str())
        .bind(now.millis())
        .execute(&mut *c)
        .await?;
    }
    Ok(StoredEvent {
        seq,
        envelope,
        body,
    })
}

impl Store {
    pub async fn event_by_seq(&self, seq: i64) -> Result<Option<StoredEvent>> {
        self.read(move |c| {
            Box::pin(async move {
                let row = query("SELECT seq, body FROM events WHERE seq = $1")
                    .bind(seq)
                    .fetch_optional(&mut *c)
                    .await?;
                row.as_ref().map(stored_event).transpose()
            })
        })
        .await
    }

    pub async fn event_by_id(&self, id: &str) -> Result<Option<StoredEvent>> {
        let id = id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let row = query("SELECT seq, body FROM events WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *c)
                    .await?;
                row.as_ref().map(stored_event).transpose()
            })
        })
        .await
    }

    /// Events after `seq`, oldest first.
    pub async fn events_after(&self, seq: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        self.read(move |c| {
            Box::pin(async move {
                let rows =
                    query("SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                        .bind(seq)
                        .bind(limit.clamp(1, 10_000))
                        .fetch_all(&mut *c)
                        .await?;
                rows.iter().map(stored_event).collect()
            })
        })
        .await
    }

    /// The events with these sequence numbers that exist now (a catch-up
    /// after a reconnect asks for the numbers it has not seen).
    pub async fn events_at(&self, seqs: Vec<i64>) -> Result<Vec<StoredEvent>> {
        if seqs.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |c| {
            Box::pin(async move {
                let places: Vec<String> = (1..=seqs.len()).map(|i| format!("${i}")).collect();
                let sql = format!(
                    "SELECT seq, body FROM events WHERE seq IN ({}) ORDER BY seq",
                    places.join(", ")
                );
                let mut q = query(sql);
                for s in seqs {
                    q = q.bind(s);
                }
                let rows = q.fetch_all(&mut *c).await?;
                rows.iter().map(stored_event).collect()
            })
        })
        .await
    }

    pub async fn last_event_seq(&self) -> Result<i64> {
        self.read(|c| {
            Box::pin(async move {
                let row = query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
                    .fetch_one(&mut *c)
                    .await?;
                row.try_get("seq")
            })
        })
        .await
    }

    /// Events of some types within `[from, to)`, oldest first (for reports).
    pub async fn events_of_kinds(
        &self,
        kinds: &[EventKind],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredEvent>> {
        let kinds = kinds.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                let mut out = Vec::new();
                for kind in kinds {
                    let rows = query(
                        "SELECT seq, body FROM events WHERE type = $1 AND created_at >= $2 \
                         AND created_at < $3 ORDER BY seq",
                    )
                    .bind(kind.as_str())
                    .bind(from.millis())
                    .bind(to.millis())
                    .fetch_all(&mut *c)
                    .await?;
                    for row in &rows {
                        out.push(stored_event(row)?);
                    }
                }
                out.sort_by_key(|e| e.seq);
                Ok(out)
            })
        })
        .await
    }
}

/// A fresh event id.
pub fn new_event_id() -> String {
    format!("evt_{}", new_id())
}
