//! The message pipeline benchmark: a visitor message goes in over the widget
//! WebSocket (or the widget's HTTP POST), is stored (SQLite, or PostgreSQL
//! with `BENCH_BACKEND=postgres`), the bot answers it, and the bot's reply
//! comes back out over the visitor's WebSocket.
//!
//! What it measures: for 1, 100 and 1,000 concurrent visitors, each running
//! closed-loop (send one message, wait for the bot frame that answers it,
//! repeat), the messages per second of the phase (messages ÷ wall time) and
//! the p50/p99 latency from sending a message to receiving the bot's reply.
//! In the same run a bare axum WebSocket echo server is driven by the same
//! client loop, with the same frames and the same concurrency: it is the
//! ceiling, and the results compare Baton with it (throughput ÷ echo
//! throughput, latency ÷ echo latency).
//!
//! Run it with:
//!
//! ```text
//! ulimit -n 4096
//! cargo bench -p baton-tests --bench pipeline
//! ```
//!
//! The `ulimit` matters: both ends of every socket live in this process, so
//! 1,000 visitors hold about 2,100 file descriptors, more than the usual soft
//! limit of 1,024 (`BENCH_IDLE=10000` needs `ulimit -n 11000`). Unsafe code is forbidden in this workspace, so the bench
//! cannot raise the limit itself; it warns up front and explains the failure
//! if connecting runs out of descriptors.
//!
//! Figures are printed, never asserted: timings depend on the machine, and a
//! benchmark that fails on a slow laptop tells nobody anything. The run ends
//! with a Markdown table meant to be pasted into the README, followed by the
//! process's peak RSS.
//!
//! Knobs, all optional environment variables:
//! - `BENCH_SCALE` (default `1`): multiplies every message count (by default
//!   1 visitor × 2,000 messages, 100 × 20 and 1,000 × 3); `0.1` is a quick
//!   smoke run, `5` a steadier measurement.
//! - `BENCH_LEVELS` (default `1,100,1000`): the concurrency levels.
//! - `BENCH_WARMUP` (default `100`): unmeasured messages sent to each server
//!   before the first phase, so that caches and pools are warm.
//! - `BENCH_REPLY_TIMEOUT_SECS` (default `60`): how long one reply may take
//!   before its phase is reported as failed.
//! - `BENCH_BACKEND` (default `sqlite`): `postgres` runs Baton on a
//!   throw-away database on the server in `BATON_TEST_POSTGRES_URL`.
//! - `BENCH_POST_LEVELS` (default `1,100`): the concurrency levels at which
//!   visitors send through `POST /api/v1/widget/messages`, the path the
//!   widget itself uses, and read the reply from their WebSocket; empty
//!   skips them.
//! - `BENCH_IDLE` (default `0`): after the phases, a separate Baton process
//!   (this binary, started again as a bare server) is measured idle and then
//!   holding this many idle widget WebSockets; `10000` is the figure the
//!   README reports. Its resident set (`VmRSS`) is read from `/proc`, so the
//!   clients' memory is not counted. The idle server is always measured.
//!
//! The server, the echo server and every client share this process and its
//! cores, so the absolute figures are conservative; the ratios compare like
//! with like, because the echo phases pay the same client costs.

use anyhow::{Context, Result, anyhow, bail};
use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use baton_tests::{Backend, Server, TestDb, Ws};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::BufRead;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Barrier, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

/// Messages a level sends in total (before `BENCH_SCALE`), so that every
/// level takes a comparable number of samples: 1 × 2,000 and 100 × 20.
const BASE_TOTAL: usize = 2_000;

/// At 1,000 visitors `BASE_TOTAL` would leave two messages each; three keeps
/// a visitor's first message from dominating its samples.
const MIN_PER_VISITOR: usize = 3;

/// Sessions and sockets are opened this many at a time: opening 1,000 at
/// once would measure the accept backlog rather than set the bench up.
const SETUP_CONCURRENCY: usize = 50;

/// How long creating one session or opening one socket may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// `EMFILE` on Linux: the process has run out of file descriptors.
const EMFILE: i32 = 24;

/// No greeting, so that a new socket's history is empty and nothing but the
/// replies reaches the timed loop; no trigger that would hand the bench's
/// made-up messages to a human (they are "not understood"), so the bot answers
/// every one through the knowledge base; rate limits far above what the bench
/// sends, because it measures the pipeline, not the limiter's refusals.
const BATON_CONFIG: &str = baton_tests::BENCH_CONFIG;

/// Set in the environment of the child process that serves the idle
/// measurement: it starts a server, prints its address and waits for its
/// standard input to close.
const CHILD_ENV: &str = "BENCH_IDLE_SERVER";

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    if std::env::var_os(CHILD_ENV).is_some() {
        return serve_idle_child(settings.backend);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    let outcome = runtime.block_on(run(&settings));
    // The server's background work (timers, the SQLite pool) must not keep
    // the process alive once the figures are printed.
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome
}

/// What to run, from the environment.
struct Settings {
    scale: f64,
    levels: Vec<usize>,
    post_levels: Vec<usize>,
    warmup: usize,
    reply_timeout: Duration,
    backend: Backend,
    idle: usize,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let scale: f64 = env_or("BENCH_SCALE", 1.0)?;
        if !(scale.is_finite() && scale > 0.0) {
            bail!("BENCH_SCALE must be a positive number, got {scale}");
        }
        let levels = levels_from_env("BENCH_LEVELS", vec![1, 100, 1_000], false)?;
        let post_levels = levels_from_env("BENCH_POST_LEVELS", vec![1, 100], true)?;
        let reply_timeout_secs: u64 = env_or("BENCH_REPLY_TIMEOUT_SECS", 60)?;
        let backend = match std::env::var("BENCH_BACKEND").as_deref().map(str::trim) {
            Err(_) | Ok("") | Ok("sqlite") => Backend::Sqlite,
            Ok("postgres") => {
                if std::env::var("BATON_TEST_POSTGRES_URL").is_err() {
                    bail!(
                        "BENCH_BACKEND=postgres needs BATON_TEST_POSTGRES_URL, like \
                         postgres://postgres@127.0.0.1:5432/postgres"
                    );
                }
                Backend::Postgres
            }
            Ok(other) => bail!("BENCH_BACKEND must be sqlite or postgres, got `{other}`"),
        };
        Ok(Self {
            scale,
            levels,
            post_levels,
            warmup: env_or("BENCH_WARMUP", 100)?,
            reply_timeout: Duration::from_secs(reply_timeout_secs.max(1)),
            backend,
            idle: env_or("BENCH_IDLE", 0)?,
        })
    }

    /// Messages each visitor sends at this level.
    fn per_visitor(&self, visitors: usize) -> usize {
        let base = (BASE_TOTAL / visitors).max(MIN_PER_VISITOR) as f64;
        ((base * self.scale).round() as usize).max(1)
    }
}

/// Positive whole numbers separated by commas; `empty_is_none` lets an
/// empty value switch the phases off.
fn levels_from_env(name: &str, default: Vec<usize>, empty_is_none: bool) -> Result<Vec<usize>> {
    match std::env::var(name) {
        Ok(text) if text.trim().is_empty() && empty_is_none => Ok(vec![]),
        Ok(text) if !text.trim().is_empty() => text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        anyhow!(
                            "{name} must be positive whole numbers separated by commas, \
                             like 1,100,1000; got `{text}`"
                        )
                    })
            })
            .collect(),
        _ => Ok(default),
    }
}

fn backend_label(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "SQLite",
        Backend::Postgres => "PostgreSQL",
    }
}

fn env_or<T>(name: &str, default: T) -> Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map_err(|e| anyhow!("{name}=`{text}` is not valid: {e}")),
        _ => Ok(default),
    }
}

/// Which server a phase drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Baton, the visitor sending over its WebSocket.
    Baton,
    /// Baton, the visitor sending with `POST /api/v1/widget/messages`.
    BatonPost,
    Echo,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Baton => "baton",
            Target::BatonPost => "post",
            Target::Echo => "echo",
        }
    }
}

/// One visitor's end: its socket, and for Baton its token.
struct Client {
    ws: Ws,
    token: Option<String>,
}

/// The figures of one measured phase.
#[derive(Clone, Copy, Debug)]
struct Stats {
    messages: usize,
    wall: Duration,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn new(mut latencies: Vec<Duration>, wall: Duration) -> Result<Self> {
        if latencies.is_empty() {
            bail!("no message was measured");
        }
        latencies.sort_unstable();
        let messages = latencies.len();
        Ok(Self {
            messages,
            wall,
            per_second: messages as f64 / wall.as_secs_f64().max(1e-9),
            p50: percentile(&latencies, 50.0),
            p99: percentile(&latencies, 99.0),
            max: latencies[messages - 1],
        })
    }
}

/// The nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One line of the final table; a phase that failed keeps its error.
struct Row {
    visitors: usize,
    per_visitor: usize,
    baton: Result<Stats, String>,
    echo: Result<Stats, String>,
    /// The POST path at this level, when it ran.
    post: Option<Result<Stats, String>>,
}

/// The separate server's memory: idle, and holding idle sockets.
struct Idle {
    idle_kib: u64,
    sockets: usize,
    with_sockets_kib: Option<u64>,
}

async fn run(settings: &Settings) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug (not representative: use `cargo bench`)"
    } else {
        "release"
    };
    let store = backend_label(settings.backend);
    println!("# Baton message pipeline benchmark");
    println!(
        "{store}, {cores} core(s), {profile} build; levels {:?}, POST levels {:?}; \
         BENCH_SCALE={}; warm-up {} message(s)",
        settings.levels, settings.post_levels, settings.scale, settings.warmup
    );
    if let Some(&most) = settings.levels.iter().chain(&settings.post_levels).max() {
        warn_if_fd_limit_low(most.max(settings.idle / 2));
    }

    let db = TestDb::new(settings.backend)
        .await
        .with_context(|| format!("cannot create the {store} database"))?;
    let server = Server::start(&db, BATON_CONFIG)
        .await
        .context("cannot start the Baton server")?;
    let base = server.base();
    let (echo_addr, echo_task) = start_echo_server().await?;
    println!("Baton on {base}, echo on ws://{echo_addr}/ws");

    if settings.warmup > 0 {
        for target in [Target::Baton, Target::Echo] {
            let sockets = connect(target, &base, echo_addr, 1)
                .await
                .map_err(explain_fd_exhaustion)
                .with_context(|| format!("the {} warm-up cannot connect", target.label()))?;
            run_phase(
                &base,
                sockets,
                target,
                settings.warmup,
                settings.reply_timeout,
            )
            .await
            .with_context(|| format!("the {} warm-up failed", target.label()))?;
        }
    }

    let mut levels = settings.levels.clone();
    for &l in &settings.post_levels {
        if !levels.contains(&l) {
            levels.push(l);
        }
    }
    levels.sort_unstable();
    let mut rows = Vec::with_capacity(levels.len());
    for visitors in levels {
        let per_visitor = settings.per_visitor(visitors);
        let mut row = Row {
            visitors,
            per_visitor,
            baton: Err("not run".to_owned()),
            echo: Err("not run".to_owned()),
            post: None,
        };
        let mut targets = vec![];
        if settings.levels.contains(&visitors) {
            targets.push(Target::Baton);
        }
        if settings.post_levels.contains(&visitors) {
            targets.push(Target::BatonPost);
        }
        targets.push(Target::Echo);
        for target in targets {
            let outcome = measure(target, &base, echo_addr, visitors, per_visitor, settings)
                .await
                .map_err(|e| {
                    eprintln!(
                        "error: {} with {visitors} visitor(s) failed: {e:#}",
                        target.label()
                    );
                    format!("{e:#}")
                });
            match target {
                Target::Baton => row.baton = outcome,
                Target::BatonPost => row.post = Some(outcome),
                Target::Echo => row.echo = outcome,
            }
        }
        rows.push(row);
    }

    drop(server);
    echo_task.abort();

    let idle = measure_idle(settings).await.map_err(|e| {
        eprintln!("error: the idle measurement failed: {e:#}");
        format!("{e:#}")
    });

    print_table(&rows, &idle, settings, cores, profile);
    let failed = rows
        .iter()
        .flat_map(|r| {
            [
                r.baton.is_err() && settings.levels.contains(&r.visitors),
                r.echo.is_err(),
                r.post.as_ref().is_some_and(Result::is_err),
            ]
        })
        .filter(|&failed| failed)
        .count()
        + usize::from(idle.is_err());
    if failed > 0 {
        bail!("{failed} phase(s) failed; the errors are printed above");
    }
    Ok(())
}

/// Connects, runs one timed phase and prints its figures as it finishes.
async fn measure(
    target: Target,
    base: &str,
    echo_addr: SocketAddr,
    visitors: usize,
    per_visitor: usize,
    settings: &Settings,
) -> Result<Stats> {
    let setup = Instant::now();
    let sockets = connect(target, base, echo_addr, visitors)
        .await
        .map_err(explain_fd_exhaustion)?;
    let setup = setup.elapsed();
    let (latencies, wall) = run_phase(base, sockets, target, per_visitor, settings.reply_timeout)
        .await
        .map_err(explain_fd_exhaustion)?;
    let stats = Stats::new(latencies, wall)?;
    println!(
        "{:>5} {visitors:>5} visitor(s) × {per_visitor:>4}: {:>6} msgs in {:>6.2} s = {:>8.0} msg/s; \
         p50 {}, p99 {}, max {} (setup {:.1} s)",
        target.label(),
        stats.messages,
        stats.wall.as_secs_f64(),
        stats.per_second,
        fmt_latency(stats.p50),
        fmt_latency(stats.p99),
        fmt_latency(stats.max),
        setup.as_secs_f64(),
    );
    Ok(stats)
}

/// Opens `n` ready sockets to the target before any clock starts.
async fn connect(
    target: Target,
    base: &str,
    echo_addr: SocketAddr,
    n: usize,
) -> Result<Vec<Client>> {
    match target {
        Target::Baton | Target::BatonPost => {
            // One HTTP client for all sessions, dropped before the phase so that
            // its pooled keep-alive connections do not hold descriptors.
            let http = reqwest::Client::new();
            let tokens = bounded(vec![(); n], |()| {
                let http = http.clone();
                let base = base.to_owned();
                async move {
                    within(
                        SETUP_TIMEOUT,
                        "creating a widget session",
                        create_session(&http, &base),
                    )
                    .await
                }
            })
            .await
            .context("cannot create the widget sessions")?;
            drop(http);
            let ws_base = base.replacen("http", "ws", 1);
            bounded(tokens, |token: String| {
                let url = format!("{ws_base}/api/v1/widget/ws?token={token}");
                async move {
                    let ws = within(
                        SETUP_TIMEOUT,
                        "opening a widget WebSocket",
                        open_widget(&url),
                    )
                    .await?;
                    Ok(Client {
                        ws,
                        token: Some(token),
                    })
                }
            })
            .await
            .context("cannot open the widget WebSockets")
        }
        Target::Echo => {
            let url = format!("ws://{echo_addr}/ws");
            bounded(vec![(); n], |()| {
                let url = url.clone();
                async move {
                    let ws = within(SETUP_TIMEOUT, "opening an echo WebSocket", open(&url)).await?;
                    Ok(Client { ws, token: None })
                }
            })
            .await
            .context("cannot open the echo WebSockets")
        }
    }
}

/// Runs `work` for every item, at most `SETUP_CONCURRENCY` at a time; the
/// results come back in completion order, which the bench does not care about.
async fn bounded<I, T, F, Fut>(items: Vec<I>, work: F) -> Result<Vec<T>>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .context("the setup semaphore closed")?;
        let job = work(item);
        tasks.spawn(async move {
            let _permit = permit;
            job.await
        });
        // Collect finished work as it comes, so that a failure stops the setup
        // early instead of after every remaining item has been tried.
        while let Some(joined) = tasks.try_join_next() {
            out.push(joined.context("a setup task panicked")??);
        }
    }
    while let Some(joined) = tasks.join_next().await {
        out.push(joined.context("a setup task panicked")??);
    }
    Ok(out)
}

async fn within<T>(
    limit: Duration,
    what: &str,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow!(
            "{what} took longer than {} s (a full accept queue or too few file \
             descriptors look like this; try `ulimit -n 4096`)",
            limit.as_secs()
        )),
    }
}

/// Creates a widget session and returns its visitor token. The harness's
/// `VisitorClient` would keep one HTTP client (and its connections) per
/// visitor, which 1,000 visitors cannot afford in descriptors.
async fn create_session(http: &reqwest::Client, base: &str) -> Result<String> {
    let resp = http
        .post(format!("{base}/api/v1/widget/sessions"))
        .json(&json!({}))
        .send()
        .await
        .context("POST /api/v1/widget/sessions")?;
    let status = resp.status();
    if status != reqwest::StatusCode::CREATED {
        let body = resp.text().await.unwrap_or_default();
        bail!("POST /api/v1/widget/sessions answered {status}: {body}");
    }
    let body: Value = resp
        .json()
        .await
        .context("the new session's body is not JSON")?;
    baton_tests::str_at(&body, "/visitor_token")
}

async fn open(url: &str) -> Result<Ws> {
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .context("cannot open a WebSocket")?;
    Ok(ws)
}

/// Opens a widget socket and reads until its status frame: a new socket
/// replays the history first, then sends the status, and none of that may
/// land in the timed loop.
async fn open_widget(url: &str) -> Result<Ws> {
    let mut ws = open(url).await?;
    loop {
        let frame = next_json(&mut ws).await?;
        match frame["type"].as_str() {
            Some("status") => return Ok(ws),
            Some("error") => bail!("the widget socket refused the visitor: {frame}"),
            _ => {}
        }
    }
}

/// The next text frame, as JSON; pings are answered by tungstenite itself.
async fn next_json(ws: &mut Ws) -> Result<Value> {
    loop {
        match ws.next().await {
            None => bail!("the server closed the socket"),
            Some(Err(e)) => {
                return Err(anyhow::Error::new(e).context("cannot read from the socket"));
            }
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .with_context(|| format!("a frame is not JSON: {}", text.as_str()));
            }
            Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => {}
        }
    }
}

/// Runs every visitor closed-loop from one starting line; returns all
/// latencies and the wall time from the start to the last visitor's last reply.
async fn run_phase(
    base: &str,
    sockets: Vec<Client>,
    target: Target,
    per_visitor: usize,
    reply_timeout: Duration,
) -> Result<(Vec<Duration>, Duration)> {
    let visitors = sockets.len();
    // Every visitor waits here, so the clock starts once all are connected.
    let start_line = Arc::new(Barrier::new(visitors + 1));
    let mut tasks = JoinSet::new();
    // The POST path shares one HTTP client (and its keep-alive pool), as a
    // page's widgets behind one proxy would not, but one per visitor would
    // measure connection set-up instead.
    let http = reqwest::Client::new();
    for (visitor, client) in sockets.into_iter().enumerate() {
        let start_line = start_line.clone();
        let sender = match (target, &client.token) {
            (Target::BatonPost, Some(token)) => Sender::Post {
                http: http.clone(),
                url: format!("{base}/api/v1/widget/messages"),
                token: token.clone(),
            },
            _ => Sender::Socket,
        };
        tasks.spawn(async move {
            start_line.wait().await;
            drive(
                client.ws,
                sender,
                target,
                visitor,
                per_visitor,
                reply_timeout,
            )
            .await
        });
    }
    start_line.wait().await;
    let started = Instant::now();
    let mut latencies = Vec::with_capacity(visitors * per_visitor);
    let mut finished = started;
    // Returning early on the first failure drops the set, which aborts the rest.
    while let Some(joined) = tasks.join_next().await {
        let (samples, done) = joined.context("a visitor task panicked")??;
        latencies.extend(samples);
        finished = finished.max(done);
    }
    Ok((latencies, finished - started))
}

/// One visitor: send, wait for the answer, repeat. Returns its latencies and
/// when its last answer arrived (closing the socket is not part of the phase).
/// How a visitor sends.
enum Sender {
    Socket,
    Post {
        http: reqwest::Client,
        url: String,
        token: String,
    },
}

async fn drive(
    mut ws: Ws,
    sender: Sender,
    target: Target,
    visitor: usize,
    count: usize,
    reply_timeout: Duration,
) -> Result<(Vec<Duration>, Instant)> {
    let mut latencies = Vec::with_capacity(count);
    for i in 0..count {
        // The `;` ends the marker so that message 7's cannot match inside message 70's.
        let marker = format!("bench v{visitor} m{i};");
        let client_id = format!("bench-{visitor}-{i}");
        let sent = Instant::now();
        match &sender {
            Sender::Socket => {
                let frame =
                    json!({"type": "message", "text": marker, "client_id": client_id}).to_string();
                ws.send(Message::Text(frame.into()))
                    .await
                    .with_context(|| format!("visitor {visitor} cannot send message {i}"))?;
            }
            Sender::Post { http, url, token } => {
                let resp = http
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"text": marker, "client_id": client_id}))
                    .send()
                    .await
                    .with_context(|| format!("visitor {visitor} cannot post message {i}"))?;
                if resp.status() != reqwest::StatusCode::ACCEPTED {
                    let status = resp.status();
                    let body = resp.text().await.unwrap_or_default();
                    bail!("visitor {visitor}, message {i}: the POST answered {status}: {body}");
                }
            }
        }
        match tokio::time::timeout(reply_timeout, wait_reply(&mut ws, target, &marker)).await {
            Ok(outcome) => {
                outcome.with_context(|| format!("visitor {visitor}, message {i}"))?;
            }
            Err(_) => bail!(
                "visitor {visitor} got no reply to message {i} within {} s",
                reply_timeout.as_secs()
            ),
        }
        latencies.push(sent.elapsed());
    }
    let done = Instant::now();
    // Close politely so that the server ends its side before the next phase.
    let _ = ws.close(None).await;
    Ok((latencies, done))
}

/// Reads until the frame that answers `marker`. For Baton that is the bot's
/// message quoting it; should the bot stop quoting, any bot message after the
/// visitor's own one answers it, because a visitor has one message in flight.
async fn wait_reply(ws: &mut Ws, target: Target, marker: &str) -> Result<()> {
    let mut own_seq: Option<i64> = None;
    loop {
        let frame = next_json(ws).await?;
        match target {
            Target::Echo => {
                if frame["text"].as_str() == Some(marker) {
                    return Ok(());
                }
            }
            Target::Baton | Target::BatonPost => match frame["type"].as_str() {
                Some("error") => bail!("the server refused the message: {frame}"),
                Some("message") => {
                    let message = &frame["message"];
                    let text = message["text"].as_str().unwrap_or_default();
                    let seq = message["seq"].as_i64();
                    match message["sender"].as_str() {
                        Some("visitor") if text == marker => own_seq = seq,
                        Some("bot")
                            if text.contains(marker)
                                || own_seq.zip(seq).is_some_and(|(own, s)| s > own) =>
                        {
                            return Ok(());
                        }
                        _ => {}
                    }
                }
                _ => {}
            },
        }
    }
}

/// The ceiling: a bare axum WebSocket server that echoes every text frame.
async fn start_echo_server() -> Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let app = axum::Router::new().route("/ws", axum::routing::get(echo_upgrade));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind the echo server")?;
    let addr = listener
        .local_addr()
        .context("the echo server has no address")?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((addr, task))
}

async fn echo_upgrade(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(echo_socket)
}

async fn echo_socket(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let echo = matches!(message, AxumMessage::Text(_) | AxumMessage::Binary(_));
        if matches!(message, AxumMessage::Close(_)) || (echo && socket.send(message).await.is_err())
        {
            break;
        }
    }
}

/// Both ends of every socket are in this process, plus the database and a margin.
fn descriptors_needed(visitors: usize) -> u64 {
    2 * visitors as u64 + 100
}

fn warn_if_fd_limit_low(visitors: usize) {
    let needed = descriptors_needed(visitors);
    if let Some(limit) = open_file_limit()
        && limit < needed
    {
        eprintln!(
            "warning: the open-file limit is {limit}, but {visitors} visitors need about \
             {needed} descriptors (a client and a server socket each); run `ulimit -n 4096` \
             in this shell first, or the largest level will fail"
        );
    }
}

/// The soft limit on open files from `/proc/self/limits`; `None` when it is
/// unknown (not Linux) or unlimited.
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Adds the fix to an error caused by running out of file descriptors.
fn explain_fd_exhaustion(e: anyhow::Error) -> anyhow::Error {
    let exhausted = e.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            == Some(EMFILE)
            || cause.to_string().contains("Too many open files")
    });
    if exhausted {
        e.context(
            "Too many open files: this process ran out of file descriptors; run \
             `ulimit -n 4096` in this shell and start the bench again",
        )
    } else {
        e
    }
}

/// The process's peak resident set size (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn fmt_latency(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1_000.0 {
        format!("{micros:.0} µs")
    } else if micros < 10_000.0 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.1} ms", micros / 1e3)
    }
}

fn ratio(baton: Duration, echo: Duration) -> f64 {
    baton.as_secs_f64() / echo.as_secs_f64().max(1e-9)
}

fn stats_cells(stats: &Result<Stats, String>) -> [String; 3] {
    match stats {
        Ok(s) => [
            format!("{:.0}", s.per_second),
            fmt_latency(s.p50),
            fmt_latency(s.p99),
        ],
        Err(_) => ["failed".to_owned(), "–".to_owned(), "–".to_owned()],
    }
}

fn print_table(
    rows: &[Row],
    idle: &Result<Idle, String>,
    settings: &Settings,
    cores: usize,
    profile: &str,
) {
    let store = backend_label(settings.backend);
    println!();
    println!("### Message pipeline: widget WebSocket → {store} → bot → WebSocket");
    println!();
    println!(
        "| Visitors | Msgs each | Baton msg/s | Baton p50 | Baton p99 | Echo msg/s | Echo p50 \
         | Echo p99 | Throughput ÷ echo | p50 ÷ echo | p99 ÷ echo |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows
        .iter()
        .filter(|r| settings.levels.contains(&r.visitors))
    {
        let [b_rate, b_p50, b_p99] = stats_cells(&row.baton);
        let [e_rate, e_p50, e_p99] = stats_cells(&row.echo);
        let [r_rate, r_p50, r_p99] = ratio_cells(&row.baton, &row.echo);
        println!(
            "| {} | {} | {b_rate} | {b_p50} | {b_p99} | {e_rate} | {e_p50} | {e_p99} | {r_rate} \
             | {r_p50} | {r_p99} |",
            row.visitors, row.per_visitor
        );
    }
    println!();
    println!(
        "Each visitor runs closed-loop: it sends a message and waits for the bot's reply \
         before sending the next. msg/s is messages ÷ wall time of the phase; latency is \
         from sending a message to receiving the reply frame. Echo is a bare axum WebSocket \
         server echoing the same frames at the same concurrency: the ceiling. Throughput ÷ \
         echo is Baton's msg/s over the echo server's (1.000 would match it); the latency \
         columns are Baton's latency over the echo server's (3.0× = three times as long)."
    );
    let posts: Vec<&Row> = rows.iter().filter(|r| r.post.is_some()).collect();
    if !posts.is_empty() {
        println!();
        println!(
            "### The widget's HTTP path: POST /api/v1/widget/messages → {store} → bot → WebSocket"
        );
        println!();
        println!(
            "| Visitors | Msgs each | POST msg/s | POST p50 | POST p99 | Echo msg/s | Throughput ÷ echo |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for row in posts {
            let post = row.post.as_ref().expect("filtered on post");
            let [p_rate, p_p50, p_p99] = stats_cells(post);
            let [e_rate, _, _] = stats_cells(&row.echo);
            let [r_rate, _, _] = ratio_cells(post, &row.echo);
            println!(
                "| {} | {} | {p_rate} | {p_p50} | {p_p99} | {e_rate} | {r_rate} |",
                row.visitors, row.per_visitor
            );
        }
    }
    println!();
    match idle {
        Ok(idle) => {
            let mib = |kib: u64| format!("{:.0} MiB", kib as f64 / 1024.0);
            print!(
                "Separate server process ({store}): idle RSS {}",
                mib(idle.idle_kib)
            );
            match idle.with_sockets_kib {
                Some(kib) => println!(
                    "; with {} idle widget WebSockets {} ({:.1} KiB a socket).",
                    idle.sockets,
                    mib(kib),
                    kib.saturating_sub(idle.idle_kib) as f64 / idle.sockets.max(1) as f64
                ),
                None => println!(" (BENCH_IDLE=10000 adds idle widget WebSockets)."),
            }
        }
        Err(e) => println!("Separate server process: not measured ({e})."),
    }
    let rss = peak_rss_kib().map_or_else(
        || "unknown".to_owned(),
        |kib| format!("{:.0} MiB", kib as f64 / 1024.0),
    );
    println!();
    println!(
        "Measured with `cargo bench -p baton-tests --bench pipeline`: {store}, {cores} core(s), \
         {profile} build, server and clients in one process; peak RSS of the whole process \
         (VmHWM) {rss}."
    );
}

fn ratio_cells(baton: &Result<Stats, String>, echo: &Result<Stats, String>) -> [String; 3] {
    match (baton, echo) {
        (Ok(b), Ok(e)) => [
            format!("{:.3}", b.per_second / e.per_second.max(1e-9)),
            format!("{:.1}×", ratio(b.p50, e.p50)),
            format!("{:.1}×", ratio(b.p99, e.p99)),
        ],
        _ => ["–".to_owned(), "–".to_owned(), "–".to_owned()],
    }
}

/// Starts this binary again as a bare server and reads its memory, idle and
/// then holding `settings.idle` idle widget sockets.
async fn measure_idle(settings: &Settings) -> Result<Idle> {
    let exe = std::env::current_exe().context("cannot find this bench's binary")?;
    let mut child = tokio::process::Command::new(exe)
        .env(CHILD_ENV, "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start the idle server")?;
    let pid = child.id().context("the idle server has no pid")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let base = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .context("the idle server did not start within 60 s")??
        .context("the idle server ended before it served")?;
    // Let start-up work (migrations, first timers) settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_kib = rss_of(pid).context("cannot read the idle server's RSS")?;
    let mut with_sockets_kib = None;
    if settings.idle > 0 {
        let clients = connect(Target::Baton, &base, "127.0.0.1:9".parse()?, settings.idle)
            .await
            .map_err(explain_fd_exhaustion)
            .with_context(|| format!("cannot open {} idle widget sockets", settings.idle))?;
        tokio::time::sleep(Duration::from_secs(3)).await;
        with_sockets_kib = Some(rss_of(pid).context("cannot read the server's RSS")?);
        drop(clients);
    }
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    Ok(Idle {
        idle_kib,
        sockets: settings.idle,
        with_sockets_kib,
    })
}

/// The child's side of [`measure_idle`]: serve until standard input closes.
fn serve_idle_child(backend: Backend) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let db = TestDb::new(backend).await?;
        let server = Server::start(&db, BATON_CONFIG).await?;
        println!("{}", server.base());
        tokio::task::spawn_blocking(|| {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                if line.is_err() {
                    break;
                }
            }
        })
        .await?;
        drop(server);
        anyhow::Ok(())
    })?;
    runtime.shutdown_timeout(Duration::from_secs(5));
    Ok(())
}

/// A process's resident set (`VmRSS`), in KiB.
fn rss_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
