//! The shared channel compliance test: every channel crate runs it on its own
//! recorded payloads (`tests/fixtures/`), so that each channel honours the
//! same contract, above all the who-may-speak rule.
//!
//! It runs the real runtime on a throw-away SQLite database.

use crate::{Config, KnowledgeBot, Runtime, StartConversation};
use baton_channel::{Channel, Inbound, RawInbound};
use baton_model::{AgentRef, Input, Reason, SenderKind, Status};
use baton_store::{NewContact, Store};
use std::sync::Arc;
use std::time::Duration;

/// Recorded payloads for one channel.
pub struct Samples {
    /// Payloads that each carry one visitor text message (not a button press).
    pub messages: Vec<RawInbound>,
    /// Payloads the channel must refuse or ignore without panicking.
    pub garbage: Vec<RawInbound>,
}

/// Runs the whole compliance suite; panics with a message naming the broken rule.
pub async fn channel_compliance(channel: Arc<dyn Channel>, samples: Samples) {
    let kind = channel.kind();
    assert!(
        !samples.messages.is_empty(),
        "{kind}: give at least one message sample"
    );

    // 1. normalize is pure and yields well-formed messages of this channel.
    for raw in &samples.messages {
        let first = channel
            .normalize(raw)
            .unwrap_or_else(|e| panic!("{kind}: sample refused: {e}"));
        let second = channel
            .normalize(raw)
            .unwrap_or_else(|e| panic!("{kind}: sample refused: {e}"));
        assert_eq!(first, second, "{kind}: normalize must be pure");
        assert_eq!(
            first.len(),
            1,
            "{kind}: a message sample must give exactly one inbound message"
        );
        let inbound = &first[0];
        assert_eq!(
            inbound.channel, kind,
            "{kind}: inbound carries another channel"
        );
        assert!(
            !inbound.text.trim().is_empty(),
            "{kind}: a message sample must carry text"
        );
        assert!(
            !inbound.thread_key.is_empty(),
            "{kind}: inbound needs a thread key"
        );
    }
    // 2. garbage is refused or ignored, never a panic.
    for raw in &samples.garbage {
        let _ = channel.normalize(raw);
    }

    // 3. the runtime: the bot answers, repeats are stored once, the bot never
    //    talks over a human, and hand back brings it back.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}"));
    let store = Store::open_data_dir(dir.path())
        .await
        .unwrap_or_else(|e| panic!("store: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    let mut config = Config::default();
    config.bot.greeting = String::new();
    // The kit drives every transition itself: the bot answers but never hands over on its own.
    let h = &mut config.bot.handover;
    h.cycle_count = 0;
    h.lack_of_information = false;
    h.failed_to_resolve = 0;
    h.frustration = crate::config::Frustration(None);
    h.intents.clear();
    let bot = KnowledgeBot::from_config(&config).expect("the sample knowledge base loads");
    let runtime = Runtime::new(store, config, Arc::new(bot));
    runtime.register_channel(channel.clone());

    let mut inbound = channel
        .normalize(&samples.messages[0])
        .unwrap_or_default()
        .remove(0);
    if inbound.conversation_id.is_some() {
        // Channels that know their conversation up front need one to exist.
        let conv = runtime
            .start_conversation(StartConversation {
                bot_id: crate::DEFAULT_BOT.into(),
                channel: kind,
                contact: NewContact::default(),
                thread_key: None,
                visitor_token_hash: None,
            })
            .await
            .unwrap_or_else(|e| panic!("{kind}: start: {e}"));
        inbound.conversation_id = Some(conv.id);
    }
    let first = runtime
        .ingest_inbound(inbound.clone())
        .await
        .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
    assert!(!first.duplicate);
    let conv_id = first.conversation.id.clone();
    wait_for_bot_messages(&runtime, &conv_id, 1).await;

    if inbound.client_id.is_some() || inbound.channel_message_id.is_some() {
        let again = runtime
            .ingest_inbound(inbound.clone())
            .await
            .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
        assert!(
            again.duplicate,
            "{kind}: a redelivered message must be stored once"
        );
        let visitor_messages = count(&runtime, &conv_id, SenderKind::Visitor).await;
        assert_eq!(
            visitor_messages, 1,
            "{kind}: a redelivered message must be stored once"
        );
    }

    let next = |n: usize| {
        let mut i: Inbound = inbound.clone();
        i.text = format!("message {n}");
        i.client_id = i.client_id.as_ref().map(|c| format!("{c}-{n}"));
        i.channel_message_id = i.channel_message_id.as_ref().map(|c| format!("{c}-{n}"));
        i.conversation_id = Some(conv_id.clone());
        i
    };
    let casey = runtime
        .store()
        .create_user(
            baton_store::NewUser {
                email: "casey@example.com",
                name: "Casey",
                role: baton_model::Role::Responder,
                password_hash: "never used to sign in",
            },
            runtime.now(),
        )
        .await
        .unwrap_or_else(|e| panic!("user: {e}"));
    let agent = AgentRef {
        id: casey.id,
        name: casey.name,
    };
    runtime
        .escalate(&conv_id, Reason::known(Reason::MANUAL), None, None)
        .await
        .unwrap_or_else(|e| panic!("{kind}: escalate: {e}"));
    let bot_before = count(&runtime, &conv_id, SenderKind::Bot).await;
    runtime
        .ingest_inbound(next(1))
        .await
        .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
    let claimer = agent.clone();
    runtime
        .apply(&conv_id, move |_| Input::Claim {
            agent: claimer,
            pause_bot_for_ms: 0,
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: claim: {e}"));
    runtime
        .ingest_inbound(next(2))
        .await
        .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(&runtime, &conv_id, SenderKind::Bot).await,
        bot_before,
        "{kind}: the bot spoke while the conversation was waiting or active"
    );

    runtime
        .apply(&conv_id, {
            let by = agent.clone();
            move |_| Input::HandBack { by }
        })
        .await
        .unwrap_or_else(|e| panic!("{kind}: hand back: {e}"));
    let reopened = runtime
        .ingest_inbound(next(3))
        .await
        .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
    assert_eq!(
        reopened.conversation.state.status,
        Status::Bot,
        "{kind}: a message after hand back reopens to the bot"
    );
    wait_for_bot_messages(&runtime, &conv_id, bot_before + 1).await;

    // 4. `no_reply` (an auto-reply, a bounce): stored, never answered, and
    //    it changes nothing, not even in a resolved conversation.
    runtime
        .apply(&conv_id, |_| Input::Resolve { by: None })
        .await
        .unwrap_or_else(|e| panic!("{kind}: resolve: {e}"));
    let bot_before = count(&runtime, &conv_id, SenderKind::Bot).await;
    let mut automated = next(4);
    automated.no_reply = true;
    let kept = runtime
        .ingest_inbound(automated)
        .await
        .unwrap_or_else(|e| panic!("{kind}: ingest: {e}"));
    assert!(kept.message.is_some(), "{kind}: no_reply mail is stored");
    assert_eq!(
        kept.conversation.state.status,
        Status::Resolved,
        "{kind}: no_reply must not reopen the conversation"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        count(&runtime, &conv_id, SenderKind::Bot).await,
        bot_before,
        "{kind}: the bot answered a no_reply message"
    );
}

async fn count(runtime: &Runtime, conv_id: &str, sender: SenderKind) -> usize {
    runtime
        .store()
        .messages(conv_id, 0, true, 10_000)
        .await
        .unwrap_or_default()
        .iter()
        .filter(|m| m.sender == sender)
        .count()
}

async fn wait_for_bot_messages(runtime: &Runtime, conv_id: &str, n: usize) {
    for _ in 0..200 {
        if count(runtime, conv_id, SenderKind::Bot).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the bot did not answer (expected {n} bot messages)");
}
