//! Webhook subscriptions and their delivery log.

use crate::db::Row as AnyRow;
use crate::db::query;
use crate::rows::{json, parse};
use crate::{Backend, Result, Store, new_id};
use baton_model::Timestamp;
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub active: bool,
    pub created_at: Timestamp,
}

pub struct NewWebhook<'a> {
    pub url: &'a str,
    pub events: &'a [String],
    pub secret: &'a str,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown delivery status `{other}`")),
        }
    }
}

/// One event's journey to one webhook.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

fn webhook(row: &AnyRow) -> Result<Webhook> {
    let events: String = row.try_get("events")?;
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: json(&events, "webhook events")?,
        secret: row.try_get("secret")?,
        active: row.try_get::<i64, _>("active")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

fn delivery(row: &AnyRow) -> Result<Delivery> {
    let status: String = row.try_get("status")?;
    Ok(Delivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        status: parse(&status, "delivery status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_status: row.try_get("last_status")?,
        last_error: row.try_get("last_error")?,
        delivered_at: row
            .try_get::<Option<i64>, _>("delivered_at")?
            .map(Timestamp),
        created_at: Timestamp(row.try_get("created_at")?),
    })
}

/// A delivery leased for an attempt, with what the attempt sends.
#[derive(Clone, Debug)]
pub struct DueDelivery {
    pub delivery: Delivery,
    /// The event's JSON; `None` when the event is gone.
    pub body: Option<String>,
}

/// One attempt's outcome, to record.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub delivery_id: String,
    pub status: DeliveryStatus,
    pub http_status: Option<i64>,
    pub error: Option<String>,
    /// When to try again (a pending outcome); ignored otherwise.
    pub retry_at: Timestamp,
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event_id, event_type, status, attempts, \
    next_attempt_at, last_status, last_error, delivered_at, created_at";

impl Store {
    pub async fn create_webhook(&self, new: NewWebhook<'_>, now: Timestamp) -> Result<Webhook> {
        let hook = Webhook {
            id: new_id(),
            url: new.url.to_owned(),
            events: new.events.to_vec(),
            secret: new.secret.to_owned(),
            active: true,
            created_at: now,
        };
        query(
            "INSERT INTO webhooks (id, url, events, secret, active, created_at) \
             VALUES ($1, $2, $3, $4, 1, $5)",
        )
        .bind(&hook.id)
        .bind(&hook.url)
        .bind(serde_json::to_string(&hook.events).unwrap_or_else(|_| "[]".into()))
        .bind(&hook.secret)
        .bind(now.millis())
        .execute(self)
        .await?;
        self.hooks.invalidate();
        Ok(hook)
    }

    pub async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows = query(
            "SELECT id, url, events, secret, active, created_at FROM webhooks ORDER BY created_at, id",
        )
        .fetch_all(self)
        .await?;
        rows.iter().map(webhook).collect()
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        let row =
            query("SELECT id, url, events, secret, active, created_at FROM webhooks WHERE id = $1")
                .bind(id)
                .fetch_optional(self)
                .await?;
        row.as_ref().map(webhook).transpose()
    }

    /// Deletes a webhook and its delivery log; false when there was none.
    pub async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        let done = self
            .write(move |c| {
                Box::pin(async move {
                    query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                        .bind(id.as_str())
                        .execute(&mut *c)
                        .await?;
                    query("DELETE FROM webhooks WHERE id = $1")
                        .bind(id.as_str())
                        .execute(&mut *c)
                        .await
                })
            })
            .await?;
        self.hooks.invalidate();
        Ok(done > 0)
    }

    /// The newest deliveries of one webhook, newest first.
    pub async fn deliveries(&self, webhook_id: &str, limit: i64) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = query(sql)
            .bind(webhook_id)
            .bind(limit.clamp(1, 1000))
            .fetch_all(self)
            .await?;
        rows.iter().map(delivery).collect()
    }

    /// Leases up to `limit` due deliveries for node `me` in one statement,
    /// oldest first, each with the body of its event. A delivery is free
    /// when nobody leased it, its lease ran out (`lease_until`), or the node
    /// that leased it stopped beating (`alive` is the oldest heartbeat still
    /// counted alive). On PostgreSQL rows another node is leasing right now
    /// are skipped, not waited for.
    pub async fn lease_webhook_deliveries(
        &self,
        me: &str,
        now: Timestamp,
        alive: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<DueDelivery>> {
        let skip_locked = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET leased_by = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE status = 'pending' \
              AND next_attempt_at <= $3 AND {} \
              ORDER BY next_attempt_at, created_at LIMIT $5{skip_locked}) \
             RETURNING {DELIVERY_COLUMNS}",
            free(3, 4)
        );
        let me = me.to_owned();
        let leased = self
            .write(move |c| {
                Box::pin(async move {
                    let rows = query(sql)
                        .bind(me.as_str())
                        .bind(lease_until.millis())
                        .bind(now.millis())
                        .bind(alive.millis())
                        .bind(limit)
                        .fetch_all(&mut *c)
                        .await?;
                    rows.iter().map(delivery).collect::<Result<Vec<_>>>()
                })
            })
            .await?;
        if leased.is_empty() {
            return Ok(Vec::new());
        }
        // The bodies are a read: the writer only took the leases.
        let mut sql = String::from("SELECT id, body FROM events WHERE id IN (");
        for i in 1..=leased.len() {
            if i > 1 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${i}"));
        }
        sql.push(')');
        let mut q = query(sql);
        for d in &leased {
            q = q.bind(d.event_id.as_str());
        }
        let bodies: std::collections::HashMap<String, String> = q
            .fetch_all(self)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("body")?)))
            .collect::<Result<_>>()?;
        let mut due: Vec<DueDelivery> = leased
            .into_iter()
            .map(|delivery| DueDelivery {
                body: bodies.get(&delivery.event_id).cloned(),
                delivery,
            })
            .collect();
        due.sort_by_key(|d| (d.delivery.next_attempt_at, d.delivery.created_at));
        Ok(due)
    }

    /// Gives back every delivery node `me` leased and did not record: a node
    /// stopping with attempts under way hands them on at once instead of
    /// leaving them to its heartbeat running out.
    pub async fn release_webhook_leases(&self, me: &str) -> Result<u64> {
        query(
            "UPDATE webhook_deliveries SET leased_by = NULL, lease_until = NULL \
             WHERE leased_by = $1 AND status = 'pending'",
        )
        .bind(me)
        .execute(self)
        .await
    }

    /// Records attempts, in one transaction: each delivered, retried at its
    /// `retry_at`, or given up. The leases end with them.
    pub async fn record_attempts(&self, attempts: Vec<Attempt>, now: Timestamp) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            Box::pin(async move {
                for a in &attempts {
                    query(
                        "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, \
                             last_status = $2, last_error = $3, next_attempt_at = $4, \
                             leased_by = NULL, lease_until = NULL, \
                             delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
                         WHERE id = $6",
                    )
                    .bind(a.status.as_str())
                    .bind(a.http_status)
                    .bind(a.error.as_deref())
                    .bind(a.retry_at.millis())
                    .bind(now.millis())
                    .bind(a.delivery_id.as_str())
                    .execute(&mut *c)
                    .await?;
                }
                Ok(())
            })
        })
        .await
    }

    /// Pending deliveries not yet recorded, of every webhook.
    pub async fn pending_webhook_deliveries(&self) -> Result<i64> {
        query("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending'")
            .fetch_one(self)
            .await?
            .try_get("n")
    }

    /// The earliest instant a pending delivery that nobody holds becomes
    /// due, if any (see [`Store::lease_webhook_deliveries`] for free).
    pub async fn next_delivery_due(
        &self,
        now: Timestamp,
        alive: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let sql = format!(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries \
             WHERE status = 'pending' AND {}",
            free(1, 2)
        );
        let row = query(sql)
            .bind(now.millis())
            .bind(alive.millis())
            .fetch_one(self)
            .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?.map(Timestamp))
    }
}

/// Not held by anyone: `$now` is now, `$alive` the oldest heartbeat of a
/// live node (the placeholders' numbers).
fn free(now: usize, alive: usize) -> String {
    format!(
        "(lease_until IS NULL OR lease_until <= ${now} \
         OR leased_by NOT IN (SELECT n.id FROM nodes n WHERE n.heartbeat_at >= ${alive}))"
    )
}
