//! The runtime as channels see it: [`Ingest`] (visitor messages in, and the
//! staff actions an agent console such as Slack performs), and the channels'
//! background work.
//!
//! A channel's receive loop (Telegram polling, the Discord gateway, Slack
//! Socket Mode) and a console's event observer are singleton work: on
//! PostgreSQL with several nodes, one node holds each through an advisory
//! lock and another takes over when it goes away.

use crate::{Error, Runtime};
use async_trait::async_trait;
use baton_channel::{AgentAct, Channel, Inbound, Ingest, Ingested};
use baton_model::Message;
use baton_model::{AgentRef, ChannelKind, Conversation, Input, TransitionError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tracing::{info, warn};

/// How often a node without the lock asks for it again.
const LOCK_RETRY: Duration = Duration::from_secs(5);

impl Runtime {
    /// Spawns each channel's receive loop and, for consoles, its event observer.
    pub(crate) fn start_channels(&self) {
        for channel in self.channels() {
            let kind = channel.kind();
            if kind == ChannelKind::Web {
                continue;
            }
            let rt = self.clone();
            let ch = channel.clone();
            tokio::spawn(async move {
                rt.singleton(&format!("channel:{kind}"), || {
                    let ch = ch.clone();
                    let ingest: Arc<dyn Ingest> = Arc::new(rt.clone());
                    async move {
                        if let Err(e) = ch.run(ingest).await {
                            warn!(channel = %kind, error = %e, "channel receive loop stopped");
                        }
                    }
                })
                .await;
            });
            if channel.observes_events() {
                let rt = self.clone();
                tokio::spawn(async move {
                    rt.singleton(&format!("console:{kind}"), || {
                        let rt = rt.clone();
                        let ch = channel.clone();
                        async move { rt.observe(ch).await }
                    })
                    .await;
                });
            }
        }
    }

    /// Runs `work` while this node holds the named lock; when it returns the
    /// lock is let go. Nodes without the lock keep asking.
    async fn singleton<F, Fut>(&self, name: &str, work: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        loop {
            match self.store().try_singleton(name).await {
                Ok(Some(guard)) => {
                    info!(work = name, "this node runs it");
                    work().await;
                    drop(guard);
                    return;
                }
                Ok(None) => {}
                Err(e) => warn!(work = name, error = %e, "cannot take the singleton lock"),
            }
            tokio::time::sleep(LOCK_RETRY).await;
        }
    }

    /// Feeds every committed event to a console, in commit order.
    async fn observe(&self, channel: Arc<dyn Channel>) {
        let mut events = self.bus().subscribe();
        let ingest: Arc<dyn Ingest> = Arc::new(self.clone());
        let kind = channel.kind();
        loop {
            match events.recv().await {
                Ok(event) => {
                    if let Err(e) = channel.observe(&event.envelope, ingest.clone()).await {
                        warn!(channel = %kind, event = event.envelope.id, error = %e, "console could not follow an event");
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    warn!(channel = %kind, missed = n, "console fell behind and skipped events");
                }
                Err(RecvError::Closed) => return,
            }
        }
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
