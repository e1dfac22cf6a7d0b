//! Host calls without a server: [`MockApi`] keeps the key-value store in
//! memory, answers HTTP from canned responses and records every call; and
//! [`replay`] drives a plugin through a transcript with it. This is what
//! `baton plugin test` runs, so authors test a plugin without Baton.

use crate::api::{ConversationInfo, HostApi, HttpRequest, HttpResponse, MessageInfo};
use crate::host::{Outcome, PluginHost, Step};
use crate::manifest::World;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Answers nothing: for calls made outside a conversation (`describe()`).
pub(crate) struct Inert;

#[async_trait]
impl HostApi for Inert {
    async fn conversation(&self, _: &str) -> Result<ConversationInfo, String> {
        Err("no conversation during describe()".into())
    }
    async fn history(&self, _: &str, _: u32) -> Result<Vec<MessageInfo>, String> {
        Ok(vec![])
    }
    async fn add_tag(&self, _: &str, _: &str) -> Result<(), String> {
        Err("no conversation during describe()".into())
    }
    async fn send(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err("no conversation during describe()".into())
    }
    async fn notify(&self, _: &str, _: Option<&str>, _: &str) -> Result<(), String> {
        Err("not during describe()".into())
    }
    async fn kv_get(&self, _: &str, _: &str) -> Result<Option<String>, String> {
        Ok(None)
    }
    async fn kv_set(&self, _: &str, _: &str, _: &str) -> Result<(), String> {
        Err("not during describe()".into())
    }
    async fn kv_delete(&self, _: &str, _: &str) -> Result<(), String> {
        Ok(())
    }
    async fn fetch(&self, _: HttpRequest) -> Result<HttpResponse, String> {
        Err("not during describe()".into())
    }
    fn secret(&self, _: &str, _: &str) -> Option<String> {
        None
    }
}

/// One host call a plugin made, as [`MockApi`] saw it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum HostCall {
    Tag {
        tag: String,
    },
    Send {
        text: String,
    },
    Notify {
        email: Option<String>,
        text: String,
    },
    KvSet {
        key: String,
        value: String,
    },
    KvDelete {
        key: String,
    },
    Fetch {
        method: String,
        url: String,
        body: Option<String>,
    },
}

/// An in-memory Baton.
#[derive(Default)]
pub struct MockApi {
    pub conversation: Mutex<ConversationInfo>,
    pub history: Mutex<Vec<MessageInfo>>,
    pub kv: Mutex<BTreeMap<String, String>>,
    /// `"METHOD url"` → response; anything else is a 404.
    pub http: BTreeMap<String, HttpResponse>,
    pub secrets: BTreeMap<String, String>,
    pub calls: Mutex<Vec<HostCall>>,
}

impl MockApi {
    pub fn take_calls(&self) -> Vec<HostCall> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }

    fn log(&self, call: HostCall) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl HostApi for MockApi {
    async fn conversation(&self, _: &str) -> Result<ConversationInfo, String> {
        Ok(self.conversation.lock().unwrap().clone())
    }
    async fn history(&self, _: &str, limit: u32) -> Result<Vec<MessageInfo>, String> {
        let h = self.history.lock().unwrap();
        Ok(h[h.len().saturating_sub(limit as usize)..].to_vec())
    }
    async fn add_tag(&self, _: &str, tag: &str) -> Result<(), String> {
        self.conversation.lock().unwrap().tags.push(tag.to_owned());
        self.log(HostCall::Tag { tag: tag.into() });
        Ok(())
    }
    async fn send(&self, _: &str, _: &str, text: &str) -> Result<(), String> {
        self.log(HostCall::Send { text: text.into() });
        Ok(())
    }
    async fn notify(&self, _: &str, email: Option<&str>, text: &str) -> Result<(), String> {
        self.log(HostCall::Notify {
            email: email.map(str::to_owned),
            text: text.into(),
        });
        Ok(())
    }
    async fn kv_get(&self, _: &str, key: &str) -> Result<Option<String>, String> {
        Ok(self.kv.lock().unwrap().get(key).cloned())
    }
    async fn kv_set(&self, _: &str, key: &str, value: &str) -> Result<(), String> {
        self.kv.lock().unwrap().insert(key.into(), value.into());
        self.log(HostCall::KvSet {
            key: key.into(),
            value: value.into(),
        });
        Ok(())
    }
    async fn kv_delete(&self, _: &str, key: &str) -> Result<(), String> {
        self.kv.lock().unwrap().remove(key);
        self.log(HostCall::KvDelete { key: key.into() });
        Ok(())
    }
    async fn fetch(&self, request: HttpRequest) -> Result<HttpResponse, String> {
        self.log(HostCall::Fetch {
            method: request.method.clone(),
            url: request.url.clone(),
            body: request.body.clone(),
        });
        Ok(self
            .http
            .get(&format!("{} {}", request.method, request.url))
            .cloned()
            .unwrap_or(HttpResponse {
                status: 404,
                headers: vec![],
                body: "not in the transcript".into(),
            }))
    }
    fn secret(&self, _: &str, key: &str) -> Option<String> {
        self.secrets.get(key).cloned()
    }
}

/// A transcript for `baton plugin test` (TOML).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transcript {
    #[serde(default)]
    pub conversation: Option<ConversationInfo>,
    /// `"METHOD url"` → the response the plugin gets.
    #[serde(default)]
    pub http: BTreeMap<String, HttpResponse>,
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    #[serde(default, rename = "turn")]
    pub turns: Vec<Turn>,
}

/// One step of a transcript: a visitor message (triggers and power-ups) or
/// a hand-over (actions), and optionally what must come of it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    pub visitor: Option<String>,
    /// Actions: the hand-over's reason.
    pub handover: Option<String>,
    /// Power-ups: arguments (JSON) when the turn starts the power-up.
    pub arguments: Option<String>,
    /// `escalate` or `none` (trigger); `reply`, `ask`, `done` or `escalate`
    /// (power-up); `done`, `retry` or `failed` (action).
    pub expect: Option<String>,
    /// Text the answer must contain.
    pub expect_text: Option<String>,
}

/// What one turn came to.
#[derive(Clone, Debug, Serialize)]
pub struct TurnReport {
    pub turn: usize,
    pub result: String,
    pub detail: String,
    pub host_calls: Vec<HostCall>,
    /// Why the turn did not meet its expectation.
    pub mismatch: Option<String>,
}

/// Replays `transcript` against the plugin in `folder`.
pub async fn replay(
    folder: &std::path::Path,
    transcript: Transcript,
) -> Result<Vec<TurnReport>, String> {
    let host = PluginHost::new(folder.join(".baton-test"), None, Default::default())
        .map_err(|e| e.to_string())?;
    let id = host.load_only(folder).await?;
    let world = host
        .status(&id)
        .and_then(|s| s.world)
        .ok_or("the plugin did not load")?;
    let api = Arc::new(MockApi {
        conversation: Mutex::new(transcript.conversation.clone().unwrap_or_default()),
        http: transcript.http.clone(),
        secrets: transcript.secrets.clone(),
        ..MockApi::default()
    });
    let mut reports = vec![];
    let mut power_up_turn: Option<u32> = None;
    for (i, turn) in transcript.turns.iter().enumerate() {
        let text = turn.visitor.clone().unwrap_or_default();
        if !text.is_empty() {
            api.history.lock().unwrap().push(MessageInfo {
                sender: "visitor".into(),
                text: text.clone(),
                at: i as i64,
            });
        }
        let conversation = api.conversation.lock().unwrap().clone();
        let (result, detail) = match world {
            World::Trigger => match host.trigger(api.clone(), &conversation, &text).await {
                Some((_, e)) => (
                    "escalate".to_owned(),
                    serde_json::to_string(&e).unwrap_or_default(),
                ),
                None => (
                    "none".to_owned(),
                    host.status(&id)
                        .and_then(|s| s.stats.last_error)
                        .unwrap_or_default(),
                ),
            },
            World::PowerUp => {
                let n = power_up_turn.map_or(0, |n| n + 1);
                let arguments = turn.arguments.clone().unwrap_or_else(|| "{}".into());
                match host
                    .invoke_power_up(api.clone(), &id, &conversation, &arguments, &text, n)
                    .await
                {
                    Ok(step) => {
                        power_up_turn = matches!(step, Step::Ask(_)).then_some(n);
                        match step {
                            Step::Reply(t) => ("reply".to_owned(), t),
                            Step::Ask(t) => ("ask".to_owned(), t),
                            Step::Done(t) => ("done".to_owned(), t.unwrap_or_default()),
                            Step::Escalate(e) => (
                                "escalate".to_owned(),
                                serde_json::to_string(&e).unwrap_or_default(),
                            ),
                        }
                    }
                    Err(e) => {
                        power_up_turn = None;
                        ("error".to_owned(), e.to_string())
                    }
                }
            }
            World::Action => {
                let reason = turn
                    .handover
                    .clone()
                    .unwrap_or_else(|| "visitor_request".into());
                let key = format!("{}:{}", conversation.id, i);
                match host
                    .run_action(api.clone(), &id, &conversation, &key, &reason, 1)
                    .await
                {
                    Ok(Outcome::Done(d)) => ("done".to_owned(), d),
                    Ok(Outcome::Retry(d)) => ("retry".to_owned(), d),
                    Ok(Outcome::Failed(d)) => ("failed".to_owned(), d),
                    Err(e) => ("error".to_owned(), e.to_string()),
                }
            }
        };
        let mut mismatch = None;
        if let Some(expect) = &turn.expect
            && expect != &result
        {
            mismatch = Some(format!("expected `{expect}`, got `{result}`"));
        }
        if let Some(want) = &turn.expect_text
            && !detail.contains(want.as_str())
        {
            mismatch.get_or_insert(format!("expected the answer to contain {want:?}"));
        }
        reports.push(TurnReport {
            turn: i + 1,
            result,
            detail,
            host_calls: api.take_calls(),
            mismatch,
        });
    }
    Ok(reports)
}
