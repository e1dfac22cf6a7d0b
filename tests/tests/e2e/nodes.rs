//! Two `baton serve` processes on one PostgreSQL: what happens on one node is
//! seen live on the other (LISTEN/NOTIFY).

use anyhow::{Result, ensure};
use baton_tests::{
    Backend, Process, TestDb, VisitorClient, backends, baton_binary, next_matching, status_json,
};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The binary and a fresh PostgreSQL database for several nodes, or `None`
/// (and a note) where no PostgreSQL is configured.
async fn shared_postgres() -> Result<Option<(std::path::PathBuf, TestDb)>> {
    if !backends().contains(&Backend::Postgres) {
        eprintln!(
            "skipped: BATON_TEST_POSTGRES_URL is not set (two nodes need a shared PostgreSQL)"
        );
        return Ok(None);
    }
    Ok(Some((
        baton_binary()?,
        TestDb::new(Backend::Postgres).await?,
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_on_node_a_and_an_agent_on_node_b_see_each_other_live() -> Result<()> {
    let Some((binary, db)) = shared_postgres().await? else {
        return Ok(());
    };
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

/// Two nodes assigning at once never put an agent over capacity: each
/// assignment counts the agent's load under the agent's row lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_assigning_at_once_keep_every_agent_within_capacity() -> Result<()> {
    use sqlx::{Connection, Row};
    let Some((binary, db)) = shared_postgres().await? else {
        return Ok(());
    };
    let config = "[routing]\nassignment = \"least_busy\"\n";
    let nodes = [
        Process::start(&binary, &db, config, "seats-a").await?,
        Process::start(&binary, &db, config, "seats-b").await?,
    ];
    let store = baton_store::Store::connect(&db.url).await?;
    let agents = ["ana", "ben", "cy"];
    for name in agents {
        let email = format!("{name}@example.com");
        baton_tests::add_user(&store, &email, name, "responder", "agent-password").await?;
        let user = store
            .user_by_email(&email)
            .await?
            .ok_or_else(|| anyhow::anyhow!("{email} was not stored"))?;
        let update = baton_store::RoutingUpdate {
            capacity: Some(1),
            ..Default::default()
        };
        store.update_routing(&user.id, &update).await?;
        store
            .set_presence(&user.id, baton_model::Presence::Online)
            .await?;
        store
            .touch_user(&user.id, baton_runtime::Clock::system().now())
            .await?;
    }

    // Watches the load from outside while the nodes work.
    let watching = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watcher = {
        let url = db.url.clone();
        let watching = watching.clone();
        tokio::spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let mut most = 0_i64;
            while watching.load(std::sync::atomic::Ordering::Relaxed) {
                let rows = sqlx::query(
                    "SELECT COUNT(*) AS n FROM conversations \
                     WHERE status = 'active' AND assignee_id IS NOT NULL GROUP BY assignee_id",
                )
                .fetch_all(&mut conn)
                .await?;
                for r in rows {
                    most = most.max(r.try_get::<i64, _>("n")?);
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            anyhow::Ok(most)
        })
    };

    // A burst of 50 hand-overs, half on each node.
    let mut burst = Vec::new();
    for i in 0..50 {
        let base = nodes[i % 2].base();
        burst.push(tokio::spawn(async move {
            let visitor = VisitorClient::start(&base).await?;
            visitor.turn("I want to talk to a human").await?;
            anyhow::Ok(visitor.conversation_id)
        }));
    }
    for b in burst {
        b.await??;
    }

    // Seats freed on both nodes at once are filled from the queue by both.
    let mut staff = Vec::new();
    for (i, name) in agents.iter().enumerate() {
        let base = nodes[i % 2].base();
        let client = baton_tests::StaffClient::login(
            &base,
            &format!("{name}@example.com"),
            "agent-password",
        )
        .await?;
        let id = store
            .user_by_email(&format!("{name}@example.com"))
            .await?
            .map(|u| u.id)
            .unwrap_or_default();
        staff.push((client, id));
    }
    let held = |conn_url: String, user_id: String| async move {
        let mut conn = sqlx::PgConnection::connect(&conn_url).await?;
        let row = sqlx::query(
            "SELECT id FROM conversations WHERE status = 'active' AND assignee_id = $1 LIMIT 1",
        )
        .bind(user_id)
        .fetch_optional(&mut conn)
        .await?;
        anyhow::Ok(row.map(|r| r.get::<String, _>("id")))
    };
    for _round in 0..8 {
        let mut frees = Vec::new();
        for (client, user_id) in &staff {
            // Wait for the seat to be filled again before freeing it.
            let mut conversation = None;
            for _ in 0..200 {
                conversation = held(db.url.clone(), user_id.clone()).await?;
                if conversation.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let conversation =
                conversation.ok_or_else(|| anyhow::anyhow!("a freed seat was never filled"))?;
            let path = format!("/api/v1/conversations/{conversation}/resolve");
            frees.push(async move { client.post(&path, json!({})).await });
        }
        for (code, body) in futures_util::future::join_all(frees)
            .await
            .into_iter()
            .flatten()
        {
            ensure!(code == 200, "resolve: {code} {body}");
        }
    }
    // Every seat is filled once more, and the rest wait.
    let mut conn = sqlx::PgConnection::connect(&db.url).await?;
    let mut active = 0_i64;
    for _ in 0..200 {
        active = sqlx::query("SELECT COUNT(*) AS n FROM conversations WHERE status = 'active'")
            .fetch_one(&mut conn)
            .await?
            .try_get("n")?;
        if active == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    watching.store(false, std::sync::atomic::Ordering::Relaxed);
    let most = watcher.await??;
    ensure!(
        most <= 1,
        "an agent held {most} conversations at capacity 1"
    );
    ensure!(
        active == 3,
        "{active} conversations active with three seats"
    );
    let waiting: i64 =
        sqlx::query("SELECT COUNT(*) AS n FROM conversations WHERE status = 'waiting'")
            .fetch_one(&mut conn)
            .await?
            .try_get("n")?;
    ensure!(waiting == 50 - 3 - 8 * 3, "{waiting} waiting");
    for node in nodes {
        node.stop().await?;
    }
    Ok(())
}

/// The Slack console's posts in the console channel (not in a thread) that
/// stand for conversation `id`.
fn console_posts(fake: &baton_tests::fakes::slack::FakeSlack, id: &str) -> usize {
    fake.calls_to("chat.postMessage")
        .iter()
        .filter(|p| {
            p["channel"] == "C0CONSOLE1"
                && p.get("thread_ts").is_none()
                && p["blocks"].to_string().contains(id)
        })
        .count()
}

/// Replies the console made in a post's thread saying it was handed over
/// again: an escalation followed a second time (no conversation here is
/// handed over twice).
fn followed_twice(fake: &baton_tests::fakes::slack::FakeSlack) -> Vec<serde_json::Value> {
    fake.calls_to("chat.postMessage")
        .into_iter()
        .filter(|p| {
            p.get("thread_ts").is_some()
                && p["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Handed over again"))
        })
        .collect()
}

/// A visitor on `base` who asks for a human: the conversation's id.
async fn escalate(base: &str, n: usize) -> Result<String> {
    let visitor = VisitorClient::start(base).await?;
    let conv = visitor
        .turn(&format!("I want to talk to a human, please ({n})"))
        .await?;
    ensure!(conv["status"] == "waiting", "not handed over: {conv}");
    baton_tests::str_at(&conv, "/id")
}

/// A node that hangs (SIGSTOP) loses the Slack console to the other node
/// within the stated bound (12 s: the lease is older than the node timeout,
/// plus one take), and the escalations made meanwhile are posted once each;
/// woken up, the hung node notices it lost the console and posts nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_node_loses_the_slack_console_and_nothing_is_posted_twice() -> Result<()> {
    use baton_tests::fakes::slack::FakeSlack;
    use std::time::{Duration, Instant};
    let Some((binary, db)) = shared_postgres().await? else {
        return Ok(());
    };
    let fake = FakeSlack::start().await?;
    let config = format!(
        "[channels.slack]\napi_url = \"{}\"\nconsole_channel = \"C0CONSOLE1\"\n",
        fake.api
    );
    let env = [
        ("SLACK_BOT_TOKEN", "xoxb-test-token"),
        ("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5"),
    ];
    let a = Process::start_with_env(&binary, &db, &config, "console-a", &env).await?;
    let b = Process::start_with_env(&binary, &db, &config, "console-b", &env).await?;
    let runs_console = |p: &Process| {
        p.read_log()
            .lines()
            .any(|l| l.contains("this node runs it") && l.contains("console:slack"))
    };
    let holder_is_a = baton_tests::eventually(
        10,
        || match (runs_console(&a), runs_console(&b)) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        },
        || "no single node took the console".to_owned(),
    )
    .await?;
    let (hung, live) = if holder_is_a { (a, b) } else { (b, a) };

    // Before the hang the console follows an escalation made on the other node.
    let mut ids = vec![escalate(&live.base(), 0).await?];
    baton_tests::eventually(
        10,
        || (console_posts(&fake, &ids[0]) == 1).then_some(()),
        || format!("the first escalation was not posted: {:#?}", fake.calls()),
    )
    .await?;

    hung.signal("STOP")?;
    let hung_at = Instant::now();
    for n in 1..=3 {
        ids.push(escalate(&live.base(), n).await?);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    // Each escalation made during the hang is posted; the first one (made
    // at the hang) within the bound.
    let mut took_over = None;
    for id in &ids {
        baton_tests::eventually(
            20,
            || (console_posts(&fake, id) >= 1).then_some(()),
            || format!("{id} was not posted after the hang: {:#?}", fake.calls()),
        )
        .await?;
        if id == &ids[1] {
            took_over = Some(hung_at.elapsed());
        }
    }
    let took_over = took_over.unwrap_or_default();
    ensure!(
        took_over <= Duration::from_secs(16),
        "the console moved after {took_over:?}, beyond the 12 s bound and room for the post"
    );
    ensure!(
        runs_console(&live),
        "the live node posted without saying it took the console"
    );

    // Woken up, the hung node finds its lease gone and stops.
    hung.signal("CONT")?;
    baton_tests::eventually(
        15,
        || {
            hung.read_log()
                .contains("lost it to another node")
                .then_some(())
        },
        || format!("the woken node did not notice: {}", hung.read_log()),
    )
    .await?;
    // An escalation on the woken node is posted by the new holder; once it
    // is, anything the woken node still had under way has happened.
    ids.push(escalate(&hung.base(), 4).await?);
    let last = ids[ids.len() - 1].clone();
    baton_tests::eventually(
        10,
        || (console_posts(&fake, &last) >= 1).then_some(()),
        || {
            format!(
                "the escalation on the woken node was not posted: {:#?}",
                fake.calls()
            )
        },
    )
    .await?;
    for id in &ids {
        let posts = console_posts(&fake, id);
        ensure!(
            posts == 1,
            "{id} was posted {posts} times: {:#?}",
            fake.calls()
        );
    }
    let twice = followed_twice(&fake);
    ensure!(twice.is_empty(), "escalations followed twice: {twice:#?}");
    eprintln!("the console moved in {took_over:?}");
    hung.stop().await?;
    live.stop().await?;
    Ok(())
}
