//! Webhook delivery from the outbox.
//!
//! Deliveries are queued in the same transaction as their event, so a crash
//! or restart loses none: on start the dispatcher simply finds them pending.
//! Each attempt is leased by a node (batched, one statement per batch), so
//! that with several nodes exactly one sends it, and a dead node's leases
//! are free once its heartbeat stops. Attempts run concurrently, bounded per
//! webhook, and are recorded in batches. Delivery is at-least-once;
//! receivers dedupe on the event `id`.

use crate::Clock;
use crate::config::WebhooksConfig;
use baton_model::Timestamp;
use baton_store::{Attempt, DeliveryStatus, DueDelivery, Store, Webhook};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::task::JoinSet;
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
    /// This node, as its leases name it.
    pub node_id: String,
}

/// How long a stopping node lets attempts under way finish before it gives
/// their deliveries back.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Deliveries one node holds at most: leased, and not yet recorded.
const IN_FLIGHT: usize = 512;

/// Attempts under way at once to one webhook; the rest of its leased
/// deliveries wait their turn.
const PER_ENDPOINT: usize = 32;

/// Deliveries leased in one statement at most.
const LEASE_BATCH: usize = 256;

/// Room the dispatcher waits for before it leases again while attempts are
/// under way, so that leasing is one statement per batch, not per attempt.
const MIN_LEASE: usize = 64;

/// The longest the dispatcher sleeps without looking: another node's
/// deliveries become free when its heartbeat stops, which nothing announces.
const LOOK_AT_LEAST_EVERY: Duration = Duration::from_secs(1);

/// What the dispatcher knows between two looks.
struct Flight {
    /// Attempts spawned and not yet recorded.
    in_flight: usize,
    /// The last lease filled its batch: there may be more due now.
    look: bool,
    /// The earliest instant a free delivery is due, as last seen.
    next_due: Option<Timestamp>,
    endpoints: std::collections::HashMap<String, Arc<Semaphore>>,
    sends: JoinSet<()>,
}

impl Dispatcher {
    /// Delivers until `stop` turns true (or its sender is gone).
    ///
    /// One loop leases due deliveries in batches, while there is room, and
    /// spawns an attempt for each (at most [`PER_ENDPOINT`] at once per
    /// webhook); attempts report their outcome back, and the loop records
    /// whatever has finished in one transaction. A burst of new events is
    /// one wake-up, not one per event.
    pub(crate) async fn run(self, mut stop: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Option<Attempt>>();
        let mut f = Flight {
            in_flight: 0,
            look: true,
            next_due: None,
            endpoints: std::collections::HashMap::new(),
            sends: JoinSet::new(),
        };
        let mut finished = Vec::new();
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            while let Ok(done) = done_rx.try_recv() {
                finished.push(done);
            }
            this.record(&mut f, &mut finished).await;
            let room = IN_FLIGHT - f.in_flight;
            if f.look && (room >= MIN_LEASE || f.in_flight == 0) {
                this.lease(&mut f, room.min(LEASE_BATCH), &done_tx).await;
                if f.look && IN_FLIGHT - f.in_flight >= MIN_LEASE {
                    continue;
                }
            }
            // Reap the attempt tasks that ended (their outcome is on the channel).
            while f.sends.try_join_next().is_some() {}
            let until_due = if f.look {
                // Waiting for room: attempts finishing are what wakes it.
                LOOK_AT_LEAST_EVERY
            } else {
                let now = this.clock.now();
                f.next_due.map_or(LOOK_AT_LEAST_EVERY, |due| {
                    Duration::from_millis(due.since(now).max(0) as u64).min(LOOK_AT_LEAST_EVERY)
                })
            };
            tokio::select! {
                biased;
                _ = stop.changed() => {}
                n = done_rx.recv_many(&mut finished, IN_FLIGHT), if f.in_flight > 0 => {
                    if n == 0 {
                        break;
                    }
                }
                () = this.wake.notified() => f.look = true,
                () = tokio::time::sleep(until_due) => f.look = true,
            }
        }
        this.stop_during(f, done_rx, finished).await;
    }

    /// Leases up to `want` due deliveries and spawns an attempt for each.
    async fn lease(
        self: &Arc<Self>,
        f: &mut Flight,
        want: usize,
        done: &mpsc::UnboundedSender<Option<Attempt>>,
    ) {
        let now = self.clock.now();
        let alive = now.plus_millis(-(crate::runtime::NODE_TIMEOUT.as_millis() as i64));
        let lease_until = now.plus_millis(self.config.timeout.as_millis() as i64 + 30_000);
        let due = match self
            .store
            .lease_webhook_deliveries(&self.node_id, now, alive, lease_until, want as i64)
            .await
        {
            Ok(due) => due,
            Err(e) => {
                warn!(error = %e, "webhook dispatcher cannot read the outbox");
                f.look = false;
                f.next_due = None;
                return;
            }
        };
        f.look = due.len() == want;
        if !f.look {
            f.next_due = self
                .store
                .next_delivery_due(now, alive)
                .await
                .ok()
                .flatten();
        }
        if due.is_empty() {
            return;
        }
        let hooks: std::collections::HashMap<String, Arc<Webhook>> =
            match self.store.webhooks().await {
                Ok(hooks) => hooks
                    .into_iter()
                    .map(|h| (h.id.clone(), Arc::new(h)))
                    .collect(),
                Err(e) => {
                    // Leased and not sent: their leases run out, and they are sent then.
                    warn!(error = %e, "webhook dispatcher cannot read the webhooks");
                    std::collections::HashMap::new()
                }
            };
        for d in due {
            f.in_flight += 1;
            let hook = hooks.get(&d.delivery.webhook_id).cloned();
            let gate = f
                .endpoints
                .entry(d.delivery.webhook_id.clone())
                .or_insert_with(|| Arc::new(Semaphore::new(PER_ENDPOINT)))
                .clone();
            let this = self.clone();
            let done = done.clone();
            f.sends.spawn(async move {
                let outcome = match hook {
                    Some(hook) => {
                        // The semaphore is never closed, so this cannot fail.
                        let _turn = gate.acquire_owned().await.ok();
                        Some(this.attempt(&hook, d).await)
                    }
                    // Deleted meanwhile, and its deliveries with it (or not
                    // readable now: then the lease runs out).
                    None => None,
                };
                let _ = done.send(outcome);
            });
        }
    }

    /// Records the attempts that finished, in one transaction.
    async fn record(&self, f: &mut Flight, finished: &mut Vec<Option<Attempt>>) {
        if finished.is_empty() {
            return;
        }
        f.in_flight = f.in_flight.saturating_sub(finished.len());
        let attempts: Vec<Attempt> = finished.drain(..).flatten().collect();
        for a in &attempts {
            if a.status == DeliveryStatus::Pending {
                f.next_due = Some(f.next_due.map_or(a.retry_at, |due| due.min(a.retry_at)));
            }
        }
        if let Err(e) = self.store.record_attempts(attempts, self.clock.now()).await {
            // Their leases run out and they are sent again: at least once.
            warn!(error = %e, "cannot record webhook attempts");
        }
    }

    /// The node is stopping while attempts are under way: they get a moment to
    /// finish and be recorded; the rest are cancelled and their deliveries
    /// given back, so that another node, or this one started again, sends
    /// them at once rather than when the lease ends.
    async fn stop_during(
        &self,
        mut f: Flight,
        mut done_rx: mpsc::UnboundedReceiver<Option<Attempt>>,
        mut finished: Vec<Option<Attempt>>,
    ) {
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        while f.in_flight > finished.len() {
            tokio::select! {
                n = done_rx.recv_many(&mut finished, IN_FLIGHT) => if n == 0 { break },
                () = &mut grace => break,
            }
        }
        f.sends.shutdown().await;
        while let Ok(done) = done_rx.try_recv() {
            finished.push(done);
        }
        let unfinished = f.in_flight.saturating_sub(finished.len());
        self.record(&mut f, &mut finished).await;
        match self.store.release_webhook_leases(&self.node_id).await {
            Ok(n) if n > 0 || unfinished > 0 => info!(
                deliveries = n,
                "stopping: webhook deliveries under way given back"
            ),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "stopping: cannot give back leased webhook deliveries"),
        }
    }

    /// One attempt: what became of it, to record.
    async fn attempt(&self, hook: &Webhook, due: DueDelivery) -> Attempt {
        let delivery = due.delivery;
        let outcome = |status, http_status, error: Option<&str>, retry_at| Attempt {
            delivery_id: delivery.id.clone(),
            status,
            http_status,
            error: error.map(str::to_owned),
            retry_at,
        };
        let now = self.clock.now();
        let Some(body) = due.body else {
            return outcome(DeliveryStatus::Failed, None, Some("event is gone"), now);
        };
        if !self.policy.allows_literal(&hook.url) {
            // Registered before the policy (or with it off): refused for good,
            // and recorded without a word on what is there.
            info!(delivery_id = %delivery.id, webhook_id = %hook.id, "webhook target refused by policy");
            return outcome(
                DeliveryStatus::Failed,
                None,
                Some(crate::outbound::REFUSED),
                now,
            );
        }
        let Some(http) = &self.http else {
            return outcome(
                DeliveryStatus::Pending,
                None,
                Some("no HTTP client (see the start-up log)"),
                now.plus_millis(60_000),
            );
        };
        let result = http
            .post(&hook.url)
            .timeout(self.config.timeout)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("Baton-Webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("baton-event-id", &delivery.event_id)
            .header("baton-event-type", &delivery.event_type)
            .header(
                "baton-signature",
                signature_header(&hook.secret, now.unix_seconds(), &body),
            )
            .body(body)
            .send()
            .await;
        let now = self.clock.now();
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
            debug!(delivery_id = %delivery.id, webhook_id = %hook.id, event_id = %delivery.event_id, "webhook delivered");
            return outcome(DeliveryStatus::Delivered, status, None, now);
        }
        let attempts = delivery.attempts + 1;
        let refused = error.as_deref() == Some(crate::outbound::REFUSED);
        if attempts >= self.config.max_attempts || refused {
            info!(delivery_id = %delivery.id, webhook_id = %hook.id, attempts, "webhook delivery failed for good");
            return outcome(DeliveryStatus::Failed, status, error.as_deref(), now);
        }
        let retry_at = now.plus_millis(backoff(&self.config, delivery.attempts).as_millis() as i64);
        debug!(delivery_id = %delivery.id, attempts, error = ?error, "webhook attempt failed; will retry");
        outcome(DeliveryStatus::Pending, status, error.as_deref(), retry_at)
    }
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
