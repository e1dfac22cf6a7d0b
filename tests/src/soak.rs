//! The soak: mixed traffic against real `baton serve` processes (two nodes on
//! PostgreSQL, one on SQLite) with a `kill -9` of a random node every
//! `kill_every`, on loopback only, then the books are checked:
//! - every visitor message the server acknowledged (widget and Telegram) is
//!   stored once, and so is every agent reply it acknowledged;
//! - every platform message was delivered (no outbox row left unsent, and
//!   each agent reply to Telegram reached the fake);
//! - every event reached the webhook receiver;
//! - no conversation is stuck: no bot turn left unanswered, nobody left
//!   waiting once the agent has worked the queue.
//!
//! Traffic: widget visitors over HTTP (each message with a `client_id`, so a
//! message sent again after a kill is stored once), Telegram users through
//! the fake Telegram, some of both asking for a human, and one agent who
//! claims, replies and hands back. `cargo run -p baton-tests --bin soak`
//! runs it for 30 minutes; the test suite runs a short one.

use crate::fakes::telegram::FakeTelegram;
use crate::{Backend, Process, StaffClient, TestDb, baton_binary, cli_add_user};
use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const TELEGRAM_TOKEN: &str = "123456:SOAK-token";
const AGENT_EMAIL: &str = "soak-agent@example.com";
const AGENT_PASSWORD: &str = "correct horse battery staple";
/// How long the system has, once traffic stops, to settle.
const SETTLE_WITHIN: Duration = Duration::from_secs(90);

/// What to run.
#[derive(Clone, Debug)]
pub struct Soak {
    pub backend: Backend,
    /// How long traffic runs.
    pub length: Duration,
    /// A random node is killed (and started again) this often.
    pub kill_every: Duration,
    pub widget_visitors: usize,
    pub telegram_users: usize,
}

impl Soak {
    /// The suite's short mode.
    pub fn short(backend: Backend) -> Self {
        Self {
            backend,
            length: Duration::from_secs(25),
            kill_every: Duration::from_secs(8),
            widget_visitors: 6,
            telegram_users: 3,
        }
    }
}

/// What a soak did, once every check held.
#[derive(Debug, Default)]
pub struct Report {
    pub kills: usize,
    pub widget_messages: usize,
    pub telegram_messages: usize,
    pub agent_replies: usize,
    pub events: usize,
    pub settled_in: Duration,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} kills; {} widget and {} Telegram messages acknowledged and stored once; \
             {} agent replies; {} events delivered; settled in {:.1} s",
            self.kills,
            self.widget_messages,
            self.telegram_messages,
            self.agent_replies,
            self.events,
            self.settled_in.as_secs_f64()
        )
    }
}

/// The nodes, each slot live or being restarted.
struct Nodes {
    binary: PathBuf,
    config: String,
    slots: Mutex<Vec<Option<Process>>>,
    restarts: Mutex<usize>,
}

impl Nodes {
    fn live(&self) -> Vec<String> {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .flatten()
            .map(Process::base)
            .collect()
    }

    /// A live node's base, chosen by `n`; waits while every node restarts.
    async fn any(&self, n: usize) -> String {
        loop {
            let live = self.live();
            if !live.is_empty() {
                return live[n % live.len()].clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn kill_and_restart(&self, db: &TestDb, slot: usize) -> Result<()> {
        let process = self.slots.lock().unwrap_or_else(|p| p.into_inner())[slot].take();
        if let Some(p) = process {
            p.kill().await?;
        }
        let n = {
            let mut r = self.restarts.lock().unwrap_or_else(|p| p.into_inner());
            *r += 1;
            *r
        };
        let env = [("TELEGRAM_BOT_TOKEN", TELEGRAM_TOKEN)];
        let name = format!("soak-{slot}-{n}");
        let p = Process::start_with_env(&self.binary, db, &self.config, &name, &env).await?;
        self.slots.lock().unwrap_or_else(|p| p.into_inner())[slot] = Some(p);
        Ok(())
    }
}

/// What the clients were told was stored.
#[derive(Default)]
struct Books {
    widget: Vec<String>,
    telegram: Vec<String>,
    /// Agent replies, with the conversation's channel.
    replies: Vec<(String, String)>,
    /// Errors the clients met that a kill does not explain.
    odd: Vec<String>,
}

type Shared<T> = Arc<Mutex<T>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the soak; an error names the first check that failed.
pub async fn run(soak: &Soak) -> Result<Report> {
    let binary = baton_binary()?;
    let db = TestDb::new(soak.backend).await?;
    let fake = FakeTelegram::start(TELEGRAM_TOKEN).await?;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let hook_url = format!("http://{}/hook", listener.local_addr()?);
    receiver.serve(listener);
    let config = format!(
        "{}\n[security]\nallow_private_webhooks = true\n\
         [webhooks]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n\
         [delivery]\nretry_base = \"200ms\"\nretry_max = \"1s\"\nmax_attempts = 1000\n\
         [channels.telegram]\napi_url = \"{}\"\npoll_timeout_secs = 1\n",
        crate::BENCH_CONFIG,
        fake.base
    );
    let count = match soak.backend {
        Backend::Postgres => 2,
        Backend::Sqlite => 1,
    };
    let nodes = Arc::new(Nodes {
        binary: binary.clone(),
        config,
        slots: Mutex::new((0..count).map(|_| None).collect()),
        restarts: Mutex::new(0),
    });
    for slot in 0..count {
        nodes.kill_and_restart(&db, slot).await?;
    }
    cli_add_user(
        &binary,
        &db,
        AGENT_EMAIL,
        "Soak Agent",
        "admin",
        AGENT_PASSWORD,
    )
    .await?;
    subscribe(&nodes.any(0).await, &hook_url).await?;

    let books: Shared<Books> = Arc::default();
    let until = Instant::now() + soak.length;
    let mut traffic = tokio::task::JoinSet::new();
    for v in 0..soak.widget_visitors {
        traffic.spawn(widget_visitor(nodes.clone(), books.clone(), v, until));
    }
    for u in 0..soak.telegram_users {
        traffic.spawn(telegram_user(fake.clone(), books.clone(), u, until));
    }
    traffic.spawn(agent(nodes.clone(), books.clone(), until, false));

    // The killer.
    let mut kills = 0;
    let mut pick = 7_usize;
    while Instant::now() + soak.kill_every < until {
        tokio::time::sleep(soak.kill_every).await;
        pick = pick.wrapping_mul(31).wrapping_add(17);
        nodes.kill_and_restart(&db, pick % count).await?;
        kills += 1;
    }
    while let Some(done) = traffic.join_next().await {
        done??;
    }

    // Settle: the agent works the queue empty; everything in flight lands.
    let settling = Instant::now();
    agent(nodes.clone(), books.clone(), Instant::now(), true).await?;
    let store = baton_store::Store::connect(&db.url).await?;
    let fake_sent = |fake: &FakeTelegram| -> HashSet<String> {
        fake.calls()
            .into_iter()
            .filter(|(m, _)| m == "sendmessage")
            .filter_map(|(_, p)| p["text"].as_str().map(str::to_owned))
            .collect()
    };
    let outstanding = loop {
        let left = outstanding(&db, &store, &receiver, &books, &fake_sent(&fake)).await?;
        if left.is_empty() || settling.elapsed() > SETTLE_WITHIN {
            break left;
        }
        // Hand-overs the bot made while settling go to the agent too.
        agent(nodes.clone(), books.clone(), Instant::now(), true).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let settled_in = settling.elapsed();
    ensure!(
        outstanding.is_empty(),
        "not settled {SETTLE_WITHIN:?} after the traffic stopped: {outstanding:#?}"
    );
    let books = std::mem::take(&mut *lock(&books));
    ensure!(books.odd.is_empty(), "unexpected errors: {:#?}", books.odd);
    stored_once(&db, "visitor", &books.widget).await?;
    stored_once(&db, "visitor", &books.telegram).await?;
    let replies: Vec<String> = books.replies.iter().map(|(t, _)| t.clone()).collect();
    stored_once(&db, "agent", &replies).await?;
    let report = Report {
        kills,
        widget_messages: books.widget.len(),
        telegram_messages: books.telegram.len(),
        agent_replies: replies.len(),
        events: lock(&receiver.seen).len(),
        settled_in,
    };
    ensure!(
        report.widget_messages > 0 && report.telegram_messages > 0 && report.agent_replies > 0,
        "too little traffic to tell: {report}"
    );
    let slots = std::mem::take(&mut *lock(&nodes.slots));
    for p in slots.into_iter().flatten() {
        p.stop().await?;
    }
    Ok(report)
}

/// What is still in flight: an empty list once everything landed.
async fn outstanding(
    db: &TestDb,
    store: &baton_store::Store,
    receiver: &Receiver,
    books: &Shared<Books>,
    sent: &HashSet<String>,
) -> Result<Vec<String>> {
    let mut left = Vec::new();
    for (what, sql) in [
        (
            "platform deliveries not sent",
            "SELECT COUNT(*) FROM channel_deliveries WHERE status <> 'sent'",
        ),
        (
            "bot turns not answered",
            "SELECT COUNT(*) FROM conversations WHERE turn_seq IS NOT NULL",
        ),
        (
            "conversations waiting for a human",
            "SELECT COUNT(*) FROM conversations WHERE status = 'waiting'",
        ),
        (
            "webhook deliveries pending",
            "SELECT COUNT(*) FROM webhook_deliveries WHERE status <> 'delivered'",
        ),
    ] {
        let n = count(db, sql).await?;
        if n > 0 {
            left.push(format!("{n} {what}"));
        }
    }
    let mut missing = 0;
    let mut after = 0;
    loop {
        let page = store.events_after(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        let seen = lock(&receiver.seen);
        missing += page
            .iter()
            .filter(|e| !seen.contains(&e.envelope.id))
            .count();
    }
    if missing > 0 {
        left.push(format!("{missing} events not received by the webhook"));
    }
    // Telegram keeps what it was sent until the poller (which may be moving
    // to another node after a kill) takes it.
    let stored = texts_of(db, "visitor").await?;
    let unread = lock(books)
        .telegram
        .iter()
        .filter(|t| !stored.contains_key(*t))
        .count();
    if unread > 0 {
        left.push(format!("{unread} Telegram messages not stored yet"));
    }
    let undelivered: Vec<String> = lock(books)
        .replies
        .iter()
        // Agents' replies arrive with the agent's name before them.
        .filter(|(text, channel)| channel == "telegram" && !sent.iter().any(|s| s.contains(text)))
        .map(|(text, _)| text.clone())
        .collect();
    if !undelivered.is_empty() {
        left.push(format!(
            "agent replies not sent to Telegram: {undelivered:?}"
        ));
    }
    Ok(left)
}

async fn count(db: &TestDb, sql: &'static str) -> Result<i64> {
    let pool = pool(db).await?;
    let n: i64 = sqlx::query_scalar(sql).fetch_one(&pool).await?;
    pool.close().await;
    Ok(n)
}

async fn pool(db: &TestDb) -> Result<sqlx::AnyPool> {
    sqlx::any::install_default_drivers();
    Ok(sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&db.url)
        .await?)
}

/// How many times each text is stored as a message from `sender`.
async fn texts_of(db: &TestDb, sender: &str) -> Result<HashMap<String, i64>> {
    let pool = pool(db).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT text, COUNT(*) FROM messages WHERE sender = $1 GROUP BY text")
            .bind(sender)
            .fetch_all(&pool)
            .await?;
    pool.close().await;
    Ok(rows.into_iter().collect())
}

/// Each of `texts` is stored exactly once as a message from `sender`.
async fn stored_once(db: &TestDb, sender: &str, texts: &[String]) -> Result<()> {
    let counts = texts_of(db, sender).await?;
    let wrong: BTreeMap<&String, i64> = texts
        .iter()
        .map(|t| (t, counts.get(t).copied().unwrap_or(0)))
        .filter(|(_, n)| *n != 1)
        .collect();
    ensure!(
        wrong.is_empty(),
        "{} of {} acknowledged {sender} messages not stored exactly once (text → times): {wrong:?}",
        wrong.len(),
        texts.len()
    );
    Ok(())
}

async fn subscribe(base: &str, url: &str) -> Result<()> {
    let staff = StaffClient::login(base, AGENT_EMAIL, AGENT_PASSWORD).await;
    let staff = match staff {
        Ok(s) => s,
        Err(_) => bail!("the soak agent cannot sign in on {base}"),
    };
    let (s, hook) = staff
        .post(
            "/api/v1/webhooks",
            json!({"url": url, "events": ["*"], "secret": "whsec-soak-secret"}),
        )
        .await?;
    ensure!(s == 201, "cannot add the webhook: {s} {hook}");
    Ok(())
}

/// A widget visitor writing every 150 ms or so, every fifth message asking
/// for a human. A message the server did not acknowledge (its node was
/// killed) is sent again, with the same `client_id`, to a live node.
async fn widget_visitor(
    nodes: Arc<Nodes>,
    books: Shared<Books>,
    v: usize,
    until: Instant,
) -> Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut token = None;
    let mut i = 0_usize;
    while Instant::now() < until {
        let base = nodes.any(v + i).await;
        let Some(t) = &token else {
            match http
                .post(format!("{base}/api/v1/widget/sessions"))
                .json(&json!({}))
                .send()
                .await
            {
                Ok(r) if r.status() == 201 => {
                    let body: Value = r.json().await?;
                    token = body["visitor_token"].as_str().map(str::to_owned);
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            continue;
        };
        i += 1;
        let text = if i.is_multiple_of(5) {
            format!("I want to talk to a human (soak v{v} m{i};)")
        } else {
            format!("soak v{v} m{i};")
        };
        let mut tries = 0;
        loop {
            let base = nodes.any(v + i + tries).await;
            let sent = http
                .post(format!("{base}/api/v1/widget/messages"))
                .bearer_auth(t)
                .json(&json!({"text": text, "client_id": text}))
                .send()
                .await;
            match sent {
                Ok(r) if r.status() == 202 => {
                    lock(&books).widget.push(text.clone());
                    break;
                }
                Ok(r) if r.status().is_server_error() => {}
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    lock(&books)
                        .odd
                        .push(format!("widget {text}: {status} {body}"));
                    break;
                }
                // The node went away under the request.
                Err(_) => {}
            }
            tries += 1;
            if tries > 100 {
                lock(&books)
                    .odd
                    .push(format!("widget {text}: never acknowledged"));
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    Ok(())
}

/// A Telegram user writing every 400 ms, every sixth message asking for a
/// human. Telegram holds an update until Baton confirms it, so everything
/// pushed counts as acknowledged.
async fn telegram_user(
    fake: FakeTelegram,
    books: Shared<Books>,
    u: usize,
    until: Instant,
) -> Result<()> {
    let user = 900_000_000 + u as u64;
    let mut i = 0_u32;
    while Instant::now() < until {
        i += 1;
        let text = if i.is_multiple_of(6) {
            format!("I want to talk to a human (tg u{u} m{i};)")
        } else {
            format!("tg u{u} m{i};")
        };
        fake.private_text(user, &format!("User {u}"), &text);
        lock(&books).telegram.push(text);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    Ok(())
}

/// The agent: claims what waits, replies, hands back; signs in again on
/// another node when its node is killed. With `drain`, works until nothing
/// waits (or a minute passes) instead of until `until`.
async fn agent(nodes: Arc<Nodes>, books: Shared<Books>, until: Instant, drain: bool) -> Result<()> {
    let started = Instant::now();
    let mut staff: Option<StaffClient> = None;
    let mut n = 0_usize;
    loop {
        if !drain && Instant::now() >= until {
            return Ok(());
        }
        if drain && started.elapsed() > Duration::from_secs(60) {
            return Ok(());
        }
        let Some(s) = &staff else {
            let base = nodes.any(n).await;
            n += 1;
            staff = StaffClient::login(&base, AGENT_EMAIL, AGENT_PASSWORD)
                .await
                .ok();
            if staff.is_none() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            continue;
        };
        let waiting = match s.get("/api/v1/conversations?status=waiting").await {
            Ok((200, body)) => body["conversations"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            _ => {
                staff = None;
                continue;
            }
        };
        if waiting.is_empty() {
            if drain {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        }
        for conv in waiting {
            let Some(id) = conv["id"].as_str() else {
                continue;
            };
            let channel = conv["channel"].as_str().unwrap_or_default().to_owned();
            if work_one(s, id, &channel, &books).await.is_err() {
                staff = None;
                break;
            }
        }
    }
}

/// Claims, replies and hands back one conversation. An error means the
/// node went away; a refusal (someone else got there) is not an error.
async fn work_one(s: &StaffClient, id: &str, channel: &str, books: &Shared<Books>) -> Result<()> {
    let (status, _) = s
        .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
        .await
        .context("claim")?;
    if status >= 500 {
        bail!("claim: {status}");
    }
    if status != 200 {
        return Ok(());
    }
    let text = format!("agent reply to {id} #{};", uuid::Uuid::new_v4().simple());
    let (status, _) = s
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            json!({"text": text}),
        )
        .await
        .context("reply")?;
    if status == 201 {
        lock(books).replies.push((text, channel.to_owned()));
    } else if status >= 500 {
        bail!("reply: {status}");
    }
    let (status, _) = s
        .post(&format!("/api/v1/conversations/{id}/handback"), json!({}))
        .await
        .context("hand back")?;
    if status >= 500 {
        bail!("hand back: {status}");
    }
    Ok(())
}

/// A webhook receiver that keeps the event ids it got.
#[derive(Clone, Default)]
struct Receiver {
    seen: Shared<HashSet<String>>,
}

impl Receiver {
    fn serve(&self, listener: tokio::net::TcpListener) {
        use axum::routing::post;
        let seen = self.seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                        return axum::http::StatusCode::BAD_REQUEST;
                    };
                    if let Some(id) = v["id"].as_str() {
                        lock(&seen).insert(id.to_owned());
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
    }
}
