//! Webhook delivery from the outbox.
//!
//! Deliveries are queued in the same transaction as their event, so a crash
//! or restart loses none: on start the dispatcher simply finds them pending.
//! Each attempt is leased so that with several nodes exactly one sends it.
//! Delivery is at-least-once; receivers dedupe on the event `id`.

use crate::Clock;
use crate::config::WebhooksConfig;
use baton_model::Timestamp;
use baton_store::{Delivery, DeliveryStatus, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, info, warn};

/// `Baton-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub fn signature_header(secret: &str, unix_seconds: i64, body: &str) -> String {
    format!("t={unix_seconds},v1={}", sign(secret, unix_seconds, body))
}

pub fn sign(secret: &str, unix_seconds: i64, body: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The delay before attempt `attempts + 1`: doubling from the base, capped.
pub fn backoff(config: &WebhooksConfig, attempts: i64) -> Duration {
    doubling(config.retry_base, config.retry_max, attempts)
}

/// `base` doubled `n` times (`n` from 0), capped at `max`.
pub(crate) fn doubling(base: Duration, max: Duration, n: i64) -> Duration {
    let base = base.max(Duration::from_millis(10));
    let exp = u32::try_from(n.clamp(0, 30)).unwrap_or(30);
    base.saturating_mul(2u32.saturating_pow(exp)).min(max)
}

pub(crate) struct Dispatcher {
    pub store: Store,
    pub config: WebhooksConfig,
    pub clock: Clock,
    pub wake: Arc<Notify>,
    /// The guarded client of [`crate::outbound`]; none when it could not be built.
    pub http: Option<reqwest::Client>,
    pub policy: crate::outbound::OutboundPolicy,
}

/// How long a stopping node lets attempts under way finish before it gives
/// their deliveries back.
const STOP_GRACE: Duration = Duration::from_secs(2);

impl Dispatcher {
    /// Delivers until `stop` turns true (or its sender is gone).
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow_and_update() {
                return;
            }
            let now = self.clock.now();
            let lease = now.plus_millis(self.config.timeout.as_millis() as i64 + 30_000);
            // Leasing is a few short queries; it runs to its end even when the
            // node stops, so that every lease this node takes is known.
            let due = match self.store.lease_due_deliveries(now, lease, 32).await {
                Ok(due) => due,
                Err(e) => {
                    warn!(error = %e, "webhook dispatcher cannot read the outbox");
                    Vec::new()
                }
            };
            if !due.is_empty() {
                let leased: Vec<String> = due.iter().map(|d| d.id.clone()).collect();
                let mut sends = tokio::task::JoinSet::new();
                for delivery in due {
                    let store = self.store.clone();
                    let http = self.http.clone();
                    let config = self.config.clone();
                    let clock = self.clock.clone();
                    let policy = self.policy;
                    sends.spawn(async move {
                        attempt(store, http, policy, config, clock, delivery).await
                    });
                }
                let stopped = tokio::select! {
                    () = settle(&mut sends) => false,
                    _ = stop.changed() => true,
                };
                if stopped {
                    self.stop_during(sends, &leased, lease).await;
                    return;
                }
                continue;
            }
            // Sleep until the next retry is due, a new event arrives or the node stops.
            let now = self.clock.now();
            let until_due = match self.store.next_delivery_due().await {
                Ok(Some(due)) => Duration::from_millis(due.since(now).clamp(0, 1000) as u64),
                _ => Duration::from_secs(1),
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(until_due.max(Duration::from_millis(20))) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// The node is stopping while attempts are under way: they get a moment to
    /// finish and be recorded; the rest are cancelled and their deliveries
    /// given back, so that another node, or this one started again, sends
    /// them at once rather than when the lease ends.
    async fn stop_during(
        &self,
        mut sends: tokio::task::JoinSet<baton_store::Result<()>>,
        leased: &[String],
        lease: Timestamp,
    ) {
        if tokio::time::timeout(STOP_GRACE, settle(&mut sends))
            .await
            .is_ok()
        {
            return;
        }
        sends.shutdown().await;
        match self.store.release_leases(leased, lease).await {
            Ok(n) => info!(
                deliveries = n,
                "stopping: webhook deliveries under way given back"
            ),
            Err(e) => warn!(error = %e, "stopping: cannot give back leased webhook deliveries"),
        }
    }
}

/// Waits for every attempt to be sent and recorded.
async fn settle(sends: &mut tokio::task::JoinSet<baton_store::Result<()>>) {
    while let Some(done) = sends.join_next().await {
        if let Ok(Err(e)) = done {
            warn!(error = %e, "cannot record a webhook attempt");
        }
    }
}

async fn attempt(
    store: Store,
    http: Option<reqwest::Client>,
    policy: crate::outbound::OutboundPolicy,
    config: WebhooksConfig,
    clock: Clock,
    delivery: Delivery,
) -> baton_store::Result<()> {
    let Some(hook) = store.webhook(&delivery.webhook_id).await? else {
        return Ok(());
    };
    let Some(event) = store.event_by_id(&delivery.event_id).await? else {
        let now = clock.now();
        return store
            .record_attempt(
                &delivery.id,
                DeliveryStatus::Failed,
                None,
                Some("event is gone"),
                now,
                now,
            )
            .await;
    };
    let sent_at = clock.now();
    if !policy.allows_literal(&hook.url) {
        // Registered before the policy (or with it off): refused for good,
        // and recorded without a word on what is there.
        let now = clock.now();
        info!(delivery_id = %delivery.id, webhook_id = %hook.id, "webhook target refused by policy");
        return store
            .record_attempt(
                &delivery.id,
                DeliveryStatus::Failed,
                None,
                Some(crate::outbound::REFUSED),
                now,
                now,
            )
            .await;
    }
    let Some(http) = http else {
        let now = clock.now();
        return store
            .record_attempt(
                &delivery.id,
                DeliveryStatus::Pending,
                None,
                Some("no HTTP client (see the start-up log)"),
                now.plus_millis(60_000),
                now,
            )
            .await;
    };
    let result = http
        .post(&hook.url)
        .timeout(config.timeout)
        .header("content-type", "application/json")
        .header(
            "user-agent",
            concat!("Baton-Webhooks/", env!("CARGO_PKG_VERSION")),
        )
        .header("baton-event-id", &event.envelope.id)
        .header("baton-event-type", event.envelope.kind.as_str())
        .header(
            "baton-signature",
            signature_header(&hook.secret, sent_at.unix_seconds(), &event.body),
        )
        .body(event.body.clone())
        .send()
        .await;
    let now = clock.now();
    let (ok, status, error) = match result {
        Ok(resp) if resp.status().is_success() => {
            (true, Some(i64::from(resp.status().as_u16())), None)
        }
        Ok(resp) => (
            false,
            Some(i64::from(resp.status().as_u16())),
            Some(format!("receiver answered {}", resp.status())),
        ),
        // Keep the cause chain short and free of the URL's query string.
        Err(e) => (false, None, Some(describe(e))),
    };
    if ok {
        debug!(delivery_id = %delivery.id, webhook_id = %hook.id, event_id = %event.envelope.id, "webhook delivered");
        return store
            .record_attempt(
                &delivery.id,
                DeliveryStatus::Delivered,
                status,
                None,
                now,
                now,
            )
            .await;
    }
    let attempts = delivery.attempts + 1;
    let refused = error.as_deref() == Some(crate::outbound::REFUSED);
    if attempts >= config.max_attempts || refused {
        info!(delivery_id = %delivery.id, webhook_id = %hook.id, attempts, "webhook delivery failed for good");
        return store
            .record_attempt(
                &delivery.id,
                DeliveryStatus::Failed,
                status,
                error.as_deref(),
                now,
                now,
            )
            .await;
    }
    let retry_at: Timestamp =
        now.plus_millis(backoff(&config, delivery.attempts).as_millis() as i64);
    debug!(delivery_id = %delivery.id, attempts, error = ?error, "webhook attempt failed; will retry");
    store
        .record_attempt(
            &delivery.id,
            DeliveryStatus::Pending,
            status,
            error.as_deref(),
            retry_at,
            now,
        )
        .await
}

fn describe(e: reqwest::Error) -> String {
    if crate::outbound::is_refused(&e) {
        crate::outbound::REFUSED.into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        e.without_url().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Reference value computed independently with Python's hmac module.
        assert_eq!(
            sign("whsec", 1_700_000_000, "{\"a\":1}"),
            "8ad37ba156048ae0e0a5533c75cdf26fee88b07f93cb57ee4c80adb053012032"
        );
        assert_eq!(
            signature_header("k", 5, "b"),
            format!("t=5,v1={}", sign("k", 5, "b"))
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = WebhooksConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..WebhooksConfig::default()
        };
        let delays: Vec<u64> = (0..6).map(|a| backoff(&c, a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }
}
