//! Widget frames to [`Inbound`] messages. Pure.
//!
//! Accepts the HTTP body of `POST /api/v1/widget/messages` and the WebSocket
//! client frames of API.md: `{"type":"message","text","client_id"?}` and
//! `{"type":"action","action"}`. A typing frame carries no message.

use baton_channel::{Error, Inbound, InboundSender, RawInbound, Result};
use baton_model::ChannelKind;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Frame {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    action: Option<String>,
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::Malformed {
        channel: ChannelKind::Web,
        reason: reason.into(),
    }
}

/// The longest client id we keep; longer ones are refused, not truncated, so that
/// two different ids can never collide.
const MAX_CLIENT_ID: usize = 128;

pub fn widget_frame(raw: &RawInbound) -> Result<Option<Inbound>> {
    let conversation_id = raw
        .thread_hint
        .clone()
        .ok_or_else(|| malformed("a widget frame must arrive on a conversation"))?;
    let frame: Frame = serde_json::from_slice(&raw.body).map_err(|e| malformed(e.to_string()))?;
    if let Some(id) = &frame.client_id
        && (id.is_empty() || id.len() > MAX_CLIENT_ID)
    {
        return Err(malformed(format!(
            "client_id must be 1 to {MAX_CLIENT_ID} bytes"
        )));
    }
    let (text, action) = match frame.kind.as_deref() {
        None | Some("message") => match frame.text {
            Some(text) => (text, None),
            None => return Err(malformed("missing field `text`")),
        },
        Some("action") => match frame.action {
            Some(action) if !action.is_empty() => (String::new(), Some(action)),
            _ => return Err(malformed("missing field `action`")),
        },
        Some("typing") => return Ok(None),
        Some(other) => return Err(malformed(format!("unknown frame type `{other}`"))),
    };
    Ok(Some(Inbound {
        channel: ChannelKind::Web,
        conversation_id: Some(conversation_id.clone()),
        thread_key: conversation_id.clone(),
        sender: InboundSender {
            external_id: conversation_id,
            name: None,
            email: None,
        },
        text,
        attachments: vec![],
        action,
        client_id: frame.client_id,
        channel_message_id: None,
        no_reply: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(body: &str) -> RawInbound {
        RawInbound {
            thread_hint: Some("c1".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn reads_recorded_widget_frames() {
        let fixtures = [
            include_str!("../tests/fixtures/http_message.json"),
            include_str!("../tests/fixtures/ws_message.json"),
            include_str!("../tests/fixtures/ws_action.json"),
        ];
        let got: Vec<_> = fixtures
            .iter()
            .map(|f| widget_frame(&raw(f)).unwrap().unwrap())
            .collect();
        assert_eq!(got[0].text, "Where is my order #1234?");
        assert_eq!(got[0].client_id.as_deref(), Some("m-1714-01"));
        assert_eq!(got[1].text, "<img src=x onerror=alert(1)>");
        assert_eq!(got[2].action.as_deref(), Some("request_human"));
        assert!(
            got.iter()
                .all(|i| i.conversation_id.as_deref() == Some("c1"))
        );
    }

    #[test]
    fn typing_is_not_a_message() {
        assert_eq!(widget_frame(&raw(r#"{"type":"typing"}"#)).unwrap(), None);
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in [
            "not json",
            "{}",
            r#"{"type":"message"}"#,
            r#"{"type":"shout","text":"x"}"#,
            r#"{"text":5}"#,
            r#"{"text":"x","client_id":""}"#,
            r#"{"text":"x","extra":1}"#,
        ] {
            assert!(widget_frame(&raw(bad)).is_err(), "{bad}");
        }
        let no_thread = RawInbound {
            thread_hint: None,
            body: b"{\"text\":\"x\"}".to_vec(),
        };
        assert!(widget_frame(&no_thread).is_err());
    }
}
