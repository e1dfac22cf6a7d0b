//! What a hand-over leaves behind: tasks, staff notifications, the log of
//! post-hand-over action runs; plus knowledge-base edits made through the
//! API, the contact collector's pending hand-over and report timings.

use crate::db::Row as AnyRow;
use crate::db::query;
use crate::{Result, Store, new_id};
use baton_model::Timestamp;

/// A follow-up for a staff member (seed 002's "create a task").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub conversation_id: String,
    pub title: String,
    pub description: String,
    pub assignee_id: Option<String>,
    pub due_at: Timestamp,
    pub done: bool,
    pub created_at: Timestamp,
    pub done_at: Option<Timestamp>,
}

/// Something a staff member should know about, shown in the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub user_id: String,
    /// `assigned` or `task` (or `escalated` for the hand-over power-up's address).
    pub kind: String,
    pub conversation_id: Option<String>,
    pub task_id: Option<String>,
    pub text: String,
    pub created_at: Timestamp,
    pub read_at: Option<Timestamp>,
}

/// One post-hand-over action that ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionRun {
    pub id: String,
    pub conversation_id: String,
    /// Its place in the bot's action list, from 0.
    pub position: i64,
    pub action: String,
    pub ok: bool,
    pub detail: String,
    pub created_at: Timestamp,
}

/// A conversation's latest hand-over and what followed it, for reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandoverTimes {
    pub conversation_id: String,
    pub handover_at: Timestamp,
    pub claimed_at: Option<Timestamp>,
    pub first_agent_reply_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    pub assignee_id: Option<String>,
}

fn ts(row: &AnyRow, column: &str) -> Result<Option<Timestamp>> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(Timestamp))
}

fn task(row: &AnyRow) -> Result<Task> {
    Ok(Task {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        assignee_id: row.try_get("assignee_id")?,
        due_at: Timestamp(row.try_get("due_at")?),
        done: row.try_get::<i64, _>("done")? != 0,
        created_at: Timestamp(row.try_get("created_at")?),
        done_at: ts(row, "done_at")?,
    })
}

fn notification(row: &AnyRow) -> Result<Notification> {
    Ok(Notification {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: row.try_get("kind")?,
        conversation_id: row.try_get("conversation_id")?,
        task_id: row.try_get("task_id")?,
        text: row.try_get("text")?,
        created_at: Timestamp(row.try_get("created_at")?),
        read_at: ts(row, "read_at")?,
    })
}

/// Conversation columns that live outside the hand-over state.
#[derive(Clone, Copy)]
enum ConversationNote {
    Topic,
}

impl ConversationNote {
    fn column(self) -> &'static str {
        match self {
            ConversationNote::Topic => "topic",
        }
    }
}

const TASK_COLUMNS: &str =
    "id, conversation_id, title, description, assignee_id, due_at, done, created_at, done_at";
const NOTIFICATION_COLUMNS: &str =
    "id, user_id, kind, conversation_id, task_id, text, created_at, read_at";

impl Store {
    pub async fn create_task(
        &self,
        conversation_id: &str,
        title: &str,
        description: &str,
        assignee_id: Option<&str>,
        due_at: Timestamp,
        now: Timestamp,
    ) -> Result<Task> {
        let id = new_id();
        query(
            "INSERT INTO tasks (id, conversation_id, title, description, assignee_id, due_at, \
             done, created_at) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(&id)
        .bind(conversation_id)
        .bind(title)
        .bind(description)
        .bind(assignee_id)
        .bind(due_at.millis())
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(Task {
            id,
            conversation_id: conversation_id.to_owned(),
            title: title.to_owned(),
            description: description.to_owned(),
            assignee_id: assignee_id.map(str::to_owned),
            due_at,
            done: false,
            created_at: now,
            done_at: None,
        })
    }

    /// Tasks, open ones first by due time; optionally one assignee's or one conversation's.
    pub async fn tasks(
        &self,
        assignee_id: Option<&str>,
        conversation_id: Option<&str>,
        include_done: bool,
    ) -> Result<Vec<Task>> {
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE ($1 = '' OR assignee_id = $1) \
             AND ($2 = '' OR conversation_id = $2) AND ($3 = 1 OR done = 0) \
             ORDER BY done, due_at, id LIMIT 500"
        );
        let rows = query(sql)
            .bind(assignee_id.unwrap_or(""))
            .bind(conversation_id.unwrap_or(""))
            .bind(i64::from(include_done))
            .fetch_all(self)
            .await?;
        rows.iter().map(task).collect()
    }

    pub async fn task(&self, id: &str) -> Result<Option<Task>> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = query(sql).bind(id).fetch_optional(self).await?;
        row.as_ref().map(task).transpose()
    }

    /// Marks a task done or open again.
    pub async fn set_task_done(&self, id: &str, done: bool, now: Timestamp) -> Result<()> {
        query("UPDATE tasks SET done = $1, done_at = $2 WHERE id = $3")
            .bind(i64::from(done))
            .bind(done.then_some(now.millis()))
            .bind(id)
            .execute(self)
            .await?;
        Ok(())
    }

    pub async fn create_notification(
        &self,
        user_id: &str,
        kind: &str,
        conversation_id: Option<&str>,
        task_id: Option<&str>,
        text: &str,
        now: Timestamp,
    ) -> Result<Notification> {
        let id = new_id();
        query(
            "INSERT INTO notifications (id, user_id, kind, conversation_id, task_id, text, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(user_id)
        .bind(kind)
        .bind(conversation_id)
        .bind(task_id)
        .bind(text)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(Notification {
            id,
            user_id: user_id.to_owned(),
            kind: kind.to_owned(),
            conversation_id: conversation_id.map(str::to_owned),
            task_id: task_id.map(str::to_owned),
            text: text.to_owned(),
            created_at: now,
            read_at: None,
        })
    }

    /// A user's latest notifications, newest first.
    pub async fn notifications(&self, user_id: &str, limit: i64) -> Result<Vec<Notification>> {
        let sql = format!(
            "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE user_id = $1 \
             ORDER BY created_at DESC, id DESC LIMIT $2"
        );
        let rows = query(sql).bind(user_id).bind(limit).fetch_all(self).await?;
        rows.iter().map(notification).collect()
    }

    /// Marks all of a user's notifications read.
    pub async fn read_notifications(&self, user_id: &str, now: Timestamp) -> Result<()> {
        query("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL")
            .bind(now.millis())
            .bind(user_id)
            .execute(self)
            .await?;
        Ok(())
    }

    pub async fn record_action_run(
        &self,
        conversation_id: &str,
        position: i64,
        action: &str,
        ok: bool,
        detail: &str,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "INSERT INTO action_runs (id, conversation_id, position, action, ok, detail, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(new_id())
        .bind(conversation_id)
        .bind(position)
        .bind(action)
        .bind(i64::from(ok))
        .bind(detail)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    /// The action runs of one conversation, in the order they ran.
    pub async fn action_runs(&self, conversation_id: &str) -> Result<Vec<ActionRun>> {
        let rows = query(
            "SELECT id, conversation_id, position, action, ok, detail, created_at \
             FROM action_runs WHERE conversation_id = $1 ORDER BY created_at, position, id",
        )
        .bind(conversation_id)
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ActionRun {
                    id: r.try_get("id")?,
                    conversation_id: r.try_get("conversation_id")?,
                    position: r.try_get("position")?,
                    action: r.try_get("action")?,
                    ok: r.try_get::<i64, _>("ok")? != 0,
                    detail: r.try_get("detail")?,
                    created_at: Timestamp(r.try_get("created_at")?),
                })
            })
            .collect()
    }

    /// Knowledge-base edits as `(bot id, entry id, JSON body or None when removed)`.
    pub async fn knowledge_edits(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let rows =
            query("SELECT bot_id, entry_id, body FROM knowledge_entries ORDER BY bot_id, entry_id")
                .fetch_all(self)
                .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("bot_id")?,
                    r.try_get("entry_id")?,
                    r.try_get("body")?,
                ))
            })
            .collect()
    }

    /// Saves an entry (a JSON body) or its removal (`None`).
    pub async fn save_knowledge_edit(
        &self,
        bot_id: &str,
        entry_id: &str,
        body: Option<&str>,
        now: Timestamp,
    ) -> Result<()> {
        query(
            "INSERT INTO knowledge_entries (bot_id, entry_id, body, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (bot_id, entry_id) DO UPDATE \
             SET body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(bot_id)
        .bind(entry_id)
        .bind(body)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    /// What the conversation is about, for expertise routing.
    pub async fn topic(&self, conversation_id: &str) -> Result<Option<String>> {
        self.conversation_note(ConversationNote::Topic, conversation_id)
            .await
    }

    async fn conversation_note(
        &self,
        note: ConversationNote,
        conversation_id: &str,
    ) -> Result<Option<String>> {
        let column = note.column();
        let sql = format!("SELECT {column} FROM conversations WHERE id = $1");
        let row = query(sql)
            .bind(conversation_id)
            .fetch_optional(self)
            .await?;
        Ok(match row {
            Some(r) => r.try_get(column)?,
            None => None,
        })
    }

    /// Conversations whose latest hand-over falls in `[from, to)`, with what followed.
    pub async fn handover_times(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<HandoverTimes>> {
        let rows = query(
            "SELECT id, handover_at, claimed_at, first_agent_reply_at, resolved_at, assignee_id \
             FROM conversations WHERE handover_at >= $1 AND handover_at < $2",
        )
        .bind(from.millis())
        .bind(to.millis())
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HandoverTimes {
                    conversation_id: r.try_get("id")?,
                    handover_at: Timestamp(r.try_get("handover_at")?),
                    claimed_at: ts(r, "claimed_at")?,
                    first_agent_reply_at: ts(r, "first_agent_reply_at")?,
                    resolved_at: ts(r, "resolved_at")?,
                    assignee_id: r.try_get("assignee_id")?,
                })
            })
            .collect()
    }

    /// How many conversations started in `[from, to)`, by channel.
    pub async fn started_count(&self, from: Timestamp, to: Timestamp) -> Result<i64> {
        let row = query(
            "SELECT COUNT(*) AS n FROM conversations WHERE created_at >= $1 AND created_at < $2",
        )
        .bind(from.millis())
        .bind(to.millis())
        .fetch_one(self)
        .await?;
        row.try_get("n")
    }
}
