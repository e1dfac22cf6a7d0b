//! The LLM path against a local fake of the OpenAI chat-completions API
//! (server-sent-event streaming, tool calls, errors, slowness): streamed
//! replies reach the widget, `request_human` hands over, and a failure or a
//! time-out falls back to the built-in bot.

use anyhow::{Context, Result, ensure};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_tests::{
    Backend, Process, Server, TestDb, VisitorClient, baton_binary, next_matching, on_every_backend,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Answer,
    CallTool,
    /// Calls the `talk_to_a_human` power-up with an email.
    CallPowerUp,
    Fail,
    Slow,
    /// Thinks for two minutes (longer than any test waits).
    Stall,
}

#[derive(Clone)]
struct Fake {
    mode: Arc<Mutex<Mode>>,
    /// Each request's body and `Authorization` header.
    seen: Arc<Mutex<Vec<(Value, String)>>>,
}

const ANSWER: [&str; 3] = ["Our tents ", "are fully ", "waterproof."];

/// Server-sent events as a model writes them: one event at a time, a little
/// apart, ending with `[DONE]`.
fn sse(chunks: Vec<Value>) -> Response {
    let mut events: Vec<String> = chunks.iter().map(|c| format!("data: {c}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    let stream = futures_util::stream::iter(events).then(|event| async move {
        tokio::time::sleep(Duration::from_millis(40)).await;
        Ok::<_, std::convert::Infallible>(event)
    });
    (
        [("content-type", "text/event-stream")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

fn chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "fake",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

async fn completions(State(fake): State<Fake>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or_default();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    fake.seen.lock().unwrap().push((request.clone(), auth));
    let mode = *fake.mode.lock().unwrap();
    let stream = request["stream"] == true;
    match mode {
        Mode::Fail => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": {"message": "model crashed", "type": "server_error"}})),
        )
            .into_response(),
        Mode::Stall => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            (StatusCode::OK, "too late").into_response()
        }
        Mode::Slow => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            (StatusCode::OK, "too late").into_response()
        }
        Mode::Answer if stream => {
            let mut chunks = vec![chunk(json!({"role": "assistant", "content": ""}), None)];
            for part in ANSWER {
                chunks.push(chunk(json!({"content": part}), None));
            }
            chunks.push(chunk(json!({}), Some("stop")));
            sse(chunks)
        }
        Mode::Answer => axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": ANSWER.concat()}}],
        }))
        .into_response(),
        Mode::CallTool => sse(vec![
            chunk(
                json!({"role": "assistant", "content": null, "tool_calls": [{
                "index": 0, "id": "call_1", "type": "function",
                "function": {"name": "request_human", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"reason\":\"asked\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]),
        Mode::CallPowerUp => sse(vec![
            chunk(
                json!({"role": "assistant", "content": "Let me get someone for you."}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_2", "type": "function",
                    "function": {"name": "talk_to_a_human", "arguments": "{\"email\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"ada@example.com\"}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ]),
    }
}

async fn fake_openai(mode: Mode) -> Result<(String, Fake)> {
    let fake = Fake {
        mode: Arc::new(Mutex::new(mode)),
        seen: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((base, fake))
}

fn config(base: &str, extra: &str) -> String {
    format!("[llm]\nbase_url = \"{base}\"\nmodel = \"fake-model\"\n{extra}\n")
}

fn last_bot(state: &Value) -> String {
    state["messages"]
        .as_array()
        .and_then(|ms| ms.iter().rev().find(|m| m["sender"] == "bot"))
        .and_then(|m| m["text"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_streamed_reply_reaches_the_widget_as_it_is_written() -> Result<()> {
    let (base, fake) = fake_openai(Mode::Answer).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, &config(&base, "")).await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let mut ws = visitor.ws().await?;
    // The socket is listening once it has sent its first status frame; drafts
    // are not replayed, so saying anything earlier could race it.
    next_matching(&mut ws, 10, |f| f["type"] == "status").await?;
    visitor.say("Are your tents waterproof?").await?;
    // Drafts grow until the stored message replaces them; the socket may
    // deliver the message before the last draft, which it then drops.
    let mut drafts: Vec<String> = vec![];
    let message = loop {
        let frame = next_matching(&mut ws, 10, |f| {
            f["type"] == "draft" || (f["type"] == "message" && f["message"]["sender"] == "bot")
        })
        .await?;
        if frame["type"] == "message" {
            break frame;
        }
        drafts.push(frame["text"].as_str().unwrap_or_default().to_owned());
    };
    ensure!(
        drafts.first().is_some_and(|d| d == "Our tents "),
        "{drafts:?}"
    );
    ensure!(
        drafts
            .windows(2)
            .all(|w| w[1].starts_with(&w[0]) && w[1].len() > w[0].len()),
        "drafts do not grow: {drafts:?}"
    );
    ensure!(
        next_matching(&mut ws, 1, |f| f["type"] == "draft")
            .await
            .is_err(),
        "a stale draft followed the finished reply"
    );
    ensure!(
        message["message"]["text"] == "Our tents are fully waterproof.",
        "{message}"
    );

    // What the model was given: the prompt, knowledge-base context, the
    // conversation, and request_human as a tool.
    let seen = fake.seen.lock().unwrap().clone();
    let (request, _) = seen.first().context("the model was never asked")?;
    ensure!(
        request["model"] == "fake-model" && request["stream"] == true,
        "{request}"
    );
    let messages = request["messages"].as_array().context("messages")?;
    ensure!(messages[0]["role"] == "system", "{request}");
    ensure!(
        messages[0]["content"]
            .as_str()
            .unwrap_or("")
            .contains("Knowledge base:"),
        "no context: {request}"
    );
    ensure!(
        messages
            .last()
            .is_some_and(|m| m["role"] == "user" && m["content"] == "Are your tents waterproof?"),
        "{request}"
    );
    ensure!(
        request["tools"][0]["function"]["name"] == "request_human",
        "{request}"
    );
    Ok(())
}

#[tokio::test]
async fn the_request_human_tool_call_hands_over() -> Result<()> {
    let (base, _fake) = fake_openai(Mode::CallTool).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, &config(&base, "")).await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let conv = visitor
        .turn("Could you put me through to somebody?")
        .await?;
    let mut status = conv["status"].clone();
    for _ in 0..100 {
        if status == "waiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        status = visitor.state().await?["conversation"]["status"].clone();
    }
    let state = visitor.state().await?;
    ensure!(state["conversation"]["status"] == "waiting", "{state}");
    ensure!(
        state["conversation"]["handover"]["reason"] == "visitor_request",
        "{state}"
    );
    Ok(())
}

#[tokio::test]
async fn an_error_or_a_time_out_falls_back_to_the_built_in_bot() -> Result<()> {
    for (mode, extra) in [
        (Mode::Fail, "stream = false"),
        (Mode::Fail, ""),
        (Mode::Slow, "timeout = \"300ms\""),
    ] {
        let (base, fake) = fake_openai(mode).await?;
        let db = TestDb::new(Backend::Sqlite).await?;
        let server = Server::start(&db, &config(&base, extra)).await?;
        let visitor = VisitorClient::start(&server.base()).await?;
        visitor.turn("Do you ship to Canada?").await?;
        let answer = last_bot(&visitor.state().await?);
        ensure!(
            answer.contains("Canada"),
            "{mode:?} {extra}: the built-in bot did not answer: {answer}"
        );
        ensure!(
            !fake.seen.lock().unwrap().is_empty(),
            "{mode:?}: never asked"
        );
        // And when the model is back, it answers again.
        *fake.mode.lock().unwrap() = Mode::Answer;
        visitor.turn("Are your tents waterproof?").await?;
        let answer = last_bot(&visitor.state().await?);
        ensure!(answer == ANSWER.concat(), "{mode:?}: {answer}");
    }
    Ok(())
}

#[tokio::test]
async fn the_binary_sends_the_key_from_the_environment() -> Result<()> {
    let (base, fake) = fake_openai(Mode::Answer).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let binary = baton_binary()?;
    let process = Process::start_with_env(
        &binary,
        &db,
        &config(&base, "stream = false"),
        "llm",
        &[("BATON_LLM_API_KEY", "sk-test-123")],
    )
    .await?;
    let visitor = VisitorClient::start(&process.base()).await?;
    visitor.turn("Are your tents waterproof?").await?;
    ensure!(last_bot(&visitor.state().await?) == ANSWER.concat());
    let seen = fake.seen.lock().unwrap().clone();
    ensure!(
        seen.iter().all(|(_, auth)| auth == "Bearer sk-test-123"),
        "{seen:?}"
    );
    let log = std::fs::read_to_string(&process.log)?;
    ensure!(!log.contains("sk-test-123"), "the key reached the log");
    process.stop().await
}

#[tokio::test]
async fn power_up_plugins_are_tools_the_model_can_call() -> Result<()> {
    let (base, fake) = fake_openai(Mode::CallPowerUp).await?;
    let db = TestDb::new(Backend::Sqlite).await?;
    let plugins = db.data_dir().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    baton_tests::install_plugin(&plugins, "talk-to-human", "talk-to-human", &[])?;
    let process = Process::start_with_env(
        &baton_binary()?,
        &db,
        &config(&base, ""),
        "llm-tools",
        &[("BATON_PLUGINS_DIR", plugins.to_str().unwrap_or_default())],
    )
    .await?;
    let visitor = VisitorClient::start(&process.base()).await?;
    visitor
        .turn("My stove is broken and I'd like someone to look at it")
        .await?;
    let mut state = visitor.state().await?;
    for _ in 0..100 {
        if state["conversation"]["status"] == "waiting" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        state = visitor.state().await?;
    }
    ensure!(
        state["conversation"]["handover"]["reason"] == "plugin:talk-to-human",
        "{state}"
    );
    ensure!(last_bot(&state) == "Let me get someone for you.", "{state}");
    // The model saw the power-up as a tool, with its description's schema.
    let seen = fake.seen.lock().unwrap().clone();
    let tools = &seen.first().context("no request")?.0["tools"];
    let tool = tools
        .as_array()
        .and_then(|t| {
            t.iter()
                .find(|t| t["function"]["name"] == "talk_to_a_human")
        })
        .context("no talk_to_a_human tool")?;
    ensure!(
        tool["function"]["parameters"]["properties"]["email"]["type"] == "string",
        "{tool}"
    );
    process.stop().await
}

/// The model is thinking when the server is killed: after the restart the
/// turn that was due is found and run again, and the visitor gets one
/// answer.
async fn turn_cut_short(backend: Backend) -> Result<()> {
    let (base, fake) = fake_openai(Mode::Stall).await?;
    let db = TestDb::new(backend).await?;
    let binary = baton_binary()?;
    let cfg = config(&base, "stream = false\ntimeout = \"60s\"");
    let node = Process::start(&binary, &db, &cfg, "thinking").await?;
    let visitor = VisitorClient::start(&node.base()).await?;
    let said = visitor.say("Are your tents waterproof?").await?;
    let seq = said["message"]["seq"].as_i64().unwrap_or(0);
    for _ in 0..200 {
        if !fake.seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    ensure!(
        !fake.seen.lock().unwrap().is_empty(),
        "the model was never asked"
    );
    node.kill().await?;

    *fake.mode.lock().unwrap() = Mode::Answer;
    let node = Process::start(&binary, &db, &cfg, "answering").await?;
    let visitor = VisitorClient::resume(&node.base(), &visitor.token, &visitor.conversation_id);
    // Another node's turn is taken over once that node is known dead
    // (10 s without a heartbeat on PostgreSQL; at once on SQLite).
    let mut answer = Value::Null;
    for _ in 0..120 {
        let messages = visitor.messages().await?;
        if let Some(m) = messages
            .iter()
            .find(|m| m["sender"] == "bot" && m["seq"].as_i64().unwrap_or(0) > seq)
        {
            answer = m.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    ensure!(
        answer["text"] == ANSWER.concat(),
        "no answer after the restart: {answer}"
    );
    // A later question and its answer prove no second answer is on its way.
    let marker = visitor.say("Do you ship to Canada?").await?;
    let marker_seq = marker["message"]["seq"].as_i64().unwrap_or(0);
    visitor.wait_bot_after(marker_seq).await?;
    let answers = visitor
        .messages()
        .await?
        .iter()
        .filter(|m| {
            let s = m["seq"].as_i64().unwrap_or(0);
            m["sender"] == "bot" && s > seq && s < marker_seq
        })
        .count();
    ensure!(answers == 1, "{answers} answers to one question");
    node.stop().await
}

#[tokio::test]
async fn a_turn_cut_short_by_a_crash_is_answered_once_after_the_restart() -> Result<()> {
    on_every_backend(turn_cut_short).await
}
