//! The outbox: every lifecycle event, in the transaction that caused it.

use crate::rows::json;
use crate::{Backend, Result, Store, Tx, new_id};
use baton_model::wire::EventEnvelope;
use baton_model::{EventKind, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

/// An event as stored: its place in the outbox, its envelope and the exact body sent.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub seq: i64,
    pub envelope: EventEnvelope,
    /// The serialized envelope; webhooks sign and send exactly these bytes.
    pub body: String,
}

fn stored_event(row: &AnyRow) -> Result<StoredEvent> {
    let body: String = row.try_get("body")?;
    Ok(StoredEvent {
        seq: row.try_get("seq")?,
        envelope: json(&body, "event body")?,
        body,
    })
}

impl Tx {
    /// Appends an event to the outbox, queues a delivery for every webhook that
    /// subscribed to its type, and (on PostgreSQL) notifies the other nodes once
    /// the transaction commits.
    pub async fn insert_event(&mut self, envelope: &EventEnvelope) -> Result<StoredEvent> {
        let body = serde_json::to_string(envelope)
            .map_err(|e| crate::Error::Corrupt(format!("event body: {e}")))?;
        let row = sqlx::query(
            "INSERT INTO events (id, type, conversation_id, created_at, body) \
             VALUES ($1, $2, $3, $4, $5) RETURNING seq",
        )
        .bind(&envelope.id)
        .bind(envelope.kind.as_str())
        .bind(&envelope.data.conversation.id)
        .bind(envelope.created_at.millis())
        .bind(&body)
        .fetch_one(&mut *self.inner)
        .await?;
        let seq: i64 = row.try_get("seq")?;

        let hooks = sqlx::query("SELECT id, events FROM webhooks WHERE active = 1")
            .fetch_all(&mut *self.inner)
            .await?;
        for hook in hooks {
            let events: String = hook.try_get("events")?;
            let events: Vec<String> = json(&events, "webhook events")?;
            if !events
                .iter()
                .any(|e| e == "*" || e == envelope.kind.as_str())
            {
                continue;
            }
            let hook_id: String = hook.try_get("id")?;
            sqlx::query(
                "INSERT INTO webhook_deliveries (id, webhook_id, event_id, event_type, status, \
                     attempts, next_attempt_at, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, $5)",
            )
            .bind(new_id())
            .bind(hook_id)
            .bind(&envelope.id)
            .bind(envelope.kind.as_str())
            .bind(envelope.created_at.millis())
            .execute(&mut *self.inner)
            .await?;
        }

        if self.backend == Backend::Postgres {
            // Delivered to listeners only when (and if) this transaction commits.
            sqlx::query("SELECT pg_notify('baton_events', $1)")
                .bind(seq.to_string())
                .execute(&mut *self.inner)
                .await?;
        }
        Ok(StoredEvent {
            seq,
            envelope: envelope.clone(),
            body,
        })
    }
}

impl Store {
    pub async fn event_by_seq(&self, seq: i64) -> Result<Option<StoredEvent>> {
        let row = sqlx::query("SELECT seq, body FROM events WHERE seq = $1")
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    pub async fn event_by_id(&self, id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query("SELECT seq, body FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(stored_event).transpose()
    }

    /// Events after `seq`, oldest first.
    pub async fn events_after(&self, seq: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT seq, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(seq)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(stored_event).collect()
    }

    pub async fn last_event_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("seq")?)
    }

    /// Events of some types within `[from, to)`, oldest first (for reports).
    pub async fn events_of_kinds(
        &self,
        kinds: &[EventKind],
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<StoredEvent>> {
        let mut out = Vec::new();
        for kind in kinds {
            let rows = sqlx::query(
                "SELECT seq, body FROM events WHERE type = $1 AND created_at >= $2 \
                 AND created_at < $3 ORDER BY seq",
            )
            .bind(kind.as_str())
            .bind(from.millis())
            .bind(to.millis())
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                out.push(stored_event(row)?);
            }
        }
        out.sort_by_key(|e| e.seq);
        Ok(out)
    }
}

/// A fresh event id.
pub fn new_event_id() -> String {
    format!("evt_{}", new_id())
}
