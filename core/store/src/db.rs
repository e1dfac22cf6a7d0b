//! The two database engines behind one way of writing a query.
//!
//! Every store operation is one async function over `&mut dyn Conn`, with
//! one SQL text per query (placeholders `$1, $2, …` in ascending order of
//! first use, which SQLite and PostgreSQL read alike). It runs on:
//!
//! - **SQLite**, through rusqlite on threads of our own: one writer thread
//!   owns the only connection that writes, takes every queued write at once
//!   and commits them together (group commit: one transaction per batch, a
//!   savepoint per operation, so a failing one fails alone); reader threads
//!   share the reads. A statement costs a microsecond or two there, against
//!   some 45 µs through an async driver that hops threads for each one, and
//!   no writer ever waits in SQLite's busy handler for another.
//! - **PostgreSQL**, through sqlx: each operation on a pooled connection,
//!   writes in a transaction of their own, many at once.
//!
//! On SQLite an operation's future never waits on anything but its
//! connection, whose answers are immediate, so the thread runs it to its end
//! with a single poll; an operation that did wait would be refused (an error,
//! not a hang).

use crate::{Announcement, Backend, Error, Result};
use futures_util::future::BoxFuture;
use std::borrow::Cow;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A value bound to a query or read from a row. Nulls keep their type, so
/// that PostgreSQL knows what a `NULL` parameter is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Val {
    Int(i64),
    Text(String),
    NullInt,
    NullText,
}

impl From<i64> for Val {
    fn from(v: i64) -> Self {
        Val::Int(v)
    }
}
impl From<bool> for Val {
    fn from(v: bool) -> Self {
        Val::Int(i64::from(v))
    }
}
impl From<&str> for Val {
    fn from(v: &str) -> Self {
        Val::Text(v.to_owned())
    }
}
impl From<String> for Val {
    fn from(v: String) -> Self {
        Val::Text(v)
    }
}
impl From<&String> for Val {
    fn from(v: &String) -> Self {
        Val::Text(v.clone())
    }
}
impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Self {
        v.map_or(Val::NullInt, Val::Int)
    }
}
impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Self {
        v.map_or(Val::NullText, |s| Val::Text(s.to_owned()))
    }
}
impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Self {
        v.map_or(Val::NullText, Val::Text)
    }
}
impl From<Option<&String>> for Val {
    fn from(v: Option<&String>) -> Self {
        v.map_or(Val::NullText, |s| Val::Text(s.clone()))
    }
}

/// A row, owned: column names (shared by the rows of one query) and values.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    names: Arc<[String]>,
    vals: Vec<Val>,
}

/// A type a column can be read as.
pub(crate) trait FromVal: Sized {
    fn from_val(v: &Val) -> Option<Self>;
}

impl FromVal for i64 {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
}
impl FromVal for String {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}
impl FromVal for bool {
    fn from_val(v: &Val) -> Option<Self> {
        i64::from_val(v).map(|i| i != 0)
    }
}
impl<T: FromVal> FromVal for Option<T> {
    fn from_val(v: &Val) -> Option<Self> {
        match v {
            Val::NullInt | Val::NullText => Some(None),
            other => T::from_val(other).map(Some),
        }
    }
}

impl Row {
    /// The column `name` as `T`; a missing column or another type is corrupt data.
    pub(crate) fn try_get<T: FromVal, N: AsRef<str>>(&self, name: N) -> Result<T> {
        let name = name.as_ref();
        let at = self
            .names
            .iter()
            .position(|n| n == name)
            .ok_or_else(|| Error::Corrupt(format!("no column `{name}` in the row")))?;
        T::from_val(&self.vals[at]).ok_or_else(|| {
            Error::Corrupt(format!(
                "column `{name}` holds {:?}, not the type asked for",
                self.vals[at]
            ))
        })
    }
}

/// What a statement did: its rows, and how many rows it changed.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    pub rows: Vec<Row>,
    pub affected: u64,
}

/// One database connection, in or out of a transaction.
pub(crate) trait Conn: Send + Sync {
    fn run<'a>(
        &'a mut self,
        sql: Cow<'static, str>,
        args: Vec<Val>,
    ) -> BoxFuture<'a, Result<Answer>>;

    fn backend(&self) -> Backend;

    /// Something to announce once (and if) the transaction commits. On
    /// SQLite the writer announces each batch's in commit order, before
    /// anyone hears of the results.
    fn announce(&mut self, what: Announcement);
}

/// Called with what each commit announced, in commit order.
pub(crate) type Announcer = Arc<dyn Fn(Announcement) + Send + Sync>;

/// The announcer, once the store's owner set one.
pub(crate) type AnnouncerSlot = Arc<std::sync::OnceLock<Announcer>>;

/// A query being built: `query(sql).bind(a).bind(b).fetch_all(c).await`.
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Val>,
}

pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

/// Where a query runs: on a connection (inside an operation), or on the
/// store itself, as an operation of one statement (a read goes to a reader,
/// anything else to the writer).
pub(crate) trait Exec<'a> {
    fn exec(self, sql: Cow<'static, str>, args: Vec<Val>) -> BoxFuture<'a, Result<Answer>>;
}

impl<'a, 'b> Exec<'a> for &'a mut (dyn Conn + 'b) {
    fn exec(self, sql: Cow<'static, str>, args: Vec<Val>) -> BoxFuture<'a, Result<Answer>> {
        self.run(sql, args)
    }
}

impl<'a> Exec<'a> for &'a crate::Store {
    fn exec(self, sql: Cow<'static, str>, args: Vec<Val>) -> BoxFuture<'a, Result<Answer>> {
        Box::pin(async move {
            if is_read(&sql) {
                self.read(move |c| c.run(sql, args)).await
            } else {
                self.write(move |c| c.run(sql, args)).await
            }
        })
    }
}

/// Whether a statement only reads.
fn is_read(sql: &str) -> bool {
    let head = sql.trim_start();
    head.len() >= 6 && head[..6].eq_ignore_ascii_case("SELECT")
}

impl Query {
    pub(crate) fn bind(mut self, v: impl Into<Val>) -> Self {
        self.args.push(v.into());
        self
    }

    /// Runs it; how many rows it changed.
    pub(crate) async fn execute<'a>(self, on: impl Exec<'a>) -> Result<u64> {
        Ok(on.exec(self.sql, self.args).await?.affected)
    }

    pub(crate) async fn fetch_all<'a>(self, on: impl Exec<'a>) -> Result<Vec<Row>> {
        Ok(on.exec(self.sql, self.args).await?.rows)
    }

    pub(crate) async fn fetch_optional<'a>(self, on: impl Exec<'a>) -> Result<Option<Row>> {
        Ok(on.exec(self.sql, self.args).await?.rows.into_iter().next())
    }

    pub(crate) async fn fetch_one<'a>(self, on: impl Exec<'a>) -> Result<Row> {
        let sql = self.sql.clone();
        self.fetch_optional(on)
            .await?
            .ok_or_else(|| Error::Corrupt(format!("no row from `{sql}`")))
    }
}

/// An operation: an async function of a connection. `'static`, because on
/// SQLite it runs on another thread.
pub(crate) type Op<T> =
    Box<dyn for<'c> FnOnce(&'c mut dyn Conn) -> BoxFuture<'c, Result<T>> + Send + 'static>;

// ----- SQLite -------------------------------------------------------------

/// A rusqlite connection as a [`Conn`]. Its futures are ready at once. The
/// connection sits in a mutex only so that the futures that hold it are
/// `Send` (as PostgreSQL's must be); one thread ever uses it.
struct LiteConn<'a> {
    conn: &'a Mutex<rusqlite::Connection>,
    announced: Vec<Announcement>,
}

impl<'a> LiteConn<'a> {
    fn new(conn: &'a Mutex<rusqlite::Connection>) -> Self {
        Self {
            conn,
            announced: Vec::new(),
        }
    }
}

impl Conn for LiteConn<'_> {
    fn run<'a>(
        &'a mut self,
        sql: Cow<'static, str>,
        args: Vec<Val>,
    ) -> BoxFuture<'a, Result<Answer>> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let answer = lite_run(&conn, &sql, &args);
        Box::pin(std::future::ready(answer))
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn announce(&mut self, what: Announcement) {
        self.announced.push(what);
    }
}

fn lite_run(conn: &rusqlite::Connection, sql: &str, args: &[Val]) -> Result<Answer> {
    use rusqlite::types::{Null, ValueRef};
    let mut stmt = conn.prepare_cached(sql).map_err(lite)?;
    for (i, v) in args.iter().enumerate() {
        let at = i + 1;
        match v {
            Val::Int(n) => stmt.raw_bind_parameter(at, n),
            Val::Text(s) => stmt.raw_bind_parameter(at, s),
            Val::NullInt | Val::NullText => stmt.raw_bind_parameter(at, Null),
        }
        .map_err(lite)?;
    }
    if stmt.column_count() == 0 {
        let affected = stmt.raw_execute().map_err(lite)?;
        return Ok(Answer {
            rows: Vec::new(),
            affected: affected as u64,
        });
    }
    let names: Arc<[String]> = stmt.column_names().into_iter().map(str::to_owned).collect();
    let width = names.len();
    let mut rows = Vec::new();
    let mut cursor = stmt.raw_query();
    while let Some(row) = cursor.next().map_err(lite)? {
        let mut vals = Vec::with_capacity(width);
        for i in 0..width {
            vals.push(match row.get_ref(i).map_err(lite)? {
                ValueRef::Null => Val::NullText,
                ValueRef::Integer(n) => Val::Int(n),
                ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Real(r) => Val::Int(r as i64),
                ValueRef::Blob(b) => Val::Text(String::from_utf8_lossy(b).into_owned()),
            });
        }
        rows.push(Row {
            names: names.clone(),
            vals,
        });
    }
    drop(cursor);
    let affected = conn.changes();
    Ok(Answer { rows, affected })
}

/// A rusqlite error, mapped to the store's (a unique key is a conflict).
fn lite(e: rusqlite::Error) -> Error {
    Error::Sqlite(e.to_string(), unique_violation_lite(&e))
}

fn unique_violation_lite(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Runs an operation's future with one poll: on SQLite it never waits.
fn run_now<T>(fut: BoxFuture<'_, Result<T>>) -> Result<T> {
    let mut fut = fut;
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(r) => r,
        std::task::Poll::Pending => Err(Error::Corrupt(
            "a SQLite operation waited on something other than its connection".into(),
        )),
    }
}

/// What the writer thread is given: the operation, run inside the batch's
/// transaction, says whether it failed (its savepoint is rolled back) and
/// returns what to do once the batch committed (or failed to).
type WriteJob =
    Box<dyn FnOnce(&Mutex<rusqlite::Connection>) -> (bool, Vec<Announcement>, Settle) + Send>;
type Settle = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;

enum ToWriter {
    /// Jobs that must share one batch (a test, or work that belongs together).
    Jobs(Vec<WriteJob>),
    /// Finish what is queued, then stop.
    Close(tokio::sync::oneshot::Sender<()>),
}

type ReadJob = Box<dyn FnOnce(&Mutex<rusqlite::Connection>) + Send>;

/// The SQLite engine: the writer thread and the reader threads.
pub(crate) struct Lite {
    writer: Mutex<mpsc::Sender<ToWriter>>,
    readers: Mutex<mpsc::Sender<Option<ReadJob>>>,
    reader_count: usize,
}

/// The most operations one commit takes.
const MAX_BATCH: usize = 512;

fn open_lite(path: &str) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(path).map_err(lite)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
         PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 30000;",
    )
    .map_err(lite)?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

impl Lite {
    /// Opens the database file at `path` with one writer and `readers` reader threads.
    pub(crate) fn open(path: &str, readers: usize, announcer: AnnouncerSlot) -> Result<Self> {
        let writer_conn = open_lite(path)?;
        // Checkpoints (copying the WAL back into the database, with its
        // fsync) run on their own thread, not between the writer's commits;
        // the writer keeps 16 MiB of pages (the default is 2) so that the
        // tables' hot pages stay in its cache, and its savepoint journals in
        // memory, not in temporary files.
        writer_conn
            .execute_batch(
                "PRAGMA wal_autocheckpoint = 0; PRAGMA cache_size = -16384; \
                 PRAGMA temp_store = MEMORY",
            )
            .map_err(lite)?;
        let dirty = Arc::new(Checkpoints::default());
        let checkpoint_conn = open_lite(path)?;
        let for_checkpoints = dirty.clone();
        std::thread::Builder::new()
            .name("baton-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, for_checkpoints))
            .map_err(|e| Error::Corrupt(format!("cannot start the SQLite checkpointer: {e}")))?;
        let (wtx, wrx) = mpsc::channel::<ToWriter>();
        std::thread::Builder::new()
            .name("baton-sqlite-writer".into())
            .spawn(move || writer_loop(writer_conn, wrx, announcer, dirty))
            .map_err(|e| Error::Corrupt(format!("cannot start the SQLite writer: {e}")))?;
        let (rtx, rrx) = mpsc::channel::<Option<ReadJob>>();
        let rrx = Arc::new(Mutex::new(rrx));
        let reader_count = readers.max(1);
        for n in 0..reader_count {
            let conn = open_lite(path)?;
            let rrx = rrx.clone();
            std::thread::Builder::new()
                .name(format!("baton-sqlite-reader-{n}"))
                .spawn(move || reader_loop(conn, rrx))
                .map_err(|e| Error::Corrupt(format!("cannot start a SQLite reader: {e}")))?;
        }
        Ok(Self {
            writer: Mutex::new(wtx),
            readers: Mutex::new(rtx),
            reader_count,
        })
    }

    pub(crate) async fn read<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let mut c = LiteConn::new(conn);
            let _ = tx.send(run_now(op(&mut c)));
        });
        self.readers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Some(job))
            .map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Runs the operations in one batch, each in its own savepoint; the
    /// results come back once the batch committed.
    pub(crate) async fn write_all<T: Send + 'static>(&self, ops: Vec<Op<T>>) -> Vec<Result<T>> {
        let mut receivers = Vec::with_capacity(ops.len());
        let mut jobs: Vec<WriteJob> = Vec::with_capacity(ops.len());
        for op in ops {
            let (tx, rx) = tokio::sync::oneshot::channel();
            receivers.push(rx);
            jobs.push(Box::new(move |conn| {
                let mut c = LiteConn::new(conn);
                let result = run_now(op(&mut c));
                let announced = std::mem::take(&mut c.announced);
                let failed = result.is_err();
                let settle: Settle = Box::new(move |committed| {
                    let _ = tx.send(match committed {
                        Ok(()) => result,
                        Err(why) => Err(Error::Sqlite(why, false)),
                    });
                });
                (failed, announced, settle)
            }));
        }
        let sent = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(ToWriter::Jobs(jobs))
            .is_ok();
        let mut out = Vec::with_capacity(receivers.len());
        for rx in receivers {
            out.push(match rx.await {
                Ok(r) if sent => r,
                _ => Err(closed()),
            });
        }
        out
    }

    /// Lets queued writes finish, then stops the threads.
    pub(crate) async fn close(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sent = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(ToWriter::Close(tx));
        if sent.is_ok() {
            let _ = rx.await;
        }
        let readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..self.reader_count {
            let _ = readers.send(None);
        }
    }
}

fn closed() -> Error {
    Error::Sqlite(
        "the write was not done: the database is closed or busy".into(),
        false,
    )
}

fn reader_loop(conn: rusqlite::Connection, jobs: Arc<Mutex<mpsc::Receiver<Option<ReadJob>>>>) {
    let conn = Mutex::new(conn);
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        match job {
            Ok(Some(job)) => job(&conn),
            Ok(None) | Err(_) => return,
        }
    }
}

/// Commits since the last checkpoint and whether the writer stopped, and
/// the signal that either changed.
#[derive(Default)]
struct Checkpoints {
    state: Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
}

/// Commits between checkpoints before the checkpointer wakes early (the
/// WAL otherwise grows until the next tick).
const CHECKPOINT_EVERY: u64 = 256;

/// The checkpointer: a passive checkpoint (it never blocks the writer) a
/// quarter of a second after the first commit since the last one, or
/// sooner after many commits. It ends when the writer stops; the writer's
/// close takes the last checkpoint itself.
fn checkpoint_loop(conn: rusqlite::Connection, dirty: Arc<Checkpoints>) {
    loop {
        let stopped = {
            let guard = dirty.state.lock().unwrap_or_else(|p| p.into_inner());
            // Asleep while nothing is written ...
            let guard = dirty
                .wake
                .wait_while(guard, |(commits, stopped)| *commits == 0 && !*stopped)
                .unwrap_or_else(|p| p.into_inner());
            // ... then a quarter of a second for more, or until there are many.
            let (mut guard, _) = dirty
                .wake
                .wait_timeout_while(guard, Duration::from_millis(250), |(commits, stopped)| {
                    *commits < CHECKPOINT_EVERY && !*stopped
                })
                .unwrap_or_else(|p| p.into_inner());
            guard.0 = 0;
            guard.1
        };
        if stopped {
            return;
        }
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "a SQLite checkpoint failed");
        }
    }
}

fn writer_loop(
    conn: rusqlite::Connection,
    rx: mpsc::Receiver<ToWriter>,
    announcer: AnnouncerSlot,
    checkpoints: Arc<Checkpoints>,
) {
    let conn = Mutex::new(conn);
    let mut closing: Option<tokio::sync::oneshot::Sender<()>> = None;
    while closing.is_none() {
        let Ok(first) = rx.recv() else { break };
        let mut batch: Vec<WriteJob> = Vec::new();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Jobs(jobs) => batch.extend(jobs),
                ToWriter::Close(done) => closing = Some(done),
            }
            if batch.len() < MAX_BATCH && closing.is_none() {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(&conn, batch, &announcer);
            let mut s = checkpoints.state.lock().unwrap_or_else(|p| p.into_inner());
            s.0 += 1;
            if s.0 == 1 || s.0 >= CHECKPOINT_EVERY {
                checkpoints.wake.notify_one();
            }
        }
    }
    {
        let mut s = checkpoints.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 = true;
        checkpoints.wake.notify_one();
    }
    if let Some(done) = closing {
        let c = conn.lock().unwrap_or_else(|p| p.into_inner());
        let _ = c.execute_batch("PRAGMA wal_checkpoint(PASSIVE)");
        drop(c);
        let _ = done.send(());
    }
}

/// Runs one statement of the batch's own bookkeeping.
fn batch_sql(conn: &Mutex<rusqlite::Connection>, sql: &str) -> rusqlite::Result<()> {
    let c = conn.lock().unwrap_or_else(|p| p.into_inner());
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// One transaction for the whole batch, a savepoint per operation: a failing
/// operation is rolled back alone and the others commit together. A batch
/// of one needs no savepoint (SQLite copies every page an operation touches
/// into the savepoint's journal first): its failure rolls back everything.
fn commit_batch(
    conn: &Mutex<rusqlite::Connection>,
    batch: Vec<WriteJob>,
    announcer: &AnnouncerSlot,
) {
    if let Err(e) = batch_sql(conn, "BEGIN IMMEDIATE") {
        // Another process holds the database longer than the busy timeout.
        // The jobs are dropped unrun: each caller hears the write was not done.
        tracing::error!(error = %e, jobs = batch.len(), "cannot start a SQLite write");
        return;
    }
    let alone = batch.len() == 1;
    let mut settles = Vec::with_capacity(batch.len());
    let mut announced = Vec::new();
    let mut any_written = false;
    for job in batch {
        if !alone && let Err(e) = batch_sql(conn, "SAVEPOINT op") {
            tracing::error!(error = %e, "cannot take a savepoint");
        }
        let (failed, said, settle) = job(conn);
        if !failed {
            announced.extend(said);
            any_written = true;
        }
        if !alone {
            let end = if failed {
                batch_sql(conn, "ROLLBACK TO op").and_then(|()| batch_sql(conn, "RELEASE op"))
            } else {
                batch_sql(conn, "RELEASE op")
            };
            if let Err(e) = end {
                tracing::error!(error = %e, "cannot end a savepoint");
            }
        }
        settles.push(settle);
    }
    let committed = if any_written {
        batch_sql(conn, "COMMIT").map_err(|e| format!("the write could not be committed: {e}"))
    } else {
        // Every operation failed: nothing to keep, and each caller hears its
        // own error.
        let _ = batch_sql(conn, "ROLLBACK");
        Ok(())
    };
    if committed.is_err() {
        let _ = batch_sql(conn, "ROLLBACK");
    } else if let Some(announce) = announcer.get() {
        for what in announced {
            announce(what);
        }
    }
    for settle in settles {
        settle(committed.clone());
    }
}

// ----- PostgreSQL ---------------------------------------------------------

/// A sqlx PostgreSQL connection as a [`Conn`].
pub(crate) struct PgConn<'a> {
    conn: &'a mut sqlx::PgConnection,
    announced: Vec<Announcement>,
}

impl<'a> PgConn<'a> {
    pub(crate) fn new(conn: &'a mut sqlx::PgConnection) -> Self {
        Self {
            conn,
            announced: Vec::new(),
        }
    }
}

impl Conn for PgConn<'_> {
    fn run<'a>(
        &'a mut self,
        sql: Cow<'static, str>,
        args: Vec<Val>,
    ) -> BoxFuture<'a, Result<Answer>> {
        Box::pin(async move {
            let sql_text = sql.clone();
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in args {
                q = match v {
                    Val::Int(n) => q.bind(n),
                    Val::Text(s) => q.bind(s),
                    Val::NullInt => q.bind(None::<i64>),
                    Val::NullText => q.bind(None::<String>),
                };
            }
            if !returns_rows(&sql_text) {
                let done = q.execute(&mut *self.conn).await?;
                return Ok(Answer {
                    rows: Vec::new(),
                    affected: done.rows_affected(),
                });
            }
            let found = q.fetch_all(&mut *self.conn).await?;
            let names: Arc<[String]> = match found.first() {
                Some(row) => {
                    use sqlx::{Column, Row as _};
                    row.columns().iter().map(|c| c.name().to_owned()).collect()
                }
                None => Arc::from(Vec::new()),
            };
            let rows = found
                .iter()
                .map(|r| pg_row(r, names.clone()))
                .collect::<Result<Vec<_>>>()?;
            let affected = rows.len() as u64;
            Ok(Answer { rows, affected })
        })
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn announce(&mut self, what: Announcement) {
        self.announced.push(what);
    }
}

/// Whether a statement answers with rows (a query, or a write with
/// `RETURNING`); the others are asked how many rows they changed.
fn returns_rows(sql: &str) -> bool {
    let head = sql.trim_start();
    let starts = |w: &str| head.len() >= w.len() && head[..w.len()].eq_ignore_ascii_case(w);
    starts("SELECT") || starts("WITH") || sql.contains("RETURNING")
}

fn pg_row(row: &sqlx::postgres::PgRow, names: Arc<[String]>) -> Result<Row> {
    use sqlx::{Column, Row as _, TypeInfo};
    let mut vals = Vec::with_capacity(names.len());
    for (i, col) in row.columns().iter().enumerate() {
        let v = match col.type_info().name() {
            "INT8" => row.try_get::<Option<i64>, _>(i)?.into(),
            "INT4" => row.try_get::<Option<i32>, _>(i)?.map(i64::from).into(),
            "INT2" => row.try_get::<Option<i16>, _>(i)?.map(i64::from).into(),
            "BOOL" => row.try_get::<Option<bool>, _>(i)?.map(i64::from).into(),
            "VOID" => Val::NullText,
            _ => row.try_get::<Option<String>, _>(i)?.into(),
        };
        vals.push(v);
    }
    Ok(Row { names, vals })
}

/// The engine behind a store.
pub(crate) enum Engine {
    Sqlite(Lite),
    Postgres(sqlx::PgPool, AnnouncerSlot),
}

impl Engine {
    pub(crate) fn backend(&self) -> Backend {
        match self {
            Engine::Sqlite(_) => Backend::Sqlite,
            Engine::Postgres(..) => Backend::Postgres,
        }
    }

    pub(crate) async fn read<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        match self {
            Engine::Sqlite(lite) => lite.read(op).await,
            Engine::Postgres(pool, _) => {
                let mut conn = pool.acquire().await?;
                let mut pc = PgConn::new(&mut conn);
                op(&mut pc).await
            }
        }
    }

    pub(crate) async fn write<T: Send + 'static>(&self, op: Op<T>) -> Result<T> {
        self.write_all(vec![op])
            .await
            .pop()
            .unwrap_or_else(|| Err(closed()))
    }

    /// Runs the operations together: on SQLite in one batch, on PostgreSQL
    /// in one transaction; each in a savepoint, so a failing one fails alone.
    pub(crate) async fn write_all<T: Send + 'static>(&self, ops: Vec<Op<T>>) -> Vec<Result<T>> {
        match self {
            Engine::Sqlite(lite) => lite.write_all(ops).await,
            Engine::Postgres(pool, announcer) => pg_write_all(pool, announcer, ops).await,
        }
    }
}

async fn pg_write_all<T: Send + 'static>(
    pool: &sqlx::PgPool,
    announcer: &AnnouncerSlot,
    ops: Vec<Op<T>>,
) -> Vec<Result<T>> {
    use sqlx::Connection;
    let n = ops.len();
    let fail_all = |e: &Error| {
        (0..n)
            .map(|_| Err(Error::Postgres(e.to_string())))
            .collect()
    };
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => return fail_all(&Error::from(e)),
    };
    let mut tx = match conn.begin().await {
        Ok(tx) => tx,
        Err(e) => return fail_all(&Error::from(e)),
    };
    let mut results = Vec::with_capacity(n);
    let mut announced = Vec::new();
    if n == 1 {
        // One operation: its own transaction, no savepoint needed.
        if let Some(op) = ops.into_iter().next() {
            let mut pc = PgConn::new(&mut tx);
            let result = op(&mut pc).await;
            if result.is_ok() {
                announced = pc.announced;
            }
            results.push(result);
        }
    } else {
        for op in ops {
            if let Err(e) = sqlx::query("SAVEPOINT op").execute(&mut *tx).await {
                results.push(Err(e.into()));
                continue;
            }
            let result = {
                let mut pc = PgConn::new(&mut tx);
                let result = op(&mut pc).await;
                if result.is_ok() {
                    announced.extend(pc.announced);
                }
                result
            };
            let end = if result.is_err() {
                sqlx::query("ROLLBACK TO SAVEPOINT op")
                    .execute(&mut *tx)
                    .await
            } else {
                sqlx::query("RELEASE SAVEPOINT op").execute(&mut *tx).await
            };
            results.push(match end {
                Ok(_) => result,
                Err(e) => Err(e.into()),
            });
        }
    }
    let all_failed = results.iter().all(Result::is_err);
    let committed = if all_failed {
        tx.rollback().await.map_err(Error::from)
    } else {
        tx.commit().await.map_err(Error::from)
    };
    match committed {
        Ok(()) => {
            if let Some(announce) = announcer.get() {
                for what in announced {
                    announce(what);
                }
            }
            results
        }
        Err(e) if !all_failed => fail_all(&e),
        Err(_) => results,
    }
}
