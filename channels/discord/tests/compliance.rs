//! The shared channel compliance test, on recorded Discord gateway events.

use baton_channel::RawInbound;
use baton_channel_discord::DiscordChannel;
use baton_runtime::testkit::{Samples, channel_compliance};
use std::sync::Arc;

fn event(body: &str) -> RawInbound {
    RawInbound {
        thread_hint: None,
        body: body.as_bytes().to_vec(),
    }
}

fn table(s: &str) -> toml::Table {
    toml::from_str(s).unwrap()
}

#[tokio::test]
async fn the_discord_channel_is_compliant() {
    // Deliveries go nowhere: nothing listens on the discard port.
    let channel = DiscordChannel::from_config(
        &table("api_url = \"http://127.0.0.1:9\"\nsupport_channel = \"1300000000000000100\""),
        |k| (k == "DISCORD_BOT_TOKEN").then(|| "compliance".to_owned()),
    )
    .unwrap();
    let samples = Samples {
        messages: vec![
            event(include_str!("fixtures/dm_message.json")),
            event(include_str!("fixtures/support_channel_message.json")),
        ],
        garbage: vec![
            event("\u{0}\u{1}"),
            event("[]"),
            event("{\"op\":0}"),
            event("{\"op\":0,\"t\":\"MESSAGE_CREATE\",\"d\":{}}"),
            event(include_str!("fixtures/from_bot.json")),
            event(include_str!("fixtures/typing_start.json")),
        ],
    };
    channel_compliance(Arc::new(channel), samples).await;
}

#[test]
fn the_config_says_what_is_missing() {
    let no_env = |_: &str| None;
    let err = DiscordChannel::from_config(&table(""), no_env)
        .err()
        .unwrap();
    assert!(err.contains("DISCORD_BOT_TOKEN"), "{err}");
    let token = |k: &str| (k == "DISCORD_BOT_TOKEN").then(|| "x".to_owned());
    let err = DiscordChannel::from_config(&table("support_channel = \"#help\""), token)
        .err()
        .unwrap();
    assert!(err.contains("support_channel"), "{err}");
    let err = DiscordChannel::from_config(&table("api_url = \"127.0.0.1:9\""), token)
        .err()
        .unwrap();
    assert!(err.contains("api_url"), "{err}");
    let err = DiscordChannel::from_config(&table("colour = 1"), token)
        .err()
        .unwrap();
    assert!(err.contains("colour"), "{err}");
    assert!(
        DiscordChannel::from_config(&table("support_channel = \"1300000000000000100\""), token)
            .is_ok()
    );
    assert!(DiscordChannel::from_config(&table(""), token).is_ok());
}
