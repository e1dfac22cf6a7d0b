//! The seed behaviours around a hand-over, over the public API: the button
//! after N answers, nobody online, queues at capacity, the contact
//! collector, routing, business hours, every post-hand-over action, the
//! knowledge base through the API, and reports that count each reason.

use anyhow::{Context, Result, bail, ensure};
use baton_tests::{Backend, Server, StaffClient, TestDb, VisitorClient, next_matching, str_at};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn server(config: &str) -> Result<(TestDb, Server)> {
    server_on(Backend::Sqlite, config).await
}

async fn server_on(backend: Backend, config: &str) -> Result<(TestDb, Server)> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, config).await?;
    Ok((db, server))
}

/// Signs in a staff member and marks them online, as an open inbox does.
async fn online(server: &Server, name: &str) -> Result<StaffClient> {
    let staff = server.staff(name, "responder").await?;
    let (status, body) = staff
        .send(
            reqwest::Method::PUT,
            "/api/v1/me/presence",
            json!({"presence": "online"}),
        )
        .await?;
    ensure!(status == 200, "presence: {body}");
    Ok(staff)
}

async fn patch_user(admin: &StaffClient, user: &StaffClient, body: Value) -> Result<()> {
    let id = str_at(&user.user, "/id")?;
    let (status, out) = admin
        .send(reqwest::Method::PATCH, &format!("/api/v1/users/{id}"), body)
        .await?;
    ensure!(status == 200, "patch user: {out}");
    Ok(())
}

/// Polls `check` on the visitor's view until it holds.
async fn until<F>(visitor: &VisitorClient, what: &str, check: F) -> Result<Value>
where
    F: Fn(&Value) -> bool,
{
    let mut last = Value::Null;
    for _ in 0..200 {
        last = visitor.state().await?;
        if check(&last) {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{what} never happened: {last}")
}

fn texts(state: &Value, sender: &str) -> Vec<String> {
    state["messages"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .filter(|m| m["sender"] == sender)
                .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn status(state: &Value) -> &str {
    state["conversation"]["status"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn the_button_appears_only_after_n_answers() -> Result<()> {
    let (_db, server) = server("[bot.handover]\nrequest_button_after = 2\n").await?;
    let config: Value = reqwest::get(format!("{}/api/v1/widget/config", server.base()))
        .await?
        .json()
        .await?;
    ensure!(config["handover"]["request_button_after"] == 2, "{config}");
    let visitor = VisitorClient::start(&server.base()).await?;
    ensure!(visitor.state().await?["request_button"] == false);
    visitor.turn("Do you ship to Canada?").await?;
    ensure!(
        visitor.state().await?["request_button"] == false,
        "shown after one answer"
    );
    visitor.turn("what is your return policy").await?;
    ensure!(
        visitor.state().await?["request_button"] == true,
        "not shown after two answers"
    );
    Ok(())
}

#[tokio::test]
async fn nobody_online_gives_the_offline_message_and_leave_a_message() -> Result<()> {
    let (_db, server) =
        server("[bot.handover]\noffline_message = \"We're away. Leave a note!\"\n").await?;
    // An agent exists but is not online.
    let alice = server.staff("Alice", "responder").await?;
    let config: Value = reqwest::get(format!("{}/api/v1/widget/config", server.base()))
        .await?
        .json()
        .await?;
    ensure!(config["handover"]["available"] == false, "{config}");
    ensure!(config["handover"]["availability"] == "offline", "{config}");

    let visitor = VisitorClient::start(&server.base()).await?;
    visitor.turn("I want to talk to a human").await?;
    let state = until(&visitor, "the offline message", |s| {
        texts(s, "system")
            .iter()
            .any(|t| t == "We're away. Leave a note!")
    })
    .await?;
    ensure!(status(&state) == "waiting", "{state}");

    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/widget/contact", server.base()))
        .bearer_auth(&visitor.token)
        .json(&json!({"email": "sam@example.com", "name": "Sam", "text": "Call me back about my order"}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "{}", resp.text().await?);
    let (_, conv) = alice
        .get(&format!(
            "/api/v1/conversations/{}",
            visitor.conversation_id
        ))
        .await?;
    let c = &conv["conversation"];
    ensure!(c["status"] == "waiting", "{conv}");
    ensure!(c["contact"]["email"] == "sam@example.com", "{conv}");
    ensure!(
        c["tags"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "offline")),
        "{conv}"
    );
    ensure!(
        texts(&conv, "visitor")
            .iter()
            .any(|t| t == "Call me back about my order"),
        "{conv}"
    );
    Ok(())
}

#[tokio::test]
async fn full_capacity_queues_visitors_with_positions_that_move() -> Result<()> {
    baton_tests::on_every_backend(full_capacity_queues_visitors_with_positions_that_move_on).await
}

async fn full_capacity_queues_visitors_with_positions_that_move_on(backend: Backend) -> Result<()> {
    let (_db, server) = server_on(
        backend,
        "[routing]\nassignment = \"least_busy\"\n\
         [bot.handover]\nqueue_message = \"All busy: you are number {position}.\"\n",
    )
    .await?;
    let owner = server.staff("Olga Owner", "owner").await?;
    let alice = online(&server, "Alice").await?;
    patch_user(&owner, &alice, json!({"capacity": 1})).await?;

    // The first visitor goes straight to Alice.
    let first = VisitorClient::start(&server.base()).await?;
    first.turn("talk to a human").await?;
    until(&first, "assignment", |s| status(s) == "active").await?;

    // Alice is full: the next two queue, and are told where they stand.
    let second = VisitorClient::start(&server.base()).await?;
    second.turn("talk to a human").await?;
    let s2 = until(&second, "the queue message", |s| {
        texts(s, "system")
            .iter()
            .any(|t| t == "All busy: you are number 1.")
    })
    .await?;
    ensure!(
        status(&s2) == "waiting" && s2["queue_position"] == 1,
        "{s2}"
    );
    let third = VisitorClient::start(&server.base()).await?;
    third.turn("talk to a human").await?;
    let s3 = until(&third, "the queue message", |s| {
        texts(s, "system")
            .iter()
            .any(|t| t == "All busy: you are number 2.")
    })
    .await?;
    ensure!(s3["queue_position"] == 2, "{s3}");

    // The third visitor's widget hears its place move when Alice frees a seat.
    let mut ws = third.ws().await?;
    next_matching(&mut ws, 5, |f| {
        f["type"] == "status" && f["queue_position"] == 2
    })
    .await?;
    let (code, body) = alice
        .post(
            &format!("/api/v1/conversations/{}/resolve", first.conversation_id),
            json!({}),
        )
        .await?;
    ensure!(code == 200, "{body}");
    until(&second, "the freed seat going to the second visitor", |s| {
        status(s) == "active"
    })
    .await?;
    next_matching(&mut ws, 5, |f| {
        f["type"] == "status" && f["queue_position"] == 1
    })
    .await
    .context("the third visitor's position did not move to 1")?;
    Ok(())
}

#[tokio::test]
async fn the_contact_collector_asks_before_handing_over() -> Result<()> {
    let (_db, server) = server("[bot.handover]\ncollect_contact = [\"email\", \"name\"]\n").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let conv = visitor.turn("I want to talk to a human").await?;
    ensure!(conv["status"] == "bot", "handed over before asking: {conv}");
    let state = visitor.state().await?;
    ensure!(
        texts(&state, "bot")
            .last()
            .is_some_and(|t| t.contains("email address")),
        "{state}"
    );
    visitor.turn("my email is secret").await?;
    let state = visitor.state().await?;
    ensure!(
        texts(&state, "bot")
            .last()
            .is_some_and(|t| t.contains("doesn't look like an email")),
        "{state}"
    );
    visitor.turn("jane@example.com").await?;
    let state = visitor.state().await?;
    ensure!(
        texts(&state, "bot")
            .last()
            .is_some_and(|t| t.contains("name")),
        "{state}"
    );
    visitor.turn("Jane Doe").await?;
    let state = until(&visitor, "the hand-over", |s| status(s) == "waiting").await?;
    let c = &state["conversation"];
    ensure!(c["handover"]["reason"] == "visitor_request", "{state}");
    ensure!(c["contact"]["email"] == "jane@example.com", "{state}");
    ensure!(c["contact"]["name"] == "Jane Doe", "{state}");

    // A visitor whose details are known is not asked again.
    let resp: Value = reqwest::Client::new()
        .post(format!("{}/api/v1/widget/sessions", server.base()))
        .json(&json!({"visitor": {"email": "kim@example.com", "name": "Kim"}}))
        .send()
        .await?
        .json()
        .await?;
    let known = VisitorClient::resume(
        &server.base(),
        &str_at(&resp, "/visitor_token")?,
        &str_at(&resp, "/conversation_id")?,
    );
    known.turn("I want to talk to a human").await?;
    until(&known, "a hand-over without questions", |s| {
        status(s) == "waiting"
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn routing_by_topic_department_and_expertise() -> Result<()> {
    let (_db, server) = server(
        "[[departments]]\nid = \"billing\"\nassignment = \"round_robin\"\ntopics = [\"refund\"]\n\
         [[departments]]\nid = \"support\"\n\
         [bot.handover]\ndepartment = \"support\"\n",
    )
    .await?;
    let owner = server.staff("Olga Owner", "owner").await?;
    let bob = online(&server, "Bob").await?;
    let carol = online(&server, "Carol").await?;
    patch_user(
        &owner,
        &bob,
        json!({"departments": ["billing"], "expertise": ["refund"]}),
    )
    .await?;
    patch_user(&owner, &carol, json!({"departments": ["billing"]})).await?;

    // A refund is a billing matter, and Bob knows refunds best.
    let refund = VisitorClient::start(&server.base()).await?;
    refund.turn("I want a refund").await?;
    let state = until(&refund, "assignment", |s| status(s) == "active").await?;
    let c = &state["conversation"];
    ensure!(c["department"] == "billing", "{state}");
    ensure!(c["handover"]["reason"] == "intent", "{state}");
    ensure!(c["assignee"]["name"] == "Bob", "{state}");

    // Anything else goes to the bot's own department, where claiming is manual.
    let other = VisitorClient::start(&server.base()).await?;
    other.turn("talk to a human").await?;
    let state = until(&other, "the hand-over", |s| status(s) == "waiting").await?;
    ensure!(state["conversation"]["department"] == "support", "{state}");
    let (_, departments) = owner.get("/api/v1/departments").await?;
    ensure!(
        departments["departments"][0]["id"] == "billing",
        "{departments}"
    );
    // An unknown department is refused by name.
    let (code, body) = owner
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{}", str_at(&bob.user, "/id")?),
            json!({"departments": ["nowhere"]}),
        )
        .await?;
    ensure!(
        code == 422 && body.to_string().contains("nowhere"),
        "{body}"
    );
    Ok(())
}

#[tokio::test]
async fn business_hours_close_a_department_in_its_time_zone() -> Result<()> {
    // A one-hour window two hours from now (UTC): closed now, whatever the time.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let hour = (now / 3600 + 2) % 24;
    let config = format!(
        "[[departments]]\nid = \"night\"\ntimezone = \"UTC\"\nhours = [\"daily {hour:02}:00-{next:02}:00\"]\n\
         [[departments]]\nid = \"always\"\ntimezone = \"Asia/Tokyo\"\nhours = [\"daily 00:00-24:00\"]\n\
         [bot.handover]\ndepartment = \"night\"\noffline_message = \"Closed: back at {hour:02}:00 UTC.\"\n\
         [bots.tokyo]\n[bots.tokyo.handover]\ndepartment = \"always\"\n",
        next = (hour + 1) % 24,
    );
    let (_db, server) = server(&config).await?;
    let _alice = online(&server, "Alice").await?;
    let closed: Value = reqwest::get(format!("{}/api/v1/widget/config", server.base()))
        .await?
        .json()
        .await?;
    ensure!(closed["handover"]["available"] == false, "{closed}");
    let open: Value = reqwest::get(format!("{}/api/v1/widget/config?bot=tokyo", server.base()))
        .await?
        .json()
        .await?;
    ensure!(open["handover"]["available"] == true, "{open}");

    let visitor = VisitorClient::start(&server.base()).await?;
    visitor.turn("talk to a human").await?;
    until(&visitor, "the offline message", |s| {
        texts(s, "system")
            .iter()
            .any(|t| t.starts_with("Closed: back at"))
    })
    .await?;
    Ok(())
}

/// A local receiver for the webhook action: records bodies and signature headers.
async fn receiver() -> Result<(String, Arc<Mutex<Vec<(String, String)>>>)> {
    let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let sig = headers
                    .get("baton-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                sink.lock().unwrap().push((sig, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((url, got))
}

#[tokio::test]
async fn every_post_handover_action_runs_in_order_and_failures_are_recorded() -> Result<()> {
    baton_tests::on_every_backend(
        every_post_handover_action_runs_in_order_and_failures_are_recorded_on,
    )
    .await
}

async fn every_post_handover_action_runs_in_order_and_failures_are_recorded_on(
    backend: Backend,
) -> Result<()> {
    let (url, got) = receiver().await?;
    let dead = format!("http://127.0.0.1:{}/gone", baton_tests::free_port()?);
    let config = format!(
        r#"
[security]
allow_private_webhooks = true
[bot.handover]
[[bot.handover.actions]]
type = "assign"
to = "alice@example.com"
[[bot.handover.actions]]
type = "task"
[[bot.handover.actions]]
type = "notify"
[[bot.handover.actions]]
type = "webhook"
url = "{dead}"
[[bot.handover.actions]]
type = "closing_message"
[[bot.handover.actions]]
type = "pause_bot"
for = "1h"
[[bot.handover.actions]]
type = "tags"
tags = ["follow-up", "VIP"]
[[bot.handover.actions]]
type = "webhook"
url = "{url}"
secret = "s3cret"
"#
    );
    let (_db, server) = server_on(backend, &config).await?;
    let alice = server.staff("Alice", "responder").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let id = visitor.conversation_id.clone();
    visitor.turn("I want to talk to a human").await?;

    let mut runs = Value::Null;
    for _ in 0..200 {
        (_, runs) = alice
            .get(&format!("/api/v1/conversations/{id}/actions"))
            .await?;
        if runs["actions"].as_array().is_some_and(|a| a.len() == 8) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let names: Vec<&str> = runs["actions"]
        .as_array()
        .context("no action runs")?
        .iter()
        .map(|r| r["action"].as_str().unwrap_or_default())
        .collect();
    ensure!(
        names
            == [
                "assign",
                "task",
                "notify",
                "webhook",
                "closing_message",
                "pause_bot",
                "tags",
                "webhook"
            ],
        "{runs}"
    );
    let oks: Vec<bool> = runs["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ok"] == true)
        .collect();
    ensure!(
        oks == [true, true, true, false, true, true, true, true],
        "only the dead webhook fails: {runs}"
    );

    // Assign: Alice holds it; the visitor saw her join.
    let state = until(&visitor, "the closing message", |s| {
        texts(s, "system")
            .iter()
            .any(|t| t == "Thank you! Someone from the team will get back to you.")
    })
    .await?;
    let c = &state["conversation"];
    ensure!(
        c["status"] == "active" && c["assignee"]["name"] == "Alice",
        "{state}"
    );
    ensure!(c["tags"] == json!(["follow-up", "vip"]), "{state}");
    // Task: hers, the default description, due 24 hours after the hand-over.
    let (_, tasks) = alice.get("/api/v1/tasks").await?;
    let task = &tasks["tasks"][0];
    ensure!(task["description"] == "will be created by AI", "{tasks}");
    ensure!(task["conversation_id"] == id.as_str(), "{tasks}");
    let at = baton_model::Timestamp::parse_rfc3339(c["handover"]["at"].as_str().unwrap_or(""))
        .context("handover.at")?;
    let due = baton_model::Timestamp::parse_rfc3339(task["due_at"].as_str().unwrap_or(""))
        .context("due_at")?;
    ensure!(due.since(at) == 24 * 3600 * 1000, "{task}");
    // Notify and her own settings: assigned, task and the hand-over itself.
    let (_, notes) = alice.get("/api/v1/notifications").await?;
    let kinds: Vec<&str> = notes["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap_or_default())
        .collect();
    for kind in ["assigned", "task", "escalated"] {
        ensure!(kinds.contains(&kind), "no {kind} notification: {notes}");
    }
    // Pause: the bot stays quiet after a hand back, inside the window.
    let conv = server.runtime.conversation(&id).await?;
    ensure!(
        conv.state
            .bot_paused_until
            .is_some_and(|u| u.since(at) == 3600 * 1000),
        "{:?}",
        conv.state
    );
    // Webhook: signed, with the conversation.
    let hooks = got.lock().unwrap().clone();
    ensure!(hooks.len() == 1, "{hooks:?}");
    ensure!(
        hooks[0].0.starts_with("t=") && hooks[0].0.contains(",v1="),
        "{hooks:?}"
    );
    let body: Value = serde_json::from_str(&hooks[0].1)?;
    ensure!(body["data"]["conversation"]["id"] == id.as_str(), "{body}");
    Ok(())
}

#[tokio::test]
async fn the_bot_never_speaks_while_waiting_or_active() -> Result<()> {
    let (_db, server) = server("").await?;
    let alice = online(&server, "Alice").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let id = visitor.conversation_id.clone();
    visitor.turn("talk to a human").await?;
    until(&visitor, "the hand-over", |s| status(s) == "waiting").await?;
    let bot_before = texts(&visitor.state().await?, "bot").len();
    for text in [
        "hello?",
        "Do you ship to Canada?",
        "talk to a human",
        "blorp",
    ] {
        visitor.say(text).await?;
    }
    alice
        .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
        .await?;
    for text in ["what is your return policy", "zzzz", "I am SO angry!!!"] {
        visitor.say(text).await?;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let state = visitor.state().await?;
    ensure!(status(&state) == "active", "{state}");
    ensure!(
        texts(&state, "bot").len() == bot_before,
        "the bot spoke while a human held the conversation: {state}"
    );
    Ok(())
}

#[tokio::test]
async fn the_knowledge_base_is_editable_through_the_api() -> Result<()> {
    let (_db, server) = server("").await?;
    let admin = server.staff("Ada Admin", "admin").await?;
    let path = "/api/v1/bots/default/knowledge/guided-hikes";
    let (code, body) = admin
        .send(
            reqwest::Method::PUT,
            path,
            json!({"question": "Do you run guided hiking trips?", "answer": "Yes: guided day hikes leave our Portland store every Saturday at 8 am.",
                   "alternatives": ["guided hike"]}),
        )
        .await?;
    ensure!(code == 200, "{body}");
    let visitor = VisitorClient::start(&server.base()).await?;
    visitor.turn("do you run guided hiking trips?").await?;
    ensure!(
        texts(&visitor.state().await?, "bot")
            .last()
            .is_some_and(|t| t.contains("every Saturday at 8 am")),
        "the new entry did not answer"
    );
    let (_, list) = admin.get("/api/v1/bots/default/knowledge").await?;
    let entries = list["entries"].as_array().context("entries")?;
    ensure!(
        entries
            .iter()
            .any(|e| e["id"] == "guided-hikes" && e["source"] == "api"),
        "{list}"
    );
    ensure!(entries.iter().any(|e| e["source"] == "file"), "{list}");
    // Bad input: 422 and nothing changes.
    let (code, _) = admin
        .send(
            reqwest::Method::PUT,
            path,
            json!({"question": "", "answer": "x"}),
        )
        .await?;
    ensure!(code == 422);
    let (code, _) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/bots/default/knowledge/bad%20id",
            json!({"question": "q", "answer": "a"}),
        )
        .await?;
    ensure!(code == 422);
    // Removed: the bot no longer knows it.
    let (code, _) = admin.send(reqwest::Method::DELETE, path, json!({})).await?;
    ensure!(code == 204);
    let again = VisitorClient::start(&server.base()).await?;
    again.turn("do you run guided hiking trips?").await?;
    ensure!(
        !texts(&again.state().await?, "bot")
            .iter()
            .any(|t| t.contains("every Saturday at 8 am")),
        "a deleted entry still answers"
    );
    // A responder may not edit.
    let bob = server.staff("Bob", "responder").await?;
    let (code, _) = bob
        .send(
            reqwest::Method::PUT,
            path,
            json!({"question": "q", "answer": "a"}),
        )
        .await?;
    ensure!(code == 403);
    Ok(())
}

#[tokio::test]
async fn reports_count_each_reason_and_the_containment_rate() -> Result<()> {
    baton_tests::on_every_backend(reports_count_each_reason_and_the_containment_rate_on).await
}

async fn reports_count_each_reason_and_the_containment_rate_on(backend: Backend) -> Result<()> {
    let (_db, server) = server_on(backend, "").await?;
    let alice = online(&server, "Alice").await?;
    let plays: &[(&[&str], &str)] = &[
        (&["talk to a human"], "visitor_request"),
        (&["blorp zzz", "qwxx vvlp", "ffff jjjj"], "bot_failure"),
        (&["I want a refund"], "intent"),
        (&["Do you sell kayaks?"], "lack_of_information"),
        (
            &["This is absolutely terrible, I am SO angry!!!"],
            "frustration",
        ),
        (
            &[
                "Do you ship to Canada?",
                "that didn't help",
                "that's not what I asked",
            ],
            "failed_to_resolve",
        ),
    ];
    for (lines, _) in plays {
        let visitor = VisitorClient::start(&server.base()).await?;
        for line in *lines {
            visitor.turn(line).await?;
        }
        until(&visitor, "the hand-over", |s| status(s) == "waiting").await?;
    }
    // An agent stepping in, and a manual escalation.
    let takeover = VisitorClient::start(&server.base()).await?;
    takeover.turn("Do you ship to Canada?").await?;
    alice
        .post(
            &format!("/api/v1/conversations/{}/claim", takeover.conversation_id),
            json!({}),
        )
        .await?;
    alice
        .post(
            &format!(
                "/api/v1/conversations/{}/messages",
                takeover.conversation_id
            ),
            json!({"text": "Hi, Alice here"}),
        )
        .await?;
    let manual = VisitorClient::start(&server.base()).await?;
    manual.turn("Do you ship to Canada?").await?;
    alice
        .post(
            &format!("/api/v1/conversations/{}/escalate", manual.conversation_id),
            json!({}),
        )
        .await?;
    // And one the bot handles alone.
    let contained = VisitorClient::start(&server.base()).await?;
    contained.turn("what is your return policy").await?;

    let (code, report) = alice.get("/api/v1/reports/handovers").await?;
    ensure!(code == 200, "{report}");
    for (_, reason) in plays {
        ensure!(report["by_reason"][reason] == 1, "{reason}: {report}");
    }
    ensure!(report["by_reason"]["agent_takeover"] == 1, "{report}");
    ensure!(report["by_reason"]["manual"] == 1, "{report}");
    ensure!(report["total"] == 8, "{report}");
    ensure!(report["by_channel"]["web"] == 8, "{report}");
    ensure!(report["by_department"]["none"] == 8, "{report}");
    ensure!(report["containment"]["conversations"] == 9, "{report}");
    ensure!(report["containment"]["contained"] == 1, "{report}");
    ensure!(report["time_to_first_response"]["count"] == 1, "{report}");
    let alice_load = report["workload"]
        .as_array()
        .and_then(|w| w.iter().find(|a| a["agent"]["name"] == "Alice"))
        .cloned()
        .context("Alice in the workload")?;
    ensure!(
        alice_load["claimed"] == 1 && alice_load["active_now"] == 1,
        "{alice_load}"
    );
    ensure!(report["over_time"][0]["total"] == 8, "{report}");

    let csv = alice
        .http
        .get(format!("{}/api/v1/reports/handovers.csv", server.base()))
        .send()
        .await?
        .text()
        .await?;
    ensure!(csv.lines().count() == 9, "{csv}");
    ensure!(
        csv.lines()
            .any(|l| l.contains(",agent_takeover,") && l.contains("Alice")),
        "{csv}"
    );
    Ok(())
}

#[tokio::test]
async fn bad_hand_over_settings_are_refused_by_name_and_change_nothing() -> Result<()> {
    let (_db, server) = server("[[departments]]\nid = \"support\"\n").await?;
    let admin = server.staff("Ada Admin", "admin").await?;
    for (handover, needle) in [
        (json!({"actions": [{"type": "teleport"}]}), "teleport"),
        (
            json!({"actions": [{"type": "pause_bot", "for": "soon"}]}),
            "soon",
        ),
        (json!({"department": "nowhere"}), "nowhere"),
        (json!({"collect_contact": "yes"}), "collect_contact"),
        (json!({"frustration": 5}), "frustration"),
        (json!({"cycle_count": "three"}), "cycle_count"),
        (
            json!({"actions": [{"type": "task", "assignee": "ghost@example.com"}]}),
            "ghost@example.com",
        ),
    ] {
        let (code, body) = admin
            .send(
                reqwest::Method::PUT,
                "/api/v1/bots/default",
                json!({ "handover": handover }),
            )
            .await?;
        ensure!(
            code == 422 && body.to_string().contains(needle),
            "{handover}: {code} {body}"
        );
    }
    let (_, bots) = admin.get("/api/v1/bots").await?;
    ensure!(
        bots["bots"][0]["handover"]["actions"] == json!([]),
        "{bots}"
    );
    ensure!(bots["bots"][0]["handover"]["cycle_count"] == 3, "{bots}");

    // A good change is live at once.
    let (code, body) = admin
        .send(
            reqwest::Method::PUT,
            "/api/v1/bots/default",
            json!({"handover": {"department": "support", "collect_contact": true,
                                "actions": [{"type": "tags", "tags": ["from-api"]}]}}),
        )
        .await?;
    ensure!(code == 200, "{body}");
    ensure!(
        body["bot"]["handover"]["collect_contact"] == json!(["email"]),
        "{body}"
    );

    let (code, _) = admin
        .send(
            reqwest::Method::PATCH,
            "/api/v1/tasks/nope",
            json!({"done": true}),
        )
        .await?;
    ensure!(code == 404);
    let (code, body) = admin
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{}", str_at(&admin.user, "/id")?),
            json!({"capacity": -1}),
        )
        .await?;
    ensure!(code == 422, "{body}");
    // Staff may change their own notification settings, not others' routing.
    let bob = server.staff("Bob", "responder").await?;
    let bob_id = str_at(&bob.user, "/id")?;
    let (code, body) = bob
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{bob_id}"),
            json!({"notifications": {"task": false}}),
        )
        .await?;
    ensure!(
        code == 200 && body["user"]["notifications"]["task"] == false,
        "{body}"
    );
    let (code, _) = bob
        .send(
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{bob_id}"),
            json!({"capacity": 5}),
        )
        .await?;
    ensure!(code == 403);
    Ok(())
}

#[tokio::test]
async fn the_bot_says_why_before_it_hands_over() -> Result<()> {
    let (_db, server) = server("").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    for line in ["blorp zzz", "qwxx vvlp", "ffff jjjj"] {
        visitor.turn(line).await?;
    }
    let state = until(&visitor, "the hand-over", |s| status(s) == "waiting").await?;
    let bot = texts(&state, "bot");
    ensure!(
        bot.last()
            .is_some_and(|t| t == "I'm sorry, I'm having trouble understanding."),
        "the bot's last words were lost: {state}"
    );
    Ok(())
}
