//! WebAssembly plugins on the real binary: dropped into its plugins folder
//! while it runs, switched by the admin API, a power-up collecting an email
//! in the widget, an action whose HTTP call reaches a local receiver (with a
//! retry), and misbehaving plugins that leave the conversation unharmed.

use anyhow::{Context, Result, bail, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use baton_tests::{
    Backend, Process, Silent, StaffClient, TestDb, VisitorClient, add_user, backends, baton_binary,
    install_plugin,
};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The server's config for these tests: the folder is looked at often.
const FAST_RELOAD: &str = "[plugins]\nreload_interval_ms = 100\n";

async fn start(db: &TestDb, config: &str, name: &str) -> Result<(Process, PathBuf)> {
    let plugins = db.data_dir().join(format!("{name}-plugins"));
    std::fs::create_dir_all(&plugins)?;
    let process = Process::start_with_env(
        &baton_binary()?,
        db,
        config,
        name,
        &[("BATON_PLUGINS_DIR", plugins.to_str().context("utf-8 path")?)],
    )
    .await?;
    Ok((process, plugins))
}

async fn owner(db: &TestDb, base: &str) -> Result<StaffClient> {
    let store = baton_store::Store::connect(&db.url).await?;
    add_user(
        &store,
        "olive@example.com",
        "Olive",
        "owner",
        "olive-password",
    )
    .await?;
    store.close().await;
    StaffClient::login(base, "olive@example.com", "olive-password").await
}

/// Waits until the plugin list satisfies `pred`; returns the list.
async fn plugins_until(staff: &StaffClient, pred: impl Fn(&[Value]) -> bool) -> Result<Vec<Value>> {
    let mut last = vec![];
    for _ in 0..100 {
        let (status, body) = staff.get("/api/v1/plugins").await?;
        ensure!(status == 200, "GET /api/v1/plugins: {status} {body}");
        last = body["plugins"].as_array().cloned().unwrap_or_default();
        if pred(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("the plugin list never became as expected: {last:?}")
}

fn state_of<'a>(list: &'a [Value], id: &str) -> Option<&'a str> {
    list.iter()
        .find(|p| p["id"] == id)
        .and_then(|p| p["state"].as_str())
}

#[tokio::test]
async fn a_trigger_dropped_into_the_folder_hands_over_without_a_restart() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let (process, plugins) = start(&db, FAST_RELOAD, "drop-trigger").await?;
    let staff = owner(&db, &process.base()).await?;

    // Nothing installed: "urgent" is just a message.
    let visitor = VisitorClient::start(&process.base()).await?;
    let conv = visitor.turn("this is urgent, my tent is leaking").await?;
    ensure!(
        conv["status"] == "bot",
        "no plugin yet, no hand-over: {conv}"
    );

    install_plugin(&plugins, "vip-trigger", "vip", &[])?;
    plugins_until(&staff, |l| state_of(l, "vip") == Some("on")).await?;
    let visitor = VisitorClient::start(&process.base()).await?;
    let conv = visitor.turn("This is URGENT, my tent is leaking").await?;
    ensure!(conv["status"] == "waiting", "{conv}");
    ensure!(conv["handover"]["reason"] == "plugin:vip", "{conv}");
    let tags: Vec<&str> = conv["tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        tags.contains(&"vip") && tags.contains(&"priority-2"),
        "{tags:?}"
    );
    // The plugin's note is for the agents only.
    let id = conv["id"].as_str().context("id")?;
    let (_, full) = staff.get(&format!("/api/v1/conversations/{id}")).await?;
    let notes: Vec<&Value> = full["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["internal"] == true)
        .collect();
    ensure!(
        notes
            .iter()
            .any(|m| m["text"].as_str().unwrap_or("").contains("urgent")),
        "{full}"
    );
    let widget = visitor.state().await?;
    ensure!(
        !widget.to_string().contains("the visitor said"),
        "the note must not reach the visitor"
    );
    // The admin's report counts it under its reason.
    let (_, report) = staff.get("/api/v1/reports/handovers").await?;
    ensure!(report.to_string().contains("plugin:vip"), "{report}");

    // Switched off by the admin: no hand-over; on again: hand-over.
    let (status, body) = staff
        .send(
            reqwest::Method::PATCH,
            "/api/v1/plugins/vip",
            json!({"enabled": false}),
        )
        .await?;
    ensure!(status == 200 && body["state"] == "off", "{status} {body}");
    let conv = VisitorClient::start(&process.base())
        .await?
        .turn("urgent!")
        .await?;
    ensure!(conv["status"] == "bot", "{conv}");
    let (status, body) = staff
        .send(
            reqwest::Method::PATCH,
            "/api/v1/plugins/vip",
            json!({"enabled": "yes"}),
        )
        .await?;
    ensure!(
        status == 400 || status == 422,
        "a bad switch is refused: {status} {body}"
    );
    let (status, _) = staff
        .send(
            reqwest::Method::PATCH,
            "/api/v1/plugins/nope",
            json!({"enabled": true}),
        )
        .await?;
    ensure!(status == 404);
    staff
        .send(
            reqwest::Method::PATCH,
            "/api/v1/plugins/vip",
            json!({"enabled": true}),
        )
        .await?;
    let conv = VisitorClient::start(&process.base())
        .await?
        .turn("urgent!")
        .await?;
    ensure!(conv["handover"]["reason"] == "plugin:vip", "{conv}");

    // Removed from the folder: gone, and no more hand-overs.
    std::fs::remove_dir_all(plugins.join("vip"))?;
    plugins_until(&staff, |l| l.is_empty()).await?;
    let conv = VisitorClient::start(&process.base())
        .await?
        .turn("urgent!")
        .await?;
    ensure!(conv["status"] == "bot", "{conv}");
    process.stop().await
}

#[tokio::test]
async fn the_talk_to_a_human_power_up_collects_an_email_and_hands_over() -> Result<()> {
    for backend in backends() {
        let db = TestDb::new(backend).await?;
        let (process, plugins) = start(&db, FAST_RELOAD, "talk-to-human").await?;
        let staff = owner(&db, &process.base()).await?;
        install_plugin(&plugins, "talk-to-human", "talk-to-human", &[])?;
        plugins_until(&staff, |l| state_of(l, "talk-to-human") == Some("on")).await?;

        let visitor = VisitorClient::start(&process.base()).await?;
        let conv = visitor.turn("Can I talk to a human please?").await?;
        ensure!(
            conv["status"] == "bot",
            "{backend:?}: it asks first: {conv}"
        );
        let asked = last_bot(&visitor).await?;
        ensure!(asked.contains("email address"), "{asked}");
        let conv = visitor.turn("why do you need that").await?;
        ensure!(conv["status"] == "bot", "{conv}");
        ensure!(last_bot(&visitor).await?.contains("type it again"));
        let conv = visitor.turn("fine: ada@example.com").await?;
        ensure!(conv["status"] == "waiting", "{backend:?}: {conv}");
        ensure!(
            conv["handover"]["reason"] == "plugin:talk-to-human",
            "{conv}"
        );
        // The owner hears about it, with the address.
        let (_, notes) = staff.get("/api/v1/notifications").await?;
        ensure!(notes.to_string().contains("ada@example.com"), "{notes}");
        // The bot's built-in "talk to a human" trigger did not jump in first.
        let widget = visitor.state().await?;
        let bot_lines = widget["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["sender"] == "bot")
            .count();
        ensure!(
            bot_lines == 3,
            "the greeting, two questions, then the hand-over: {widget}"
        );
        process.stop().await?;
    }
    Ok(())
}

async fn last_bot(visitor: &VisitorClient) -> Result<String> {
    let state = visitor.state().await?;
    Ok(state["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["sender"] == "bot"))
        .and_then(|m| m["text"].as_str())
        .unwrap_or_default()
        .to_owned())
}

/// A CRM-like receiver: the first call of each key fails with 503.
#[derive(Clone, Default)]
struct Crm {
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

async fn crm_tasks(
    State(crm): State<Crm>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, String) {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = serde_json::from_str(&body).unwrap_or_default();
    let mut seen = crm.seen.lock().unwrap();
    let first = !seen.iter().any(|(k, _)| *k == key);
    seen.push((key, body));
    if first {
        (StatusCode::SERVICE_UNAVAILABLE, "busy".into())
    } else {
        (StatusCode::CREATED, json!({"id": 42}).to_string())
    }
}

async fn orders(axum::extract::Path(n): axum::extract::Path<String>) -> (StatusCode, String) {
    if n == "10234" {
        (
            StatusCode::OK,
            json!({"status": "shipped", "eta": "Friday"}).to_string(),
        )
    } else {
        (StatusCode::NOT_FOUND, "{}".into())
    }
}

async fn receiver() -> Result<(u16, Crm)> {
    let crm = Crm::default();
    let app = axum::Router::new()
        .route("/tasks", axum::routing::post(crm_tasks))
        .route("/orders/{n}", axum::routing::get(orders))
        .route("/steal", axum::routing::get(|| async { "stolen" }))
        .with_state(crm.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, crm))
}

#[tokio::test]
async fn action_plugins_run_after_a_hand_over_and_retry_with_the_same_key() -> Result<()> {
    for backend in backends() {
        let (port, crm) = receiver().await?;
        let db = TestDb::new(backend).await?;
        let config = format!(
            "{FAST_RELOAD}\n[plugins.config.crm-task]\nendpoint = \"http://127.0.0.1:{port}/tasks\"\n"
        );
        let (process, plugins) = start(&db, &config, "actions").await?;
        let staff = owner(&db, &process.base()).await?;
        install_plugin(&plugins, "crm-task", "crm-task", &[])?;
        install_plugin(&plugins, "tag-notify", "tag-notify", &[])?;
        plugins_until(&staff, |l| {
            l.iter().filter(|p| p["state"] == "on").count() == 2
        })
        .await?;

        let visitor = VisitorClient::start(&process.base()).await?;
        let conv = visitor.turn("I want to talk to a human").await?;
        ensure!(conv["status"] == "waiting", "{conv}");
        let id = conv["id"].as_str().context("id")?.to_owned();
        let mut runs = Value::Null;
        for _ in 0..100 {
            let (_, body) = staff
                .get(&format!("/api/v1/conversations/{id}/actions"))
                .await?;
            runs = body;
            let text = runs.to_string();
            if text.contains("plugin:crm-task") && text.contains("plugin:tag-notify") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let text = runs.to_string();
        ensure!(text.contains("CRM task 42 created"), "{backend:?}: {runs}");
        ensure!(text.contains("tagged `handed-over`"), "{runs}");
        let seen = crm.seen.lock().unwrap().clone();
        ensure!(seen.len() == 2, "one 503, one retry: {seen:?}");
        ensure!(
            seen[0].0 == seen[1].0 && seen[0].0.starts_with(&id),
            "same idempotency key: {seen:?}"
        );
        ensure!(
            seen[1].1["conversation_id"] == id.as_str() && seen[1].1["reason"] == "visitor_request",
            "{seen:?}"
        );
        let (_, conv) = staff.get(&format!("/api/v1/conversations/{id}")).await?;
        ensure!(conv.to_string().contains("handed-over"), "{conv}");
        process.stop().await?;
    }
    Ok(())
}

/// An action under way when the server stops (its CRM holds the request) is
/// queued again at once: the next start runs it, with the same key, without
/// waiting for the claim to go stale and without counting the cut attempt.
#[tokio::test]
async fn an_action_under_way_at_a_stop_runs_at_the_next_start() -> Result<()> {
    for backend in backends() {
        let silent = Silent::bind().await?;
        let db = TestDb::new(backend).await?;
        let config = |port: u16| {
            format!(
                "{FAST_RELOAD}action_attempts = 2\n[plugins.config.crm-task]\nendpoint = \"http://127.0.0.1:{port}/tasks\"\n"
            )
        };
        let (process, plugins) = start(&db, &config(silent.port), "first").await?;
        let staff = owner(&db, &process.base()).await?;
        install_plugin(&plugins, "crm-task", "crm-task", &[])?;
        plugins_until(&staff, |l| state_of(l, "crm-task") == Some("on")).await?;
        let visitor = VisitorClient::start(&process.base()).await?;
        let conv = visitor.turn("I want to talk to a human").await?;
        let id = conv["id"].as_str().context("id")?.to_owned();
        silent.called(10).await?;
        let log = process.stop_and_read_log().await?;
        ensure!(
            log.contains("plugin action under way queued again"),
            "the stop did not queue the action again: {log}"
        );
        silent.close().await;

        // The CRM answers now (at a new address); the server starts again.
        // The plugin is in place before the start: a job run while it is
        // still loading would count as an attempt.
        let (port, crm) = receiver().await?;
        let plugins = db.data_dir().join("second-plugins");
        std::fs::create_dir_all(&plugins)?;
        install_plugin(&plugins, "crm-task", "crm-task", &[])?;
        let (process, _) = start(&db, &config(port), "second").await?;
        let staff =
            StaffClient::login(&process.base(), "olive@example.com", "olive-password").await?;
        let runs = baton_tests::eventually_async(
            20,
            || async {
                let (_, runs) = staff
                    .get(&format!("/api/v1/conversations/{id}/actions"))
                    .await?;
                Ok(runs.to_string().contains("plugin:crm-task").then_some(runs))
            },
            || format!("{backend:?}: the action cut by the stop did not run again"),
        )
        .await?;
        ensure!(runs.to_string().contains("CRM task 42 created"), "{runs}");
        // Two attempts are allowed and the CRM answers 503 to the first call
        // with a key, 201 to the next: the task is created only if the cut
        // attempt was not counted.
        let seen = crm.seen.lock().unwrap().clone();
        ensure!(seen.len() == 2 && seen[0].0 == seen[1].0, "{seen:?}");
        ensure!(seen[0].0.starts_with(&id), "{seen:?}");
        process.stop().await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_order_status_power_up_answers_from_its_allow_listed_api() -> Result<()> {
    let (port, _) = receiver().await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let config = format!(
        "{FAST_RELOAD}\n[plugins.config.order-status]\napi_url = \"http://127.0.0.1:{port}\"\n"
    );
    let (process, plugins) = start(&db, &config, "orders").await?;
    let staff = owner(&db, &process.base()).await?;
    install_plugin(&plugins, "order-status", "order-status", &[])?;
    plugins_until(&staff, |l| state_of(l, "order-status") == Some("on")).await?;
    let visitor = VisitorClient::start(&process.base()).await?;
    visitor.turn("where is my order?").await?;
    ensure!(last_bot(&visitor).await?.contains("order number"));
    visitor.turn("it's #10234").await?;
    let answer = last_bot(&visitor).await?;
    ensure!(
        answer == "Order 10234 is shipped, expected Friday.",
        "{answer}"
    );
    process.stop().await
}

#[tokio::test]
async fn misbehaving_plugins_are_contained_and_the_conversation_carries_on() -> Result<()> {
    let (port, crm) = receiver().await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let (process, plugins) = start(&db, FAST_RELOAD, "bad-plugins").await?;
    let staff = owner(&db, &process.base()).await?;
    let bad = |folder: &str, mode: &str| -> Result<PathBuf> {
        install_plugin(
            &plugins,
            "misbehave",
            folder,
            &[
                ("id", &format!("\"{folder}\"")),
                ("mode", &format!("\"{mode}\"")),
            ],
        )
    };
    bad("loop", "loop")?;
    // Its deadline is what stops it: keep it short.
    set_line(&plugins.join("loop"), "deadline_ms", "300")?;
    bad("trap", "trap")?;
    bad("hog", "hog")?;
    set_line(&plugins.join("hog"), "deadline_ms", "60000\nmemory_mb = 16")?;
    install_plugin(
        &plugins,
        "misbehave",
        "thief",
        &[
            ("id", "\"thief\""),
            ("mode", "\"forbidden-host\""),
            ("url", &format!("\"http://127.0.0.1:{port}/steal\"")),
        ],
    )?;
    install_plugin(
        &plugins,
        "misbehave",
        "ungranted",
        &[
            ("id", "\"ungranted\""),
            ("capabilities", "[\"log\", \"config\"]"),
            ("allowed_hosts", "[]"),
        ],
    )?;
    install_plugin(
        &plugins,
        "vip-trigger",
        "wrong-world",
        &[("id", "\"wrong-world\""), ("world", "\"action\"")],
    )?;
    let garbage = install_plugin(&plugins, "vip-trigger", "garbage", &[("id", "\"garbage\"")])?;
    std::fs::write(
        garbage.join("vip_trigger.wasm"),
        b"\0asm\x0d\0\x01\0garbage bytes, not a component",
    )?;
    let list = plugins_until(&staff, |l| l.len() == 7).await?;
    let error = |id: &str| -> String {
        list.iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["error"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    ensure!(
        error("ungranted").contains("does not grant the `http` capability"),
        "{list:?}"
    );
    ensure!(
        error("wrong-world").contains("does not export `run`"),
        "{list:?}"
    );
    ensure!(
        error("garbage").contains("not a WebAssembly component"),
        "{list:?}"
    );

    // The visitor is answered as if nothing were installed.
    let visitor = VisitorClient::start(&process.base()).await?;
    let conv = visitor.turn("Are your tents waterproof?").await?;
    ensure!(conv["status"] == "bot", "{conv}");
    let answer = last_bot(&visitor).await?;
    ensure!(
        answer.contains("flysheet"),
        "the bot still answers from its knowledge: {answer}"
    );
    let list = plugins_until(&staff, |l| {
        ["loop", "trap", "hog"].iter().all(|id| {
            l.iter()
                .any(|p| p["id"] == *id && p["stats"]["failures"].as_u64() == Some(1))
        })
    })
    .await?;
    let last = |id: &str| -> String {
        list.iter()
            .find(|p| p["id"] == id)
            .and_then(|p| p["stats"]["last_error"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    ensure!(last("loop").contains("timed out"), "{list:?}");
    ensure!(last("trap").contains("trapped"), "{list:?}");
    ensure!(last("hog").contains("memory limit"), "{list:?}");
    ensure!(
        crm.seen.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
    let thief = list.iter().find(|p| p["id"] == "thief").context("thief")?;
    ensure!(
        thief["stats"]["calls"] == 1 && thief["stats"]["failures"] == 0,
        "{thief}"
    );
    // The server still serves.
    let (status, _) = staff.get("/api/v1/conversations").await?;
    ensure!(status == 200);
    process.stop().await
}

/// Rewrites `key = ...` in an installed plugin's manifest.
fn set_line(folder: &Path, key: &str, value: &str) -> Result<()> {
    let path = folder.join("plugin.toml");
    let text = std::fs::read_to_string(&path)?;
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.split('=').next().map(str::trim) == Some(key) {
                format!("{key} = {value}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    std::fs::write(path, text.join("\n"))?;
    Ok(())
}
