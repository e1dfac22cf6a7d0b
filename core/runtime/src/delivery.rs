//! Channel delivery in commit order, per conversation.
//!
//! Each commit hands its outbound messages over right after it commits. One
//! worker per (channel, conversation) sends them one after another, in the
//! order they were handed over (the commit order, unless two commits of one
//! conversation finish at the same instant), so "Alice joined" does not
//! arrive after Alice's first reply; other conversations are not held up by
//! a slow platform. A worker ends when its queue is empty; a channel that
//! panics while delivering loses that message only.

use crate::Runtime;
use baton_channel::{Channel, Outbound};
use baton_model::{ChannelKind, Conversation, Message};
use futures_util::FutureExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, error::TryRecvError};
use tracing::{error, warn};

type Key = (ChannelKind, String);

/// Messages of one commit for one channel.
pub(crate) struct Job {
    channel: Arc<dyn Channel>,
    conversation: Conversation,
    messages: Vec<Message>,
}

/// The running workers, by channel and conversation.
#[derive(Default)]
pub(crate) struct Deliveries {
    queues: Mutex<HashMap<Key, UnboundedSender<Job>>>,
}

impl Runtime {
    /// Queues a commit's messages for a channel; they go out after everything
    /// queued before for the same conversation.
    pub(crate) fn deliver_later(
        &self,
        channel: Arc<dyn Channel>,
        conversation: &Conversation,
        messages: Vec<Message>,
    ) {
        if messages.is_empty() {
            return;
        }
        let key = (channel.kind(), conversation.id.clone());
        let job = Job {
            channel,
            conversation: conversation.clone(),
            messages,
        };
        let deliveries = self.deliveries();
        let mut queues = deliveries.queues.lock().unwrap_or_else(|e| e.into_inner());
        let job = match queues.get(&key) {
            Some(queue) => match queue.send(job) {
                Ok(()) => return,
                // The worker is gone; start another with this job.
                Err(back) => back.0,
            },
            None => job,
        };
        let (queue, rx) = tokio::sync::mpsc::unbounded_channel();
        let _ = queue.send(job);
        queues.insert(key.clone(), queue);
        let rt = self.clone();
        tokio::spawn(async move { rt.deliver_queue(key, rx).await });
    }

    async fn deliver_queue(&self, key: Key, mut rx: UnboundedReceiver<Job>) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(TryRecvError::Disconnected) => return,
                Err(TryRecvError::Empty) => {
                    // Senders queue under this lock: empty under it means done.
                    let deliveries = self.deliveries();
                    let mut queues = deliveries.queues.lock().unwrap_or_else(|e| e.into_inner());
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            queues.remove(&key);
                            return;
                        }
                    }
                }
            };
            self.deliver_job(job).await;
        }
    }

    async fn deliver_job(&self, job: Job) {
        let conv = &job.conversation;
        for message in &job.messages {
            let message = &self.with_human_button(conv, message).await;
            let out = Outbound {
                conversation: conv,
                thread_key: conv.thread_key.as_deref(),
                message,
            };
            let sent = std::panic::AssertUnwindSafe(job.channel.deliver(out))
                .catch_unwind()
                .await;
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    warn!(conversation_id = %conv.id, channel = %job.channel.kind(), seq = message.seq, error = %e, "delivery failed");
                }
                Err(_) => {
                    error!(conversation_id = %conv.id, channel = %job.channel.kind(), seq = message.seq, "the channel panicked while delivering");
                }
            }
        }
    }
}
