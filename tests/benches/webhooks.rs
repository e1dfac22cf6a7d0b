//! The webhook benchmark: how fast the dispatcher delivers events to a
//! receiver that answers at once, beside the message rate that makes them.
//!
//! Baton runs in this process with one webhook for every event type, aimed
//! at a local axum receiver that answers 204 at once and counts each event
//! id. Three phases, in one run:
//! - **ceiling**: a bare reqwest client posts the same kind of body to the
//!   same receiver with the dispatcher's concurrency per webhook (32): the
//!   most any sender could get through here;
//! - **follow**: 20 widget visitors write closed-loop (send, wait for the
//!   bot's answer, send again) for `BENCH_SECS` seconds; every stored
//!   message is a `message.created` event. It reports the messages and
//!   events made per second, the deliveries per second during the phase,
//!   the backlog at its end and how long that took to clear;
//! - **drain**: the receiver holds its answers while the visitors write
//!   again, so a backlog builds up in the outbox (as after a crash); then it
//!   answers, and the time until the backlog is delivered gives the drain
//!   rate.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p baton-tests --bench webhooks
//! ```
//!
//! Knobs: `BENCH_SECS` (default `10`), `BENCH_VISITORS` (default `20`),
//! `BENCH_BACKEND` (`sqlite` or `postgres`, on the server in
//! `BATON_TEST_POSTGRES_URL`). Figures are printed, never asserted.

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use baton_tests::{Backend, Server, TestDb};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Added to the benches' settings: webhooks for private addresses (the
/// receiver is on loopback), a long attempt time-out (the drain phase holds
/// answers back) and fast retries.
const WEBHOOK_CONFIG: &str = "\
[security]
allow_private_webhooks = true

[webhooks]
timeout = \"300s\"
retry_base = \"100ms\"
retry_max = \"1s\"
";

/// The dispatcher's attempts per webhook at once (`PER_ENDPOINT`).
const CEILING_CONCURRENCY: usize = 32;

#[derive(Default)]
struct Receiver {
    posts: AtomicU64,
    seen: Mutex<HashSet<String>>,
    /// While true, answers wait for `resume`.
    held: AtomicBool,
    resume: Notify,
}

async fn receive(State(r): State<Arc<Receiver>>, headers: HeaderMap) -> StatusCode {
    while r.held.load(Ordering::Acquire) {
        let resumed = r.resume.notified();
        if !r.held.load(Ordering::Acquire) {
            break;
        }
        resumed.await;
    }
    r.posts.fetch_add(1, Ordering::Relaxed);
    if let Some(id) = headers.get("baton-event-id").and_then(|v| v.to_str().ok()) {
        r.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned());
    }
    StatusCode::NO_CONTENT
}

impl Receiver {
    fn unique(&self) -> u64 {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).len() as u64
    }
}

fn main() -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run())
}

async fn run() -> Result<()> {
    let secs: u64 = env_or("BENCH_SECS", 10)?;
    let visitors: usize = env_or("BENCH_VISITORS", 20)?;
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => bail!("BENCH_BACKEND must be sqlite or postgres, not {other}"),
    };

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let ceiling = measure_ceiling(&hook_url, &receiver).await?;

    let db = TestDb::new(backend).await?;
    let config = format!("{}{WEBHOOK_CONFIG}", baton_tests::BENCH_CONFIG);
    let server = Server::start(&db, &config).await?;
    let store = server.runtime.store().clone();
    store
        .create_webhook(
            baton_store::NewWebhook {
                url: &hook_url,
                events: &["*".to_owned()],
                secret: "bench-secret",
            },
            baton_runtime::Clock::system().now(),
        )
        .await?;
    let base = server.base();
    let before = receiver.unique();

    // Follow: deliveries while the messages are made.
    let events_before = event_count(&store).await?;
    let started = Instant::now();
    let messages = write_for(&base, visitors, Duration::from_secs(secs)).await?;
    let phase = started.elapsed();
    let events = event_count(&store).await? - events_before;
    let delivered_during = receiver.unique() - before;
    let backlog_at_end = store.pending_webhook_deliveries().await?;
    let cleared = wait_drained(&store, Duration::from_secs(120)).await?;
    let follow_delivered = receiver.unique() - before;

    // Drain: a backlog built while the receiver holds its answers.
    receiver.held.store(true, Ordering::Release);
    let before_drain = receiver.unique();
    write_for(&base, visitors, Duration::from_secs(secs)).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backlog = store.pending_webhook_deliveries().await?;
    let drain_started = Instant::now();
    receiver.held.store(false, Ordering::Release);
    receiver.resume.notify_waiters();
    let drained_in = wait_drained(&store, Duration::from_secs(600))
        .await?
        .context("the backlog did not drain within 10 minutes")?;
    let drain_rate =
        (receiver.unique() - before_drain) as f64 / drain_started.elapsed().as_secs_f64();
    let _ = drained_in;

    let s = phase.as_secs_f64();
    let made = events as f64 / s;
    let during = delivered_during as f64 / s;
    println!();
    println!("## Webhooks ({backend:?}, {visitors} visitors, {secs} s a phase)");
    println!();
    println!("| Figure | Value |");
    println!("|---|---|");
    println!("| Ceiling: bare client, {CEILING_CONCURRENCY} at once | {ceiling:.0} POSTs/s |");
    println!(
        "| Messages stored while following | {:.0} /s |",
        messages as f64 / s
    );
    println!("| Events made (one delivery each) | {made:.0} /s |");
    println!(
        "| Delivered while following | {during:.0} /s ({:.0} % of the events made) |",
        100.0 * during / made.max(1.0)
    );
    println!("| Backlog at the end of the phase | {backlog_at_end} |");
    println!(
        "| Cleared after the phase in | {} |",
        cleared.map_or("not within 2 min".to_owned(), |d| format!(
            "{:.2} s",
            d.as_secs_f64()
        ))
    );
    println!("| Events delivered in the follow phase | {follow_delivered} of {events} |");
    println!("| Backlog built with the receiver holding | {backlog} |");
    println!(
        "| Drain rate | {drain_rate:.0} deliveries/s ({:.0} % of the ceiling) |",
        100.0 * drain_rate / ceiling.max(1.0)
    );
    Ok(())
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// POSTs per second a bare client gets through to the receiver in 3 s.
async fn measure_ceiling(url: &str, receiver: &Receiver) -> Result<f64> {
    let http = reqwest::Client::new();
    let body =
        json!({"id": "evt_ceiling", "type": "message.created", "data": {"text": "x".repeat(600)}})
            .to_string();
    let before = receiver.posts.load(Ordering::Relaxed);
    let until = Instant::now() + Duration::from_secs(3);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CEILING_CONCURRENCY {
        let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
        tasks.spawn(async move {
            while Instant::now() < until {
                http.post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(t) = tasks.join_next().await {
        t??;
    }
    Ok((receiver.posts.load(Ordering::Relaxed) - before) as f64 / started.elapsed().as_secs_f64())
}

async fn event_count(store: &baton_store::Store) -> Result<i64> {
    Ok(store.last_event_seq().await?)
}

/// Waits until no delivery is pending; how long that took, or `None`.
async fn wait_drained(store: &baton_store::Store, limit: Duration) -> Result<Option<Duration>> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if store.pending_webhook_deliveries().await? == 0 {
            return Ok(Some(started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

/// `visitors` widget visitors writing closed-loop for `length`; the
/// messages stored (theirs and the bot's answers).
async fn write_for(base: &str, visitors: usize, length: Duration) -> Result<u64> {
    let chatter = baton_tests::chat_for(base, visitors, length).await?;
    if let Some(e) = chatter.failed.first() {
        bail!("{} visitors failed: {e}", chatter.failed.len());
    }
    Ok(chatter.stored)
}
