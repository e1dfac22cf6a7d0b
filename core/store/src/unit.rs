//! The unit of work: everything one input does to one conversation, in one
//! transaction.
//!
//! The caller names the conversation and gives a plan: a function of the
//! conversation as it is now, read under its lock (PostgreSQL's row lock;
//! on SQLite the writer is the only writer), that returns what to write: a
//! new hand-over state, messages, events, and the side state that belongs
//! with them (the bot's counters, the contact collector, the topic, tags,
//! contact details, a power-up session). The store writes it all, builds
//! the conversation's new snapshot in memory, records the outbox events
//! with it, and hands the result back once it committed.
//!
//! Because the plan sees the conversation under the lock, two inputs for one
//! conversation are ordered: a bot reply planned after a claim sees the
//! claim, and its guard (the bot may still speak) drops it.

use crate::db::{Conn, query};
use crate::events::{HookCache, insert_event};
use crate::rows::{self, CONVERSATION_COLUMNS, CONVERSATION_FROM, MESSAGE_COLUMNS};
use crate::{Backend, NewConversation, NewMessage, Result, Store, StoredEvent, new_id};
use baton_model::{
    Conversation, EventKind, HandoverState, Message, PendingTurn, SenderKind, Timestamp,
    TransitionError,
};
use std::sync::Arc;

/// One input to one conversation.
pub struct Unit {
    pub conversation_id: String,
    /// The client's or the platform's id for the message this unit stores:
    /// a message already stored under either is not stored again.
    pub dedupe: Option<(Option<String>, Option<String>)>,
    /// The staff member this unit gives the conversation to, when it is an
    /// automatic assignment: the unit writes only if they still have room
    /// (their capacity and load read under their row's lock, so two nodes
    /// assigning at once never put them over it).
    pub seat: Option<String>,
    pub now: Timestamp,
    pub plan: Box<dyn FnOnce(&Conversation) -> Decision + Send>,
}

/// What a plan decided, seeing the conversation as it is now.
#[allow(clippy::large_enum_variant)] // One per unit, moved once.
pub enum Decision {
    Apply(Plan),
    Skip(Skip),
    /// The lifecycle does not allow the input.
    Refuse(TransitionError),
    /// Well-formed but not acceptable (a sentence for the caller).
    Invalid(String),
}

/// Why nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// The input changes nothing (a second press of the same button).
    Unchanged,
    /// The plan's guard no longer holds (a human took over while the bot
    /// was thinking): its messages are dropped.
    Dropped,
    /// The unit's seat is taken: the staff member it assigns to is at
    /// capacity now (another node gave them a conversation meanwhile).
    NoSeat,
}

/// What to write.
#[derive(Default)]
pub struct Plan {
    /// The new hand-over state; `None` keeps it.
    pub state: Option<HandoverState>,
    /// Messages to append, in order (system notices, then the message itself).
    pub messages: Vec<NewMessage>,
    /// The message whose text holds `{position}`: replaced by the
    /// conversation's place in its department's queue once the new state is
    /// written (the queue message of a hand-over nobody can take now).
    pub queue_position_in: Option<usize>,
    /// The transition's events, recorded before one `message.created` per message.
    pub events: Vec<EventKind>,
    pub side: Side,
}

/// State that travels with the unit; each `Some` is written.
#[derive(Clone, Debug, Default)]
pub struct Side {
    pub counters: Option<Option<String>>,
    pub collecting: Option<Option<String>>,
    pub topic: Option<Option<String>>,
    pub tags: Option<Vec<String>>,
    pub contact: Option<ContactUpdate>,
    /// The power-up waiting for an answer (JSON).
    pub power_up: Option<Option<String>>,
    /// The bot turn now due (`Some(Some)`), or none due any more (`Some(None)`).
    pub turn: Option<Option<PendingTurn>>,
}

impl Side {
    fn is_empty(&self) -> bool {
        self.counters.is_none()
            && self.collecting.is_none()
            && self.topic.is_none()
            && self.tags.is_none()
            && self.contact.is_none()
            && self.power_up.is_none()
            && self.turn.is_none()
    }
}

/// Details learnt about the contact; `None` keeps what is stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContactUpdate {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// What a committed unit wrote, for those who follow commits (the
/// runtime's fan-out): the conversation as it is now, the messages, the
/// outbox events.
#[derive(Clone, Debug)]
pub struct Announcement {
    pub conversation: Conversation,
    pub messages: Vec<Message>,
    pub events: Vec<StoredEvent>,
}

/// What a unit did.
#[derive(Debug)]
pub enum Outcome {
    Applied {
        conversation: Conversation,
        messages: Vec<Message>,
        events: Vec<StoredEvent>,
    },
    /// The message was stored before (same client or platform id).
    Duplicate {
        conversation: Conversation,
        message: Message,
    },
    Skipped {
        conversation: Conversation,
        why: Skip,
    },
    Refused(TransitionError),
    Invalid(String),
    NotFound,
}

impl Store {
    /// Runs one unit of work (see the module).
    pub async fn unit(&self, unit: Unit) -> Result<Outcome> {
        self.units(vec![unit])
            .await
            .pop()
            .unwrap_or(Ok(Outcome::NotFound))
    }

    /// Runs units together: on SQLite in one batch (one commit), on
    /// PostgreSQL in one transaction, each in a savepoint of its own, in
    /// order; a unit that fails fails alone.
    pub async fn units(&self, units: Vec<Unit>) -> Vec<Result<Outcome>> {
        let ops: Vec<crate::db::Op<Outcome>> = units
            .into_iter()
            .map(|unit| {
                let ctx = self.write_context();
                let op: crate::db::Op<Outcome> = Box::new(move |c: &mut dyn Conn| {
                    Box::pin(async move { run_unit(c, &ctx, unit).await })
                });
                op
            })
            .collect();
        self.write_all(ops).await
    }

    /// Creates a conversation (and its contact, or finds the contact by its
    /// channel identity) in `bot` status, with its first message if any, and
    /// records `conversation.started` and the message's event.
    pub async fn start_conversation(
        &self,
        new: NewConversation,
        first: Option<NewMessage>,
        now: Timestamp,
    ) -> Result<Outcome> {
        let ctx = self.write_context();
        self.write(move |c| {
            Box::pin(async move {
                let id = crate::conversations::create_conversation(c, &new, now).await?;
                let conv = read_locked(c, &id).await?.ok_or_else(|| {
                    crate::Error::Corrupt("conversation vanished after insert".into())
                })?;
                let plan = Plan {
                    messages: first.into_iter().collect(),
                    events: vec![EventKind::Started],
                    ..Plan::default()
                };
                apply(c, &ctx, conv, plan, now).await
            })
        })
        .await
    }

    fn write_context(&self) -> WriteContext {
        WriteContext {
            hooks: self.hooks.clone(),
            routes: self.delivery_routes().cloned(),
        }
    }
}

/// What a unit's writes need besides the connection.
struct WriteContext {
    hooks: Arc<HookCache>,
    routes: Option<crate::DeliveryRoutes>,
}

/// Reads a conversation, locked for the rest of the transaction on
/// PostgreSQL (on SQLite the writer's transaction already excludes every
/// other writer).
pub(crate) async fn read_locked(c: &mut dyn Conn, id: &str) -> Result<Option<Conversation>> {
    if c.backend() == Backend::Postgres {
        // Lock first, then read in a statement of its own: a `FOR UPDATE`
        // that waited re-reads the locked row but not the rows joined to it
        // (the assignee's name would be the one from before the wait).
        let locked = query("SELECT id FROM conversations WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(&mut *c)
            .await?;
        if locked.is_none() {
            return Ok(None);
        }
    }
    let sql = format!("SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.id = $1");
    let row = query(sql).bind(id).fetch_optional(&mut *c).await?;
    row.as_ref().map(rows::conversation).transpose()
}

async fn run_unit(c: &mut dyn Conn, ctx: &WriteContext, unit: Unit) -> Result<Outcome> {
    let Some(conv) = read_locked(c, &unit.conversation_id).await? else {
        return Ok(Outcome::NotFound);
    };
    if let Some((client_id, channel_id)) = &unit.dedupe
        && let Some(message) =
            find_duplicate(c, &conv.id, client_id.as_deref(), channel_id.as_deref()).await?
    {
        return Ok(Outcome::Duplicate {
            conversation: conv,
            message,
        });
    }
    if let Some(user_id) = &unit.seat
        && !has_room(c, user_id, &conv.id).await?
    {
        return Ok(Outcome::Skipped {
            conversation: conv,
            why: Skip::NoSeat,
        });
    }
    match (unit.plan)(&conv) {
        Decision::Apply(plan) => apply(c, ctx, conv, plan, unit.now).await,
        Decision::Skip(why) => Ok(Outcome::Skipped {
            conversation: conv,
            why,
        }),
        Decision::Refuse(e) => Ok(Outcome::Refused(e)),
        Decision::Invalid(m) => Ok(Outcome::Invalid(m)),
    }
}

/// Whether `user_id` may take one more conversation besides `conversation_id`:
/// their capacity (0: no limit) against the active conversations they hold.
/// On PostgreSQL the user's row is locked first, so every unit that seats
/// them waits for the one before and counts what it wrote; the lock comes
/// after the conversation's, in every unit, so the order cannot cross.
async fn has_room(c: &mut dyn Conn, user_id: &str, conversation_id: &str) -> Result<bool> {
    let lock = if c.backend() == Backend::Postgres {
        " FOR UPDATE"
    } else {
        ""
    };
    let row = query(format!("SELECT capacity FROM users WHERE id = $1{lock}"))
        .bind(user_id)
        .fetch_optional(&mut *c)
        .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let capacity: i64 = row.try_get("capacity")?;
    if capacity <= 0 {
        return Ok(true);
    }
    let held: i64 = query(
        "SELECT COUNT(*) AS n FROM conversations \
         WHERE assignee_id = $1 AND status = 'active' AND id <> $2",
    )
    .bind(user_id)
    .bind(conversation_id)
    .fetch_one(&mut *c)
    .await?
    .try_get("n")?;
    Ok(held < capacity)
}

async fn find_duplicate(
    c: &mut dyn Conn,
    conversation_id: &str,
    client_id: Option<&str>,
    channel_message_id: Option<&str>,
) -> Result<Option<Message>> {
    if client_id.is_none() && channel_message_id.is_none() {
        return Ok(None);
    }
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 \
         AND (client_id = $2 OR channel_message_id = $3)"
    );
    let row = query(sql)
        .bind(conversation_id)
        .bind(client_id)
        .bind(channel_message_id)
        .fetch_optional(&mut *c)
        .await?;
    row.as_ref().map(rows::message).transpose()
}

/// Writes a plan and builds the snapshot it leaves, in memory.
async fn apply(
    c: &mut dyn Conn,
    ctx: &WriteContext,
    before: Conversation,
    plan: Plan,
    now: Timestamp,
) -> Result<Outcome> {
    let mut conv = before;
    let changes_state = plan.state.as_ref().is_some_and(|s| *s != conv.state);
    if !changes_state && plan.messages.is_empty() && plan.events.is_empty() && plan.side.is_empty()
    {
        return Ok(Outcome::Skipped {
            conversation: conv,
            why: Skip::Unchanged,
        });
    }
    if let Some(state) = plan.state {
        conv.state = state;
    }
    if changes_state {
        conv.version += 1;
    }
    // Messages: the next sequence numbers, and the unread count they leave
    // (a visitor's message is unread; a staff reply means they have read).
    let mut messages = Vec::with_capacity(plan.messages.len());
    for new in &plan.messages {
        conv.last_seq += 1;
        match new.sender {
            SenderKind::Visitor => conv.unread += 1,
            SenderKind::Agent if !new.internal => conv.unread = 0,
            _ => {}
        }
        messages.push(Message {
            id: new_id(),
            conversation_id: conv.id.clone(),
            seq: conv.last_seq,
            sender: new.sender,
            author: new.author.clone(),
            text: new.text.clone(),
            internal: new.internal,
            actions: new.actions.clone(),
            attachments: new.attachments.clone(),
            client_id: new.client_id.clone(),
            channel_message_id: new.channel_message_id.clone(),
            created_at: now,
        });
    }
    if changes_state || !messages.is_empty() {
        conv.updated_at = now;
    }
    let side = plan.side;
    if let Some(v) = &side.counters {
        conv.memory.counters.clone_from(v);
    }
    if let Some(v) = &side.collecting {
        conv.memory.collecting.clone_from(v);
    }
    if let Some(v) = &side.topic {
        conv.memory.topic.clone_from(v);
    }
    if let Some(v) = &side.power_up {
        conv.memory.power_up.clone_from(v);
    }
    if let Some(v) = &side.turn {
        conv.memory.turn.clone_from(v);
    }
    if let Some(tags) = &side.tags {
        conv.tags.clone_from(tags);
    }
    write_conversation(c, &conv).await?;
    if let Some(update) = &side.contact {
        crate::conversations::update_contact_in(
            c,
            &conv.contact.id,
            update.name.as_deref(),
            update.email.as_deref(),
            update.phone.as_deref(),
        )
        .await?;
        let k = &mut conv.contact;
        if let Some(n) = &update.name {
            k.name = Some(n.clone());
        }
        if let Some(e) = &update.email {
            k.email = Some(e.clone());
        }
        if let Some(p) = &update.phone {
            k.phone = Some(p.clone());
        }
    }
    if let Some(i) = plan.queue_position_in
        && let Some(m) = messages.get_mut(i)
    {
        let position = crate::conversations::queue_position_in(c, &conv.id)
            .await?
            .unwrap_or(1);
        m.text = m.text.replace("{position}", &position.to_string());
    }
    insert_messages(c, &messages).await?;
    crate::deliveries::queue(c, ctx.routes.as_ref(), &conv, &messages, now).await?;
    let hooks = &ctx.hooks;
    let view = baton_model::wire::ConversationView::from(&conv);
    let mut events = Vec::with_capacity(plan.events.len() + messages.len());
    for kind in &plan.events {
        events.push(insert_event(c, hooks, *kind, &view, None, now).await?);
    }
    for m in &messages {
        events.push(insert_event(c, hooks, EventKind::MessageCreated, &view, Some(m), now).await?);
    }
    c.announce(Announcement {
        conversation: conv.clone(),
        messages: messages.clone(),
        events: events.clone(),
    });
    Ok(Outcome::Applied {
        conversation: conv,
        messages,
        events,
    })
}

/// Writes every column a unit may change, in one statement.
async fn write_conversation(c: &mut dyn Conn, conv: &Conversation) -> Result<()> {
    let s = &conv.state;
    let h = s.handover.as_ref();
    query(
        "UPDATE conversations SET status = $1, assignee_id = $2, department = $3, \
             handover_reason = $4, handover_at = $5, handover_by = $6, bot_paused_until = $7, \
             escalated_at = $8, claimed_at = $9, first_agent_reply_at = $10, resolved_at = $11, \
             tags = $12, unread = $13, last_seq = $14, version = $15, updated_at = $16, \
             topic = $17, collecting = $18, bot_counters = $19, power_up = $20, \
             turn_seq = $21, turn_node = $22, turn_at = $23 \
         WHERE id = $24",
    )
    .bind(s.status.as_str())
    .bind(s.assignee.as_ref().map(|a| a.id.as_str()))
    .bind(s.department.as_deref())
    .bind(h.map(|h| h.reason.as_str()))
    .bind(h.map(|h| h.at.millis()))
    .bind(h.and_then(|h| h.by.as_deref()))
    .bind(s.bot_paused_until.map(Timestamp::millis))
    .bind(s.escalated_at.map(Timestamp::millis))
    .bind(s.claimed_at.map(Timestamp::millis))
    .bind(s.first_agent_reply_at.map(Timestamp::millis))
    .bind(s.resolved_at.map(Timestamp::millis))
    .bind(serde_json::to_string(&conv.tags).unwrap_or_else(|_| "[]".into()))
    .bind(conv.unread)
    .bind(conv.last_seq)
    .bind(conv.version)
    .bind(conv.updated_at.millis())
    .bind(conv.memory.topic.as_deref())
    .bind(conv.memory.collecting.as_deref())
    .bind(conv.memory.counters.as_deref())
    .bind(conv.memory.power_up.as_deref())
    .bind(conv.memory.turn.as_ref().map(|t| t.seq))
    .bind(conv.memory.turn.as_ref().map(|t| t.node.as_str()))
    .bind(conv.memory.turn.as_ref().map(|t| t.at.millis()))
    .bind(conv.id.as_str())
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// Inserts messages, several in one statement.
async fn insert_messages(c: &mut dyn Conn, messages: &[Message]) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    const WIDTH: usize = 13;
    let mut sql = String::from(
        "INSERT INTO messages (id, conversation_id, seq, sender, author_id, author_name, text, \
         internal, actions, attachments, client_id, channel_message_id, created_at) VALUES ",
    );
    push_rows(&mut sql, messages.len(), WIDTH);
    let mut q = query(sql);
    let json = |v: &dyn erased::Json| v.to_json();
    for m in messages {
        q = q
            .bind(m.id.as_str())
            .bind(m.conversation_id.as_str())
            .bind(m.seq)
            .bind(m.sender.as_str())
            .bind(m.author.as_ref().map(|a| a.id.as_str()))
            .bind(m.author.as_ref().map(|a| a.name.as_str()))
            .bind(m.text.as_str())
            .bind(i64::from(m.internal))
            .bind(json(&m.actions))
            .bind(json(&m.attachments))
            .bind(m.client_id.as_deref())
            .bind(m.channel_message_id.as_deref())
            .bind(m.created_at.millis());
    }
    q.execute(&mut *c).await?;
    Ok(())
}

/// Appends `rows` tuples of `width` placeholders to a multi-row `VALUES`:
/// `($1, $2), ($3, $4)`.
pub(crate) fn push_rows(sql: &mut String, rows: usize, width: usize) {
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        let places: Vec<String> = (1..=width).map(|k| format!("${}", i * width + k)).collect();
        sql.push('(');
        sql.push_str(&places.join(", "));
        sql.push(')');
    }
}

mod erased {
    /// Lists serialize to JSON text; they are plain data, so this cannot fail in practice.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for Vec<T> {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
        }
    }
}
