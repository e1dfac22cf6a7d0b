//! Nothing lost on a crash: a message queued for a platform that is down
//! survives a `kill -9` and reaches the platform once it is back, once, in
//! order (the delivery outbox).

use anyhow::{Result, bail, ensure};
use baton_tests::fakes::telegram::FakeTelegram;
use baton_tests::{
    Backend, Process, StaffClient, TestDb, baton_binary, eventually_async, on_every_backend,
};
use serde_json::Value;

const TOKEN: &str = "123456:TEST-token";
const ADA: u64 = 555_000_222;

fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or_default()
}

async fn telegram_outage_and_kill(backend: Backend) -> Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    fake.fail_sends(true);
    let db = TestDb::new(backend).await?;
    let binary = baton_binary()?;
    let config = format!(
        "[channels.telegram]\napi_url = \"{}\"\npoll_timeout_secs = 1\n\
         [bot.handover]\nmonitoring = true\n\
         [delivery]\nretry_base = \"200ms\"\nretry_max = \"1s\"\nmax_attempts = 1000\n",
        fake.base
    );
    let env = [("TELEGRAM_BOT_TOKEN", TOKEN)];
    let node = Process::start_with_env(&binary, &db, &config, "first", &env).await?;
    baton_tests::cli_add_user(
        &binary,
        &db,
        "alice@example.com",
        "Alice",
        "responder",
        "correct horse battery staple",
    )
    .await?;
    let alice = StaffClient::login(
        &node.base(),
        "alice@example.com",
        "correct horse battery staple",
    )
    .await?;

    // Ada writes while Telegram is down: the bot's answer cannot go out.
    fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    let id = eventually_async(
        10,
        || async {
            let (_, list) = alice.get("/api/v1/conversations").await?;
            Ok(list["conversations"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["channel"] == "telegram")
                .and_then(|c| c["id"].as_str().map(str::to_owned)))
        },
        || "the telegram conversation never appeared".into(),
    )
    .await?;
    // An agent answers; Telegram still refuses, and the server is killed.
    alice
        .claim_and_reply(&id, "Hi Ada, we do ship to Canada.")
        .await?;
    // Telegram has answered 500 (teloxide then waits 10 s before it reports
    // the error), and nothing reached Ada.
    let refused = |fake: &FakeTelegram| fake.calls().iter().any(|(m, _)| m == "sendmessage:500");
    for _ in 0..100 {
        if refused(&fake) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    ensure!(
        refused(&fake),
        "Telegram was never tried: {:?}",
        fake.calls()
    );
    ensure!(fake.sent_to(ADA).is_empty(), "{:?}", fake.sent_to(ADA));
    node.kill().await?;

    // Telegram is back, and so is the server: everything queued goes out,
    // in order, and the reply once.
    fake.fail_sends(false);
    let node = Process::start_with_env(&binary, &db, &config, "second", &env).await?;
    let alice = StaffClient::login(
        &node.base(),
        "alice@example.com",
        "correct horse battery staple",
    )
    .await?;
    alice
        .post(
            &format!("/api/v1/conversations/{id}/messages"),
            serde_json::json!({"text": "Anything else?"}),
        )
        .await?;
    fake.wait_sent(ADA, 60, |m| text(m).contains("Anything else?"))
        .await?;
    let sent: Vec<String> = fake
        .sent_to(ADA)
        .iter()
        .map(|m| text(m).to_owned())
        .collect();
    let replies = sent.iter().filter(|t| t.contains("we do ship")).count();
    ensure!(replies == 1, "the reply arrived {replies} times: {sent:?}");
    let at = |needle: &str| sent.iter().position(|t| t.contains(needle));
    match (
        at("Canada"),
        at("joined"),
        at("we do ship"),
        at("Anything else?"),
    ) {
        (Some(answer), Some(joined), Some(reply), Some(last))
            if answer < joined && joined < reply && reply < last => {}
        _ => bail!("out of order or missing: {sent:?}"),
    }
    node.stop().await
}

#[tokio::test]
async fn a_reply_to_a_platform_that_is_down_survives_a_crash_and_arrives_once() -> Result<()> {
    on_every_backend(telegram_outage_and_kill).await
}

/// A message the platform keeps refusing is marked not delivered, with the
/// platform's reason, and staff can send it again.
async fn given_up_and_retried(backend: Backend) -> Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    fake.refuse_sends(true);
    let db = TestDb::new(backend).await?;
    let server = baton_tests::Server::start_with_env(
        &db,
        &format!(
            "[channels.telegram]\napi_url = \"{}\"\npoll_timeout_secs = 1\n\
             [bot.handover]\nmonitoring = true\n\
             [delivery]\nretry_base = \"50ms\"\nmax_attempts = 2\n",
            fake.base
        ),
        &[("TELEGRAM_BOT_TOKEN", TOKEN)],
    )
    .await?;
    let alice = server.staff("Alice Example", "responder").await?;
    fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    let id = server
        .conversation_on(baton_model::ChannelKind::Telegram, &ADA.to_string(), 10)
        .await?;
    // Both the greeting and the answer are given up after two attempts.
    let failed = eventually_async(
        20,
        || async {
            let messages = alice.messages_of(&id).await?;
            let failed: Vec<Value> = messages
                .into_iter()
                .filter(|m| m["sender"] == "bot" && m["delivery"]["status"] == "failed")
                .collect();
            Ok((failed.len() == 2).then_some(failed))
        },
        || "the bot's messages were not marked failed".into(),
    )
    .await?;
    let greeting = &failed[0];
    ensure!(
        greeting["delivery"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("chat not found") && e.contains("2 attempts")),
        "{greeting}"
    );
    ensure!(greeting["delivery"]["channel"] == "telegram", "{greeting}");
    let refused = fake
        .calls()
        .iter()
        .filter(|(m, _)| m == "sendmessage:400")
        .count();
    ensure!(
        refused == 4,
        "{refused} attempts for two messages at two attempts each"
    );

    // Telegram takes messages again; staff send the greeting once more.
    fake.refuse_sends(false);
    let greeting_id = greeting["id"].as_str().unwrap_or_default();
    let retry = format!("/api/v1/conversations/{id}/messages/{greeting_id}/retry");
    let (status, body) = alice.post(&retry, serde_json::json!({})).await?;
    ensure!(status == 202, "{status} {body}");
    let greeting_text = text(greeting).to_owned();
    fake.wait_sent(ADA, 10, |m| text(m) == greeting_text)
        .await?;
    // Sent: it is no longer marked, and there is nothing to retry.
    let messages = alice.messages_of(&id).await?;
    let now = messages
        .iter()
        .find(|m| m["id"] == greeting["id"])
        .cloned()
        .unwrap_or_default();
    ensure!(now["delivery"].is_null(), "{now}");
    let (status, body) = alice.post(&retry, serde_json::json!({})).await?;
    ensure!(status == 404, "{status} {body}");
    let (status, body) = alice
        .post(
            &format!("/api/v1/conversations/{id}/messages/nope/retry"),
            serde_json::json!({}),
        )
        .await?;
    ensure!(status == 404, "{status} {body}");
    Ok(())
}

#[tokio::test]
async fn a_message_the_platform_refuses_is_marked_and_can_be_sent_again() -> Result<()> {
    on_every_backend(given_up_and_retried).await
}
