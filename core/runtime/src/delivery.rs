//! Channel delivery from the delivery outbox.
//!
//! The unit that writes a bot, agent or system message also queues a row
//! for each platform channel the message goes to ([`Runtime::routes`]), so
//! a crash after the commit loses nothing: the row is there when a node
//! next looks. This node's dispatcher leases the due rows that head their
//! conversation's thread on a channel, and one worker per thread sends them
//! one after another, in the order they were written, so "Alice joined"
//! never arrives after Alice's first reply and a slow platform holds up
//! only its own conversations.
//!
//! An attempt that fails for a reason that may pass (the platform answered
//! 5xx, timed out, rate-limited us) is tried again after a doubling delay,
//! and the messages behind it wait; one the platform refuses for good, or
//! one still failing after `[delivery] max_attempts`, is marked not
//! delivered with the reason, which the inbox shows on the message with a
//! button to send it again, and the thread moves on.
//!
//! Delivery is at least once: a node that dies between the platform's
//! answer and the record of it leaves the row leased by a dead node, which
//! another node (or this one, restarted) sends again, so a message may
//! arrive twice after a crash, never zero times. A graceful stop lets the
//! attempts under way finish for a moment, then gives the rest back.

use crate::Runtime;
use crate::config::DeliveryConfig;
use baton_channel::{Channel, Delivered, Error as ChannelError, Outbound};
use baton_model::{ChannelKind, Conversation, Message, SenderKind};
use baton_store::{ChannelDelivery, DeliveryRoutes, SendResult};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tracing::{debug, error, info, warn};

/// How many threads this node sends to at once.
const WORKERS: usize = 64;

/// How long a stopping node lets attempts under way finish.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// The registered channels, shared with the store's routing rule.
pub(crate) type Channels = Arc<RwLock<HashMap<ChannelKind, Arc<dyn Channel>>>>;

/// The dispatcher's wake-up.
#[derive(Default)]
pub(crate) struct Deliveries {
    wake: Notify,
}

/// The rule the store applies when it writes a message: which platform
/// channels it goes to. Visitors' messages and internal notes go nowhere;
/// the widget reads the event stream itself; a web visitor who left their
/// address gets the team's answers (not the system notices) by email too.
pub(crate) fn routes(channels: Channels) -> DeliveryRoutes {
    Arc::new(move |conv: &Conversation, message: &Message| {
        if message.internal || message.sender == SenderKind::Visitor {
            return Vec::new();
        }
        let channels = channels.read().unwrap_or_else(|p| p.into_inner());
        let mut to = Vec::new();
        if let Some(channel) = channels.get(&conv.channel)
            && !channel.reads_event_stream()
        {
            to.push(conv.channel);
        }
        if conv.is_left_message()
            && message.sender != SenderKind::System
            && channels.contains_key(&ChannelKind::Email)
            && !to.contains(&ChannelKind::Email)
        {
            to.push(ChannelKind::Email);
        }
        to
    })
}

/// The delay before attempt `attempts + 1`: doubling from the base, capped.
pub(crate) fn backoff(config: &DeliveryConfig, attempts: i64) -> Duration {
    crate::webhooks::doubling(config.retry_base, config.retry_max, attempts - 1)
}

impl Runtime {
    /// Tells the dispatcher that rows may be due (a commit queued some).
    pub(crate) fn wake_deliveries(&self) {
        self.deliveries().wake.notify_one();
    }

    /// Queues a message that was given up again (staff pressed "Retry");
    /// false when it has no failed delivery.
    pub async fn retry_delivery(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> crate::Result<bool> {
        let queued = self
            .store()
            .retry_message_delivery(conversation_id, message_id, self.now())
            .await?;
        if queued {
            self.wake_deliveries();
        }
        Ok(queued)
    }

    /// Leases due rows and sends them until `stop` turns true.
    pub(crate) async fn deliver_outbox(self, mut stop: watch::Receiver<bool>) {
        let mut workers = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            while workers.try_join_next().is_some() {}
            let free = WORKERS.saturating_sub(workers.len());
            let mut leased = 0;
            if free > 0 {
                let now = self.now();
                match self
                    .store()
                    .lease_channel_deliveries(self.node_id(), now, self.alive_since(), free as i64)
                    .await
                {
                    Ok(rows) => {
                        leased = rows.len();
                        for row in rows {
                            workers.spawn(self.clone().deliver_thread(row, stop.clone()));
                        }
                    }
                    Err(e) => warn!(error = %e, "cannot read the delivery outbox"),
                }
            }
            if leased > 0 && leased == free {
                // There may be more: take them once a worker is free.
                tokio::select! {
                    _ = workers.join_next() => {}
                    _ = stop.changed() => break,
                }
                continue;
            }
            // Nothing more due now: wait for a commit, a worker that ends
            // (its thread may have a next row), a retry coming due or the stop.
            tokio::select! {
                () = self.deliveries().wake.notified() => {}
                Some(_) = workers.join_next(), if !workers.is_empty() => {}
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
        }
        // Stopping: attempts under way get a moment, the rest are handed back.
        let settled = tokio::time::timeout(STOP_GRACE, async {
            while workers.join_next().await.is_some() {}
        })
        .await;
        if settled.is_err() {
            workers.shutdown().await;
        }
        match self
            .store()
            .release_channel_deliveries(self.node_id())
            .await
        {
            Ok(0) => {}
            Ok(n) => info!(
                deliveries = n,
                "stopping: messages under way to platforms given back"
            ),
            Err(e) => warn!(error = %e, "stopping: cannot give back leased deliveries"),
        }
    }

    /// Sends one thread's rows, this one and those that come due behind it.
    async fn deliver_thread(self, mut row: ChannelDelivery, stop: watch::Receiver<bool>) {
        loop {
            let result = self.attempt(&row).await;
            let moves_on = !matches!(result, SendResult::Retry { .. });
            let now = self.now();
            match self
                .store()
                .record_send(self.node_id(), row.id, result, now)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    warn!(
                        delivery = row.id,
                        "a delivery's lease was lost while it was sent"
                    );
                    return;
                }
                Err(e) => {
                    // Left leased by a live node: sent again after a restart.
                    warn!(delivery = row.id, error = %e, "cannot record a delivery");
                    return;
                }
            }
            if !moves_on || *stop.borrow() {
                return;
            }
            match self
                .store()
                .lease_next_in_thread(
                    self.node_id(),
                    &row.conversation_id,
                    row.channel,
                    self.now(),
                    self.alive_since(),
                )
                .await
            {
                Ok(Some(next)) => row = next,
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "cannot read the delivery outbox");
                    return;
                }
            }
        }
    }

    /// One attempt at one row, and what to record of it.
    async fn attempt(&self, row: &ChannelDelivery) -> SendResult {
        let config = &self.config().delivery;
        let Some(channel) = self.channel(row.channel) else {
            return SendResult::Failed {
                error: format!("the {} channel is not configured", row.channel),
            };
        };
        let found = match self.store().conversation(&row.conversation_id).await {
            Ok(Some(conv)) => match self.store().message(&conv.id, &row.message_id).await {
                Ok(Some(message)) => Some((conv, message)),
                Ok(None) => None,
                Err(e) => return self.retry(row, e.to_string(), None),
            },
            Ok(None) => None,
            Err(e) => return self.retry(row, e.to_string(), None),
        };
        let Some((conv, message)) = found else {
            return SendResult::Failed {
                error: "the message is gone".into(),
            };
        };
        let message = self.with_human_button(&conv, &message).await;
        debug!(conversation_id = %conv.id, channel = %row.channel, seq = row.seq, attempt = row.attempts, "sending");
        let out = Outbound {
            conversation: &conv,
            thread_key: conv.thread_key.as_deref(),
            message: &message,
        };
        let sent = tokio::time::timeout(
            config.timeout,
            std::panic::AssertUnwindSafe(channel.deliver(out)).catch_unwind(),
        )
        .await;
        match sent {
            Ok(Ok(Ok(Delivered::Sent { platform_id }))) => {
                debug!(conversation_id = %conv.id, channel = %row.channel, seq = row.seq, "delivered");
                SendResult::Sent { platform_id }
            }
            Ok(Ok(Ok(Delivered::ViaEventStream))) => SendResult::Sent { platform_id: None },
            Ok(Ok(Err(ChannelError::Rejected { reason, .. }))) => {
                warn!(conversation_id = %conv.id, channel = %row.channel, seq = row.seq, error = %reason, "the platform refused a message");
                SendResult::Failed { error: reason }
            }
            Ok(Ok(Err(ChannelError::Delivery {
                reason,
                retry_after,
                ..
            }))) => self.retry(row, reason, retry_after.map(Duration::from_secs)),
            Ok(Ok(Err(e))) => self.retry(row, e.to_string(), None),
            Ok(Err(_)) => {
                error!(conversation_id = %conv.id, channel = %row.channel, seq = row.seq, "the channel panicked while delivering");
                SendResult::Failed {
                    error: "the channel failed unexpectedly (see the server log)".into(),
                }
            }
            Err(_) => self.retry(
                row,
                format!("no answer within {}s", config.timeout.as_secs()),
                None,
            ),
        }
    }

    /// A failed attempt: again later, or given up after the last attempt.
    fn retry(
        &self,
        row: &ChannelDelivery,
        error: String,
        at_least: Option<Duration>,
    ) -> SendResult {
        let config = &self.config().delivery;
        if row.attempts >= config.max_attempts {
            warn!(conversation_id = %row.conversation_id, channel = %row.channel, seq = row.seq, attempts = row.attempts, %error, "delivery given up");
            return SendResult::Failed {
                error: format!("gave up after {} attempts: {error}", row.attempts),
            };
        }
        let wait = backoff(config, row.attempts).max(at_least.unwrap_or_default());
        debug!(conversation_id = %row.conversation_id, channel = %row.channel, seq = row.seq, attempts = row.attempts, %error, "delivery failed; will retry");
        SendResult::Retry {
            error,
            at: self.now().plus_millis(wait.as_millis() as i64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_first_retry_and_caps() {
        let c = DeliveryConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(10),
            ..DeliveryConfig::default()
        };
        let delays: Vec<u64> = (1..=6).map(|a| backoff(&c, a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 10, 10]);
    }
}
