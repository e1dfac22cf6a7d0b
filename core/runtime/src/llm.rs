//! The optional LLM bot: any OpenAI-compatible chat-completions server
//! (Ollama, llama.cpp, vLLM, a hosted one), configured by `[llm]` with the
//! key from `BATON_LLM_API_KEY`.
//!
//! Each turn the built-in bot reads the message first: its rule-based
//! triggers (a phrase, frustration, a configured intent, "that didn't
//! help") hand over without asking the model. Otherwise the model gets the
//! system prompt, the knowledge base's closest entries as context, the
//! conversation, and `request_human` as a tool; its reply is streamed to the
//! widget as it is written. A time-out, an error or an empty answer falls
//! back to the built-in bot's reply.

use crate::bot::{Bot, BotMessage, BotReply, BotTurn, KnowledgeBot, PowerUpCall};
use crate::config::LlmConfig;
use async_trait::async_trait;
use baton_model::{Reason, SenderKind};
use serde_json::{Value, json};
use std::sync::Arc;
use tracing::warn;

/// The environment variable that holds the API key.
pub const API_KEY_ENV: &str = "BATON_LLM_API_KEY";

pub struct LlmBot {
    builtin: Arc<KnowledgeBot>,
    config: LlmConfig,
    api_key: Option<String>,
    http: reqwest::Client,
}

impl std::fmt::Debug for LlmBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("LlmBot")
            .field("base_url", &self.config.base_url)
            .field("model", &self.config.model)
            .finish()
    }
}

/// What the model said.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    text: String,
    request_human: bool,
    /// A power-up tool call: its name and arguments (JSON).
    tool: Option<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
enum LlmError {
    #[error("request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("unreadable answer: {0}")]
    Malformed(String),
}

impl LlmBot {
    pub fn new(builtin: Arc<KnowledgeBot>, config: LlmConfig, api_key: Option<String>) -> Self {
        Self {
            builtin,
            config,
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }

    fn request_body(&self, turn: &BotTurn<'_>) -> Value {
        let context = self
            .builtin
            .context(turn.bot_id, turn.text, self.config.context_entries);
        let mut system = self.config.system_prompt.clone();
        if !context.is_empty() {
            system.push_str("\n\nKnowledge base:\n");
            for e in &context {
                system.push_str(&format!("\nQ: {}\nA: {}\n", e.question, e.answer));
            }
        }
        let mut messages = vec![json!({"role": "system", "content": system})];
        for m in turn.history.iter().filter(|m| !m.internal) {
            let role = match m.sender {
                SenderKind::Visitor => "user",
                SenderKind::Bot | SenderKind::Agent => "assistant",
                SenderKind::System => continue,
            };
            messages.push(json!({"role": role, "content": m.text}));
        }
        let mut tools = vec![json!({
                "type": "function",
                "function": {
                    "name": "request_human",
                    "description": "Hand the conversation to a human from the team. Use it when \
                                    the visitor asks for a person, or needs what only staff can do.",
                    "parameters": {
                        "type": "object",
                        "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
                    },
                },
        })];
        for tool in turn.tools {
            tools.push(json!({
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": tool.parameters,
                },
            }));
        }
        let mut body = json!({
            "model": self.config.model,
            "messages": messages,
            "stream": self.config.stream,
            "tools": tools,
        });
        if let Some(t) = self.config.temperature {
            body["temperature"] = json!(t);
        }
        body
    }

    async fn ask(&self, turn: &BotTurn<'_>) -> Result<Answer, LlmError> {
        let url = format!(
            "{}/chat/completions",
            self.config.base_url.trim_end_matches('/')
        );
        let mut request = self.http.post(&url).json(&self.request_body(turn));
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key);
        }
        let mut response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body: String = response
                .text()
                .await
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect();
            return Err(LlmError::Status {
                status: status.as_u16(),
                body,
            });
        }
        if !self.config.stream {
            let value: Value = response.json().await?;
            return parse_completion(&value);
        }
        // Server-sent events: `data: {chunk}` lines, ending with `data: [DONE]`.
        let mut answer = Answer::default();
        // Bytes, not text: a character may be split between two chunks.
        let mut buffer: Vec<u8> = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let raw: Vec<u8> = buffer.drain(..=end).collect();
                let line = String::from_utf8_lossy(&raw);
                let line = line.trim();
                let Some(data) = line.strip_prefix("data:") else {
                    continue;
                };
                let data = data.trim();
                if data == "[DONE]" {
                    return Ok(answer);
                }
                let value: Value = serde_json::from_str(data)
                    .map_err(|e| LlmError::Malformed(format!("{e} in `{data}`")))?;
                let delta = &value["choices"][0]["delta"];
                if let Some(text) = delta["content"].as_str()
                    && !text.is_empty()
                {
                    answer.text.push_str(text);
                    (turn.draft)(&answer.text);
                }
                if calls_request_human(&delta["tool_calls"]) {
                    answer.request_human = true;
                }
                // A tool call streams as its name, then its arguments in pieces.
                for call in delta["tool_calls"].as_array().into_iter().flatten() {
                    let function = &call["function"];
                    if let Some(name) = function["name"].as_str()
                        && name != "request_human"
                        && answer.tool.is_none()
                    {
                        answer.tool = Some((name.to_owned(), String::new()));
                    }
                    if let (Some((_, args)), Some(piece)) =
                        (answer.tool.as_mut(), function["arguments"].as_str())
                    {
                        args.push_str(piece);
                    }
                }
            }
        }
        // The stream ended without [DONE]: keep what arrived if anything did.
        Ok(answer)
    }
}

fn parse_completion(value: &Value) -> Result<Answer, LlmError> {
    let message = &value["choices"][0]["message"];
    if message.is_null() {
        return Err(LlmError::Malformed("no choices[0].message".into()));
    }
    let tool = message["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| &c["function"])
        .find(|f| f["name"].as_str().is_some_and(|n| n != "request_human"))
        .map(|f| {
            (
                f["name"].as_str().unwrap_or_default().to_owned(),
                f["arguments"].as_str().unwrap_or("{}").to_owned(),
            )
        });
    Ok(Answer {
        text: message["content"].as_str().unwrap_or_default().to_owned(),
        request_human: calls_request_human(&message["tool_calls"]),
        tool,
    })
}

/// Whether a `tool_calls` list (whole, or a streamed delta) calls `request_human`.
fn calls_request_human(calls: &Value) -> bool {
    calls.as_array().is_some_and(|calls| {
        calls
            .iter()
            .any(|c| c["function"]["name"].as_str() == Some("request_human"))
    })
}

/// The model's text as the bot's message, if it wrote any.
fn said(text: String) -> Vec<BotMessage> {
    if text.is_empty() {
        vec![]
    } else {
        vec![BotMessage {
            text,
            actions: vec![],
        }]
    }
}

/// Reasons the built-in bot's rules decide on their own; the knowledge
/// base's own limits (`bot_failure`, `lack_of_information`) are the model's
/// call instead.
fn rule_decides(reason: &Reason) -> bool {
    !matches!(
        reason.as_str(),
        Reason::BOT_FAILURE | Reason::LACK_OF_INFORMATION
    )
}

#[async_trait]
impl Bot for LlmBot {
    async fn reply(&self, turn: BotTurn<'_>) -> BotReply {
        let builtin = self
            .builtin
            .reply(BotTurn {
                draft: &|_| {},
                ..turn
            })
            .await;
        if builtin.escalate.as_ref().is_some_and(rule_decides) {
            return builtin;
        }
        let answer = match tokio::time::timeout(self.config.timeout, self.ask(&turn)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                warn!(conversation_id = %turn.conversation.id, error = %e, "LLM failed; the built-in bot answers");
                return builtin;
            }
            Err(_) => {
                warn!(conversation_id = %turn.conversation.id, timeout_ms = self.config.timeout.as_millis() as u64, "LLM timed out; the built-in bot answers");
                return builtin;
            }
        };
        let text = answer.text.trim().to_owned();
        // The rules read the message either way: their counts carry on.
        let counters = builtin.counters;
        if answer.request_human {
            return BotReply {
                messages: said(text),
                escalate: Some(Reason::known(Reason::VISITOR_REQUEST)),
                topic: builtin.topic,
                counters,
                ..BotReply::default()
            };
        }
        let power_up = answer.tool.and_then(|(name, arguments)| {
            let tool = turn.tools.iter().find(|t| t.name == name)?;
            Some(PowerUpCall {
                plugin: tool.plugin.clone(),
                arguments: if arguments.trim().is_empty() {
                    "{}".into()
                } else {
                    arguments
                },
            })
        });
        if power_up.is_some() {
            return BotReply {
                messages: said(text),
                topic: builtin.topic,
                power_up,
                counters,
                ..BotReply::default()
            };
        }
        if text.is_empty() {
            return builtin;
        }
        BotReply {
            messages: vec![BotMessage {
                text,
                actions: vec![],
            }],
            topic: builtin.topic,
            counters,
            ..BotReply::default()
        }
    }

    fn wants_history(&self) -> bool {
        true
    }

    fn knowledge(&self) -> Option<&KnowledgeBot> {
        Some(&self.builtin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_completion_with_a_tool_call_asks_for_a_human() {
        let v = json!({"choices": [{"message": {"content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "request_human", "arguments": "{}"}}
        ]}}]});
        assert!(parse_completion(&v).unwrap().request_human);
        let v = json!({"choices": [{"message": {"content": "Hello"}}]});
        assert_eq!(parse_completion(&v).unwrap().text, "Hello");
        assert!(parse_completion(&json!({"error": "x"})).is_err());
    }
}
