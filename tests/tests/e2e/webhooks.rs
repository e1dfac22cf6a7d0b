//! Signed webhooks, delivered from the outbox, surviving a receiver outage and a restart.

use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use baton_tests::{
    Backend, Process, Server, Silent, StaffClient, TestDb, VisitorClient, baton_binary, status_json,
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const SECRET: &str = "whsec-test-secret";

/// A webhook receiver that checks every signature the way a subscriber would.
#[derive(Clone, Default)]
struct Receiver {
    /// Event id → (type, body), deduplicated as API.md tells receivers to.
    seen: Arc<Mutex<BTreeMap<String, (String, Value)>>>,
    bad_signatures: Arc<Mutex<usize>>,
    deliveries: Arc<Mutex<usize>>,
}

fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(sig) = headers.get("baton-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut t = None;
    let mut v1 = None;
    for part in sig.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = Some(x.to_owned()),
            Some(("v1", x)) => v1 = Some(x.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("any key length");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = hex::encode(mac.finalize().into_bytes());
    let age = t.parse::<i64>().map(|t| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        (now - t).abs()
    });
    expected == v1 && age.is_ok_and(|a| a < 300)
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    *r.deliveries.lock().unwrap() += 1;
    if !verify(&headers, &body) {
        *r.bad_signatures.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let id = v["id"].as_str().unwrap_or_default().to_owned();
    let kind = v["type"].as_str().unwrap_or_default().to_owned();
    r.seen.lock().unwrap().insert(id, (kind, v));
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn serve(&self, listener: tokio::net::TcpListener) -> tokio::task::JoinHandle<()> {
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        })
    }

    fn types(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .values()
            .map(|(k, _)| k.clone())
            .collect()
    }

    async fn wait_for(&self, kinds: &[&str], secs: u64) -> Result<()> {
        for _ in 0..secs * 20 {
            let types = self.types();
            if kinds.iter().all(|k| {
                types.iter().filter(|t| t == k).count() >= kinds.iter().filter(|x| *x == k).count()
            }) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("expected {kinds:?}, received {:?}", self.types())
    }
}

const LIFECYCLE: [&str; 5] = [
    "conversation.started",
    "conversation.escalated",
    "conversation.claimed",
    "conversation.released",
    "conversation.resolved",
];

/// Drives one conversation through escalate, claim and hand back, and a second
/// through escalate and resolve: every lifecycle event once.
async fn lifecycle(base: &str, staff: &StaffClient) -> Result<()> {
    let first = VisitorClient::start(base).await?;
    let p = format!("/api/v1/conversations/{}", first.conversation_id);
    for step in ["escalate", "claim", "handback"] {
        let (s, v) = staff.post(&format!("{p}/{step}"), json!({})).await?;
        ensure!(s == 200, "{step}: {v}");
    }
    let second = VisitorClient::start(base).await?;
    let p = format!("/api/v1/conversations/{}", second.conversation_id);
    for step in ["escalate", "resolve"] {
        let (s, v) = staff.post(&format!("{p}/{step}"), json!({})).await?;
        ensure!(s == 200, "{step}: {v}");
    }
    Ok(())
}

async fn signed_events(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    // The receiver is on loopback: the operator's opt-in lets it through.
    let server = Server::start(&db, "[security]\nallow_private_webhooks = true\n").await?;
    server
        .add_user("admin@example.com", "Ada", "admin", "admin-password")
        .await?;
    let admin = StaffClient::login(&server.base(), "admin@example.com", "admin-password").await?;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let _task = receiver.serve(listener).await;
    let (s, hook) = admin
        .post(
            "/api/v1/webhooks",
            json!({"url": url, "events": ["*"], "secret": SECRET}),
        )
        .await?;
    ensure!(s == 201, "{hook}");
    ensure!(
        hook["webhook"].get("secret").is_none(),
        "the secret is never shown again"
    );
    lifecycle(&server.base(), &admin).await?;
    receiver.wait_for(&LIFECYCLE, 10).await?;
    receiver.wait_for(&["message.created"], 10).await?;
    ensure!(*receiver.bad_signatures.lock().unwrap() == 0);
    // Every envelope carries the conversation.
    for (kind, body) in receiver.seen.lock().unwrap().values() {
        ensure!(
            body["data"]["conversation"]["id"].is_string(),
            "{kind}: {body}"
        );
        ensure!(body["created_at"].is_string());
    }
    // The delivery log shows them delivered. The receiver has seen one of
    // each type, not yet every event (two conversations started), so the
    // log is read until the last delivery lands.
    let hook_id = hook["webhook"]["id"].as_str().context("id")?;
    let mut log = Value::Null;
    for _ in 0..200 {
        (_, log) = admin
            .get(&format!("/api/v1/webhooks/{hook_id}/deliveries"))
            .await?;
        let rows = log["deliveries"].as_array().context("deliveries")?;
        if !rows.is_empty() && rows.iter().all(|d| d["status"] == "delivered") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("not every delivery is delivered: {log}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_are_signed_and_cover_the_lifecycle() -> Result<()> {
    baton_tests::on_every_backend(signed_events).await
}

/// An admin made with the CLI, and an API token made with the CLI.
async fn cli_token(binary: &std::path::Path, db: &TestDb) -> Result<String> {
    let env = [
        (
            "BATON_DATA_DIR",
            db.data_dir().to_string_lossy().to_string(),
        ),
        ("BATON_DATABASE_URL", db.url.clone()),
    ];
    let mut add = tokio::process::Command::new(binary);
    add.args([
        "user",
        "add",
        "--email",
        "ops@example.com",
        "--name",
        "Ops",
        "--role",
        "admin",
        "--password-stdin",
    ])
    .envs(env.clone())
    .stdin(std::process::Stdio::piped())
    .stdout(std::process::Stdio::piped());
    let mut child = add.spawn()?;
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().context("stdin")?;
        stdin.write_all(b"ops-password-1\n").await?;
    }
    ensure!(child.wait().await?.success(), "baton user add failed");
    let out = tokio::process::Command::new(binary)
        .args(["token", "create", "--email", "ops@example.com"])
        .envs(env)
        .output()
        .await?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_owned();
    ensure!(
        token.starts_with("bt_") && !token.contains(char::is_whitespace),
        "token create prints only the token: {token:?}"
    );

    Ok(token)
}

async fn outage_and_restart(backend: Backend) -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(backend).await?;
    let config = "[security]\nallow_private_webhooks = true\n[webhooks]\nretry_base = \"100ms\"\nretry_max = \"400ms\"\nmax_attempts = 1000\n";

    // The first start with no users says how to get in.
    let node = Process::start(&binary, &db, config, "first").await?;
    let log = std::fs::read_to_string(&node.log)?;
    ensure!(log.contains("no staff accounts yet"), "{log}");

    let token = cli_token(&binary, &db).await?;

    // Subscribe a receiver that is down.
    let port = baton_tests::free_port()?;
    let http = reqwest::Client::new();
    let (s, hook) = status_json(
        http.post(format!("{}/api/v1/webhooks", node.base()))
            .bearer_auth(&token)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": LIFECYCLE, "secret": SECRET}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 201, "{hook}");

    // The cookie-less staff client: an API token needs no CSRF header.
    let staff = StaffClient {
        base: node.base(),
        http: reqwest::Client::builder()
            .default_headers({
                let mut h = reqwest::header::HeaderMap::new();
                h.insert("authorization", format!("Bearer {token}").parse()?);
                h
            })
            .build()?,
        csrf: String::new(),
        user: Value::Null,
    };
    lifecycle(&node.base(), &staff).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.stop().await?;

    // The receiver comes back; so does the server, on the same database.
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let _task = receiver.serve(listener).await;
    let node = Process::start(&binary, &db, config, "second").await?;
    // Exactly the lifecycle events of the two conversations (two started,
    // two escalated), each once.
    let mut expected = [
        "conversation.claimed",
        "conversation.escalated",
        "conversation.escalated",
        "conversation.released",
        "conversation.resolved",
        "conversation.started",
        "conversation.started",
    ];
    receiver.wait_for(&expected, 20).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut types = receiver.types();
    types.sort();
    expected.sort();
    ensure!(types == expected, "received {types:?}");
    ensure!(*receiver.bad_signatures.lock().unwrap() == 0);
    node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_is_lost_when_the_receiver_is_down_and_the_server_restarts() -> Result<()> {
    baton_tests::on_every_backend(outage_and_restart).await
}

/// A delivery is under way (the receiver holds the request) when the server
/// is stopped: the next start sends it at once, not when the lease ends.
async fn stop_during_delivery(backend: Backend) -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(backend).await?;
    // The lease of an attempt is the timeout plus 30 s: far beyond the wait below.
    let config = "[webhooks]\ntimeout = \"60s\"\nretry_base = \"100ms\"\nretry_max = \"400ms\"\n";
    // The loopback receiver is let through by the variable this time.
    let private = [("BATON_ALLOW_PRIVATE_WEBHOOKS", "true")];
    let node = Process::start_with_env(&binary, &db, config, "first", &private).await?;
    let token = cli_token(&binary, &db).await?;

    // A receiver that takes the connection and never answers.
    let silent = Silent::bind().await?;
    let port = silent.port;
    let http = reqwest::Client::new();
    let (s, hook) = status_json(
        http.post(format!("{}/api/v1/webhooks", node.base()))
            .bearer_auth(&token)
            .json(&json!({"url": format!("http://127.0.0.1:{port}/hook"), "events": ["conversation.started"], "secret": SECRET}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 201, "{hook}");
    VisitorClient::start(&node.base()).await?;
    silent.called(10).await?;
    let log = node.stop_and_read_log().await?;
    ensure!(
        log.contains("webhook deliveries under way given back"),
        "the stop did not give the delivery back: {log}"
    );

    // The receiver works now, on the same port; the server starts again.
    silent.close().await;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let _task = receiver.serve(listener).await;
    let node = Process::start_with_env(&binary, &db, config, "second", &private).await?;
    receiver
        .wait_for(&["conversation.started"], 15)
        .await
        .context("the delivery under way at the stop is still locked")?;
    node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_under_way_at_a_stop_is_sent_by_the_next_start() -> Result<()> {
    baton_tests::on_every_backend(stop_during_delivery).await
}

/// Visitors writing as fast as they are answered make a `message.created`
/// event per message; the server is killed in the middle. After the
/// restart every event arrives within 30 s, and every message the server
/// acknowledged is among them.
async fn kill_under_load(backend: Backend) -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(backend).await?;
    let config = "[security]\nallow_private_webhooks = true\n\
        [bot]\ngreeting = \"\"\n\
        [bot.handover]\ncycle_count = 0\nlack_of_information = false\nfrustration = false\n\
        [limits]\nwidget_messages_per_second = 100000\nwidget_burst = 100000\n\
        widget_ip_requests_per_second = 100000\nwidget_ip_burst = 100000\n\
        [webhooks]\nretry_base = \"200ms\"\nretry_max = \"1s\"\n";
    let node = Process::start(&binary, &db, config, "load-1").await?;
    let token = cli_token(&binary, &db).await?;
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    let _task = receiver.serve(listener).await;
    let (s, hook) = status_json(
        reqwest::Client::new()
            .post(format!("{}/api/v1/webhooks", node.base()))
            .bearer_auth(&token)
            .json(&json!({"url": url, "events": ["*"], "secret": SECRET}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 201, "{hook}");

    // 20 visitors for up to 12 s; the kill comes after 6.
    let base = node.base();
    let chat =
        tokio::spawn(
            async move { baton_tests::chat_for(&base, 20, Duration::from_secs(12)).await },
        );
    tokio::time::sleep(Duration::from_secs(6)).await;
    node.kill().await?;
    let chatter = chat.await??;
    ensure!(
        chatter.acknowledged.len() > 100,
        "only {} messages before the kill",
        chatter.acknowledged.len()
    );

    let node = Process::start(&binary, &db, config, "load-2").await?;
    let restarted = std::time::Instant::now();
    let store = baton_store::Store::connect(&db.url).await?;
    let missing = loop {
        let mut missing = Vec::new();
        let mut after = 0;
        loop {
            let page = store.events_after(after, 500).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            let seen = receiver.seen.lock().unwrap();
            missing.extend(
                page.iter()
                    .filter(|e| !seen.contains_key(&e.envelope.id))
                    .map(|e| e.envelope.id.clone()),
            );
        }
        if missing.is_empty() || restarted.elapsed() > Duration::from_secs(30) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        missing.is_empty(),
        "{} events not delivered 30 s after the restart ({} received)",
        missing.len(),
        receiver.seen.lock().unwrap().len()
    );
    // Every acknowledged message was stored and its event delivered.
    let texts: std::collections::HashSet<String> = receiver
        .seen
        .lock()
        .unwrap()
        .values()
        .filter(|(kind, _)| kind == "message.created")
        .filter_map(|(_, v)| v["data"]["message"]["text"].as_str().map(str::to_owned))
        .collect();
    let lost: Vec<&String> = chatter
        .acknowledged
        .iter()
        .filter(|m| !texts.contains(*m))
        .collect();
    ensure!(lost.is_empty(), "acknowledged and lost: {lost:?}");
    ensure!(*receiver.bad_signatures.lock().unwrap() == 0);
    eprintln!(
        "{backend:?}: {} messages acknowledged, {} events delivered, all within {:.1} s of the restart",
        chatter.acknowledged.len(),
        receiver.seen.lock().unwrap().len(),
        restarted.elapsed().as_secs_f64()
    );
    node.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_within_30_s_of_a_restart_after_a_kill_under_load() -> Result<()> {
    baton_tests::on_every_backend(kill_under_load).await
}
