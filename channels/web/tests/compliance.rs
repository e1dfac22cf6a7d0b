//! The shared channel compliance test, on recorded widget frames.

use baton_channel::RawInbound;
use baton_channel_web::WebChannel;
use baton_runtime::testkit::{Samples, channel_compliance};
use std::sync::Arc;

fn frame(body: &str) -> RawInbound {
    RawInbound {
        thread_hint: Some("conversation-from-the-widget".into()),
        body: body.as_bytes().to_vec(),
    }
}

#[tokio::test]
async fn the_web_channel_is_compliant() {
    let samples = Samples {
        messages: vec![
            frame(include_str!("fixtures/http_message.json")),
            frame(include_str!("fixtures/ws_message.json")),
        ],
        garbage: vec![
            frame("\u{0}\u{1}"),
            frame("[]"),
            frame("{\"type\":\"message\"}"),
        ],
    };
    channel_compliance(Arc::new(WebChannel), samples).await;
}
