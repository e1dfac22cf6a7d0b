//! Slack end to end: the real server with `[channels.slack]`, the real
//! slack-morphism client against a fake Slack, and requests to Baton signed
//! by the official `slack_sdk` from PyPI.

use anyhow::{Result, ensure};
use baton_model::ChannelKind;
use baton_tests::fakes::slack::{FakeSlack, sign, sign_with_slack_sdk};
use baton_tests::{Backend, Server, TestDb, eventually, on_every_backend};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const CONSOLE: &str = "C0CONSOLE1";
const DM: &str = "D0VISITOR1";
const ADA: &str = "U0VISITOR1";
const ALICE: &str = "U0AGENT001";
const BOB: &str = "U0AGENT002";

static TS: AtomicU64 = AtomicU64::new(1);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn next_ts() -> String {
    format!("1763800{:03}.000200", TS.fetch_add(1, Ordering::Relaxed))
}

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SLACK_BOT_TOKEN", "xoxb-test-token"),
        ("SLACK_SIGNING_SECRET", SECRET),
    ]
}

fn config(fake: &FakeSlack) -> String {
    format!(
        "[channels.slack]\napi_url = \"{}\"\nconsole_channel = \"{CONSOLE}\"\n",
        fake.api
    )
}

fn message_event(
    channel: &str,
    channel_type: &str,
    user: &str,
    text: &str,
    thread: Option<&str>,
) -> Value {
    let ts = next_ts();
    let mut event = json!({
        "type": "message", "text": text, "user": user, "ts": ts, "team": "T0TEAM0001",
        "channel": channel, "event_ts": ts, "channel_type": channel_type,
    });
    if let Some(t) = thread {
        event["thread_ts"] = json!(t);
    }
    json!({
        "token": "XXYYZZ", "team_id": "T0TEAM0001", "api_app_id": "A0APP00001",
        "event": event, "type": "event_callback", "event_id": format!("Ev{ts}"),
        "event_time": now(),
    })
}

fn press(user: &str, channel: &str, action_id: &str, value: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0TEAM0001"},
        "api_app_id": "A0APP00001", "token": "XXYYZZ",
        "container": {"type": "message", "message_ts": "1", "channel_id": channel},
        "trigger_id": "1.2.3", "team": {"id": "T0TEAM0001", "domain": "acme"},
        "channel": {"id": channel, "name": "x"},
        "actions": [{"action_id": action_id, "block_id": "b", "value": value,
                     "type": "button", "text": {"type": "plain_text", "text": "x"},
                     "action_ts": "1"}]
    })
}

struct Baton {
    base: String,
    http: reqwest::Client,
}

impl Baton {
    /// Posts an event, signed by slack_sdk.
    async fn event(&self, body: &Value) -> Result<(u16, Value)> {
        let body = body.to_string();
        let ts = now();
        let sig = sign_with_slack_sdk(SECRET, ts, &body)?;
        self.post("events", body, ts, &sig, "application/json")
            .await
    }

    /// Presses a button, signed by slack_sdk.
    async fn interact(&self, payload: &Value) -> Result<(u16, Value)> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", &payload.to_string())
            .finish();
        let ts = now();
        let sig = sign_with_slack_sdk(SECRET, ts, &body)?;
        self.post(
            "interactivity",
            body,
            ts,
            &sig,
            "application/x-www-form-urlencoded",
        )
        .await
    }

    /// Posts a body signed by our own code at `ts` (for the bad-request cases).
    async fn signed(&self, path: &str, body: &str, ts: i64) -> Result<(u16, Value)> {
        let ct = if path == "events" {
            "application/json"
        } else {
            "application/x-www-form-urlencoded"
        };
        self.post(path, body.to_owned(), ts, &sign(SECRET, ts, body), ct)
            .await
    }

    async fn post(
        &self,
        path: &str,
        body: String,
        ts: i64,
        sig: &str,
        ct: &str,
    ) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/api/v1/channels/slack/{path}", self.base))
            .header("content-type", ct)
            .header("x-slack-request-timestamp", ts.to_string())
            .header("x-slack-signature", sig)
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

fn text(p: &Value) -> String {
    p["text"].as_str().unwrap_or_default().to_owned()
}

async fn slack_hand_over(backend: Backend) -> Result<()> {
    let fake = FakeSlack::start().await?;
    fake.add_user(ADA, "Ada Lovelace", "ada@corp.example");
    fake.add_user(ALICE, "Alice Example", "alice@example.com");
    fake.add_user(BOB, "Bob Example", "bob@example.com");
    let db = TestDb::new(backend).await?;
    let server = Server::start_with_env(&db, &config(&fake), &env()).await?;
    let alice = server.staff("Alice Example", "responder").await?;
    server.staff("Bob Example", "responder").await?;
    let baton = Baton {
        base: server.base(),
        http: reqwest::Client::new(),
    };
    let to_visitor = |p: &Value| p["channel"] == DM;

    // A DM to the app: the bot answers in the DM; a redelivery is stored once.
    let question = message_event(DM, "im", ADA, "Do you ship to Canada?", None);
    let (status, _) = baton.event(&question).await?;
    ensure!(status == 200);
    fake.wait_call("chat.postMessage", 10, |p| {
        to_visitor(p) && text(p).contains("Canada")
    })
    .await?;
    let (status, _) = baton.event(&question).await?;
    ensure!(status == 200);
    let conv = server
        .runtime
        .store()
        .conversation_by_thread(ChannelKind::Slack, DM)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no slack conversation"))?;
    ensure!(
        conv.contact.name.as_deref() == Some("Ada Lovelace"),
        "{:?}",
        conv.contact
    );
    ensure!(
        conv.contact.email.as_deref() == Some("ada@corp.example"),
        "{:?}",
        conv.contact
    );
    let id = conv.id.clone();

    // Not understood: the answer carries the Talk-to-a-human button in Block Kit.
    baton
        .event(&message_event(DM, "im", ADA, "qwertyuiop zxcvb", None))
        .await?;
    fake.wait_call("chat.postMessage", 10, |p| {
        to_visitor(p)
            && p["blocks"]
                .to_string()
                .contains("baton_visitor:request_human")
    })
    .await?;
    let (status, _) = baton
        .interact(&press(
            ADA,
            DM,
            "baton_visitor:request_human",
            "request_human",
        ))
        .await?;
    ensure!(status == 200);

    // The console gets a post with contact, reason, summary and Claim.
    let post = fake
        .wait_call("chat.postMessage", 10, |p| {
            p["channel"] == CONSOLE && p.get("thread_ts").is_none()
        })
        .await?;
    let blocks = post["blocks"].to_string();
    ensure!(text(&post).contains("Ada Lovelace"), "{post}");
    ensure!(text(&post).contains("visitor_request"), "{post}");
    ensure!(
        blocks.contains("Canada"),
        "the summary has the conversation: {blocks}"
    );
    ensure!(
        blocks.contains("baton_claim") && blocks.contains(&id),
        "{blocks}"
    );
    let post_ts = loop {
        // The fake's answer ts is what the link keeps; find it from the calls order.
        if let Some(link) = server
            .runtime
            .store()
            .conversation_link("slack", &id)
            .await?
        {
            break link;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };

    // Alice claims from Slack; Bob's late claim gets an ephemeral note.
    let (status, _) = baton
        .interact(&press(ALICE, CONSOLE, "baton_claim", &id))
        .await?;
    ensure!(status == 200);
    let (_, c) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(c["conversation"]["status"] == "active", "{c}");
    ensure!(
        c["conversation"]["assignee"]["name"] == "Alice Example",
        "{c}"
    );
    fake.wait_call("chat.update", 10, |p| {
        p["ts"] == post_ts.as_str() && text(p).contains("Claimed by Alice Example")
    })
    .await?;
    baton
        .interact(&press(BOB, CONSOLE, "baton_claim", &id))
        .await?;
    let note = fake
        .wait_call("chat.postEphemeral", 10, |p| p["user"] == BOB)
        .await?;
    ensure!(text(&note) == "already claimed by Alice Example", "{note}");

    // The visitor's messages are mirrored into the thread; the bot stays quiet.
    let bot_answers = |fake: &FakeSlack| {
        fake.calls_to("chat.postMessage")
            .iter()
            .filter(|p| to_visitor(p) && p.get("username").is_none())
            .count()
    };
    // The visitor is told Alice joined (a system notice, like the bot's
    // words without a name): count from after it.
    fake.wait_call("chat.postMessage", 10, |p| {
        to_visitor(p) && text(p).contains("joined the conversation")
    })
    .await?;
    let quiet = bot_answers(&fake);
    baton
        .event(&message_event(
            DM,
            "im",
            ADA,
            "Do you ship to Canada? Still waiting",
            None,
        ))
        .await?;
    fake.wait_call("chat.postMessage", 10, |p| {
        p["thread_ts"] == post_ts.as_str() && text(p).contains("Still waiting")
    })
    .await?;

    // Alice replies in the thread: the visitor gets it under her name, once.
    let reply = message_event(
        CONSOLE,
        "channel",
        ALICE,
        "Hi Ada, checking your order now.",
        Some(&post_ts),
    );
    baton.event(&reply).await?;
    let delivered = fake
        .wait_call("chat.postMessage", 10, |p| {
            to_visitor(p) && text(p) == "Hi Ada, checking your order now."
        })
        .await?;
    ensure!(delivered["username"] == "Alice Example", "{delivered}");
    baton.event(&reply).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    ensure!(
        bot_answers(&fake) == quiet,
        "the bot spoke while Alice held it: {:?}",
        {
            let said: Vec<String> = fake
                .calls_to("chat.postMessage")
                .iter()
                .filter(|p| to_visitor(p) && p.get("username").is_none())
                .map(text)
                .collect();
            said
        }
    );
    let (_, c) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    let replies = c["messages"].as_array().map(|m| {
        m.iter()
            .filter(|m| m["text"] == "Hi Ada, checking your order now.")
            .count()
    });
    ensure!(
        replies == Some(1),
        "a redelivered thread reply is stored once: {c}"
    );

    // Hand back from Slack: the post says so; the bot answers again.
    baton
        .interact(&press(ALICE, CONSOLE, "baton_hand_back", &id))
        .await?;
    fake.wait_call("chat.update", 10, |p| {
        p["ts"] == post_ts.as_str() && text(p).contains("Resolved")
    })
    .await?;
    let before = bot_answers(&fake);
    baton
        .event(&message_event(
            DM,
            "im",
            ADA,
            "Do you ship to Canada?",
            None,
        ))
        .await?;
    eventually(
        10,
        || (bot_answers(&fake) != before).then_some(()),
        || "the bot did not answer after hand back".into(),
    )
    .await?;

    // A second hand-over, claimed in the web inbox: the same post follows.
    baton
        .interact(&press(
            ADA,
            DM,
            "baton_visitor:request_human",
            "request_human",
        ))
        .await?;
    fake.wait_call("chat.postMessage", 10, |p| {
        p["thread_ts"] == post_ts.as_str() && text(p).contains("Handed over again")
    })
    .await?;
    let (status, body) = alice
        .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
        .await?;
    ensure!(status == 200, "{body}");
    let claims = |fake: &FakeSlack| {
        fake.calls_to("chat.update")
            .iter()
            .filter(|p| text(p).contains("Claimed by Alice Example"))
            .count()
    };
    eventually(
        10,
        || (claims(&fake) >= 2).then_some(()),
        || "the post did not follow the inbox claim".into(),
    )
    .await?;
    ensure!(
        fake.calls_to("chat.postMessage")
            .iter()
            .filter(|p| p["channel"] == CONSOLE && p.get("thread_ts").is_none())
            .count()
            == 1,
        "one post per conversation"
    );
    Ok(())
}

#[tokio::test]
async fn a_slack_visitor_goes_from_bot_to_human_and_back_with_slack_as_the_console() -> Result<()> {
    on_every_backend(slack_hand_over).await
}

#[tokio::test]
async fn bad_slack_requests_are_refused_and_nothing_is_lost() -> Result<()> {
    let fake = FakeSlack::start().await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start_with_env(&db, &config(&fake), &env()).await?;
    let baton = Baton {
        base: server.base(),
        http: reqwest::Client::new(),
    };
    let event = message_event(DM, "im", ADA, "Do you ship to Canada?", None).to_string();
    let ts = now();
    // A wrong signature, a tampered body, a stale timestamp, no signature: 401.
    let (s, b) = baton
        .post(
            "events",
            event.clone(),
            ts,
            &sign("not-the-secret", ts, &event),
            "application/json",
        )
        .await?;
    ensure!(s == 401, "{s} {b}");
    let tampered = event.replace("Canada", "Mexico");
    let (s, _) = baton
        .post(
            "events",
            tampered,
            ts,
            &sign(SECRET, ts, &event),
            "application/json",
        )
        .await?;
    ensure!(s == 401);
    let (s, _) = baton.signed("events", &event, ts - 6 * 60).await?;
    ensure!(s == 401, "a request older than 5 minutes is refused");
    let (s, _) = baton
        .post("events", event.clone(), ts, "", "application/json")
        .await?;
    ensure!(s == 401);
    let payload = form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "payload",
            &press(ALICE, CONSOLE, "baton_claim", "x").to_string(),
        )
        .finish();
    let (s, _) = baton
        .post(
            "interactivity",
            payload,
            ts,
            &sign("nope", ts, "x"),
            "application/x-www-form-urlencoded",
        )
        .await?;
    ensure!(s == 401);

    // Signed but malformed: 400. Unknown event types: 200 and ignored.
    let bad = "{\"type\":\"event_callback\",\"event\":";
    let (s, b) = baton.signed("events", bad, ts).await?;
    ensure!(s == 400, "{s} {b}");
    ensure!(b["error"]["code"] == "malformed", "{b}");
    let form = "payload=%7Bnot+json";
    let (s, _) = baton.signed("interactivity", form, ts).await?;
    ensure!(s == 400);
    for unknown in [
        json!({"type": "event_callback", "event_id": "Ev1", "event": {"type": "reaction_added", "user": ADA}}),
        json!({"type": "app_rate_limited", "minute_rate_limited": 1}),
        json!({"type": "event_callback", "event_id": "Ev2", "event": {"type": "message", "subtype": "message_deleted", "channel": DM, "ts": "1.1"}}),
    ] {
        let (s, _) = baton.signed("events", &unknown.to_string(), ts).await?;
        ensure!(s == 200, "{unknown}: {s}");
    }
    ensure!(
        server
            .runtime
            .store()
            .conversation_by_thread(ChannelKind::Slack, DM)
            .await?
            .is_none(),
        "nothing refused was stored"
    );

    // url_verification answers its challenge.
    let check = json!({"token": "t", "challenge": "c-123", "type": "url_verification"}).to_string();
    let (s, b) = baton.signed("events", &check, ts).await?;
    ensure!(s == 200 && b["challenge"] == "c-123", "{s} {b}");

    // 429 from Slack is waited out: the answer still arrives.
    fake.throttle_next_posts(1);
    let (s, _) = baton.signed("events", &event, ts).await?;
    ensure!(s == 200);
    fake.wait_call("chat.postMessage", 15, |p| {
        p["channel"] == DM && text(p).contains("Canada")
    })
    .await?;
    ensure!(fake.calls_to("chat.postMessage:429").len() == 1);
    Ok(())
}

#[tokio::test]
async fn slack_socket_mode_carries_events_and_acknowledges_them() -> Result<()> {
    let fake = FakeSlack::start().await?;
    fake.add_user(ADA, "Ada Lovelace", "ada@corp.example");
    let db = TestDb::new(Backend::Sqlite).await?;
    let toml = format!(
        "[channels.slack]\napi_url = \"{}\"\nmode = \"socket\"\n",
        fake.api
    );
    let _server = Server::start_with_env(
        &db,
        &toml,
        &[
            ("SLACK_BOT_TOKEN", "xoxb-test-token"),
            ("SLACK_APP_TOKEN", "xapp-test-token"),
        ],
    )
    .await?;
    eventually(
        10,
        || (fake.socket_clients() > 0).then_some(()),
        || "Baton never opened a socket".into(),
    )
    .await?;
    fake.push_envelope(json!({
        "envelope_id": "env-1", "type": "events_api", "accepts_response_payload": false,
        "payload": message_event(DM, "im", ADA, "Do you ship to Canada?", None),
    }))?;
    fake.wait_call("chat.postMessage", 10, |p| {
        p["channel"] == DM && text(p).contains("Canada")
    })
    .await?;
    ensure!(fake.acks() == vec!["env-1".to_owned()], "{:?}", fake.acks());
    Ok(())
}

/// The console follows events from a cursor it keeps in the database: an
/// escalation whose post was under way when the server was killed (Slack
/// answered 429 and the console waited to try again) is posted after the
/// restart, once.
#[tokio::test]
async fn an_escalation_not_yet_posted_at_a_crash_is_posted_after_the_restart() -> Result<()> {
    on_every_backend(|backend| async move {
        let fake = FakeSlack::start().await?;
        let db = TestDb::new(backend).await?;
        let binary = baton_tests::baton_binary()?;
        let first =
            baton_tests::Process::start_with_env(&binary, &db, &config(&fake), "first", &env())
                .await?;
        fake.throttle_next_posts(1000);
        let visitor = baton_tests::VisitorClient::start(&first.base()).await?;
        let conv = visitor.turn("I want to talk to a human").await?;
        let id = baton_tests::str_at(&conv, "/id")?;
        eventually(
            10,
            || {
                fake.calls()
                    .iter()
                    .any(|(m, p)| m == "chat.postMessage:429" && p["channel"] == CONSOLE)
                    .then_some(())
            },
            || format!("the console did not try to post: {:#?}", fake.calls()),
        )
        .await?;
        first.kill().await?;

        fake.throttle_next_posts(0);
        let second =
            baton_tests::Process::start_with_env(&binary, &db, &config(&fake), "second", &env())
                .await?;
        let posted = |fake: &FakeSlack| {
            fake.calls_to("chat.postMessage")
                .iter()
                .filter(|p| {
                    p["channel"] == CONSOLE
                        && p.get("thread_ts").is_none()
                        && p["blocks"].to_string().contains(&id)
                })
                .count()
        };
        eventually(
            15,
            || (posted(&fake) >= 1).then_some(()),
            || format!("not posted after the restart: {:#?}", fake.calls()),
        )
        .await?;
        // A later escalation is posted too; by then the replay is over.
        let other = baton_tests::VisitorClient::start(&second.base()).await?;
        let later = other.turn("I want to talk to a human").await?;
        let later = baton_tests::str_at(&later, "/id")?;
        fake.wait_call("chat.postMessage", 10, |p| {
            p["channel"] == CONSOLE && p["blocks"].to_string().contains(&later)
        })
        .await?;
        ensure!(
            posted(&fake) == 1,
            "posted {} times: {:#?}",
            posted(&fake),
            fake.calls()
        );
        second.stop().await?;
        Ok(())
    })
    .await
}
