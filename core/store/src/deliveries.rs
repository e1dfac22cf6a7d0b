//! The delivery outbox and the nodes that work it.
//!
//! Every bot, agent or system message that must reach a platform (email,
//! Telegram, Slack, Discord) gets a row in `channel_deliveries`, written by
//! the unit that writes the message ([`DeliveryRoutes`] says which
//! channels). Workers lease rows for their node, send them, and record what
//! happened. The rows of one conversation and channel go one at a time, in
//! `id` order: only the oldest row not yet sent or given up (the *head*)
//! may be leased, so a retry holds up the messages behind it and nothing
//! overtakes.
//!
//! A lease belongs to a node (`leased_by`), not to a deadline: a row leased
//! by a node that has stopped beating its heartbeat in `nodes` is free
//! again. A graceful stop gives its leases back at once.

use crate::db::{Conn, Row, query};
use crate::rows::parse;
use crate::{Backend, Result, Store};
use baton_model::{ChannelKind, Conversation, Message, PendingTurn, Timestamp};
use std::sync::Arc;

/// Which platform channels a newly written message goes to (none for the
/// widget, which follows the event stream). Set once by the runtime; until
/// then nothing is queued.
pub type DeliveryRoutes = Arc<dyn Fn(&Conversation, &Message) -> Vec<ChannelKind> + Send + Sync>;

/// Where a queued message is.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum SendStatus {
    Pending,
    Sent,
    Failed,
}

impl SendStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SendStatus::Pending => "pending",
            SendStatus::Sent => "sent",
            SendStatus::Failed => "failed",
        }
    }
}

impl std::str::FromStr for SendStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "failed" => Ok(Self::Failed),
            other => Err(format!("unknown send status `{other}`")),
        }
    }
}

/// One message on its way to one platform channel.
#[derive(Clone, Debug)]
pub struct ChannelDelivery {
    pub id: i64,
    pub conversation_id: String,
    pub channel: ChannelKind,
    pub message_id: String,
    pub seq: i64,
    pub status: SendStatus,
    /// Attempts begun, this one included once leased.
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    pub platform_id: Option<String>,
    pub created_at: Timestamp,
    pub sent_at: Option<Timestamp>,
}

/// What an attempt came to.
#[derive(Clone, Debug)]
pub enum SendResult {
    Sent {
        platform_id: Option<String>,
    },
    /// Try again at `at`.
    Retry {
        error: String,
        at: Timestamp,
    },
    /// Given up, for this reason.
    Failed {
        error: String,
    },
}

/// A message that could not be delivered, for the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndeliveredMessage {
    pub message_id: String,
    pub channel: ChannelKind,
    pub status: SendStatus,
    pub attempts: i64,
    pub error: Option<String>,
}

const COLUMNS: &str = "id, conversation_id, channel, message_id, seq, status, attempts, \
    next_attempt_at, last_error, platform_id, created_at, sent_at";

fn delivery(row: &Row) -> Result<ChannelDelivery> {
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    Ok(ChannelDelivery {
        id: row.try_get("id")?,
        conversation_id: row.try_get("conversation_id")?,
        channel: parse(&channel, "delivery channel")?,
        message_id: row.try_get("message_id")?,
        seq: row.try_get("seq")?,
        status: parse(&status, "delivery status")?,
        attempts: row.try_get("attempts")?,
        next_attempt_at: Timestamp(row.try_get("next_attempt_at")?),
        last_error: row.try_get("last_error")?,
        platform_id: row.try_get("platform_id")?,
        created_at: Timestamp(row.try_get("created_at")?),
        sent_at: row.try_get::<Option<i64>, _>("sent_at")?.map(Timestamp),
    })
}

/// The rows a unit's messages need, in the unit's transaction.
pub(crate) async fn queue(
    c: &mut dyn Conn,
    routes: Option<&DeliveryRoutes>,
    conv: &Conversation,
    messages: &[Message],
    now: Timestamp,
) -> Result<()> {
    let Some(routes) = routes else {
        return Ok(());
    };
    let rows: Vec<(&Message, ChannelKind)> = messages
        .iter()
        .flat_map(|m| routes(conv, m).into_iter().map(move |ch| (m, ch)))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    const WIDTH: usize = 6;
    let mut sql = String::from(
        "INSERT INTO channel_deliveries (conversation_id, channel, message_id, seq, \
         next_attempt_at, created_at) VALUES ",
    );
    crate::unit::push_rows(&mut sql, rows.len(), WIDTH);
    let mut q = query(sql);
    for (m, channel) in rows {
        q = q
            .bind(conv.id.as_str())
            .bind(channel.as_str())
            .bind(m.id.as_str())
            .bind(m.seq)
            .bind(now.millis())
            .bind(now.millis());
    }
    q.execute(&mut *c).await?;
    Ok(())
}

/// A row is free when nobody leased it or its node is dead: no heartbeat
/// since the instant bound at placeholder `$alive`.
fn free(column: &str, alive: usize) -> String {
    format!(
        "({column} IS NULL OR {column} NOT IN \
         (SELECT n.id FROM nodes n WHERE n.heartbeat_at >= ${alive}))"
    )
}

/// The head of its thread: no earlier row of the same conversation and
/// channel is still pending.
const HEAD: &str = "NOT EXISTS (SELECT 1 FROM channel_deliveries e \
    WHERE e.conversation_id = d.conversation_id AND e.channel = d.channel \
    AND e.status = 'pending' AND e.id < d.id)";

impl Store {
    /// Sets which channels a newly written message is queued for. The first
    /// call wins; the runtime makes it before anything is written.
    pub fn route_deliveries(&self, routes: DeliveryRoutes) {
        let _ = self.routes.set(routes);
    }

    pub(crate) fn delivery_routes(&self) -> Option<&DeliveryRoutes> {
        self.routes.get()
    }

    /// Leases up to `limit` due heads of their threads for node `me`,
    /// oldest first. `alive` is the oldest heartbeat of a node still
    /// counted alive.
    pub async fn lease_channel_deliveries(
        &self,
        me: &str,
        now: Timestamp,
        alive: Timestamp,
        limit: i64,
    ) -> Result<Vec<ChannelDelivery>> {
        // Looking is a read: an idle outbox costs the writer nothing.
        let sql = format!(
            "SELECT d.id FROM channel_deliveries d WHERE d.status = 'pending' \
             AND d.next_attempt_at <= $1 AND {} AND {HEAD} \
             ORDER BY d.id LIMIT $3",
            free("d.leased_by", 2)
        );
        let ids: Vec<i64> = query(sql)
            .bind(now.millis())
            .bind(alive.millis())
            .bind(limit)
            .fetch_all(self)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let me = me.to_owned();
        self.write(move |c| {
            Box::pin(async move {
                let mut leased = Vec::with_capacity(ids.len());
                for id in ids {
                    if let Some(d) = take(c, &me, id, alive).await? {
                        leased.push(d);
                    }
                }
                Ok(leased)
            })
        })
        .await
    }

    /// Leases the next head of one thread, when it is due: what a worker
    /// takes after it finished the row before.
    pub async fn lease_next_in_thread(
        &self,
        me: &str,
        conversation_id: &str,
        channel: ChannelKind,
        now: Timestamp,
        alive: Timestamp,
    ) -> Result<Option<ChannelDelivery>> {
        let (me, conversation_id) = (me.to_owned(), conversation_id.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let row = query(
                    "SELECT id, next_attempt_at FROM channel_deliveries \
                     WHERE conversation_id = $1 AND channel = $2 AND status = 'pending' \
                     ORDER BY id LIMIT 1",
                )
                .bind(conversation_id.as_str())
                .bind(channel.as_str())
                .fetch_optional(&mut *c)
                .await?;
                let Some(row) = row else { return Ok(None) };
                if row.try_get::<i64, _>("next_attempt_at")? > now.millis() {
                    return Ok(None);
                }
                take(c, &me, row.try_get("id")?, alive).await
            })
        })
        .await
    }

    /// Records an attempt of a row this node leased. False when the lease
    /// was lost meanwhile (the node was taken for dead), which records
    /// nothing.
    pub async fn record_send(
        &self,
        me: &str,
        id: i64,
        result: SendResult,
        now: Timestamp,
    ) -> Result<bool> {
        let (status, error, next, platform_id, sent_at) = match result {
            SendResult::Sent { platform_id } => {
                (SendStatus::Sent, None, now, platform_id, Some(now))
            }
            SendResult::Retry { error, at } => (SendStatus::Pending, Some(error), at, None, None),
            SendResult::Failed { error } => (SendStatus::Failed, Some(error), now, None, None),
        };
        let done = query(
            "UPDATE channel_deliveries SET status = $1, last_error = $2, next_attempt_at = $3, \
             platform_id = $4, sent_at = $5, leased_by = NULL \
             WHERE id = $6 AND leased_by = $7 AND status = 'pending'",
        )
        .bind(status.as_str())
        .bind(error)
        .bind(next.millis())
        .bind(platform_id)
        .bind(sent_at.map(Timestamp::millis))
        .bind(id)
        .bind(me)
        .execute(self)
        .await?;
        Ok(done == 1)
    }

    /// Gives back what node `me` leased and did not finish (a graceful
    /// stop): the attempt it cut short does not count.
    pub async fn release_channel_deliveries(&self, me: &str) -> Result<u64> {
        query(
            "UPDATE channel_deliveries SET leased_by = NULL, attempts = attempts - 1 \
             WHERE leased_by = $1 AND status = 'pending'",
        )
        .bind(me)
        .execute(self)
        .await
    }

    /// The earliest instant a pending row becomes due.
    pub async fn next_channel_delivery_due(&self) -> Result<Option<Timestamp>> {
        let row = query(
            "SELECT MIN(next_attempt_at) AS due FROM channel_deliveries WHERE status = 'pending'",
        )
        .fetch_one(self)
        .await?;
        Ok(row.try_get::<Option<i64>, _>("due")?.map(Timestamp))
    }

    /// The messages of a conversation that are not delivered yet after a
    /// failed attempt, or not at all: what the inbox marks.
    pub async fn undelivered(&self, conversation_id: &str) -> Result<Vec<UndeliveredMessage>> {
        let rows = query(
            "SELECT message_id, channel, status, attempts, last_error FROM channel_deliveries \
             WHERE conversation_id = $1 AND (status = 'failed' \
                 OR (status = 'pending' AND last_error IS NOT NULL)) ORDER BY id",
        )
        .bind(conversation_id)
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| {
                let channel: String = r.try_get("channel")?;
                let status: String = r.try_get("status")?;
                Ok(UndeliveredMessage {
                    message_id: r.try_get("message_id")?,
                    channel: parse(&channel, "delivery channel")?,
                    status: parse(&status, "delivery status")?,
                    attempts: r.try_get("attempts")?,
                    error: r.try_get("last_error")?,
                })
            })
            .collect()
    }

    /// Queues a given-up message of a conversation again, at once; false
    /// when it has no such row. It goes out behind what is pending.
    pub async fn retry_message_delivery(
        &self,
        conversation_id: &str,
        message_id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let (conversation_id, message_id) = (conversation_id.to_owned(), message_id.to_owned());
        self.write(move |c| {
            Box::pin(async move {
                let failed = query(
                    "SELECT id, channel, seq, created_at FROM channel_deliveries \
                     WHERE conversation_id = $1 AND message_id = $2 AND status = 'failed' \
                     ORDER BY id",
                )
                .bind(conversation_id.as_str())
                .bind(message_id.as_str())
                .fetch_all(&mut *c)
                .await?;
                // A new row keeps the thread's order: it goes behind what
                // was queued since.
                for row in &failed {
                    query(
                        "INSERT INTO channel_deliveries (conversation_id, channel, message_id, \
                         seq, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(conversation_id.as_str())
                    .bind(row.try_get::<String, _>("channel")?)
                    .bind(message_id.as_str())
                    .bind(row.try_get::<i64, _>("seq")?)
                    .bind(now.millis())
                    .bind(row.try_get::<i64, _>("created_at")?)
                    .execute(&mut *c)
                    .await?;
                    query("DELETE FROM channel_deliveries WHERE id = $1")
                        .bind(row.try_get::<i64, _>("id")?)
                        .execute(&mut *c)
                        .await?;
                }
                Ok(!failed.is_empty())
            })
        })
        .await
    }

    /// Says that node `id` runs, or still runs.
    pub async fn heartbeat(&self, id: &str, now: Timestamp) -> Result<()> {
        query(
            "INSERT INTO nodes (id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = $2",
        )
        .bind(id)
        .bind(now.millis())
        .execute(self)
        .await?;
        Ok(())
    }

    /// Node `id` stops: its rows go.
    pub async fn forget_node(&self, id: &str) -> Result<()> {
        query("DELETE FROM nodes WHERE id = $1")
            .bind(id)
            .execute(self)
            .await?;
        Ok(())
    }

    /// On SQLite there is one node: at start every other row is an earlier
    /// process of this one, dead by definition, and what it held is free at
    /// once. On PostgreSQL other nodes may be running; they are left alone.
    pub async fn forget_earlier_nodes(&self, me: &str) -> Result<()> {
        if self.backend() != Backend::Sqlite {
            return Ok(());
        }
        query("DELETE FROM nodes WHERE id <> $1")
            .bind(me)
            .execute(self)
            .await?;
        Ok(())
    }

    /// Conversations whose due bot turn nobody runs any more: its node is
    /// dead (no heartbeat since `alive`), or it is this node's own and
    /// older than `stale` (the turn failed). Oldest first.
    pub async fn orphaned_turns(
        &self,
        me: &str,
        alive: Timestamp,
        stale: Timestamp,
        limit: i64,
    ) -> Result<Vec<(String, PendingTurn)>> {
        let rows = query(
            "SELECT id, turn_seq, turn_node, turn_at FROM conversations \
             WHERE turn_seq IS NOT NULL AND status = 'bot' AND ( \
                 (turn_node <> $1 AND turn_node NOT IN \
                     (SELECT n.id FROM nodes n WHERE n.heartbeat_at >= $2)) \
                 OR (turn_node = $1 AND turn_at < $3)) \
             ORDER BY turn_at LIMIT $4",
        )
        .bind(me)
        .bind(alive.millis())
        .bind(stale.millis())
        .bind(limit)
        .fetch_all(self)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("id")?,
                    PendingTurn {
                        seq: r.try_get("turn_seq")?,
                        node: r.try_get("turn_node")?,
                        at: Timestamp(r.try_get("turn_at")?),
                    },
                ))
            })
            .collect()
    }
}

/// Takes row `id` for `me` if it is still pending and free, counting the attempt.
async fn take(
    c: &mut dyn Conn,
    me: &str,
    id: i64,
    alive: Timestamp,
) -> Result<Option<ChannelDelivery>> {
    let sql = format!(
        "UPDATE channel_deliveries SET leased_by = $1, attempts = attempts + 1 \
         WHERE id = $2 AND status = 'pending' AND {}",
        free("leased_by", 3)
    );
    let done = query(sql)
        .bind(me)
        .bind(id)
        .bind(alive.millis())
        .execute(&mut *c)
        .await?;
    if done == 0 {
        return Ok(None);
    }
    let row = query(format!(
        "SELECT {COLUMNS} FROM channel_deliveries WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&mut *c)
    .await?;
    delivery(&row).map(Some)
}
