//! Contacts, conversations and messages.

use crate::rows::{self, CONVERSATION_COLUMNS, CONVERSATION_FROM, MESSAGE_COLUMNS};
use crate::{Error, Result, Store, Tx, new_id};
use baton_model::{
    Action, AgentRef, Attachment, ChannelKind, Conversation, HandoverState, Message, SenderKind,
    Status, Timestamp,
};
use sqlx::{AssertSqlSafe, Row};

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
        let sql = format!("SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::conversation).transpose()
    }

    pub async fn conversation_by_visitor_token(&self, hash: &str) -> Result<Option<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.visitor_token_hash = $1"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::conversation).transpose()
    }

    pub async fn conversation_by_thread(
        &self,
        channel: ChannelKind,
        thread_key: &str,
    ) -> Result<Option<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} \
             WHERE c.channel = $1 AND c.thread_key = $2"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(channel.as_str())
            .bind(thread_key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::conversation).transpose()
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
            filter.limit.min(500)
        } else {
            200
        };
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE {} \
             ORDER BY c.updated_at DESC, c.id DESC LIMIT {limit}",
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(rows::conversation).collect()
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
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for (id, seq) in places {
            query = query.bind(id).bind(*seq);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(rows::message).collect()
    }

    /// Messages with `seq > after`, oldest first.
    pub async fn messages(
        &self,
        conversation_id: &str,
        after: i64,
        include_internal: bool,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages \
             WHERE conversation_id = $1 AND seq > $2 AND (internal = 0 OR $3 = 1) \
             ORDER BY seq LIMIT $4"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(conversation_id)
            .bind(after)
            .bind(i64::from(include_internal))
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::message).collect()
    }

    /// Records what a contact told us about themselves (a leave-a-message form,
    /// the contact collector); `None` keeps the current value.
    pub async fn update_contact(
        &self,
        contact_id: &str,
        name: Option<&str>,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE contacts SET name = COALESCE($1, name), email = COALESCE($2, email), \
             phone = COALESCE($3, phone) WHERE id = $4",
        )
        .bind(name)
        .bind(email)
        .bind(phone)
        .bind(contact_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a conversation read by staff.
    pub async fn mark_read(&self, conversation_id: &str) -> Result<()> {
        sqlx::query("UPDATE conversations SET unread = 0 WHERE id = $1 AND unread <> 0")
            .bind(conversation_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Waiting conversations ordered by when they joined the queue: the queue itself.
    pub async fn queue(&self, department: Option<&str>) -> Result<Vec<(String, Timestamp)>> {
        let rows = sqlx::query(
            "SELECT id, escalated_at FROM conversations \
             WHERE status = 'waiting' AND (($1 = '' AND department IS NULL) OR department = $1) \
             ORDER BY escalated_at, id",
        )
        .bind(department.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    Timestamp(r.try_get::<Option<i64>, _>("escalated_at")?.unwrap_or(0)),
                ))
            })
            .collect()
    }

    /// Waiting conversations that joined the queue before `cutoff` (candidates for abandonment).
    pub async fn waiting_since_before(&self, cutoff: Timestamp) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT id FROM conversations WHERE status = 'waiting' AND escalated_at < $1",
        )
        .bind(cutoff.millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

impl Tx {
    /// Creates the contact (or finds it by its channel identity) and a `bot` conversation.
    pub async fn create_conversation(
        &mut self,
        new: &NewConversation,
        now: Timestamp,
    ) -> Result<Conversation> {
        let contact_id = self.contact_for(new.channel, &new.contact, now).await?;
        let id = new_id();
        let result = sqlx::query(
            "INSERT INTO conversations (id, bot_id, channel, contact_id, thread_key, \
                 visitor_token_hash, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, 'bot', $7, $7)",
        )
        .bind(&id)
        .bind(&new.bot_id)
        .bind(new.channel.as_str())
        .bind(&contact_id)
        .bind(new.thread_key.as_deref())
        .bind(new.visitor_token_hash.as_deref())
        .bind(now.millis())
        .execute(&mut *self.inner)
        .await;
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(Error::Conflict("a conversation for this thread"));
            }
            Err(e) => return Err(e.into()),
        }
        self.conversation(&id)
            .await?
            .ok_or_else(|| Error::Corrupt("conversation vanished after insert".into()))
    }

    async fn contact_for(
        &mut self,
        channel: ChannelKind,
        contact: &NewContact,
        now: Timestamp,
    ) -> Result<String> {
        if let Some(external_id) = &contact.external_id {
            let row = sqlx::query(
                "SELECT contact_id FROM contact_identities WHERE channel = $1 AND external_id = $2",
            )
            .bind(channel.as_str())
            .bind(external_id)
            .fetch_optional(&mut *self.inner)
            .await?;
            if let Some(row) = row {
                let id: String = row.try_get("contact_id")?;
                // Fill in what we learn later, never overwrite what the contact told us.
                sqlx::query(
                    "UPDATE contacts SET name = COALESCE(name, $1), email = COALESCE(email, $2), \
                     phone = COALESCE(phone, $3) WHERE id = $4",
                )
                .bind(contact.name.as_deref())
                .bind(contact.email.as_deref())
                .bind(contact.phone.as_deref())
                .bind(&id)
                .execute(&mut *self.inner)
                .await?;
                return Ok(id);
            }
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO contacts (id, name, email, phone, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&id)
        .bind(contact.name.as_deref())
        .bind(contact.email.as_deref())
        .bind(contact.phone.as_deref())
        .bind(now.millis())
        .execute(&mut *self.inner)
        .await?;
        if let Some(external_id) = &contact.external_id {
            sqlx::query(
                "INSERT INTO contact_identities (channel, external_id, contact_id) VALUES ($1, $2, $3)",
            )
            .bind(channel.as_str())
            .bind(external_id)
            .bind(&id)
            .execute(&mut *self.inner)
            .await?;
        }
        Ok(id)
    }

    /// Reads a conversation inside this transaction.
    pub async fn conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        let sql = format!("SELECT {CONVERSATION_COLUMNS} {CONVERSATION_FROM} WHERE c.id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *self.inner)
            .await?;
        row.as_ref().map(rows::conversation).transpose()
    }

    /// 1-based place of a `waiting` conversation in its department's queue,
    /// as this transaction sees it.
    pub async fn queue_position(&mut self, id: &str) -> Result<Option<i64>> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM conversations o, conversations c \
             WHERE c.id = $1 AND c.status = 'waiting' AND o.status = 'waiting' \
             AND ((o.department IS NULL AND c.department IS NULL) OR o.department = c.department) \
             AND (o.escalated_at < c.escalated_at OR (o.escalated_at = c.escalated_at AND o.id <= c.id))",
        )
        .bind(id)
        .fetch_one(&mut *self.inner)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok((n > 0).then_some(n))
    }

    /// Locks the conversation's row for the rest of the transaction and reads it.
    ///
    /// A no-op write takes the lock on both backends (PostgreSQL's row lock,
    /// SQLite's database write lock), which `SELECT … FOR UPDATE` cannot do on SQLite.
    pub async fn lock_conversation(&mut self, id: &str) -> Result<Option<Conversation>> {
        let done = sqlx::query("UPDATE conversations SET version = version WHERE id = $1")
            .bind(id)
            .execute(&mut *self.inner)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.conversation(id).await
    }

    /// Stores a new hand-over state if nobody changed the conversation since `version`
    /// was read: one atomic `UPDATE`. Returns false when the caller lost the race.
    pub async fn cas_state(
        &mut self,
        id: &str,
        version: i64,
        state: &HandoverState,
        now: Timestamp,
    ) -> Result<bool> {
        let h = state.handover.as_ref();
        let done = sqlx::query(
            "UPDATE conversations SET status = $1, assignee_id = $2, department = $3, \
                 handover_reason = $4, handover_at = $5, handover_by = $6, bot_paused_until = $7, \
                 escalated_at = $8, claimed_at = $9, first_agent_reply_at = $10, resolved_at = $11, \
                 version = version + 1, updated_at = $12 \
             WHERE id = $13 AND version = $14",
        )
        .bind(state.status.as_str())
        .bind(state.assignee.as_ref().map(|a| a.id.as_str()))
        .bind(state.department.as_deref())
        .bind(h.map(|h| h.reason.as_str()))
        .bind(h.map(|h| h.at.millis()))
        .bind(h.and_then(|h| h.by.as_deref()))
        .bind(state.bot_paused_until.map(Timestamp::millis))
        .bind(state.escalated_at.map(Timestamp::millis))
        .bind(state.claimed_at.map(Timestamp::millis))
        .bind(state.first_agent_reply_at.map(Timestamp::millis))
        .bind(state.resolved_at.map(Timestamp::millis))
        .bind(now.millis())
        .bind(id)
        .bind(version)
        .execute(&mut *self.inner)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A message already stored under the same client id or platform message id.
    pub async fn find_duplicate(
        &mut self,
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
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(conversation_id)
            .bind(client_id)
            .bind(channel_message_id)
            .fetch_optional(&mut *self.inner)
            .await?;
        row.as_ref().map(rows::message).transpose()
    }

    /// Appends a message with the conversation's next sequence number.
    pub async fn append_message(
        &mut self,
        conversation_id: &str,
        new: &NewMessage,
        now: Timestamp,
    ) -> Result<Message> {
        // A visitor message is unread for staff; a staff reply means they have read it.
        let unread_sql = match new.sender {
            SenderKind::Visitor => "unread + 1",
            SenderKind::Agent if !new.internal => "0",
            _ => "unread",
        };
        let sql = format!(
            "UPDATE conversations SET last_seq = last_seq + 1, unread = {unread_sql}, \
             updated_at = $1 WHERE id = $2 RETURNING last_seq"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(now.millis())
            .bind(conversation_id)
            .fetch_optional(&mut *self.inner)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("no conversation {conversation_id}")))?;
        let seq: i64 = row.try_get("last_seq")?;
        let message = Message {
            id: new_id(),
            conversation_id: conversation_id.to_owned(),
            seq,
            sender: new.sender,
            author: new.author.clone(),
            text: new.text.clone(),
            internal: new.internal,
            actions: new.actions.clone(),
            attachments: new.attachments.clone(),
            client_id: new.client_id.clone(),
            channel_message_id: new.channel_message_id.clone(),
            created_at: now,
        };
        let to_json = |v: &dyn erased::Json| v.to_json();
        sqlx::query(
            "INSERT INTO messages (id, conversation_id, seq, sender, author_id, author_name, text, \
                 internal, actions, attachments, client_id, channel_message_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(&message.id)
        .bind(conversation_id)
        .bind(seq)
        .bind(message.sender.as_str())
        .bind(message.author.as_ref().map(|a| a.id.as_str()))
        .bind(message.author.as_ref().map(|a| a.name.as_str()))
        .bind(&message.text)
        .bind(i64::from(message.internal))
        .bind(to_json(&message.actions))
        .bind(to_json(&message.attachments))
        .bind(message.client_id.as_deref())
        .bind(message.channel_message_id.as_deref())
        .bind(now.millis())
        .execute(&mut *self.inner)
        .await?;
        Ok(message)
    }

    pub async fn set_tags(&mut self, conversation_id: &str, tags: &[String]) -> Result<()> {
        sqlx::query("UPDATE conversations SET tags = $1 WHERE id = $2")
            .bind(serde_json::to_string(tags).unwrap_or_else(|_| "[]".into()))
            .bind(conversation_id)
            .execute(&mut *self.inner)
            .await?;
        Ok(())
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
