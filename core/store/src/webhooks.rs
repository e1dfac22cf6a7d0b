//! Webhook subscriptions and their delivery log.

use crate::db::Row as AnyRow;
use crate::db::query;
use crate::rows::{json, parse};
use crate::{Result, Store, new_id};
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

    /// Takes up to `limit` due deliveries for this node, leasing each until `lease_until`
    /// so that no other node sends it meanwhile. Oldest first.
    pub async fn lease_due_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> Result<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until <= $1) \
             ORDER BY next_attempt_at, created_at LIMIT $2"
        );
        let candidates = query(sql)
            .bind(now.millis())
            .bind(limit)
            .fetch_all(self)
            .await?;
        let mut leased = Vec::new();
        for row in &candidates {
            let d = delivery(row)?;
            // The lease is itself a compare-and-swap: only one node wins each delivery.
            let done = query(
                "UPDATE webhook_deliveries SET lease_until = $1 WHERE id = $2 \
                 AND status = 'pending' AND (lease_until IS NULL OR lease_until <= $3)",
            )
            .bind(lease_until.millis())
            .bind(&d.id)
            .bind(now.millis())
            .execute(self)
            .await?;
            if done == 1 {
                leased.push(d);
            }
        }
        Ok(leased)
    }

    /// Gives back deliveries this node leased until `lease_until` and did not
    /// finish: a node stopping with attempts under way hands them on at once
    /// instead of leaving them locked until the lease runs out. A delivery
    /// recorded meanwhile, or leased again by another node, is left alone.
    pub async fn release_leases(&self, ids: &[String], lease_until: Timestamp) -> Result<u64> {
        let mut released = 0;
        for id in ids {
            let done = query(
                "UPDATE webhook_deliveries SET lease_until = NULL \
                 WHERE id = $1 AND status = 'pending' AND lease_until = $2",
            )
            .bind(id)
            .bind(lease_until.millis())
            .execute(self)
            .await?;
            released += done;
        }
        Ok(released)
    }

    /// Records one attempt: delivered, retried at `retry_at`, or given up.
    pub async fn record_attempt(
        &self,
        delivery_id: &str,
        status: DeliveryStatus,
        http_status: Option<i64>,
        error: Option<&str>,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, last_status = $2, \
                 last_error = $3, next_attempt_at = $4, lease_until = NULL, \
                 delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END \
             WHERE id = $6",
        )
        .bind(status.as_str())
        .bind(http_status)
        .bind(error)
        .bind(retry_at.millis())
        .bind(now.millis())
        .bind(delivery_id)
        .execute(self)
        .await?;
        Ok(())
    }

    /// The earliest instant a pending delivery becomes due, if any is pending.
    pub async fn next_delivery_due(&self) -> Result<Option<Timestamp>> {
        let row = query(
            "SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(self)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?.map(Timestamp))
    }
}
