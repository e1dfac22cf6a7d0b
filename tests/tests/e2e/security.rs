//! The protections of the security hardening, each from the outside: a
//! flood of bad sign-ins (memory read from `/proc`), internal webhook
//! targets, framing, revocable access, per-account throttling, metrics
//! behind credentials, `Origin` checks, oversized WebSocket frames and
//! slow or idle connections.

use anyhow::{Context, Result, bail, ensure};
use baton_tests::{
    Backend, Process, Server, StaffClient, TestDb, VisitorClient, baton_binary, baton_cli,
    eventually_async, free_port, status_json, str_at, ws_send,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A client whose connections come from `127.0.0.<n>`: another address to
/// the server, as another machine would be.
fn client_from(n: u8) -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .build()?)
}

/// `VmRSS` or `VmHWM` of a process, in KiB.
fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

async fn login_status(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> Result<(u16, Value, Option<String>)> {
    let resp = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await?;
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (s, v) = status_json(resp).await?;
    Ok((s, v, retry))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_sign_ins_from_200_addresses_stays_within_150_mib() -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let node = Process::start(&binary, &db, "", "flood").await?;
    let out = baton_cli(
        &binary,
        &db,
        &[
            "user",
            "add",
            "--email",
            "sam@example.com",
            "--name",
            "Sam",
            "--role",
            "owner",
            "--password-stdin",
        ],
        "sams-long-password\n",
    )
    .await?;
    ensure!(out.success, "user add: {}", out.stderr);
    let pid = node.pid().context("pid")?;
    let base = node.base();
    // One good sign-in first, so that what a sign-in needs once is there.
    let (s, v, _) = login_status(
        &reqwest::Client::new(),
        &base,
        "sam@example.com",
        "sams-long-password",
    )
    .await?;
    ensure!(s == 200, "{v}");
    let idle = proc_kib(pid, "VmRSS:")?;

    // 200 at once, each from its own address: wrong passwords for the real
    // account and guesses at unknown ones.
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let http = client_from(u8::try_from(2 + i % 250).unwrap_or(2))?;
        let base = base.clone();
        flood.spawn(async move {
            let email = if i % 2 == 0 {
                "sam@example.com".to_owned()
            } else {
                format!("nobody{i}@example.com")
            };
            login_status(&http, &base, &email, "not-the-password").await
        });
    }
    let mut statuses = std::collections::BTreeMap::new();
    while let Some(done) = flood.join_next().await {
        let (s, v, retry) = done??;
        ensure!(
            [401, 429, 503].contains(&s),
            "a bad sign-in answered {s}: {v}"
        );
        if s == 503 || s == 429 {
            ensure!(retry.is_some(), "{s} without Retry-After: {v}");
        }
        *statuses.entry(s).or_insert(0) += 1;
    }
    // Then 200 that hang up before the answer (a client that disconnects
    // mid-sign-in must not free a hashing slot or keep a queue place).
    let mut hang_ups = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                1,
                u8::try_from(1 + i % 250).unwrap_or(1),
            )))
            .timeout(Duration::from_millis(5 + u64::from(i % 40)))
            .build()?;
        let base = base.clone();
        hang_ups.spawn(async move {
            let _ = login_status(&http, &base, &format!("gone{i}@example.com"), "x").await;
        });
    }
    while hang_ups.join_next().await.is_some() {}
    let peak = proc_kib(pid, "VmHWM:")?;
    let grew_mib = peak.saturating_sub(idle) / 1024;
    println!(
        "idle {} MiB, peak {} MiB, +{grew_mib} MiB; answers {statuses:?}",
        idle / 1024,
        peak / 1024
    );
    ensure!(
        grew_mib <= 150,
        "200 concurrent bad sign-ins took the server from {} MiB to {} MiB",
        idle / 1024,
        peak / 1024
    );
    // Still serving, with no leaked queue places: someone else signs in
    // (Sam's account is throttled now).
    let out = baton_cli(
        &binary,
        &db,
        &[
            "user",
            "add",
            "--email",
            "kim@example.com",
            "--name",
            "Kim",
            "--password-stdin",
        ],
        "kims-long-password\n",
    )
    .await?;
    ensure!(out.success, "user add: {}", out.stderr);
    let (s, v, _) = eventually_async(
        10,
        || async {
            let r = login_status(
                &reqwest::Client::new(),
                &base,
                "kim@example.com",
                "kims-long-password",
            )
            .await?;
            Ok((r.0 != 503).then_some(r))
        },
        || "the server stayed busy".to_owned(),
    )
    .await?;
    ensure!(s == 200, "{v}");
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_cannot_reach_internal_addresses() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let olive = server.staff("Olive", "owner").await?;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.1/",
        "http://127.0.0.1:5432/",
        "http://[::1]/",
        "http://0x7f000001/",
        "http://2130706433/",
        "http://[::ffff:169.254.169.254]/",
        "http://localhost:8080/hook",
    ] {
        let (s, v) = olive
            .post(
                "/api/v1/webhooks",
                json!({"url": url, "events": ["*"], "secret": "long-secret"}),
            )
            .await?;
        ensure!(
            s == 422
                && v["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("refused by policy"),
            "{url}: {s} {v}"
        );
        let (s, v) = olive
            .send(
                reqwest::Method::PUT,
                "/api/v1/bots/default",
                json!({"handover": {"actions": [{"type": "webhook", "url": url}]}}),
            )
            .await?;
        ensure!(
            s == 422
                && v["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("refused by policy"),
            "bot action {url}: {s} {v}"
        );
    }
    let (s, hooks) = olive.get("/api/v1/webhooks").await?;
    ensure!(
        s == 200 && hooks["webhooks"].as_array().is_some_and(Vec::is_empty),
        "{hooks}"
    );

    // A webhook stored before the policy (an upgrade) to a port that answers
    // and to one that does not: both are "refused by policy", no more, and
    // nothing is sent.
    let listening = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let open_port = listening.local_addr()?.port();
    let closed_port = free_port()?;
    let now = baton_runtime::Clock::system().now();
    let mut ids = vec![];
    for port in [open_port, closed_port] {
        let hook = server
            .runtime
            .store()
            .create_webhook(
                baton_store::NewWebhook {
                    url: &format!("http://127.0.0.1:{port}/hook"),
                    events: &["conversation.started".to_owned()],
                    secret: "long-secret",
                },
                now,
            )
            .await?;
        ids.push(hook.id);
    }
    VisitorClient::start(&server.base()).await?;
    for id in &ids {
        let deliveries = eventually_async(
            10,
            || async {
                let (_, d) = olive
                    .get(&format!("/api/v1/webhooks/{id}/deliveries"))
                    .await?;
                let done = d["deliveries"][0]["status"] == "failed";
                Ok(done.then_some(d))
            },
            || format!("the delivery of {id} never failed"),
        )
        .await?;
        let d = &deliveries["deliveries"][0];
        ensure!(
            d["last_error"] == "refused by policy"
                && d["last_status"].is_null()
                && d["attempts"] == 1,
            "{d}"
        );
    }
    let accepted = tokio::time::timeout(Duration::from_millis(300), listening.accept()).await;
    ensure!(accepted.is_err(), "the refused webhook connected anyway");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_action_from_the_file_is_refused_without_the_opt_in() -> Result<()> {
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = receiver.local_addr()?.port();
    let config = format!(
        "[[bot.handover.actions]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:{port}/crm\"\n"
    );
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, &config).await?;
    let olive = server.staff("Olive", "owner").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let (s, v) = olive
        .post(
            &format!("/api/v1/conversations/{}/escalate", visitor.conversation_id),
            json!({}),
        )
        .await?;
    ensure!(s == 200, "{v}");
    let runs = eventually_async(
        10,
        || async {
            let (_, r) = olive
                .get(&format!(
                    "/api/v1/conversations/{}/actions",
                    visitor.conversation_id
                ))
                .await?;
            Ok(r["actions"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
                .then_some(r))
        },
        || "the webhook action never ran".to_owned(),
    )
    .await?;
    let run = &runs["actions"][0];
    ensure!(
        run["ok"] == false
            && run["detail"]
                .as_str()
                .unwrap_or("")
                .ends_with("refused by policy"),
        "{runs}"
    );
    ensure!(
        tokio::time::timeout(Duration::from_millis(300), receiver.accept())
            .await
            .is_err(),
        "the refused action connected anyway"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_chat_page_may_be_framed() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let http = reqwest::Client::new();
    for path in ["/inbox", "/", "/api/v1/me", "/widget.js", "/healthz"] {
        let resp = http.get(format!("{}{path}", server.base())).send().await?;
        let csp = resp
            .headers()
            .get("content-security-policy")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let xfo = resp
            .headers()
            .get("x-frame-options")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ensure!(
            csp.contains("frame-ancestors 'none'") && !csp.contains("frame-ancestors *"),
            "{path}: {csp}"
        );
        ensure!(xfo == "DENY", "{path}: X-Frame-Options {xfo:?}");
    }
    let resp = http
        .get(format!("{}/chat/default", server.base()))
        .send()
        .await?;
    ensure!(resp.status() == 200);
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    ensure!(csp.contains("frame-ancestors *"), "{csp}");
    ensure!(
        resp.headers().get("x-frame-options").is_none(),
        "the chat page must be embeddable"
    );
    Ok(())
}

/// A token made through the API, with its id.
async fn new_token(staff: &StaffClient, name: &str) -> Result<(String, String)> {
    let (s, v) = staff.post("/api/v1/tokens", json!({"name": name})).await?;
    ensure!(s == 201, "{v}");
    Ok((str_at(&v, "/token")?, str_at(&v, "/id")?))
}

async fn with_token(base: &str, token: &str, path: &str) -> Result<u16> {
    Ok(reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await?
        .status()
        .as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_users_can_be_taken_back() -> Result<()> {
    baton_tests::on_every_backend(tokens_and_users_can_be_taken_back_on).await
}

async fn tokens_and_users_can_be_taken_back_on(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, "").await?;
    let base = server.base();
    let olive = server.staff("Olive", "owner").await?;
    let alice = server.staff("Alice", "responder").await?;
    let (olive_token, _) = new_token(&olive, "olive's script").await?;
    let (alice_token, alice_token_id) = new_token(&alice, "alice's script").await?;
    let (spare_token, spare_id) = new_token(&alice, "spare").await?;

    // Alice sees her own tokens; Olive, an owner, everyone's. No secret is shown.
    let (s, mine) = alice.get("/api/v1/tokens").await?;
    let names: Vec<&str> = mine["tokens"]
        .as_array()
        .context("tokens")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    ensure!(
        s == 200 && names.len() == 2 && !names.contains(&"olive's script"),
        "{mine}"
    );
    ensure!(
        !mine.to_string().contains(&alice_token),
        "a secret was listed: {mine}"
    );
    let (_, all) = olive.get("/api/v1/tokens").await?;
    ensure!(
        all["tokens"].as_array().is_some_and(|t| t.len() == 3),
        "{all}"
    );
    ensure!(with_token(&base, &alice_token, "/api/v1/me").await? == 200);

    // Alice may not revoke Olive's token (it does not exist for her); she
    // revokes her spare one, which stops working at once.
    let olive_token_id = all["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "olive's script")
        .and_then(|t| t["id"].as_str())
        .context("id")?
        .to_owned();
    let (s, _) = alice
        .delete(&format!("/api/v1/tokens/{olive_token_id}"))
        .await?;
    ensure!(s == 404, "alice revoked olive's token: {s}");
    let (s, _) = alice.delete(&format!("/api/v1/tokens/{spare_id}")).await?;
    ensure!(s == 204);
    ensure!(
        with_token(&base, &spare_token, "/api/v1/me").await? == 401,
        "a revoked token still works"
    );
    ensure!(with_token(&base, &olive_token, "/api/v1/me").await? == 200);

    // Signing out with a token revokes it.
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/logout"))
        .bearer_auth(&olive_token)
        .send()
        .await?;
    ensure!(resp.status() == 204);
    ensure!(
        with_token(&base, &olive_token, "/api/v1/me").await? == 401,
        "a signed-out token still works"
    );

    // An open event stream ends when its token is revoked.
    let (events_token, events_id) = new_token(&alice, "events").await?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{}/api/v1/events",
            base.replacen("http", "ws", 1)
        ))?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {events_token}").parse()?);
    let (mut stream, _) = tokio_tungstenite::connect_async(request).await?;
    let (s, _) = olive.delete(&format!("/api/v1/tokens/{events_id}")).await?;
    ensure!(s == 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(WsMessage::Close(_)) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    ensure!(
        closed.is_ok(),
        "the event stream of a revoked token stayed open"
    );

    // Alice holds a conversation; then she is removed.
    let visitor = VisitorClient::start(&base).await?;
    let id = visitor.conversation_id.clone();
    let (s, v) = alice
        .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
        .await?;
    ensure!(s == 200, "{v}");
    let alice_id = str_at(&alice.user, "/id")?;
    let (s, v) = alice
        .delete(&format!("/api/v1/users/{}", str_at(&olive.user, "/id")?))
        .await?;
    ensure!(s == 403, "a responder removed the owner: {v}");
    let (s, v) = olive.delete(&format!("/api/v1/users/{alice_id}")).await?;
    ensure!(s == 204, "{v}");
    let (s, _) = alice.get("/api/v1/me").await?;
    ensure!(s == 401, "a removed user's session still works");
    ensure!(
        with_token(&base, &alice_token, "/api/v1/me").await? == 401,
        "a removed user's token still works"
    );
    let (s, v, _) = login_status(
        &reqwest::Client::new(),
        &base,
        "alice@example.com",
        "alice-password",
    )
    .await?;
    ensure!(s == 401, "a removed user signed in: {v}");
    // Her conversation is back in the queue, with its history.
    let c = olive.wait_status(&id, "waiting").await?;
    ensure!(!c["messages"].as_array().is_some_and(Vec::is_empty), "{c}");
    let _ = alice_token_id;
    // She is no longer listed, nor offered as an agent; admins can still see her.
    let (_, users) = olive.get("/api/v1/users").await?;
    ensure!(!users.to_string().contains("alice@example.com"), "{users}");
    let (_, agents) = olive.get("/api/v1/agents").await?;
    ensure!(!agents.to_string().contains(&alice_id), "{agents}");
    let (_, everyone) = olive.get("/api/v1/users?include_deactivated=true").await?;
    let listed = everyone["users"]
        .as_array()
        .context("users")?
        .iter()
        .find(|u| u["id"] == alice_id.as_str())
        .context("alice")?;
    ensure!(
        listed["active"] == false && listed["deactivated_at"].is_string(),
        "{listed}"
    );

    // Neither the last owner nor oneself can be removed.
    let olive_id = str_at(&olive.user, "/id")?;
    let (s, v) = olive.delete(&format!("/api/v1/users/{olive_id}")).await?;
    ensure!(s == 409 && v["error"]["code"] == "self_removal", "{v}");
    server
        .add_user("oscar@example.com", "Oscar", "owner", "oscar-password")
        .await?;
    let oscar = StaffClient::login(&base, "oscar@example.com", "oscar-password").await?;
    let (s, _) = oscar.delete(&format!("/api/v1/users/{olive_id}")).await?;
    ensure!(s == 204);
    server
        .add_user("adam@example.com", "Adam", "admin", "adam-password")
        .await?;
    let adam = StaffClient::login(&base, "adam@example.com", "adam-password").await?;
    let (s, v) = adam
        .delete(&format!("/api/v1/users/{}", str_at(&oscar.user, "/id")?))
        .await?;
    ensure!(s == 403, "an admin removed an owner: {v}");

    // Bringing someone back: they sign in with their old password.
    let (s, v) = oscar
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{alice_id}"),
            json!({"active": true}),
        )
        .await?;
    ensure!(s == 200 && v["user"]["active"] == true, "{v}");
    StaffClient::login(&base, "alice@example.com", "alice-password").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_revokes_tokens_and_removes_users() -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let node = Process::start(&binary, &db, "", "cli").await?;
    for (email, role) in [
        ("own@example.com", "owner"),
        ("ann@example.com", "responder"),
    ] {
        let out = baton_cli(
            &binary,
            &db,
            &[
                "user",
                "add",
                "--email",
                email,
                "--name",
                "X",
                "--role",
                role,
                "--password-stdin",
            ],
            "a-long-password\n",
        )
        .await?;
        ensure!(out.success, "{}", out.stderr);
    }
    let out = baton_cli(
        &binary,
        &db,
        &[
            "token",
            "create",
            "--email",
            "ann@example.com",
            "--name",
            "deploy",
        ],
        "",
    )
    .await?;
    ensure!(out.success, "{}", out.stderr);
    let token = out.stdout.trim().to_owned();
    ensure!(with_token(&node.base(), &token, "/api/v1/me").await? == 200);
    let out = baton_cli(&binary, &db, &["token", "list"], "").await?;
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("deploy"))
        .context("no token listed")?
        .to_owned();
    ensure!(
        line.contains("ann@example.com") && !line.contains(&token),
        "{line}"
    );
    let id = line.split('\t').next().context("id")?;
    let out = baton_cli(&binary, &db, &["token", "revoke", id], "").await?;
    ensure!(out.success, "{}", out.stderr);
    ensure!(
        with_token(&node.base(), &token, "/api/v1/me").await? == 401,
        "revoked by the CLI, still works"
    );
    let out = baton_cli(&binary, &db, &["token", "revoke", id], "").await?;
    ensure!(
        !out.success && out.stderr.contains("no API token"),
        "{}",
        out.stderr
    );

    let out = baton_cli(
        &binary,
        &db,
        &["user", "remove", "--email", "own@example.com"],
        "",
    )
    .await?;
    ensure!(
        !out.success && out.stderr.contains("last owner"),
        "{}",
        out.stderr
    );
    let session = StaffClient::login(&node.base(), "ann@example.com", "a-long-password").await?;
    let out = baton_cli(
        &binary,
        &db,
        &["user", "remove", "--email", "ann@example.com"],
        "",
    )
    .await?;
    ensure!(out.success, "{}", out.stderr);
    let (s, _) = session.get("/api/v1/me").await?;
    ensure!(s == 401, "removed by the CLI, the session still works");
    let out = baton_cli(&binary, &db, &["user", "list"], "").await?;
    ensure!(!out.stdout.contains("ann@example.com"), "{}", out.stdout);
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guesses_at_one_account_from_many_addresses_are_throttled() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let base = server.base();
    server
        .add_user("alice@example.com", "Alice", "responder", "alice-password")
        .await?;
    server
        .add_user("bob@example.com", "Bob", "responder", "bob-password")
        .await?;
    // Bob has signed in from 127.0.0.30 before: that address is trusted for him.
    let (s, v, _) =
        login_status(&client_from(30)?, &base, "bob@example.com", "bob-password").await?;
    ensure!(s == 200, "{v}");
    for n in 0..5u8 {
        for who in ["alice@example.com", "bob@example.com"] {
            let (s, v, _) = login_status(&client_from(10 + n)?, &base, who, "guess").await?;
            ensure!(s == 401, "guess {n} at {who}: {v}");
        }
    }
    // From yet another address a guess must wait now. On a slow machine a
    // second may pass between two requests; then the next failure doubles
    // the wait, so keep guessing until the refusal comes.
    let (refused, retry, at) = eventually_async(
        60,
        || async {
            let at = std::time::Instant::now();
            let (s, v, retry) =
                login_status(&client_from(20)?, &base, "Alice@Example.com", "guess").await?;
            Ok((s == 429).then_some((v, retry, at)))
        },
        || "the throttle never refused a guess".to_owned(),
    )
    .await?;
    ensure!(
        refused["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("for this account"),
        "{refused}"
    );
    let wait: u64 = retry.context("Retry-After")?.parse()?;
    ensure!((1..=60).contains(&wait), "{wait}");
    // Within the wait the right password waits too, from an address the
    // account never signed in from.
    let (s, _, _) = login_status(
        &client_from(21)?,
        &base,
        "alice@example.com",
        "alice-password",
    )
    .await?;
    if at.elapsed() < Duration::from_secs(wait).saturating_sub(Duration::from_millis(500)) {
        ensure!(s == 429, "the right password skipped the wait: {s}");
    }
    // Bob's account is under attack too, but his usual address is let in.
    let (s, v, _) =
        login_status(&client_from(30)?, &base, "bob@example.com", "bob-password").await?;
    ensure!(s == 200, "the owner's trusted address was held up: {v}");
    // After the wait, Alice signs in.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let (s, v, _) = login_status(
        &client_from(22)?,
        &base,
        "alice@example.com",
        "alice-password",
    )
    .await?;
    ensure!(s == 200, "after the wait: {v}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_need_credentials_or_their_own_address() -> Result<()> {
    let binary = baton_binary()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let metrics_port = free_port()?;
    let listen = format!("127.0.0.1:{metrics_port}");
    let node = Process::start_with_env(
        &binary,
        &db,
        "",
        "metrics",
        &[
            ("BATON_METRICS_TOKEN", "scrape-token-123"),
            ("BATON_METRICS_LISTEN", &listen),
        ],
    )
    .await?;
    let http = reqwest::Client::new();
    let main = format!("{}/metrics", node.base());
    ensure!(http.get(&main).send().await?.status() == 401);
    ensure!(http.get(&main).bearer_auth("wrong").send().await?.status() == 401);
    let text = http
        .get(&main)
        .bearer_auth("scrape-token-123")
        .send()
        .await?
        .text()
        .await?;
    ensure!(text.contains("baton_http_responses_total"), "{text}");
    let text = http
        .get(format!("http://{listen}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(text.contains("baton_http_responses_total"), "{text}");
    let s = http
        .get(format!("http://{listen}/api/v1/conversations"))
        .send()
        .await?
        .status();
    ensure!(s == 404, "the metrics address serves only /metrics: {s}");
    node.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_from_another_origin_are_refused() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let base = server.base();
    let olive = server.staff("Olive", "owner").await?;
    let post = |origin: &str| {
        olive
            .http
            .post(format!("{base}/api/v1/tokens"))
            .header("x-csrf-token", &olive.csrf)
            .header("origin", origin)
            .json(&json!({"name": "x"}))
            .send()
    };
    let (s, v) = status_json(post("https://evil.example").await?).await?;
    ensure!(s == 403 && v["error"]["code"] == "origin", "{v}");
    let (s, _) = status_json(post("null").await?).await?;
    ensure!(s == 403);
    let (s, v) = status_json(post(&base).await?).await?;
    ensure!(s == 201, "same origin: {v}");
    // Reads are not refused: a GET changes nothing.
    let r = olive
        .http
        .get(format!("{base}/api/v1/me"))
        .header("origin", "https://evil.example")
        .send()
        .await?;
    ensure!(r.status() == 200);
    // Sign-in from another site's page is refused too.
    server
        .add_user("alice@example.com", "Alice", "responder", "alice-password")
        .await?;
    let r = reqwest::Client::new()
        .post(format!("{base}/api/v1/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"email": "alice@example.com", "password": "alice-password"}))
        .send()
        .await?;
    let (s, v) = status_json(r).await?;
    ensure!(s == 403 && v["error"]["code"] == "origin", "{v}");
    Ok(())
}

/// Reads frames until a close; its code.
async fn close_code(ws: &mut baton_tests::Ws) -> Result<CloseCode> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => bail!("no close frame within 5 s"),
            Ok(None) => bail!("the connection dropped without a close frame"),
            Ok(Some(Err(e))) => bail!("the connection failed without a close frame: {e}"),
            Ok(Some(Ok(WsMessage::Close(Some(frame))))) => return Ok(frame.code),
            Ok(Some(Ok(WsMessage::Close(None)))) => bail!("a close frame without a code"),
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_websocket_frame_gets_a_1009_close() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "[limits]\nmax_message_bytes = 1024\n").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let mut ws = visitor.ws().await?;
    ws_send(
        &mut ws,
        json!({"type": "message", "text": "x".repeat(20_000)}),
    )
    .await?;
    ensure!(close_code(&mut ws).await? == CloseCode::Size);
    // The visitor carries on with a new socket.
    let mut ws = visitor.ws().await?;
    ws_send(&mut ws, json!({"type": "message", "text": "hello"})).await?;
    baton_tests::next_matching(&mut ws, 10, |f| {
        f["type"] == "message" && f["message"]["sender"] == "bot"
    })
    .await?;

    let olive = server.staff("Olive", "owner").await?;
    let mut events = olive.events().await?;
    futures_util::SinkExt::send(&mut events, WsMessage::Text("y".repeat(100_000).into())).await?;
    ensure!(close_code(&mut events).await? == CloseCode::Size);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    // 150 connections that send half a request head and then nothing, one
    // that sends nothing at all, and one idle after a complete request.
    let mut slow = vec![];
    for _ in 0..150 {
        let mut c = tokio::net::TcpStream::connect(server.addr).await?;
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await?;
        slow.push(c);
    }
    slow.push(tokio::net::TcpStream::connect(server.addr).await?);
    let mut idle = tokio::net::TcpStream::connect(server.addr).await?;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await?;
    ensure!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "no answer"
    );
    slow.push(idle);
    let limit = baton_web::HEADER_READ_TIMEOUT + Duration::from_secs(10);
    let started = std::time::Instant::now();
    for mut c in slow {
        let left = limit.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(_) | Err(_)) => {} // answered (408 or nothing) and closed, or reset
            Err(_) => bail!(
                "a slow connection was still open after {}s",
                limit.as_secs()
            ),
        }
    }
    // The server still answers.
    let s = reqwest::get(format!("{}/healthz", server.base()))
        .await?
        .status();
    ensure!(s == 200);
    Ok(())
}
