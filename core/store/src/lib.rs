//! Baton's storage: one SQL store over SQLite (embedded default) or PostgreSQL.
//!
//! Every query is written once, in the subset of SQL both backends accept,
//! and every operation is one async function over a connection
//! ([`db::Conn`]), run by the engine of the backend (see [`db`]): SQLite
//! through rusqlite on a writer thread that commits queued writes in batches
//! and reader threads, PostgreSQL through sqlx. Placeholders are `$1, $2, …`
//! in ascending order of first use, which both read alike. Instants are
//! `BIGINT` milliseconds, flags `BIGINT` 0/1, lists JSON text.
//!
//! Architecture invariants:
//! - this crate knows SQL and nothing of HTTP, channels or the bot;
//! - it never decides a hand-over transition: a unit of work
//!   ([`Store::unit`]) reads the conversation under its lock and asks the
//!   caller's plan what to write, so a claim and a bot reply for the same
//!   conversation are ordered, and the plan sees what came first;
//! - every state change and its outbox events are written in one
//!   transaction, and its result is handed back only once it committed;
//! - on SQLite no connection but the writer's ever writes.

mod channels;
mod conversations;
mod db;
mod deliveries;
mod events;
mod plugins;
mod rows;
mod settings;
mod unit;
mod users;
mod webhooks;
mod work;

pub use conversations::{
    AssigneeFilter, ConversationFilter, NewContact, NewConversation, NewMessage,
};
pub use deliveries::{ChannelDelivery, DeliveryRoutes, SendResult, SendStatus, UndeliveredMessage};
pub use events::NOTIFY_CHANNEL;
pub use events::{StoredEvent, new_event_id};
pub use plugins::PluginJob;
pub use unit::{Announcement, ContactUpdate, Decision, Outcome, Plan, Side, Skip, Unit};
pub use users::{
    ApiToken, Deactivation, NewUser, RoutingUpdate, SessionRecord, TokenListing, User,
};
pub use webhooks::{Attempt, Delivery, DeliveryStatus, DueDelivery, NewWebhook, Webhook};
pub use work::{ActionRun, HandoverTimes, Notification, Task};

use db::{Conn, Engine, Op};
use futures_util::future::BoxFuture;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database error: {0}")]
    Sqlite(String, bool),
    #[error("database error: {0}")]
    Postgres(String),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database url `{0}`: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

impl Error {
    /// Whether the database refused a write because a unique key already exists.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Error::Conflict(_) => true,
            Error::Sqlite(_, unique) => *unique,
            Error::Db(sqlx::Error::Database(e)) => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// Which SQL server is behind the store.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// SQLite reader threads: reads never wait for the writer (WAL), and two
/// cores rarely keep more than a few busy.
const SQLITE_READERS: usize = 3;

/// A handle on the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<Engine>,
    url: String,
    /// The webhook subscriptions, read once and kept until one changes (on
    /// this node) or, with several nodes, for a second at most.
    hooks: Arc<events::HookCache>,
    /// Who hears of each commit, in commit order (see [`Store::announce_to`]).
    announcer: db::AnnouncerSlot,
    /// Which platform channels a new message is queued for (the runtime's
    /// rule, see [`Store::route_deliveries`]).
    routes: Arc<std::sync::OnceLock<DeliveryRoutes>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password; say only which backend this is.
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database `<data_dir>/baton.db`.
    pub async fn open_data_dir(data_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            Error::Corrupt(format!(
                "cannot create data dir {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join("baton.db");
        Self::connect(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// Connects to `sqlite://…` or `postgres://…`. Does not migrate.
    pub async fn connect(url: &str) -> Result<Self> {
        let announcer: db::AnnouncerSlot = Arc::default();
        let engine = if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path).to_owned();
            if path.is_empty() || path == ":memory:" {
                return Err(Error::UnsupportedUrl(redact(url)));
            }
            let slot = announcer.clone();
            let opened =
                tokio::task::spawn_blocking(move || db::Lite::open(&path, SQLITE_READERS, slot))
                    .await
                    .map_err(|e| Error::Corrupt(format!("cannot open SQLite: {e}")))??;
            Engine::Sqlite(opened)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_secs(30))
                .max_connections(16)
                .connect(url)
                .await?;
            Engine::Postgres(pool, announcer.clone())
        } else {
            return Err(Error::UnsupportedUrl(redact(url)));
        };
        Ok(Self {
            engine: Arc::new(engine),
            url: url.to_owned(),
            hooks: Arc::new(events::HookCache::default()),
            announcer,
            routes: Arc::default(),
        })
    }

    /// Sets who hears of every committed unit of work (its conversation,
    /// messages and events), in commit order, right after the commit and
    /// before the unit's caller hears of its result. Once; later calls are
    /// ignored. The callback must not block: it runs on the SQLite writer.
    pub fn announce_to(&self, announce: impl Fn(Announcement) + Send + Sync + 'static) {
        let _ = self.announcer.set(Arc::new(announce));
    }

    /// Applies the migrations for this backend; safe to run on every start.
    /// SQLite's are applied through sqlx, which keeps their record, on a
    /// connection of their own.
    pub async fn migrate(&self) -> Result<()> {
        match &*self.engine {
            Engine::Sqlite(_) => {
                use sqlx::Connection;
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await?;
                SQLITE_MIGRATIONS.run(&mut conn).await?;
                conn.close().await?;
            }
            Engine::Postgres(pool, _) => POSTGRES_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.engine.backend()
    }

    /// The URL this store was opened with (for a LISTEN connection); may hold a password.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers once the database does.
    pub async fn ping(&self) -> Result<()> {
        self.read(|c| Box::pin(async move { db::query("SELECT 1").execute(c).await.map(|_| ()) }))
            .await
    }

    /// Lets queued writes finish and closes the database.
    pub async fn close(&self) {
        match &*self.engine {
            Engine::Sqlite(lite) => lite.close().await,
            Engine::Postgres(pool, _) => pool.close().await,
        }
    }

    /// A read, on a reader (SQLite) or a pooled connection (PostgreSQL).
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.engine.read(Box::new(op)).await
    }

    /// A write: queued for the writer (SQLite) or in a transaction of its
    /// own (PostgreSQL). Its result comes back once it committed.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        self.engine.write(Box::new(op)).await
    }

    pub(crate) async fn write_all<T: Send + 'static>(&self, ops: Vec<Op<T>>) -> Vec<Result<T>> {
        self.engine.write_all(ops).await
    }
}

/// Hides the password in a database URL before it is shown anywhere.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A fresh opaque id: a UUIDv7, so that ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_hides_only_the_password() {
        assert_eq!(
            super::redact("postgres://baton:s3cret@db:5432/baton"),
            "postgres://baton:***@db:5432/baton"
        );
        assert_eq!(
            super::redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
    }
}
