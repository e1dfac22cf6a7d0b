//! The shared channel compliance test, on recorded Telegram updates.

use baton_channel::RawInbound;
use baton_channel_telegram::TelegramChannel;
use baton_runtime::testkit::{Samples, channel_compliance};
use std::sync::Arc;

fn update(body: &str) -> RawInbound {
    RawInbound {
        thread_hint: None,
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn the_telegram_channel_is_compliant() {
    // Deliveries go nowhere: nothing listens on the discard port.
    let table: toml::Table = toml::from_str("api_url = \"http://127.0.0.1:9\"").unwrap();
    let channel = TelegramChannel::from_config(&table, |k| {
        (k == "TELEGRAM_BOT_TOKEN").then(|| "1:compliance".to_owned())
    })
    .unwrap();
    let samples = Samples {
        messages: vec![
            update(include_str!("fixtures/private_message.json")),
            update(include_str!("fixtures/document.json")),
        ],
        garbage: vec![
            update("\u{0}\u{1}"),
            update("[]"),
            update("{\"update_id\":1}"),
            update(include_str!("fixtures/edited_message.json")),
        ],
    };
    channel_compliance(Arc::new(channel), samples).await;
}

#[test]
fn the_config_says_what_is_missing() {
    let table = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
    let no_env = |_: &str| None;
    let err = TelegramChannel::from_config(&table(""), no_env)
        .err()
        .unwrap();
    assert!(err.contains("TELEGRAM_BOT_TOKEN"), "{err}");
    let token = |k: &str| (k == "TELEGRAM_BOT_TOKEN").then(|| "1:x".to_owned());
    let err = TelegramChannel::from_config(&table("mode = \"webhook\""), token)
        .err()
        .unwrap();
    assert!(err.contains("TELEGRAM_WEBHOOK_SECRET"), "{err}");
    let err = TelegramChannel::from_config(&table("mode = \"carrier-pigeon\""), token)
        .err()
        .unwrap();
    assert!(err.contains("[channels.telegram]"), "{err}");
    let err = TelegramChannel::from_config(&table("colour = 1"), token)
        .err()
        .unwrap();
    assert!(err.contains("colour"), "{err}");
    let bad_secret = |k: &str| match k {
        "TELEGRAM_BOT_TOKEN" => Some("1:x".to_owned()),
        "TELEGRAM_WEBHOOK_SECRET" => Some("has spaces!".to_owned()),
        _ => None,
    };
    let err = TelegramChannel::from_config(&table("mode = \"webhook\""), bad_secret)
        .err()
        .unwrap();
    assert!(err.contains("A-Z"), "{err}");
    let err = TelegramChannel::from_config(&table("webhook_url = \"not a url\""), token)
        .err()
        .unwrap();
    assert!(err.contains("webhook_url"), "{err}");
    assert!(TelegramChannel::from_config(&table("poll_timeout_secs = 5"), token).is_ok());
}
