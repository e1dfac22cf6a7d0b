//! The whole hand-over, as the "Done when" tells it.

use anyhow::{Result, ensure};
use baton_model::AgentRef;
use baton_tests::{Backend, Server, StaffClient, TestDb, VisitorClient, next_matching};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn hand_over_flow(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, "").await?;
    let base = server.base();
    server
        .add_user("alice@example.com", "Alice", "responder", "alice-password")
        .await?;
    server
        .add_user("bob@example.com", "Bob", "admin", "bob-password")
        .await?;

    // A visitor opens a session, listens on the WebSocket and says hello.
    let visitor = VisitorClient::start(&base).await?;
    let mut ws = visitor.ws().await?;
    next_matching(&mut ws, 5, |f| {
        f["type"] == "status" && f["status"] == "bot"
    })
    .await?;
    visitor.say("Do you ship to Canada?").await?;
    // The built-in bot answers from the sample knowledge base.
    let reply = next_matching(&mut ws, 5, |f| {
        f["type"] == "message"
            && f["message"]["sender"] == "bot"
            && f["message"]["text"]
                .as_str()
                .unwrap_or("")
                .contains("Canada")
    })
    .await?;
    ensure!(reply["message"]["author"]["name"] == "Baton", "{reply}");

    // An agent signs in. Without monitoring, a conversation the bot holds is
    // not in the inbox; the agent escalates it by id (as an API client would).
    let alice = StaffClient::login(&base, "alice@example.com", "alice-password").await?;
    let bob = StaffClient::login(&base, "bob@example.com", "bob-password").await?;
    let listed = |list: &Value| {
        list["conversations"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["id"] == visitor.conversation_id.as_str())
        })
    };
    let (status, list) = alice.get("/api/v1/conversations").await?;
    ensure!(status == 200, "{list}");
    ensure!(!listed(&list), "a bot conversation is hidden: {list}");
    let conv_path = format!("/api/v1/conversations/{}", visitor.conversation_id);
    let (status, esc) = alice
        .post(&format!("{conv_path}/escalate"), json!({}))
        .await?;
    ensure!(status == 200, "{esc}");
    ensure!(esc["conversation"]["status"] == "waiting");
    let (_, list) = alice.get("/api/v1/conversations").await?;
    ensure!(
        listed(&list),
        "a handed-over conversation is listed: {list}"
    );
    ensure!(esc["conversation"]["handover"]["reason"] == "manual");
    let waiting = next_matching(&mut ws, 5, |f| {
        f["type"] == "status" && f["status"] == "waiting"
    })
    .await?;
    ensure!(waiting["queue_position"] == 1, "{waiting}");

    // Two agents claim at the same moment: exactly one wins.
    let claim = format!("{conv_path}/claim");
    let (a, b) = tokio::join!(alice.post(&claim, json!({})), bob.post(&claim, json!({})));
    let (a, b) = (a?, b?);
    let (winner, winner_name, loser) = match (a.0, b.0) {
        (200, 409) => (&alice, "Alice", b.1),
        (409, 200) => (&bob, "Bob", a.1),
        other => anyhow::bail!("expected one 200 and one 409, got {other:?}: {a:?} {b:?}"),
    };
    ensure!(loser["error"]["code"] == "already_claimed", "{loser}");
    ensure!(
        loser["error"]["message"] == format!("Already claimed by {winner_name}"),
        "{loser}"
    );
    ensure!(
        loser["error"]["claimed_by"]["name"] == winner_name,
        "{loser}"
    );
    ensure!(
        loser["error"]["claimed_by"]["id"] == winner.user["id"],
        "{loser}"
    );
    // The holder claiming again is fine.
    let (status, _) = winner.post(&claim, json!({})).await?;
    ensure!(status == 200);
    let active = next_matching(&mut ws, 5, |f| {
        f["type"] == "status" && f["status"] == "active"
    })
    .await?;
    ensure!(active["agent"]["name"] == winner_name, "{active}");
    next_matching(&mut ws, 5, |f| {
        f["message"]["sender"] == "system"
            && f["message"]["text"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("{winner_name} joined"))
    })
    .await?;

    // While a human holds it, the visitor's messages get no bot answer.
    visitor.say("are you a person?").await?;
    // The winner replies, and the visitor's socket has it at once.
    let sent = Instant::now();
    let (status, msg) = winner
        .post(
            &format!("{conv_path}/messages"),
            json!({"text": "Yes! How can I help?"}),
        )
        .await?;
    ensure!(status == 201, "{msg}");
    let got = next_matching(&mut ws, 5, |f| {
        f["type"] == "message"
            && f["message"]["sender"] != "visitor"
            && f["message"]["sender"] != "system"
    })
    .await?;
    ensure!(
        got["message"]["sender"] == "agent",
        "the bot spoke while a human held the conversation: {got}"
    );
    ensure!(got["message"]["text"] == "Yes! How can I help?");
    ensure!(got["message"]["author"]["name"] == winner_name);
    ensure!(
        sent.elapsed() < Duration::from_secs(2),
        "the reply took {:?}",
        sent.elapsed()
    );

    // An internal note never reaches the visitor.
    let (status, _) = winner
        .post(
            &format!("{conv_path}/messages"),
            json!({"text": "note: VIP", "internal": true}),
        )
        .await?;
    ensure!(status == 201);

    // Hand back: the visitor is told, and the bot answers the next message.
    let (status, back) = winner
        .post(&format!("{conv_path}/handback"), json!({}))
        .await?;
    ensure!(status == 200, "{back}");
    ensure!(back["conversation"]["status"] == "resolved");
    let left = next_matching(&mut ws, 5, |f| {
        f["type"] == "message"
            && f["message"]["sender"] == "system"
            && f["message"]["text"].as_str().unwrap_or("").contains("left")
    })
    .await?;
    ensure!(
        left["message"]["text"]
            .as_str()
            .unwrap_or("")
            .starts_with(winner_name),
        "{left}"
    );
    visitor.say("one more question").await?;
    let again = next_matching(&mut ws, 5, |f| {
        f["type"] == "message" && f["message"]["sender"] != "visitor"
    })
    .await?;
    ensure!(again["message"]["sender"] == "bot", "{again}");

    // The visitor's history holds everything but the internal note, in order.
    let history = visitor.messages().await?;
    ensure!(
        !history.iter().any(|m| m["text"] == "note: VIP"),
        "an internal note leaked"
    );
    let seqs: Vec<i64> = history.iter().filter_map(|m| m["seq"].as_i64()).collect();
    ensure!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let bot_while_held = history
        .iter()
        .skip_while(|m| m["text"] != "are you a person?")
        .take_while(|m| {
            m["sender"] != "system" || !m["text"].as_str().unwrap_or("").contains("left")
        })
        .filter(|m| m["sender"] == "bot")
        .count();
    ensure!(
        bot_while_held == 0,
        "the bot spoke while a human held the conversation"
    );
    // The staff view has the note.
    let (_, full) = alice.get(&conv_path).await?;
    ensure!(full["messages"].as_array().is_some_and(|m| {
        m.iter()
            .any(|m| m["text"] == "note: VIP" && m["internal"] == true)
    }));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_hand_over_over_http_and_websocket() -> Result<()> {
    baton_tests::on_every_backend(hand_over_flow).await
}

async fn fifty_claims(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, "").await?;
    let store = server.runtime.store();
    let now = server.runtime.now();
    let mut agents = vec![];
    for i in 0..50 {
        let user = store
            .create_user(
                baton_store::NewUser {
                    email: &format!("agent{i}@example.com"),
                    name: &format!("Agent {i}"),
                    role: baton_model::Role::Responder,
                    // Never used to sign in; hashing 50 passwords would only slow the test.
                    password_hash: "unusable",
                },
                now,
            )
            .await?;
        agents.push(AgentRef {
            id: user.id,
            name: user.name,
        });
    }
    let visitor = VisitorClient::start(&server.base()).await?;
    let id = visitor.conversation_id.clone();
    server
        .runtime
        .escalate(
            &id,
            baton_model::Reason::known("visitor_request"),
            None,
            None,
        )
        .await?;
    let mut tasks = tokio::task::JoinSet::new();
    for agent in agents {
        let rt = server.runtime.clone();
        let id = id.clone();
        tasks.spawn(async move { (agent.clone(), rt.claim(&id, &agent).await) });
    }
    let mut winners = vec![];
    let mut named = vec![];
    while let Some(done) = tasks.join_next().await {
        let (agent, result) = done?;
        match result {
            Ok(conv) => {
                ensure!(conv.state.assignee.as_ref() == Some(&agent));
                winners.push(agent);
            }
            Err(baton_runtime::Error::Transition(
                baton_model::TransitionError::AlreadyClaimed { by },
            )) => named.push(by),
            Err(e) => anyhow::bail!("unexpected claim error: {e}"),
        }
    }
    ensure!(winners.len() == 1, "{} winners", winners.len());
    ensure!(
        named.len() == 49 && named.iter().all(|b| *b == winners[0]),
        "every loser is told the winner"
    );
    let events = server.runtime.store().events_after(0, 1000).await?;
    let claimed = events
        .iter()
        .filter(|e| {
            e.envelope.kind == baton_model::EventKind::Claimed
                && e.envelope.data.conversation.id == id
        })
        .count();
    ensure!(claimed == 1, "{claimed} claimed events");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_claims_have_exactly_one_winner() -> Result<()> {
    baton_tests::on_every_backend(fifty_claims).await
}

async fn claim_and_reply_in_one_batch(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, "").await?;
    let rt = &server.runtime;
    let user = rt
        .store()
        .create_user(
            baton_store::NewUser {
                email: "alice@example.com",
                name: "Alice Example",
                role: baton_model::Role::Responder,
                password_hash: "unusable",
            },
            rt.now(),
        )
        .await?;
    let alice = AgentRef {
        id: user.id,
        name: user.name,
    };
    let visitor = VisitorClient::start(&server.base()).await?;
    visitor.turn("hello").await?;
    let id = visitor.conversation_id.clone();
    let bot_id = rt
        .store()
        .conversation(&id)
        .await?
        .map(|c| c.bot_id)
        .unwrap_or_default();

    // The claim and the bot's reply commit together, the claim first: the
    // reply meets a conversation a human holds and is dropped.
    let done = rt
        .commit_together(vec![
            rt.claim_unit(&id, &alice),
            rt.bot_reply_unit(&id, &bot_id, "a reply that lost the race"),
        ])
        .await;
    ensure!(done.len() == 2, "{done:?}");
    let (claimed, wrote_claim) = done[0].as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(*wrote_claim && claimed.state.assignee.as_ref() == Some(&alice));
    let (held, wrote_reply) = done[1].as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    ensure!(!wrote_reply, "the reply was written after the claim");
    ensure!(held.state.assignee.as_ref() == Some(&alice));
    let messages = visitor.messages().await?;
    ensure!(
        !messages
            .iter()
            .any(|m| m["text"] == "a reply that lost the race"),
        "{messages:?}"
    );
    ensure!(
        messages.iter().any(
            |m| m["sender"] == "system" && m["text"] == "Alice Example joined the conversation"
        ),
        "{messages:?}"
    );
    let stored = rt.store().conversation(&id).await?;
    ensure!(
        stored.is_some_and(|c| c.state.assignee.as_ref() == Some(&alice)),
        "the claim is stored"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_a_claim_and_a_bot_reply_stores_the_claim_and_drops_the_reply() -> Result<()> {
    baton_tests::on_every_backend(claim_and_reply_in_one_batch).await
}

async fn takeover_and_reopen(backend: Backend) -> Result<()> {
    let db = TestDb::new(backend).await?;
    let server = Server::start(&db, "[bot.handover]\npause_bot_for = \"1h\"\n").await?;
    let base = server.base();
    server
        .add_user("carol@example.com", "Carol", "owner", "carol-password")
        .await?;
    let carol = StaffClient::login(&base, "carol@example.com", "carol-password").await?;
    let visitor = VisitorClient::start(&base).await?;
    visitor.say("hi").await?;
    visitor.wait_bot_after(2).await?;
    // An agent message into a bot conversation claims it ("stop the bot and join").
    let path = format!("/api/v1/conversations/{}", visitor.conversation_id);
    let (status, _) = carol
        .post(&format!("{path}/messages"), json!({"text": "Carol here"}))
        .await?;
    ensure!(status == 201);
    let (_, conv) = carol.get(&path).await?;
    ensure!(conv["conversation"]["status"] == "active");
    ensure!(conv["conversation"]["handover"]["reason"] == "agent_takeover");
    // Hand back inside the pause window: the next visitor message goes to the inbox, not the bot.
    carol.post(&format!("{path}/handback"), json!({})).await?;
    // The visitor is not promised the bot while it is paused.
    let left = visitor.messages().await?;
    let notice = left.last().cloned().unwrap_or_default();
    ensure!(
        notice["sender"] == "system"
            && notice["text"]
                .as_str()
                .is_some_and(|t| t.contains("left") && !t.contains("back to help")),
        "{notice}"
    );
    let before = visitor.messages().await?.len();
    let said: Value = visitor.say("still there?").await?;
    ensure!(said["message"]["sender"] == "visitor");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = visitor.messages().await?;
    ensure!(
        after.len() == before + 1,
        "the bot spoke inside its pause window: {after:?}"
    );
    let (_, conv) = carol.get(&path).await?;
    ensure!(conv["conversation"]["status"] == "waiting", "{conv}");
    // Invalid transitions are 409 invalid_transition.
    let (status, err) = carol.post(&format!("{path}/handback"), json!({})).await?;
    ensure!(
        status == 409 && err["error"]["code"] == "invalid_transition",
        "{err}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_the_bot_and_join_then_the_pause_window_holds() -> Result<()> {
    baton_tests::on_every_backend(takeover_and_reopen).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_conversation_nobody_claims_is_abandoned() -> Result<()> {
    let db = TestDb::new(Backend::Sqlite).await?;
    let server = Server::start(&db, "[conversations]\nabandon_after = \"1s\"\n").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    server
        .runtime
        .escalate(
            &visitor.conversation_id,
            baton_model::Reason::known("visitor_request"),
            None,
            None,
        )
        .await?;
    for _ in 0..100 {
        let conv = server
            .runtime
            .conversation(&visitor.conversation_id)
            .await?;
        if conv.state.status == baton_model::Status::Resolved {
            let events = server.runtime.store().events_after(0, 100).await?;
            ensure!(
                events
                    .iter()
                    .any(|e| e.envelope.kind == baton_model::EventKind::Abandoned)
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the conversation was not abandoned")
}
