//! Telegram end to end: the real server with `[channels.telegram]`, the real
//! teloxide client, and a fake Bot API that speaks Telegram's wire protocol.

use anyhow::{Result, ensure};
use baton_model::ChannelKind;
use baton_tests::fakes::telegram::FakeTelegram;
use baton_tests::{Backend, Server, TestDb, eventually, on_every_backend};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "123456:TEST-token";
const ADA: u64 = 555_000_111;

fn config(fake: &FakeTelegram, extra: &str) -> String {
    format!(
        "[channels.telegram]\napi_url = \"{}\"\npoll_timeout_secs = 1\n{extra}",
        fake.base
    )
}

fn text(m: &Value) -> &str {
    m["text"].as_str().unwrap_or_default()
}

async fn telegram_hand_over(backend: Backend) -> Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    let db = TestDb::new(backend).await?;
    let server =
        Server::start_with_env(&db, &config(&fake, ""), &[("TELEGRAM_BOT_TOKEN", TOKEN)]).await?;
    let alice = server.staff("Alice Example", "responder").await?;

    // /start opens the conversation: the bot greets, no message is stored.
    fake.private_text(ADA, "Ada", "/start");
    fake.wait_sent(ADA, 10, |m| !text(m).is_empty()).await?;

    // The bot answers from the knowledge base.
    let question = fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent(ADA, 10, |m| text(m).contains("Canada"))
        .await?;
    // Telegram redelivers an update it thinks was not confirmed: stored once.
    fake.push_again(question);
    let id = server
        .conversation_on(ChannelKind::Telegram, &ADA.to_string(), 5)
        .await?;
    let (_, conv) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(conv["conversation"]["contact"]["name"] == "Ada", "{conv}");
    ensure!(conv["conversation"]["channel"] == "telegram", "{conv}");

    // "Talk to a human" is an inline-keyboard button with callback data.
    fake.private_text(ADA, "Ada", "qwertyuiop zxcvb");
    let offer = fake
        .wait_sent(ADA, 10, |m| {
            m["reply_markup"]["inline_keyboard"]
                .to_string()
                .contains("request_human")
        })
        .await?;
    ensure!(
        offer["reply_markup"]["inline_keyboard"][0][0]["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{offer}"
    );
    fake.press(ADA, "Ada", "request_human");
    alice.wait_status(&id, "waiting").await?;
    fake.wait_call("answerCallbackQuery", 5).await?;

    // Claimed in the web inbox; the agent's reply reaches Telegram with the agent's name.
    alice
        .claim_and_reply(&id, "Hi Ada, I am looking at your order now.")
        .await?;
    fake.wait_sent(ADA, 10, |m| {
        text(m) == "Alice Example: Hi Ada, I am looking at your order now."
    })
    .await?;

    // While a human holds it the bot stays silent, on Telegram too.
    let before = fake.sent_to(ADA).len();
    fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    tokio::time::sleep(Duration::from_millis(800)).await;
    ensure!(
        fake.sent_to(ADA).len() == before,
        "the bot spoke while a human held the conversation: {:?}",
        &fake.sent_to(ADA)[before..]
    );

    // Hand back: the bot answers the next message again.
    alice.hand_back(&id).await?;
    let n = fake.sent_to(ADA).len();
    fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    eventually(
        10,
        || {
            fake.sent_to(ADA)[n..]
                .iter()
                .any(|m| text(m).contains("Canada"))
                .then_some(())
        },
        || {
            format!(
                "the bot did not answer after hand back: {:?}",
                fake.sent_to(ADA)
            )
        },
    )
    .await?;

    // The redelivered question was stored once.
    let stored = alice.messages_of(&id).await?;
    let asked = stored
        .iter()
        .filter(|m| m["sender"] == "visitor" && m["text"] == "Do you ship to Canada?")
        .count();
    ensure!(
        asked == 3,
        "three questions, the redelivery stored once: {stored:?}"
    );
    ensure!(
        !stored.iter().any(|m| m["text"] == "/start"),
        "/start is not a message: {stored:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_telegram_visitor_goes_from_bot_to_human_and_back() -> Result<()> {
    on_every_backend(telegram_hand_over).await
}

#[tokio::test]
async fn telegram_flood_control_is_waited_out() -> Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let _server =
        Server::start_with_env(&db, &config(&fake, ""), &[("TELEGRAM_BOT_TOKEN", TOKEN)]).await?;
    fake.throttle_next_sends(1);
    fake.private_text(ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent(ADA, 15, |m| text(m).contains("Canada"))
        .await?;
    let refused = fake
        .calls()
        .iter()
        .filter(|(m, _)| m == "sendmessage:429")
        .count();
    ensure!(refused == 1, "one 429 first, then the retry");
    Ok(())
}

#[tokio::test]
async fn the_telegram_webhook_needs_its_secret() -> Result<()> {
    let fake = FakeTelegram::start(TOKEN).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let hook_config = config(
        &fake,
        "mode = \"webhook\"\nwebhook_url = \"https://support.example.com/api/v1/channels/telegram/webhook\"\n",
    );
    let server = Server::start_with_env(
        &db,
        &hook_config,
        &[
            ("TELEGRAM_BOT_TOKEN", TOKEN),
            ("TELEGRAM_WEBHOOK_SECRET", "s3cret-token_1"),
        ],
    )
    .await?;
    // Baton registers its webhook with the secret.
    let set = fake.wait_call("setWebhook", 10).await?;
    ensure!(set["secret_token"] == "s3cret-token_1", "{set}");
    ensure!(
        set["url"] == "https://support.example.com/api/v1/channels/telegram/webhook",
        "{set}"
    );

    let url = format!("{}/api/v1/channels/telegram/webhook", server.base());
    let http = reqwest::Client::new();
    let update = json!({
        "update_id": 77,
        "message": {
            "message_id": 9,
            "from": {"id": ADA, "is_bot": false, "first_name": "Ada"},
            "chat": {"id": ADA, "first_name": "Ada", "type": "private"},
            "date": 1_763_712_000,
            "text": "Do you ship to Canada?"
        }
    });
    let post = |secret: Option<&str>, body: String| {
        let mut r = http
            .post(&url)
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = secret {
            r = r.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        r.send()
    };
    let none = post(None, update.to_string()).await?;
    ensure!(none.status() == 401, "no secret: {}", none.status());
    let wrong = post(Some("not-it"), update.to_string()).await?;
    ensure!(wrong.status() == 401, "wrong secret: {}", wrong.status());
    let garbage = post(Some("s3cret-token_1"), "{\"update_id\":".into()).await?;
    ensure!(garbage.status() == 400, "malformed: {}", garbage.status());
    let unknown = post(
        Some("s3cret-token_1"),
        json!({"update_id": 78, "poll": {"id": "1"}}).to_string(),
    )
    .await?;
    ensure!(
        unknown.status() == 200,
        "an unknown kind is ignored: {}",
        unknown.status()
    );
    // Nothing was stored by any of those.
    let alice = server.staff("Alice", "admin").await?;
    ensure!(
        server
            .runtime
            .store()
            .conversation_by_thread(ChannelKind::Telegram, &ADA.to_string())
            .await?
            .is_none(),
        "refused updates store nothing"
    );

    let ok = post(Some("s3cret-token_1"), update.to_string()).await?;
    ensure!(ok.status() == 200, "with the secret: {}", ok.status());
    let again = post(Some("s3cret-token_1"), update.to_string()).await?;
    ensure!(again.status() == 200);
    fake.wait_sent(ADA, 10, |m| text(m).contains("Canada"))
        .await?;
    let id = server
        .conversation_on(ChannelKind::Telegram, &ADA.to_string(), 5)
        .await?;
    let stored = alice.messages_of(&id).await?;
    let visitor = stored.iter().filter(|m| m["sender"] == "visitor").count();
    ensure!(
        visitor == 1,
        "a redelivered webhook is stored once: {stored:?}"
    );
    Ok(())
}
