//! Bad input gets a clear 4xx in the API's error shape, and changes nothing.

use anyhow::{Result, ensure};
use baton_tests::{Backend, Server, StaffClient, TestDb, VisitorClient, status_json};
use serde_json::{Value, json};

fn is_error(v: &Value, code: &str) -> bool {
    v["error"]["code"] == code
        && v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_clearly_and_loses_nothing() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let base = server.base();
    server
        .add_user("vic@example.com", "Vic", "viewer", "viewer-password")
        .await?;
    server
        .add_user("rae@example.com", "Rae", "responder", "responder-password")
        .await?;
    let http = reqwest::Client::new();
    let visitor = VisitorClient::start(&base).await?;
    let other = VisitorClient::start(&base).await?;

    // Malformed JSON, a wrong shape, a wrong content type.
    let post = |path: &str, body: &'static str| {
        http.post(format!("{base}{path}"))
            .bearer_auth(&visitor.token)
            .header("content-type", "application/json")
            .body(body)
    };
    let (s, v) = status_json(
        post("/api/v1/widget/messages", "{\"text\": ")
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 400 && is_error(&v, "bad_request"), "{s} {v}");
    let (s, v) = status_json(
        post("/api/v1/widget/messages", "{\"text\": 42}")
            .send()
            .await?,
    )
    .await?;
    ensure!(
        (s == 400 || s == 422) && v["error"]["code"].is_string(),
        "{s} {v}"
    );
    let (s, v) = status_json(
        post("/api/v1/widget/messages", "{\"text\": \"   \"}")
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 422 && is_error(&v, "invalid"), "{s} {v}");
    let (s, v) = status_json(
        post("/api/v1/widget/actions", "{\"action\": \"no-such-button\"}")
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 422, "{s} {v}");

    // A message over 64 KiB is 413; the conversation is unchanged.
    let before = visitor.messages().await?.len();
    let big = "x".repeat(64 * 1024 + 1);
    let (s, v) = status_json(
        http.post(format!("{base}/api/v1/widget/messages"))
            .bearer_auth(&visitor.token)
            .json(&json!({"text": big}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 413 && is_error(&v, "too_large"), "{s} {v}");
    let huge = "y".repeat(2 * 1024 * 1024);
    let (s, _) = status_json(
        http.post(format!("{base}/api/v1/widget/messages"))
            .bearer_auth(&visitor.token)
            .json(&json!({"text": huge}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 413, "a body over the limit is 413, got {s}");
    ensure!(
        visitor.messages().await?.len() == before,
        "a refused message was stored"
    );

    // The same client_id twice stores one message.
    for _ in 0..2 {
        let (s, _) = status_json(
            http.post(format!("{base}/api/v1/widget/messages"))
                .bearer_auth(&visitor.token)
                .json(&json!({"text": "once", "client_id": "c-1"}))
                .send()
                .await?,
        )
        .await?;
        ensure!(s == 202);
    }
    let onces = visitor
        .messages()
        .await?
        .iter()
        .filter(|m| m["text"] == "once")
        .count();
    ensure!(onces == 1, "{onces} copies");

    // Tokens: missing, wrong, and a visitor token never opens another conversation.
    let (s, v) = status_json(
        http.get(format!("{base}/api/v1/widget/messages"))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 401 && is_error(&v, "unauthorized"), "{v}");
    let (s, _) = status_json(
        http.get(format!("{base}/api/v1/widget/messages"))
            .bearer_auth("bv_forged")
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 401);
    let mine = visitor.messages().await?;
    ensure!(
        mine.iter()
            .all(|m| m["conversation_id"] == visitor.conversation_id.as_str())
    );
    ensure!(
        other
            .messages()
            .await?
            .iter()
            .all(|m| m["conversation_id"] == other.conversation_id.as_str())
    );
    let (s, _) = status_json(
        http.get(format!(
            "{base}/api/v1/conversations/{}",
            visitor.conversation_id
        ))
        .bearer_auth(&visitor.token)
        .send()
        .await?,
    )
    .await?;
    ensure!(s == 403, "a visitor token on a staff endpoint: {s}");
    let (s, _) = status_json(
        http.get(format!("{base}/api/v1/conversations"))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 401);
    let (s, v) = status_json(
        http.post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"email": "rae@example.com", "password": "wrong"}))
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 401 && is_error(&v, "unauthorized"), "{v}");

    // Unknown ids and endpoints are 404.
    let rae = StaffClient::login(&base, "rae@example.com", "responder-password").await?;
    let (s, v) = rae.get("/api/v1/conversations/does-not-exist").await?;
    ensure!(s == 404 && is_error(&v, "not_found"), "{v}");
    let (s, v) = rae
        .post("/api/v1/conversations/does-not-exist/claim", json!({}))
        .await?;
    ensure!(s == 404 && is_error(&v, "not_found"), "{v}");
    let (s, v) = rae.get("/api/v1/nowhere").await?;
    ensure!(s == 404 && is_error(&v, "not_found"), "{v}");
    let (s, v) = rae.get("/api/v1/conversations?status=open").await?;
    ensure!(
        s == 400
            && v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("open"),
        "{v}"
    );

    // CSRF: a cookie session without the header is refused.
    let conv = format!("{base}/api/v1/conversations/{}", visitor.conversation_id);
    let (s, v) = status_json(rae.http.post(format!("{conv}/escalate")).send().await?).await?;
    ensure!(s == 403 && is_error(&v, "csrf"), "{v}");
    let (s, v) = status_json(
        rae.http
            .post(format!("{conv}/escalate"))
            .header("x-csrf-token", "nope")
            .send()
            .await?,
    )
    .await?;
    ensure!(s == 403 && is_error(&v, "csrf"), "{v}");

    // A viewer may read but not reply or claim.
    let vic = StaffClient::login(&base, "vic@example.com", "viewer-password").await?;
    let (s, _) = vic
        .get(&format!(
            "/api/v1/conversations/{}",
            visitor.conversation_id
        ))
        .await?;
    ensure!(s == 200);
    let (s, v) = vic
        .post(
            &format!("/api/v1/conversations/{}/messages", visitor.conversation_id),
            json!({"text": "hi"}),
        )
        .await?;
    ensure!(s == 403 && is_error(&v, "forbidden"), "{v}");
    let (s, _) = vic
        .post(
            &format!("/api/v1/conversations/{}/claim", visitor.conversation_id),
            json!({}),
        )
        .await?;
    ensure!(s == 403);
    let (s, _) = vic.post("/api/v1/users", json!({"email": "x@example.com", "name": "X", "password": "long-enough", "role": "owner"})).await?;
    ensure!(s == 403);

    // Transitions the status does not allow are 409 invalid_transition.
    let p = format!("/api/v1/conversations/{}", visitor.conversation_id);
    let (s, v) = rae.post(&format!("{p}/handback"), json!({})).await?;
    ensure!(s == 409 && is_error(&v, "invalid_transition"), "{v}");
    let (s, _) = rae.post(&format!("{p}/resolve"), json!({})).await?;
    ensure!(s == 200);
    let (s, v) = rae.post(&format!("{p}/claim"), json!({})).await?;
    ensure!(s == 409 && is_error(&v, "invalid_transition"), "{v}");
    let (s, v) = rae
        .post(&format!("{p}/escalate"), json!({"reason": "Not A Code"}))
        .await?;
    ensure!(s == 422, "{v}");
    let (s, v) = rae.post(&format!("{p}/transfer"), json!({})).await?;
    ensure!(s == 422, "{v}");

    // Users: bad role, short password, duplicate email.
    let (s, v) = rae.post("/api/v1/users", json!({"email": "n@example.com", "name": "N", "password": "long-enough", "role": "boss"})).await?;
    ensure!(s == 403, "a responder may not add users: {v}");
    server
        .add_user("own@example.com", "Olive", "owner", "owner-password")
        .await?;
    let olive = StaffClient::login(&base, "own@example.com", "owner-password").await?;
    let (s, v) = olive.post("/api/v1/users", json!({"email": "n@example.com", "name": "N", "password": "long-enough", "role": "boss"})).await?;
    ensure!(
        s == 422
            && v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("boss"),
        "{v}"
    );
    let (s, v) = olive.post("/api/v1/users", json!({"email": "n@example.com", "name": "N", "password": "short", "role": "responder"})).await?;
    ensure!(s == 422, "{v}");
    let (s, v) = olive.post("/api/v1/users", json!({"email": "RAE@example.com", "name": "R2", "password": "long-enough", "role": "responder"})).await?;
    ensure!(s == 409, "{v}");

    // Webhooks: bad URL and unknown event type.
    let (s, v) = olive
        .post(
            "/api/v1/webhooks",
            json!({"url": "ftp://x", "events": ["*"], "secret": "long-secret"}),
        )
        .await?;
    ensure!(s == 422, "{v}");
    let (s, v) = olive.post("/api/v1/webhooks", json!({"url": "http://127.0.0.1:9/x", "events": ["conversation.exploded"], "secret": "long-secret"})).await?;
    ensure!(
        s == 422
            && v["error"]["message"]
                .as_str()
                .unwrap_or("")
                .contains("exploded"),
        "{v}"
    );

    // The server is still healthy and the OpenAPI document is served.
    let (s, _) = status_json(http.get(format!("{base}/healthz")).send().await?).await?;
    ensure!(s == 200);
    let (s, doc) = status_json(
        http.get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await?,
    )
    .await?;
    ensure!(
        s == 200 && doc["paths"]["/api/v1/conversations/{id}/claim"].is_object(),
        "openapi"
    );
    // Metrics are for the owner (or a metrics token), not for anyone.
    let (s, _) = status_json(http.get(format!("{base}/metrics")).send().await?).await?;
    ensure!(s == 401, "metrics without credentials: {s}");
    let metrics = olive
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    ensure!(metrics.contains("baton_http_responses_total"), "{metrics}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_visitor_typing_too_fast_is_rate_limited() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(
        &db,
        "[limits]\nwidget_messages_per_second = 1\nwidget_burst = 5\n",
    )
    .await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let http = reqwest::Client::new();
    let mut limited = None;
    for i in 0..10 {
        let resp = http
            .post(format!("{}/api/v1/widget/messages", server.base()))
            .bearer_auth(&visitor.token)
            .json(&json!({"text": format!("msg {i}")}))
            .send()
            .await?;
        if resp.status() == 429 {
            let retry = resp.headers().get("retry-after").cloned();
            limited = Some((retry, status_json(resp).await?.1));
            break;
        }
    }
    let (retry, body) = limited.ok_or_else(|| anyhow::anyhow!("never rate limited"))?;
    ensure!(retry.is_some(), "429 carries Retry-After");
    ensure!(is_error(&body, "rate_limited"), "{body}");
    Ok(())
}
