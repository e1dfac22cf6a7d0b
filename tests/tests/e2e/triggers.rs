//! Each hand-over trigger of the built-in bot, over the public API: a visitor
//! talks, and the conversation goes to a human with the right reason, or not.

use anyhow::{Result, bail, ensure};
use baton_tests::{Backend, Server, TestDb, VisitorClient, next_matching};
use serde_json::{Value, json};
use std::time::Duration;

/// Starts a server with this `[bot.handover]` table, plays `lines` as one
/// visitor, and returns the conversation after the last one's turn.
async fn play(handover: &str, lines: &[&str]) -> Result<(TestDb, Server, Value)> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, &format!("[bot.handover]\n{handover}\n")).await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let mut conv = Value::Null;
    for line in lines {
        conv = visitor.turn(line).await?;
    }
    Ok((db, server, conv))
}

/// Polls until the conversation is handed over, and returns its reason.
async fn reason(server: &Server, conv: &Value) -> Result<Option<String>> {
    let id = conv["id"].as_str().unwrap_or_default().to_owned();
    for _ in 0..40 {
        let c = server.runtime.conversation(&id).await?;
        if let Some(h) = &c.state.handover {
            return Ok(Some(h.reason.as_str().to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(None)
}

async fn expect(handover: &str, lines: &[&str], want: Option<&str>) -> Result<()> {
    let (_db, server, conv) = play(handover, lines).await?;
    let got = reason(&server, &conv).await?;
    if got.as_deref() != want {
        bail!("after {lines:?} with `{handover}`: reason {got:?}, expected {want:?}");
    }
    Ok(())
}

#[tokio::test]
async fn cycle_count_three_hands_over_on_the_third_miss() -> Result<()> {
    let misses = ["blorp zzz", "qwxx vvlp", "ffff jjjj"];
    expect("cycle_count = 3", &misses[..2], None).await?;
    expect("cycle_count = 3", &misses, Some("bot_failure")).await?;
    expect("cycle_count = 0", &misses, None).await
}

#[tokio::test]
async fn a_phrase_in_any_language_asks_for_a_human() -> Result<()> {
    expect("", &["I want to talk to a human"], Some("visitor_request")).await?;
    expect(
        "",
        &["Quiero hablar con una persona"],
        Some("visitor_request"),
    )
    .await?;
    expect(
        "phrases = [\"beam me up\"]",
        &["beam me up, scotty"],
        Some("visitor_request"),
    )
    .await
}

#[tokio::test]
async fn repeated_requests_wait_for_their_count() -> Result<()> {
    expect("repeated_requests = 2", &["talk to a human"], None).await?;
    expect(
        "repeated_requests = 2",
        &["talk to a human", "I said: talk to a human"],
        Some("visitor_request"),
    )
    .await
}

#[tokio::test]
async fn frustration_hands_over_and_can_be_switched_off() -> Result<()> {
    let angry = ["This is absolutely terrible, I am SO angry!!!"];
    expect("", &angry, Some("frustration")).await?;
    expect("frustration = false", &angry, None).await?;
    // Negation: "not bad" is not frustration.
    expect("", &["not bad at all"], None).await
}

#[tokio::test]
async fn a_configured_intent_always_goes_to_a_human() -> Result<()> {
    expect(
        "intents = [\"refund\"]",
        &["I want a refund"],
        Some("intent"),
    )
    .await?;
    expect("intents = []", &["I want a refund"], None).await
}

#[tokio::test]
async fn lack_of_information_and_failed_to_resolve() -> Result<()> {
    expect("", &["Do you sell kayaks?"], Some("lack_of_information")).await?;
    expect(
        "lack_of_information = false",
        &["Do you sell kayaks?"],
        None,
    )
    .await?;
    let unhelpful = [
        "Do you ship to Canada?",
        "that didn't help",
        "that's not what I asked",
    ];
    expect("failed_to_resolve = 2", &unhelpful[..2], None).await?;
    expect(
        "failed_to_resolve = 2",
        &unhelpful,
        Some("failed_to_resolve"),
    )
    .await
}

#[tokio::test]
async fn switched_off_the_bot_never_hands_over() -> Result<()> {
    let (_db, server, conv) = play(
        "enabled = false",
        &[
            "talk to a human",
            "blorp",
            "zzzz",
            "qqqq",
            "This is terrible, I hate it!!!",
        ],
    )
    .await?;
    ensure!(reason(&server, &conv).await?.is_none());
    ensure!(conv["status"] == "bot", "{conv}");
    Ok(())
}

#[tokio::test]
async fn the_bot_answers_from_the_knowledge_base_with_buttons() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let conv = visitor.turn("what are your store opening hours?").await?;
    ensure!(conv["status"] == "bot", "{conv}");
    let state = visitor.state().await?;
    let answer = state["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["sender"] == "bot"))
        .cloned()
        .unwrap_or_default();
    ensure!(
        answer["text"].as_str().unwrap_or("").contains("Portland"),
        "{answer}"
    );
    // Gibberish gets a request to rephrase, not an answer.
    visitor.turn("zzkq vvrr").await?;
    let state = visitor.state().await?;
    let last = state["messages"]
        .as_array()
        .and_then(|ms| ms.last())
        .cloned()
        .unwrap_or_default();
    ensure!(
        last["text"]
            .as_str()
            .unwrap_or("")
            .contains("didn't quite get that"),
        "{last}"
    );
    Ok(())
}

#[tokio::test]
async fn monitoring_shows_bot_conversations_live_and_agents_can_step_in() -> Result<()> {
    for monitoring in [true, false] {
        let db = TestDb::new(Backend::Sqlite).await?;
        let config = format!("[bot.handover]\nmonitoring = {monitoring}\n");
        let server = Server::start(&db, &config).await?;
        let alice = server.staff("Alice", "responder").await?;
        let mut events = alice.events().await?;
        let visitor = VisitorClient::start(&server.base()).await?;
        let id = visitor.conversation_id.clone();
        visitor.turn("Do you ship to Canada?").await?;

        let (_, list) = alice.get("/api/v1/conversations?status=bot").await?;
        let listed = list["conversations"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["id"] == id.as_str()));
        ensure!(
            listed == monitoring,
            "monitoring {monitoring}: listed {listed}: {list}"
        );
        let pushed = next_matching(&mut events, 2, |e| {
            e["type"] == "message.created" && e["data"]["conversation"]["id"] == id.as_str()
        })
        .await
        .is_ok();
        ensure!(
            pushed == monitoring,
            "monitoring {monitoring}: pushed {pushed}"
        );

        // Stopping the bot and joining works either way, with its own reason.
        let (status, joined) = alice
            .post(&format!("/api/v1/conversations/{id}/claim"), json!({}))
            .await?;
        ensure!(status == 200, "{joined}");
        ensure!(joined["conversation"]["status"] == "active", "{joined}");
        ensure!(
            joined["conversation"]["handover"]["reason"] == "agent_takeover",
            "{joined}"
        );
        // And the bot stays quiet while Alice holds it.
        visitor.say("are you still there?").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let messages = visitor.messages().await?;
        let last = messages.last().cloned().unwrap_or_default();
        ensure!(
            last["sender"] == "visitor",
            "the bot spoke over Alice: {last}"
        );
    }
    Ok(())
}
