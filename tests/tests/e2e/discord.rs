//! Discord end to end: the real server with `[channels.discord]`, the real
//! serenity client (REST through `HttpBuilder::proxy` with its rate limiter
//! off, the gateway over `ws://`), and a fake Discord that speaks the REST
//! API and the gateway protocol.

use anyhow::{Result, ensure};
use baton_model::ChannelKind;
use baton_tests::fakes::discord::{BOT_ID, FakeDiscord};
use baton_tests::{Backend, Server, TestDb, on_every_backend};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "MTMwMDAwMDAwMDAwMDAwMDAwMQ.fake.discord-token";
const SUPPORT: u64 = 1_300_000_000_000_000_100;
const OTHER_CHANNEL: u64 = 1_300_000_000_000_000_101;
const DM: u64 = 1_300_000_000_000_000_200;
const ADA: u64 = 1_300_000_000_000_000_300;
const GRACE: u64 = 1_300_000_000_000_000_301;

async fn start(backend: Backend) -> Result<(FakeDiscord, TestDb, Server)> {
    let fake = FakeDiscord::start(TOKEN).await?;
    let db = TestDb::new(backend).await?;
    let config = format!(
        "[channels.discord]\napi_url = \"{}\"\nsupport_channel = \"{SUPPORT}\"\n",
        fake.base
    );
    let server = Server::start_with_env(&db, &config, &[("DISCORD_BOT_TOKEN", TOKEN)]).await?;
    fake.wait_identified(20).await?;
    Ok((fake, db, server))
}

fn content(m: &Value) -> &str {
    m["content"].as_str().unwrap_or_default()
}

async fn discord_hand_over(backend: Backend) -> Result<()> {
    let (fake, _db, server) = start(backend).await?;
    let alice = server.staff("Alice Example", "responder").await?;

    // The gateway session asks for the intents the README names.
    let identify = fake.identifies().remove(0);
    let intents = identify["intents"].as_u64().unwrap_or(0);
    let wanted = (1 << 9) | (1 << 12) | (1 << 15); // GUILD_MESSAGES, DIRECT_MESSAGES, MESSAGE_CONTENT
    ensure!(intents & wanted == wanted, "intents {intents:#b}");

    // The bot answers a DM from the knowledge base.
    let question = fake.dm(DM, ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent(DM, 10, |m| content(m).contains("Canada"))
        .await?;
    // A resumed session may replay an event: stored once.
    fake.push("MESSAGE_CREATE", question);
    let id = server
        .conversation_on(ChannelKind::Discord, &format!("dm:{DM}"), 5)
        .await?;
    let (_, conv) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(conv["conversation"]["contact"]["name"] == "Ada", "{conv}");
    ensure!(conv["conversation"]["channel"] == "discord", "{conv}");

    // Discord drops the gateway connection; serenity resumes and events flow again.
    fake.drop_connections();
    let n = fake.sent_to(DM).len();
    fake.dm(DM, ADA, "Ada", "qwertyuiop zxcvb");
    // "Talk to a human" is a message component: a button in an action row.
    let offer = fake
        .wait_sent_after(DM, n, 10, |m| {
            m["components"].to_string().contains("request_human")
        })
        .await?;
    ensure!(fake.resumes() >= 1, "serenity resumed the session");
    let button = offer["components"][0]["components"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["custom_id"] == "request_human"))
        .cloned()
        .unwrap_or_default();
    ensure!(offer["components"][0]["type"] == 1, "{offer}");
    ensure!(button["type"] == 2, "{offer}");
    ensure!(
        button["label"].as_str().is_some_and(|l| !l.is_empty()),
        "{offer}"
    );
    fake.press(DM, false, ADA, "Ada", "request_human");
    alice.wait_status(&id, "waiting").await?;
    // The press is acknowledged (a deferred update), as Discord requires.
    let ack = fake.wait_call("/callback", 5).await?;
    ensure!(ack["type"] == 6, "{ack}");

    // Claimed in the web inbox; the agent's reply reaches Discord with the agent's name.
    alice
        .claim_and_reply(&id, "Hi Ada, I am looking at your order now.")
        .await?;
    fake.wait_sent(DM, 10, |m| {
        content(m) == "Alice Example: Hi Ada, I am looking at your order now."
    })
    .await?;

    // While a human holds it the bot stays silent, on Discord too.
    let before = fake.sent_to(DM).len();
    fake.dm(DM, ADA, "Ada", "Do you ship to Canada?");
    tokio::time::sleep(Duration::from_millis(800)).await;
    ensure!(
        fake.sent_to(DM).len() == before,
        "the bot spoke while a human held the conversation: {:?}",
        &fake.sent_to(DM)[before..]
    );

    // Hand back: the bot answers the next message again.
    alice.hand_back(&id).await?;
    let n = fake.sent_to(DM).len();
    fake.dm(DM, ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent_after(DM, n, 10, |m| content(m).contains("Canada"))
        .await?;

    // The replayed question was stored once.
    let stored = alice.messages_of(&id).await?;
    let asked = stored
        .iter()
        .filter(|m| m["sender"] == "visitor" && m["text"] == "Do you ship to Canada?")
        .count();
    ensure!(
        asked == 3,
        "three questions, the replay stored once: {stored:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_discord_visitor_goes_from_bot_to_human_and_back() -> Result<()> {
    on_every_backend(discord_hand_over).await
}

#[tokio::test]
async fn the_support_channel_gives_each_conversation_a_thread() -> Result<()> {
    let (fake, _db, server) = start(Backend::Sqlite).await?;
    let alice = server.staff("Alice Example", "responder").await?;

    // A top-level message in the support channel: a thread is opened from it
    // (its id is the message's) and the bot answers there, not in the channel.
    let first = fake.guild_message(
        SUPPORT,
        GRACE,
        "Grace",
        &format!("<@{BOT_ID}> Do you ship to Canada?"),
    );
    let thread: u64 = first["id"].as_str().unwrap_or_default().parse()?;
    let opened = fake
        .wait_call(&format!("channels/{SUPPORT}/messages/{thread}/threads"), 10)
        .await?;
    ensure!(
        opened["name"] == "Grace: Do you ship to Canada?",
        "{opened}"
    );
    fake.wait_sent(thread, 10, |m| content(m).contains("Canada"))
        .await?;
    ensure!(
        fake.sent_to(SUPPORT).is_empty(),
        "nothing is posted in the channel itself"
    );
    let id = server
        .conversation_on(ChannelKind::Discord, &format!("thread:{thread}"), 5)
        .await?;
    let stored = alice.messages_of(&id).await?;
    ensure!(
        stored
            .iter()
            .any(|m| m["sender"] == "visitor" && m["text"] == "Do you ship to Canada?"),
        "the bot's mention is not part of the question: {stored:?}"
    );

    // Messages in a channel Baton does not serve are not taken.
    fake.guild_message(OTHER_CHANNEL, GRACE, "Grace", "Do you ship to Canada?");

    // In the thread: the fallback offers a human, the press escalates, and
    // the agent's reply lands in the thread.
    let n = fake.sent_to(thread).len();
    fake.guild_message(thread, GRACE, "Grace", "qwertyuiop zxcvb");
    fake.wait_sent_after(thread, n, 10, |m| {
        m["components"].to_string().contains("request_human")
    })
    .await?;
    fake.press(thread, true, GRACE, "Grace", "request_human");
    alice.wait_status(&id, "waiting").await?;
    alice
        .claim_and_reply(&id, "Yes, Grace: Canada takes five days.")
        .await?;
    fake.wait_sent(thread, 10, |m| {
        content(m) == "Alice Example: Yes, Grace: Canada takes five days."
    })
    .await?;
    ensure!(
        fake.sent_to(OTHER_CHANNEL).is_empty(),
        "the bot never speaks in channels it does not serve"
    );
    let other = server
        .runtime
        .store()
        .conversation_by_thread(ChannelKind::Discord, &format!("thread:{OTHER_CHANNEL}"))
        .await?;
    ensure!(other.is_none(), "no conversation for another channel");
    Ok(())
}

#[tokio::test]
async fn discord_rate_limits_are_waited_out() -> Result<()> {
    let (fake, _db, _server) = start(Backend::Sqlite).await?;
    fake.throttle_next_sends(1);
    fake.dm(DM, ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent(DM, 15, |m| content(m).contains("Canada"))
        .await?;
    let refused = fake
        .calls()
        .iter()
        .filter(|(m, _, _)| m == "POST:429")
        .count();
    ensure!(refused == 1, "one 429 first, then the retry");
    Ok(())
}

#[tokio::test]
async fn odd_gateway_events_are_ignored_and_nothing_is_lost() -> Result<()> {
    let (fake, _db, server) = start(Backend::Sqlite).await?;
    let alice = server.staff("Alice Example", "responder").await?;
    // An event type this build does not know, a message that is not one, a
    // bot's message, an edit: none is a visitor message, and none stops the gateway.
    fake.push(
        "GUILD_SOUNDBOARD_SOUNDS_UPDATE",
        json!({"guild_id": "1", "soundboard_sounds": []}),
    );
    fake.push(
        "MESSAGE_CREATE",
        json!({"id": "not a snowflake", "content": 42}),
    );
    fake.push(
        "MESSAGE_UPDATE",
        json!({"id": "1300000000000000400", "channel_id": DM.to_string()}),
    );
    fake.bot_message(DM, "Do you ship to Canada?");
    fake.dm(DM, ADA, "Ada", "Do you ship to Canada?");
    fake.wait_sent(DM, 10, |m| content(m).contains("Canada"))
        .await?;
    let id = server
        .conversation_on(ChannelKind::Discord, &format!("dm:{DM}"), 5)
        .await?;
    let stored = alice.messages_of(&id).await?;
    let visitor: Vec<_> = stored.iter().filter(|m| m["sender"] == "visitor").collect();
    ensure!(
        visitor.len() == 1 && visitor[0]["text"] == "Do you ship to Canada?",
        "{stored:?}"
    );
    Ok(())
}
