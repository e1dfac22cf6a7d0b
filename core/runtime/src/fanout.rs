//! What follows a commit, in commit order: the hub hears of the events, the
//! webhook dispatcher and the delivery dispatcher wake (the unit queued
//! what they send), a hand-over gets its routing and post-hand-over
//! actions, and a freed seat lets automatic assignment run.
//!
//! The store announces every committed unit: on SQLite from the writer, in
//! commit order, before the unit's caller hears of its result; on
//! PostgreSQL right after each transaction's own commit, so two commits of
//! one conversation that finish at the same instant may be announced in
//! either order (the hub there follows LISTEN/NOTIFY, which is in commit
//! order). One task per node takes the announcements one after another.
//! Platform deliveries do not depend on this order: the delivery outbox
//! sends a conversation's messages in the order they were written.

use crate::Runtime;
use baton_model::{ActionKind, ChannelKind, Conversation, EventKind, Message, SenderKind, Status};
use baton_store::{Announcement, Backend};
use tokio::sync::mpsc::UnboundedReceiver;

impl Runtime {
    /// Takes the store's announcements until the store goes away.
    pub(crate) async fn fan_out(self, mut announcements: UnboundedReceiver<Announcement>) {
        while let Some(a) = announcements.recv().await {
            self.follow_commit(a).await;
        }
    }

    async fn follow_commit(&self, a: Announcement) {
        let Announcement {
            conversation,
            messages,
            events,
        } = a;
        let escalated = events
            .iter()
            .any(|e| e.envelope.kind == EventKind::Escalated);
        let frees_a_seat = crate::unit::frees_a_seat(&events);
        if !events.is_empty() {
            self.webhook_wake().notify_one();
        }
        // On PostgreSQL the listener publishes, on every node alike.
        if self.store().backend() == Backend::Sqlite {
            self.publish(events).await;
        }
        // The unit queued the platform deliveries its messages need.
        if messages
            .iter()
            .any(|m| !m.internal && m.sender != SenderKind::Visitor)
        {
            self.wake_deliveries();
        }
        if escalated {
            // Routing first, then the bot's post-hand-over actions, in order.
            let rt = self.clone();
            let id = conversation.id.clone();
            self.tasks().spawn(async move {
                if rt.auto_assignment() {
                    rt.assign_waiting().await;
                }
                rt.run_actions(&id).await;
            });
        }
        if frees_a_seat {
            self.presence_changed();
        }
    }

    /// On chat platforms the "Talk to a human" button travels with the bot's
    /// messages (the widget draws its own): from the bot answer
    /// `request_button_after` on, while the bot holds the conversation.
    pub(crate) async fn with_human_button(
        &self,
        conv: &Conversation,
        message: &Message,
    ) -> Message {
        let bot = self.bot_config(&conv.bot_id);
        let wanted = conv.channel != ChannelKind::Web
            && message.sender == SenderKind::Bot
            && conv.state.status == Status::Bot
            && bot.handover.enabled
            && !message
                .actions
                .iter()
                .any(|a| a.kind == ActionKind::RequestHuman);
        if !wanted {
            return message.clone();
        }
        let earlier = self
            .store()
            .messages(&conv.id, 0, false, message.seq)
            .await
            .unwrap_or_default();
        let first_visitor = earlier
            .iter()
            .position(|m| m.sender == SenderKind::Visitor)
            .unwrap_or(earlier.len());
        let answers = earlier[first_visitor..]
            .iter()
            .filter(|m| m.sender == SenderKind::Bot && m.seq <= message.seq)
            .count();
        let mut message = message.clone();
        if answers >= bot.handover.request_button_after as usize {
            message.actions.push(baton_model::Action {
                id: "request_human".into(),
                label: "Talk to a human".into(),
                kind: ActionKind::RequestHuman,
                url: None,
            });
        }
        message
    }
}
