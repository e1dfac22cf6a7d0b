//! The shared channel compliance test, on recorded Slack events.

use baton_channel::RawInbound;
use baton_channel_slack::SlackChannel;
use baton_runtime::testkit::{Samples, channel_compliance};
use std::sync::Arc;

fn body(text: &str) -> RawInbound {
    RawInbound {
        thread_hint: None,
        body: text.as_bytes().to_vec(),
    }
}

fn secrets(k: &str) -> Option<String> {
    match k {
        "SLACK_BOT_TOKEN" => Some("xoxb-compliance".into()),
        "SLACK_SIGNING_SECRET" => Some("secret".into()),
        _ => None,
    }
}

#[tokio::test]
async fn the_slack_channel_is_compliant() {
    // Deliveries go nowhere: nothing listens on the discard port.
    let table: toml::Table = toml::from_str("api_url = \"http://127.0.0.1:9/api\"").unwrap();
    let channel = SlackChannel::from_config(&table, secrets).unwrap();
    let samples = Samples {
        messages: vec![body(include_str!("fixtures/im_message.json"))],
        garbage: vec![
            body("\u{0}\u{1}"),
            body("[]"),
            body(include_str!("fixtures/bot_message.json")),
            body(include_str!("fixtures/message_changed.json")),
            body(include_str!("fixtures/app_mention_unknown.json")),
        ],
    };
    channel_compliance(Arc::new(channel), samples).await;
}

#[test]
fn the_config_says_what_is_missing() {
    let table = |s: &str| -> toml::Table { toml::from_str(s).unwrap() };
    let err = |t: &str, env: fn(&str) -> Option<String>| {
        SlackChannel::from_config(&table(t), env)
            .err()
            .unwrap_or_default()
    };
    assert!(err("", |_| None).contains("SLACK_BOT_TOKEN"));
    assert!(
        err("", |k| (k == "SLACK_BOT_TOKEN").then(|| "xoxb".into()))
            .contains("SLACK_SIGNING_SECRET")
    );
    assert!(err("mode = \"socket\"", secrets).contains("SLACK_APP_TOKEN"));
    assert!(err("api_url = \"ftp://x\"", secrets).contains("api_url"));
    assert!(err("console_channel = \" \"", secrets).contains("console_channel"));
    assert!(err("channel = \"C1\"", secrets).contains("channel"));
    assert!(SlackChannel::from_config(&table("console_channel = \"C1\""), secrets).is_ok());
}
