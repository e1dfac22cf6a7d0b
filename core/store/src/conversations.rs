//! Contacts, conversations and messages.

use crate::db::{Conn, query};
use crate::rows::{self, CONVERSATION_COLUMNS, CONVERSATION_FROM, MESSAGE_COLUMNS};
use crate::{Error, Result, Store, new_id};
use baton_model::{
    Action, AgentRef, Attachment, ChannelKind, Conversation, Message, SenderKind, Status, Timestamp,
};

/// Who the visitor is, as far as the channel knows on first contact.
#[derive(Clone, Debug, Default)]
pub struct NewContact {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The channel's id for this person (web visitor id, Telegram user id, email address).
    pub external_id: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewConversation {
    pub bot_id: String,
    pub channel: ChannelKind,
    pub contact: NewContact,
    /// The platform's key for the thread, so that later inbound messages find it.
    pub thread_key: Option<String>,
    pub visitor_token_hash: Option<String>,
}

#[derive(Clone, Debug)]
pub struct NewMessage {
    pub sender: SenderKind,
    pub author: Option<AgentRef>,
    pub text: String,
    pub internal: bool,
    pub actions: Vec<Action>,
    pub attachments: Vec<Attachment>,
    pub client_id: Option<String>,
    pub channel_message_id: Option<String>,
}

impl NewMessage {
    pub fn text(sender: SenderKind, text: impl Into<String>) -> Self {
        Self {
            sender,
            author: None,
            text: text.into(),
            internal: false,
            actions: vec![],
            attachments: vec![],
            client_id: None,
            channel_message_id: None,
        }
    }
}

/// Which conversations a list wants.
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    pub status: Option<Status>,
    pub assignee: AssigneeFilter,
    /// Leave out the `bot`-status conversations of these bots (the ones
    /// without monitoring: agents do not see them until they are handed over).
    pub hide_bot_status_of: Vec<String>,
    pub limit: i64,
}

#[derive(Clone, Debug, Default)]
pub enum AssigneeFilter {
    #[default]
    Any,
    Unassigned,
    User(String),
}

impl Store {
    pub async fn conversation(&self, id: &str) -> Result<Option<Conversation>> {
        let id = id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql =
                    format!("SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.id = $1");
                let row = query(sql).bind(id).fetch_optional(&mut *c).await?;
                row.as_ref().map(rows::conversation).transpose()
            })
        })
        .await
    }

    /// One message of a conversation, by its id.
    pub async fn message(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<Option<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE conversation_id = $1 AND id = $2"
        );
        let row = query(sql)
            .bind(conversation_id)
            .bind(message_id)
            .fetch_optional(self)
            .await?;
        row.as_ref().map(rows::message).transpose()
    }

    pub async fn conversation_by_visitor_token(&self, hash: &str) -> Result<Option<Conversation>> {
        let hash = hash.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.visitor_token_hash = $1"
                );
                let row = query(sql).bind(hash).fetch_optional(&mut *c).await?;
                row.as_ref().map(rows::conversation).transpose()
            })
        })
        .await
    }

    pub async fn conversation_by_thread(
        &self,
        channel: ChannelKind,
        thread_key: &str,
    ) -> Result<Option<Conversation>> {
        let thread_key = thread_key.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} \
                     WHERE c.channel = $1 AND c.thread_key = $2"
                );
                let row = query(sql)
                    .bind(channel.as_str())
                    .bind(thread_key)
                    .fetch_optional(&mut *c)
                    .await?;
                row.as_ref().map(rows::conversation).transpose()
            })
        })
        .await
    }

    /// Newest activity first.
    pub async fn list_conversations(
        &self,
        filter: &ConversationFilter,
    ) -> Result<Vec<Conversation>> {
        // Only placeholders are spliced in; every value is a bound parameter,
        // numbered in the order the clauses are written.
        let mut clauses = vec!["1 = 1".to_owned()];
        let mut binds: Vec<String> = vec![];
        let next = |binds: &mut Vec<String>, value: String| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(status) = filter.status {
            let p = next(&mut binds, status.as_str().to_owned());
            clauses.push(format!("c.status = {p}"));
        }
        match &filter.assignee {
            AssigneeFilter::Any => {}
            AssigneeFilter::Unassigned => clauses.push("c.assignee_id IS NULL".to_owned()),
            AssigneeFilter::User(id) => {
                let p = next(&mut binds, id.clone());
                clauses.push(format!("c.assignee_id = {p}"));
            }
        }
        if !filter.hide_bot_status_of.is_empty() {
            let ps: Vec<String> = filter
                .hide_bot_status_of
                .iter()
                .map(|b| next(&mut binds, b.clone()))
                .collect();
            clauses.push(format!(
                "NOT (c.status = 'bot' AND c.bot_id IN ({}))",
                ps.join(", ")
            ));
        }
        let limit = if filter.limit > 0 {
            filter.limit.min(10_000)
        } else {
            200
        };
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE {} \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT {limit}",
            clauses.join(" AND ")
        );
        self.read(move |c| {
            Box::pin(async move {
                let mut q = query(sql);
                for b in binds {
                    q = q.bind(b);
                }
                let rows = q.fetch_all(&mut *c).await?;
                rows.iter().map(rows::conversation).collect()
            })
        })
        .await
    }

    /// The messages at these `(conversation id, seq)` places, for list
    /// previews of the newest message (notes included); one query for all.
    /// Asking by seq keeps each preview true to the listed snapshot.
    pub async fn messages_at(&self, places: &[(String, i64)]) -> Result<Vec<Message>> {
        if places.is_empty() {
            return Ok(vec![]);
        }
        let clauses: Vec<String> = (0..places.len())
            .map(|i| {
                format!(
                    "(conversation_id = ${} AND seq = ${})",
                    2 * i + 1,
                    2 * i + 2
                )
            })
            .collect();
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE {}",
            clauses.join(" OR ")
        );
        let places = places.to_vec();
        self.read(move |c| {
            Box::pin(async move {
                let mut q = query(sql);
                for (id, seq) in places {
                    q = q.bind(id).bind(seq);
                }
                let rows = q.fetch_all(&mut *c).await?;
                rows.iter().map(rows::message).collect()
            })
        })
        .await
    }

    /// Messages with `seq > after`, oldest first.
    pub async fn messages(
        &self,
        conversation_id: &str,
        after: i64,
        include_internal: bool,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let conversation_id = conversation_id.to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages \
                     WHERE conversation_id = $1 AND seq > $2 AND (internal = 0 OR $3 = 1) \
                     ORDER BY seq LIMIT $4"
                );
                let rows = query(sql)
                    .bind(conversation_id)
                    .bind(after)
                    .bind(i64::from(include_internal))
                    .bind(limit.clamp(1, 10_000))
                    .fetch_all(&mut *c)
                    .await?;
                rows.iter().map(rows::message).collect()
            })
        })
        .await
    }

    /// Marks a conversation read by staff.
    pub async fn mark_read(&self, conversation_id: &str) -> Result<()> {
        let conversation_id = conversation_id.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                query("UPDATE conversations SET unread = 0 WHERE id = $1 AND unread <> 0")
                    .bind(conversation_id)
                    .execute(&mut *c)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    /// Waiting conversations ordered by when they joined the queue: the queue itself.
    pub async fn queue(&self, department: Option<&str>) -> Result<Vec<(String, Timestamp)>> {
        let department = department.unwrap_or("").to_owned();
        self.read(move |c| {
            Box::pin(async move {
                let rows = query(
                    "SELECT id, escalated_at FROM conversations \
                     WHERE status = 'waiting' AND (($1 = '' AND department IS NULL) OR department = $1) \
                     ORDER BY escalated_at, id",
                )
                .bind(department)
                .fetch_all(&mut *c)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok((
                            r.try_get("id")?,
                            Timestamp(r.try_get::<Option<i64>, _>("escalated_at")?.unwrap_or(0)),
                        ))
                    })
                    .collect()
            })
        })
        .await
    }

    /// Waiting conversations that joined the queue before `cutoff` (candidates for abandonment).
    pub async fn waiting_since_before(&self, cutoff: Timestamp) -> Result<Vec<String>> {
        self.read(move |c| {
            Box::pin(async move {
                let rows = query(
                    "SELECT id FROM conversations WHERE status = 'waiting' AND escalated_at < $1",
                )
                .bind(cutoff.millis())
                .fetch_all(&mut *c)
                .await?;
                rows.iter().map(|r| r.try_get("id")).collect()
            })
        })
        .await
    }
}

/// Creates the contact (or finds it by its channel identity) and a `bot`
/// conversation; returns its id.
pub(crate) async fn create_conversation(
    c: &mut dyn Conn,
    new: &NewConversation,
    now: Timestamp,
) -> Result<String> {
    let contact_id = contact_for(c, new.channel, &new.contact, now).await?;
    let id = new_id();
    let result = query(
        "INSERT INTO conversations (id, bot_id, channel, contact_id, thread_key, \
             visitor_token_hash, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'bot', $7, $7)",
    )
    .bind(id.as_str())
    .bind(new.bot_id.as_str())
    .bind(new.channel.as_str())
    .bind(contact_id)
    .bind(new.thread_key.as_deref())
    .bind(new.visitor_token_hash.as_deref())
    .bind(now.millis())
    .execute(&mut *c)
    .await;
    match result {
        Ok(_) => Ok(id),
        Err(e) if e.is_unique_violation() => Err(Error::Conflict("a conversation for this thread")),
        Err(e) => Err(e),
    }
}

async fn contact_for(
    c: &mut dyn Conn,
    channel: ChannelKind,
    contact: &NewContact,
    now: Timestamp,
) -> Result<String> {
    if let Some(external_id) = &contact.external_id {
        let row = query(
            "SELECT contact_id FROM contact_identities WHERE channel = $1 AND external_id = $2",
        )
        .bind(channel.as_str())
        .bind(external_id.as_str())
        .fetch_optional(&mut *c)
        .await?;
        if let Some(row) = row {
            let id: String = row.try_get("contact_id")?;
            // Fill in what we learn later, never overwrite what the contact told us.
            query(
                "UPDATE contacts SET name = COALESCE(name, $1), email = COALESCE(email, $2), \
                 phone = COALESCE(phone, $3) WHERE id = $4",
            )
            .bind(contact.name.as_deref())
            .bind(contact.email.as_deref())
            .bind(contact.phone.as_deref())
            .bind(id.as_str())
            .execute(&mut *c)
            .await?;
            return Ok(id);
        }
    }
    let id = new_id();
    query("INSERT INTO contacts (id, name, email, phone, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(id.as_str())
        .bind(contact.name.as_deref())
        .bind(contact.email.as_deref())
        .bind(contact.phone.as_deref())
        .bind(now.millis())
        .execute(&mut *c)
        .await?;
    if let Some(external_id) = &contact.external_id {
        query(
            "INSERT INTO contact_identities (channel, external_id, contact_id) VALUES ($1, $2, $3)",
        )
        .bind(channel.as_str())
        .bind(external_id.as_str())
        .bind(id.as_str())
        .execute(&mut *c)
        .await?;
    }
    Ok(id)
}

/// Records what a contact told us about themselves (a leave-a-message form,
/// the contact collector); `None` keeps the current value.
pub(crate) async fn update_contact_in(
    c: &mut dyn Conn,
    contact_id: &str,
    name: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
) -> Result<()> {
    query(
        "UPDATE contacts SET name = COALESCE($1, name), email = COALESCE($2, email), \
         phone = COALESCE($3, phone) WHERE id = $4",
    )
    .bind(name)
    .bind(email)
    .bind(phone)
    .bind(contact_id)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// 1-based place of a `waiting` conversation in its department's queue, as
/// this transaction sees it.
pub(crate) async fn queue_position_in(c: &mut dyn Conn, id: &str) -> Result<Option<i64>> {
    let row = query(
        "SELECT COUNT(*) AS n FROM conversations o, conversations c \
         WHERE c.id = $1 AND c.status = 'waiting' AND o.status = 'waiting' \
         AND ((o.department IS NULL AND c.department IS NULL) OR o.department = c.department) \
         AND (o.escalated_at < c.escalated_at OR (o.escalated_at = c.escalated_at AND o.id <= c.id))",
    )
    .bind(id)
    .fetch_one(&mut *c)
    .await?;
    let n: i64 = row.try_get("n")?;
    Ok((n > 0).then_some(n))
}
