//! The pages and the endpoints behind the widget's and the inbox's extra
//! features: widget settings, leave-a-message, CORS, bot settings that
//! survive a restart, tags, roles, channels and plugins.

use anyhow::{Result, ensure};
use baton_tests::{Backend, Server, TestDb, VisitorClient, on_every_backend};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn every_page_is_served_with_its_type_and_the_csp() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let http = reqwest::Client::new();
    for (path, kind, needle) in [
        ("/", "text/html", "/widget.js"),
        ("/inbox", "text/html", "/assets/inbox.js"),
        ("/chat/default", "text/html", "/widget.js"),
        ("/widget.js", "text/javascript", "widget-launcher"),
        ("/assets/widget.css", "text/css", ".baton-"),
        ("/assets/inbox.js", "text/javascript", "conversation-item"),
        ("/assets/inbox.css", "text/css", "{"),
    ] {
        let resp = http.get(format!("{}{path}", server.base())).send().await?;
        ensure!(resp.status() == 200, "{path}: {}", resp.status());
        let headers = resp.headers().clone();
        let content_type = headers["content-type"].to_str()?;
        ensure!(content_type.starts_with(kind), "{path}: {content_type}");
        let csp = headers["content-security-policy"].to_str()?;
        ensure!(csp.contains("script-src 'self'"), "{path}: {csp}");
        let body = resp.text().await?;
        ensure!(body.contains(needle), "{path} lacks {needle}");
    }
    for path in ["/assets/nope.js", "/assets/..%2fCargo.toml"] {
        let resp = http.get(format!("{}{path}", server.base())).send().await?;
        ensure!(resp.status() == 404, "{path}: {}", resp.status());
        let body: serde_json::Value = resp.json().await?;
        ensure!(body["error"]["code"] == "not_found", "{body}");
    }
    Ok(())
}

#[tokio::test]
async fn the_widget_endpoints_answer_other_origins() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "").await?;
    let http = reqwest::Client::new();
    let resp = http
        .request(
            Method::OPTIONS,
            format!("{}/api/v1/widget/messages", server.base()),
        )
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await?;
    ensure!(resp.status() == 204, "preflight: {}", resp.status());
    ensure!(resp.headers()["access-control-allow-origin"] == "*");
    let allowed = resp.headers()["access-control-allow-headers"].to_str()?;
    ensure!(allowed.contains("authorization"), "{allowed}");
    let resp = http
        .get(format!("{}/api/v1/widget/config", server.base()))
        .header("origin", "https://shop.example")
        .send()
        .await?;
    ensure!(resp.headers()["access-control-allow-origin"] == "*");
    // Staff endpoints stay same-origin.
    let resp = http
        .get(format!("{}/api/v1/me", server.base()))
        .header("origin", "https://shop.example")
        .send()
        .await?;
    ensure!(!resp.headers().contains_key("access-control-allow-origin"));
    Ok(())
}

#[tokio::test]
async fn availability_and_leaving_a_message() -> Result<()> {
    on_every_backend(|backend| async move {
        let db = TestDb::new(backend).await?;
        let server = Server::start(&db, "").await?;
        let base = server.base();
        let alice = server.staff("Alice", "responder").await?;
        let http = reqwest::Client::new();
        let config = |http: reqwest::Client| {
            let base = base.clone();
            async move {
                let v: serde_json::Value = http
                    .get(format!("{base}/api/v1/widget/config?bot=default"))
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::Ok(v)
            }
        };
        let before = config(http.clone()).await?;
        ensure!(before["handover"]["available"] == false, "{before}");
        ensure!(before["handover"]["request_button_after"] == 1, "{before}");
        ensure!(before["bot"]["name"] == "Baton", "{before}");

        // Nobody online: the visitor leaves a message with an address.
        let visitor = VisitorClient::start(&base).await?;
        let contact = |body: serde_json::Value| {
            http.post(format!("{base}/api/v1/widget/contact"))
                .bearer_auth(&visitor.token)
                .json(&body)
                .send()
        };
        let bad = contact(json!({"email": "not an address", "text": "hi"})).await?;
        ensure!(bad.status() == 422, "{}", bad.status());
        let unknown = contact(json!({"email": "a@b.co", "colour": "red"})).await?;
        ensure!(unknown.status() == 422, "{}", unknown.status());
        let ok = contact(
            json!({"email": "vic@example.com", "name": "Vic", "text": "Call me back please"}),
        )
        .await?;
        ensure!(ok.status() == 200, "{}", ok.status());
        let body: serde_json::Value = ok.json().await?;
        ensure!(body["conversation"]["status"] == "waiting", "{body}");
        ensure!(
            body["conversation"]["handover"]["reason"] == "visitor_request",
            "{body}"
        );
        ensure!(
            body["conversation"]["contact"]["email"] == "vic@example.com",
            "{body}"
        );
        ensure!(body["conversation"]["contact"]["name"] == "Vic", "{body}");
        let messages = visitor.messages().await?;
        ensure!(
            messages
                .iter()
                .any(|m| m["sender"] == "visitor" && m["text"] == "Call me back please"),
            "{messages:?}"
        );

        // An agent comes online: the widget sees someone available.
        let (status, _) = alice
            .send(
                Method::PUT,
                "/api/v1/me/presence",
                json!({"presence": "online"}),
            )
            .await?;
        ensure!(status == 200);
        let after = config(http.clone()).await?;
        ensure!(after["handover"]["available"] == true, "{after}");

        // A closed laptop does not sign out: silence makes the agent absent,
        // the next sign of life present again, and signing out absent at once.
        server.runtime.clock().advance(91_000);
        let silent = config(http.clone()).await?;
        ensure!(silent["handover"]["available"] == false, "{silent}");
        let (_, agents) = alice.get("/api/v1/agents").await?;
        ensure!(
            agents["agents"][0]["presence"] == "online",
            "asking is a sign of life: {agents}"
        );
        let back = config(http.clone()).await?;
        ensure!(back["handover"]["available"] == true, "{back}");
        let (status, _) = alice.post("/api/v1/auth/logout", json!({})).await?;
        ensure!(status == 204);
        let gone = config(http.clone()).await?;
        ensure!(gone["handover"]["available"] == false, "{gone}");

        let missing = http
            .get(format!("{base}/api/v1/widget/config?bot=nope"))
            .send()
            .await?;
        ensure!(missing.status() == 404);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn bot_settings_change_live_and_survive_a_restart() -> Result<()> {
    on_every_backend(|backend| async move {
        let db = TestDb::new(backend).await?;
        let config = "[bot]\nname = \"Ada\"\n";
        let server = Server::start(&db, config).await?;
        let base = server.base();
        let owner = server.staff("Olga", "owner").await?;
        let alice = server.staff("Alice", "responder").await?;

        let (status, _) = alice.get("/api/v1/bots").await?;
        ensure!(status == 403, "a responder may not read bot settings");
        let (status, bots) = owner.get("/api/v1/bots").await?;
        ensure!(status == 200, "{bots}");
        ensure!(bots["bots"][0]["name"] == "Ada", "baton.toml shows through: {bots}");

        let patch = json!({"greeting": "Welcome to Northwind!", "handover": {"request_button_after": 3, "pause_bot_for_seconds": 900}});
        let (status, bot) = owner.send(Method::PUT, "/api/v1/bots/default", patch).await?;
        ensure!(status == 200, "{bot}");
        ensure!(bot["bot"]["handover"]["request_button_after"] == 3, "{bot}");
        ensure!(bot["bot"]["name"] == "Ada", "untouched fields keep their value: {bot}");
        for (body, code) in [
            (json!({"handover": {"request_button_after": "three"}}), 422),
            (json!({"handover": {"request_button_after": 1000}}), 422),
            (json!({"name": "   "}), 422),
            (json!({"colour": "red"}), 422),
        ] {
            let (status, err) = owner.send(Method::PUT, "/api/v1/bots/default", body.clone()).await?;
            ensure!(status == code, "{body} gave {status}: {err}");
        }
        let (status, _) = owner
            .send(Method::PUT, "/api/v1/bots/nope", json!({"name": "x"}))
            .await?;
        ensure!(status == 404);

        // Live: a new visitor is greeted with the new text.
        let visitor = VisitorClient::start(&base).await?;
        let messages = visitor.messages().await?;
        ensure!(messages[0]["text"] == "Welcome to Northwind!", "{messages:?}");

        // After a restart the change is still there.
        drop(server);
        let server = Server::start(&db, config).await?;
        let widget: serde_json::Value = reqwest::get(format!("{}/api/v1/widget/config", server.base()))
            .await?
            .json()
            .await?;
        ensure!(widget["bot"]["greeting"] == "Welcome to Northwind!", "{widget}");
        ensure!(widget["handover"]["request_button_after"] == 3, "{widget}");
        ensure!(widget["bot"]["name"] == "Ada", "{widget}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn tags_roles_channels_and_plugins() -> Result<()> {
    on_every_backend(|backend| async move {
        let db = TestDb::new(backend).await?;
        let server = Server::start(&db, "[bot.handover]\nmonitoring = true\n").await?;
        let base = server.base();
        let owner = server.staff("Olga", "owner").await?;
        let alice = server.staff("Alice", "responder").await?;
        let visitor = VisitorClient::start(&base).await?;

        let path = format!("/api/v1/conversations/{}/tags", visitor.conversation_id);
        let (status, conv) = alice
            .send(
                Method::PUT,
                &path,
                json!({"tags": ["VIP", " billing ", "vip"]}),
            )
            .await?;
        ensure!(status == 200, "{conv}");
        ensure!(
            conv["conversation"]["tags"] == json!(["vip", "billing"]),
            "{conv}"
        );
        let (status, _) = alice
            .send(Method::PUT, &path, json!({"tags": [""]}))
            .await?;
        ensure!(status == 422);
        let (status, _) = alice
            .send(
                Method::PUT,
                "/api/v1/conversations/nope/tags",
                json!({"tags": []}),
            )
            .await?;
        ensure!(status == 404);

        visitor.say("where is my order?").await?;
        let (status, list) = alice.get("/api/v1/conversations").await?;
        ensure!(status == 200, "{list}");
        let listed = &list["conversations"][0];
        ensure!(listed["id"] == visitor.conversation_id.as_str(), "{list}");
        ensure!(
            listed["last_message"]["seq"] == listed["last_seq"]
                && listed["last_message"]["text"].is_string(),
            "the list previews the newest message: {listed}"
        );

        let (status, agents) = alice.get("/api/v1/agents").await?;
        ensure!(status == 200, "{agents}");
        ensure!(
            agents["agents"].as_array().is_some_and(|a| a.len() == 2),
            "{agents}"
        );

        let alice_id = alice.user["id"].as_str().unwrap_or_default().to_owned();
        let owner_id = owner.user["id"].as_str().unwrap_or_default().to_owned();
        let (status, _) = alice
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{owner_id}"),
                json!({"role": "viewer"}),
            )
            .await?;
        ensure!(status == 403, "a responder may not change roles");
        let (status, user) = owner
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{alice_id}"),
                json!({"role": "admin"}),
            )
            .await?;
        ensure!(status == 200 && user["user"]["role"] == "admin", "{user}");
        let (status, err) = owner
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{owner_id}"),
                json!({"role": "admin"}),
            )
            .await?;
        ensure!(
            status == 409 && err["error"]["code"] == "last_owner",
            "{err}"
        );
        let (status, _) = owner
            .send(
                Method::PATCH,
                &format!("/api/v1/users/{alice_id}"),
                json!({"role": "boss"}),
            )
            .await?;
        ensure!(status == 422);

        let (status, channels) = owner.get("/api/v1/channels").await?;
        ensure!(status == 200, "{channels}");
        ensure!(
            channels["channels"][0]["kind"] == "web" && channels["channels"][0]["enabled"] == true,
            "{channels}"
        );
        let (status, plugins) = owner.get("/api/v1/plugins").await?;
        ensure!(status == 200 && plugins["plugins"].is_array(), "{plugins}");
        Ok(())
    })
    .await
}
