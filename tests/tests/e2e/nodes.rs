//! Two `baton serve` processes on one PostgreSQL: what happens on one node is
//! seen live on the other (LISTEN/NOTIFY).

use anyhow::{Result, ensure};
use baton_tests::{
    Backend, Process, TestDb, VisitorClient, backends, baton_binary, next_matching, status_json,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_node_a_and_an_agent_on_node_b_see_each_other_live() -> Result<()> {
    if !backends().contains(&Backend::Postgres) {
        eprintln!(
            "skipped: BATON_TEST_POSTGRES_URL is not set (two nodes need a shared PostgreSQL)"
        );
        return Ok(());
    }
    let binary = baton_binary()?;
    let db = TestDb::new(Backend::Postgres).await?;
    let a = Process::start(&binary, &db, "", "node-a").await?;
    let b = Process::start(&binary, &db, "", "node-b").await?;
    baton_tests::add_user(
        &baton_store::Store::connect(&db.url).await?,
        "dana@example.com",
        "Dana",
        "responder",
        "dana-password",
    )
    .await?;

    // The agent signs in on node B and opens the live event stream there.
    let http = reqwest::Client::new();
    let (s, login) = status_json(
        http.post(format!("{}/api/v1/auth/login", b.base()))
            .json(&json!({"email": "dana@example.com", "password": "dana-password"}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 200, "{login}");
    let token = {
        let cli = tokio::process::Command::new(&binary)
            .args(["token", "create", "--email", "dana@example.com"])
            .env("BATON_DATABASE_URL", &db.url)
            .env("BATON_DATA_DIR", db.data_dir())
            .output()
            .await?;
        ensure!(cli.status.success());
        String::from_utf8(cli.stdout)?.trim().to_owned()
    };
    let mut request = format!("ws://{}/api/v1/events", b.addr).into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    let (mut agent_stream, _) = tokio_tungstenite::connect_async(request).await?;

    // The visitor talks to node A.
    let visitor = VisitorClient::start(&a.base()).await?;
    let mut visitor_ws = visitor.ws().await?;
    let conv = format!(
        "{}/api/v1/conversations/{}",
        b.base(),
        visitor.conversation_id
    );
    let bearer = |r: reqwest::RequestBuilder| r.bearer_auth(&token);

    let (s, v) = status_json(bearer(http.post(format!("{conv}/escalate"))).send().await?).await?;
    ensure!(s == 200, "{v}");
    let escalated = next_matching(&mut agent_stream, 10, |e| {
        e["type"] == "conversation.escalated"
    })
    .await?;
    ensure!(escalated["data"]["conversation"]["id"] == visitor.conversation_id.as_str());

    // Node A's visitor message reaches node B's agent live.
    visitor.say("hello from node A").await?;
    let seen = next_matching(&mut agent_stream, 10, |e| {
        e["type"] == "message.created" && e["data"]["message"]["text"] == "hello from node A"
    })
    .await?;
    ensure!(seen["data"]["message"]["sender"] == "visitor");

    // Node B's claim and reply reach node A's visitor live.
    let (s, v) = status_json(bearer(http.post(format!("{conv}/claim"))).send().await?).await?;
    ensure!(s == 200, "{v}");
    let active = next_matching(&mut visitor_ws, 10, |f| {
        f["type"] == "status" && f["status"] == "active"
    })
    .await?;
    ensure!(active["agent"]["name"] == "Dana");
    let (s, v) = status_json(
        bearer(http.post(format!("{conv}/messages")))
            .json(&json!({"text": "hello from node B"}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 201, "{v}");
    let reply = next_matching(&mut visitor_ws, 10, |f| {
        f["type"] == "message" && f["message"]["text"] == "hello from node B"
    })
    .await?;
    ensure!(reply["message"]["sender"] == "agent");
    a.stop().await?;
    b.stop().await?;
    Ok(())
}

/// An event whose sequence number was taken before a later one committed,
/// and which itself committed while the listener was away, still reaches
/// the hub: the catch-up looks for the numbers it skipped, not only those
/// above the highest it saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_catch_up_receives_an_event_that_committed_out_of_order() -> Result<()> {
    use sqlx::{Connection, Row};
    if !backends().contains(&Backend::Postgres) {
        eprintln!("skipped: BATON_TEST_POSTGRES_URL is not set");
        return Ok(());
    }
    let db = TestDb::new(Backend::Postgres).await?;
    let server = baton_tests::Server::start(&db, "").await?;
    let mut hub = server.runtime.bus().subscribe();
    let visitor = VisitorClient::start(&server.base()).await?;
    visitor.turn("hello").await?;

    // A writer takes a sequence number and holds its transaction open.
    let mut slow = sqlx::PgConnection::connect(&db.url).await?;
    let mut tx = slow.begin().await?;
    let template =
        sqlx::query("SELECT conversation_id, body FROM events ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut *tx)
            .await?;
    let conversation_id: String = template.try_get("conversation_id")?;
    let mut body: serde_json::Value = serde_json::from_str(template.try_get("body")?)?;
    body["id"] = json!("evt_committed_late");
    let late: i64 = sqlx::query(
        "WITH e AS (INSERT INTO events (id, type, conversation_id, created_at, body) \
         VALUES ('evt_committed_late', $1, $2, $3, $4) RETURNING seq) \
         SELECT seq, pg_notify('baton_events', seq::text) FROM e",
    )
    .bind(body["type"].as_str().unwrap_or("message.created"))
    .bind(&conversation_id)
    .bind(server.runtime.now().millis())
    .bind(body.to_string())
    .fetch_one(&mut *tx)
    .await?
    .try_get("seq")?;

    // A later number commits and is published.
    visitor.turn("hello again").await?;
    let mut highest = 0;
    while highest <= late {
        let event = tokio::time::timeout(std::time::Duration::from_secs(10), hub.recv()).await??;
        highest = highest.max(event.seq);
    }

    // The listener loses its connection; the early number commits meanwhile.
    let mut admin = sqlx::PgConnection::connect(&db.url).await?;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await?;
    ensure!(cut.iter().any(|&c| c), "no listener connection to cut");
    tx.commit().await?;

    let arrived = tokio::time::timeout(std::time::Duration::from_secs(15), async {
        loop {
            match hub.recv().await {
                Ok(event) if event.seq == late => return Ok(event),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let event = match arrived {
        Ok(found) => found?,
        Err(_) => anyhow::bail!("event {late}, committed late, never reached the hub"),
    };
    ensure!(
        event.envelope.id == "evt_committed_late",
        "{:?}",
        event.envelope
    );
    Ok(())
}

/// Phrases saved through the Bots page hand over on the next message: at
/// once on the node that saved them, and within seconds on another.
async fn saved_phrases_hand_over(backend: Backend) -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(backend).await?;
    let a = Process::start(&binary, &db, "", "phrases-a").await?;
    // SQLite is one node: the second "node" is the same one.
    let b = match backend {
        Backend::Postgres => Some(Process::start(&binary, &db, "", "phrases-b").await?),
        Backend::Sqlite => None,
    };
    baton_tests::add_user(
        &baton_store::Store::connect(&db.url).await?,
        "root@example.com",
        "Root",
        "admin",
        "root-password",
    )
    .await?;
    let admin =
        baton_tests::StaffClient::login(&a.base(), "root@example.com", "root-password").await?;
    let phrase = "fetch me the captain";
    // Before: the phrase is just words to the bot.
    let before = VisitorClient::start(&a.base()).await?;
    let state = before.turn(phrase).await?;
    ensure!(state["status"] == "bot", "{state}");

    let (code, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/bots/default",
            json!({"handover": {"phrases": [phrase]}}),
        )
        .await?;
    ensure!(code == 200, "{code} {body}");
    // The node that saved them: the next message hands over.
    let visitor = VisitorClient::start(&a.base()).await?;
    let state = visitor.turn(&format!("Please, {phrase}!")).await?;
    ensure!(state["status"] == "waiting", "on the saving node: {state}");
    // Another node: within a few seconds.
    if let Some(b) = &b {
        let mut last = serde_json::Value::Null;
        for _ in 0..20 {
            let visitor = VisitorClient::start(&b.base()).await?;
            last = visitor.turn(&format!("Please, {phrase}!")).await?;
            if last["status"] == "waiting" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        ensure!(last["status"] == "waiting", "on the other node: {last}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phrases_saved_on_the_bots_page_hand_over_on_every_node() -> Result<()> {
    for backend in backends() {
        saved_phrases_hand_over(backend)
            .await
            .map_err(|e| e.context(format!("on {backend:?}")))?;
    }
    Ok(())
}
