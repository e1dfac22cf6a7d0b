//! The store suite: one test body, run on SQLite and on PostgreSQL.

use anyhow::{Result, ensure};
use baton_model::{
    AgentRef, ChannelKind, Conversation, EventKind, HandoverState, Input, Message, Reason, Role,
    SenderKind, Status, Timestamp, step,
};
use baton_store::{
    AssigneeFilter, Attempt, ConversationFilter, Deactivation, Decision, DeliveryStatus,
    NewContact, NewConversation, NewMessage, NewUser, NewWebhook, Outcome, Plan, Side, Store,
    StoredEvent, Unit,
};

/// What an applied unit wrote; anything else is a failure.
fn applied(o: Outcome) -> Result<(Conversation, Vec<Message>, Vec<StoredEvent>)> {
    match o {
        Outcome::Applied {
            conversation,
            messages,
            events,
        } => Ok((conversation, messages, events)),
        other => anyhow::bail!("the unit was not applied: {other:?}"),
    }
}
use baton_tests::{Backend, TestDb};

async fn open(backend: Backend) -> Result<(TestDb, Store)> {
    let db = TestDb::new(backend).await?;
    let store = Store::connect(&db.url).await?;
    store.migrate().await?;
    // Migrating twice is harmless.
    store.migrate().await?;
    Ok((db, store))
}

async fn suite(backend: Backend) -> Result<()> {
    let (_db, store) = open(backend).await?;
    let t = Timestamp(1_700_000_000_000);

    // Users: emails are unique regardless of case.
    let user = store
        .create_user(
            NewUser {
                email: "Eve@Example.com",
                name: "Eve",
                role: Role::Admin,
                password_hash: "h",
            },
            t,
        )
        .await?;
    ensure!(user.email == "eve@example.com");
    let dup = store
        .create_user(
            NewUser {
                email: "EVE@example.com",
                name: "Eve 2",
                role: Role::Viewer,
                password_hash: "h",
            },
            t,
        )
        .await;
    ensure!(
        dup.as_ref().is_err_and(|e| e.is_unique_violation()),
        "{dup:?}"
    );
    ensure!(
        store
            .user_by_email("EVE@EXAMPLE.COM")
            .await?
            .is_some_and(|u| u.id == user.id)
    );

    // Sessions expire; API tokens resolve to their user.
    store
        .create_session("s-hash", &user.id, "csrf", t, t.plus_millis(1000))
        .await?;
    ensure!(
        store
            .session("s-hash", t)
            .await?
            .is_some_and(|s| s.csrf_token == "csrf")
    );
    ensure!(
        store
            .session("s-hash", t.plus_millis(1000))
            .await?
            .is_none()
    );
    let token = store.create_api_token(&user.id, "ci", "t-hash", t).await?;
    ensure!(
        store
            .user_by_api_token("t-hash")
            .await?
            .is_some_and(|(u, tok)| u.id == user.id && tok.id == token.id)
    );
    ensure!(store.user_by_api_token("other").await?.is_none());
    store.touch_api_token(&token.id, t.plus_millis(5)).await?;
    let listed = store.list_api_tokens(Some(&user.id)).await?;
    ensure!(
        listed.len() == 1
            && listed[0].token.last_used_at == Some(t.plus_millis(5))
            && listed[0].user_email == "eve@example.com",
        "{listed:?}"
    );
    ensure!(store.list_api_tokens(Some("nobody")).await?.is_empty());
    ensure!(store.revoke_api_token(&token.id).await?);
    ensure!(!store.revoke_api_token(&token.id).await?);
    ensure!(store.user_by_api_token("t-hash").await?.is_none());

    // Removing users: the last owner stays; a removed user's sessions and
    // tokens die with the account, and they are nobody to look-ups.
    let owner = store
        .create_user(
            NewUser {
                email: "olive@example.com",
                name: "Olive",
                role: Role::Owner,
                password_hash: "h",
            },
            t,
        )
        .await?;
    ensure!(store.deactivate_user(&owner.id, t).await? == Deactivation::LastOwner);
    store
        .create_session("eve-session", &user.id, "c", t, t.plus_millis(10_000))
        .await?;
    store
        .create_api_token(&user.id, "ci", "eve-token", t)
        .await?;
    ensure!(store.deactivate_user(&user.id, t).await? == Deactivation::Done);
    ensure!(store.deactivate_user(&user.id, t).await? == Deactivation::AlreadyDeactivated);
    ensure!(store.deactivate_user("nobody", t).await? == Deactivation::NotFound);
    ensure!(store.session("eve-session", t).await?.is_none());
    ensure!(store.user_by_api_token("eve-token").await?.is_none());
    ensure!(store.user_by_email("eve@example.com").await?.is_none());
    ensure!(store.list_users().await?.iter().all(|u| u.id != user.id));
    ensure!(
        store
            .list_all_users()
            .await?
            .iter()
            .any(|u| u.id == user.id && u.deactivated_at.is_some())
    );
    ensure!(store.reactivate_user(&user.id).await?);
    ensure!(store.user_by_email("eve@example.com").await?.is_some());

    // Conversations: a returning contact is recognised by its channel identity.
    let new = |thread: &str| NewConversation {
        bot_id: "default".into(),
        channel: ChannelKind::Telegram,
        contact: NewContact {
            name: Some("Tom".into()),
            external_id: Some("tg-42".into()),
            ..Default::default()
        },
        thread_key: Some(thread.into()),
        visitor_token_hash: None,
    };
    let (c1, _, started) = applied(store.start_conversation(new("chat-1"), None, t).await?)?;
    let (c2, ..) = applied(store.start_conversation(new("chat-2"), None, t).await?)?;
    ensure!(
        c1.contact.id == c2.contact.id,
        "one contact for one identity"
    );
    ensure!(c1.state.status == Status::Bot && c1.last_seq == 0 && c1.version == 0);
    ensure!(started.len() == 1 && started[0].envelope.kind == EventKind::Started);
    let again = store.start_conversation(new("chat-1"), None, t).await;
    ensure!(
        again.is_err_and(|e| e.is_unique_violation()),
        "a thread key maps to one conversation"
    );
    ensure!(
        store
            .conversation_by_thread(ChannelKind::Telegram, "chat-2")
            .await?
            .is_some_and(|c| c.id == c2.id)
    );

    // A unit appends messages with consecutive sequence numbers, and its
    // snapshot (built in memory) is what the store then reads.
    let messages = |list: Vec<NewMessage>| -> Box<dyn FnOnce(&Conversation) -> Decision + Send> {
        Box::new(move |_| {
            Decision::Apply(Plan {
                messages: list,
                ..Plan::default()
            })
        })
    };
    let mut msg = NewMessage::text(SenderKind::Visitor, "hello");
    msg.channel_message_id = Some("tg-msg-1".into());
    let dedupe = Some((None, Some("tg-msg-1".to_owned())));
    let (snapshot, stored, events) = applied(
        store
            .unit(Unit {
                conversation_id: c1.id.clone(),
                dedupe: dedupe.clone(),
                seat: None,
                now: t,
                plan: messages(vec![msg.clone(), NewMessage::text(SenderKind::Bot, "hi!")]),
            })
            .await?,
    )?;
    ensure!(stored.iter().map(|m| m.seq).collect::<Vec<_>>() == [1, 2]);
    ensure!(
        events.len() == 2
            && events
                .iter()
                .all(|e| e.envelope.kind == EventKind::MessageCreated)
    );
    // The same platform message again is found, not stored.
    match store
        .unit(Unit {
            conversation_id: c1.id.clone(),
            dedupe,
            seat: None,
            now: t,
            plan: messages(vec![msg]),
        })
        .await?
    {
        Outcome::Duplicate { message, .. } => ensure!(message.id == stored[0].id),
        other => anyhow::bail!("not found as a duplicate: {other:?}"),
    }
    let read = store.messages(&c1.id, 0, false, 100).await?;
    ensure!(read.len() == 2 && read[0].text == "hello" && read[1].sender == SenderKind::Bot);
    ensure!(store.messages(&c1.id, 1, false, 100).await?.len() == 1);
    let c1 = store
        .conversation(&c1.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    ensure!(
        c1.unread == 1 && c1.last_seq == 2,
        "unread {} last_seq {}",
        c1.unread,
        c1.last_seq
    );
    ensure!(c1 == snapshot, "the snapshot in memory is what is stored");

    // Internal notes are kept from the visitor's view.
    let mut note = NewMessage::text(SenderKind::Agent, "internal");
    note.internal = true;
    applied(
        store
            .unit(Unit {
                conversation_id: c1.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: messages(vec![note]),
            })
            .await?,
    )?;
    ensure!(store.messages(&c1.id, 0, false, 100).await?.len() == 2);
    ensure!(store.messages(&c1.id, 0, true, 100).await?.len() == 3);

    // A transition is decided from the conversation as the lock shows it.
    let agent = AgentRef {
        id: user.id.clone(),
        name: user.name.clone(),
    };
    let transition = |input: Input| -> Box<dyn FnOnce(&Conversation) -> Decision + Send> {
        Box::new(move |conv| match step(&conv.state, input, t) {
            Ok((next, _)) => Decision::Apply(Plan {
                state: Some(next),
                ..Plan::default()
            }),
            Err(e) => Decision::Refuse(e),
        })
    };
    let escalate = Input::Escalate {
        reason: Reason::known(Reason::BOT_FAILURE),
        by: None,
        department: Some("billing".into()),
        pause_bot_for_ms: 0,
    };
    let (escalated, ..) = applied(
        store
            .unit(Unit {
                conversation_id: c1.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: transition(escalate.clone()),
            })
            .await?,
    )?;
    ensure!(escalated.version == c1.version + 1 && escalated.state.status == Status::Waiting);
    ensure!(
        escalated
            .state
            .handover
            .as_ref()
            .is_some_and(|h| h.reason.as_str() == "bot_failure")
    );
    ensure!(
        store
            .queue(Some("billing"))
            .await?
            .first()
            .is_some_and(|(id, _)| *id == c1.id)
    );
    // Escalating again is refused, and nothing is written.
    match store
        .unit(Unit {
            conversation_id: c1.id.clone(),
            dedupe: None,
            seat: None,
            now: t,
            plan: transition(escalate),
        })
        .await?
    {
        Outcome::Refused(_) => {}
        other => anyhow::bail!("a second escalation was not refused: {other:?}"),
    }
    let claim = Input::Claim {
        agent: agent.clone(),
        pause_bot_for_ms: 0,
    };
    applied(
        store
            .unit(Unit {
                conversation_id: c1.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: transition(claim),
            })
            .await?,
    )?;
    let held = store
        .conversation(&c1.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    ensure!(
        held.state.assignee == Some(agent.clone()),
        "the assignee's name comes from the users table"
    );
    let mine = store
        .list_conversations(&ConversationFilter {
            assignee: AssigneeFilter::User(user.id.clone()),
            ..Default::default()
        })
        .await?;
    ensure!(mine.len() == 1 && mine[0].id == c1.id);
    let bots = store
        .list_conversations(&ConversationFilter {
            status: Some(Status::Bot),
            assignee: AssigneeFilter::Unassigned,
            ..Default::default()
        })
        .await?;
    ensure!(bots.len() == 1 && bots[0].id == c2.id);
    ensure!(HandoverState::default().status == Status::Bot);

    // The outbox: events in order, deliveries only for subscribed webhooks.
    let hook_all = store
        .create_webhook(
            NewWebhook {
                url: "http://a",
                events: &["*".into()],
                secret: "s",
            },
            t,
        )
        .await?;
    let hook_claims = store
        .create_webhook(
            NewWebhook {
                url: "http://b",
                events: &["conversation.claimed".into()],
                secret: "s",
            },
            t,
        )
        .await?;
    let (_, _, recorded) = applied(
        store
            .unit(Unit {
                conversation_id: c2.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: Box::new(|_| {
                    Decision::Apply(Plan {
                        events: vec![EventKind::Escalated, EventKind::Claimed],
                        ..Plan::default()
                    })
                }),
            })
            .await?,
    )?;
    let (e1, e2) = (&recorded[0], &recorded[1]);
    ensure!(e1.seq < e2.seq);
    let after = store.events_after(e1.seq - 1, 10).await?;
    ensure!(
        after.len() == 2
            && after[0].envelope.kind == EventKind::Escalated
            && after[1].body == e2.body
    );
    ensure!(store.deliveries(&hook_all.id, 10).await?.len() == 2);
    ensure!(store.deliveries(&hook_claims.id, 10).await?.len() == 1);

    // Leases: a delivery goes to one node at a time, with its event's body;
    // attempts are recorded in a batch.
    store.heartbeat("node-1", t).await?;
    store.heartbeat("node-2", t).await?;
    let alive = t.plus_millis(-10_000);
    let lease = |node: &'static str, now: Timestamp, alive: Timestamp| {
        let store = store.clone();
        async move {
            store
                .lease_webhook_deliveries(node, now, alive, now.plus_millis(60_000), 10)
                .await
        }
    };
    let leased = lease("node-1", t, alive).await?;
    ensure!(leased.len() == 3, "{}", leased.len());
    ensure!(
        leased.iter().all(|d| d
            .body
            .as_deref()
            .is_some_and(|b| b.contains(&d.delivery.event_id))),
        "{leased:?}"
    );
    ensure!(lease("node-2", t, alive).await?.is_empty());
    let d = &leased[0].delivery;
    let attempt = |status, http_status, retry_at| Attempt {
        delivery_id: d.id.clone(),
        status,
        http_status,
        error: (status == DeliveryStatus::Pending).then(|| "receiver answered 500".to_owned()),
        retry_at,
    };
    store
        .record_attempts(
            vec![attempt(
                DeliveryStatus::Pending,
                Some(500),
                t.plus_millis(5000),
            )],
            t,
        )
        .await?;
    ensure!(
        lease("node-1", t.plus_millis(4999), alive)
            .await?
            .is_empty()
    );
    let retried = lease("node-2", t.plus_millis(5000), alive).await?;
    ensure!(
        retried.len() == 1
            && retried[0].delivery.attempts == 1
            && retried[0].delivery.last_status == Some(500)
    );
    store
        .record_attempts(
            vec![attempt(DeliveryStatus::Delivered, Some(204), t)],
            t.plus_millis(5001),
        )
        .await?;
    // The other two are held by a live node: nothing is due for anyone else.
    ensure!(store.next_delivery_due(t, alive).await?.is_none());

    // A stopping node gives back what it leased and did not finish, and only that.
    ensure!(store.release_webhook_leases("node-2").await? == 0);
    ensure!(store.release_webhook_leases("node-1").await? == 2);
    ensure!(store.next_delivery_due(t, alive).await?.is_some());
    let again = lease("node-2", t.plus_millis(10), alive).await?;
    ensure!(again.len() == 2, "{again:?}");
    // A node that stops beating loses its leases, however long they were.
    let later = t.plus_millis(20_000);
    store.heartbeat("node-1", later).await?;
    let taken = lease("node-1", later, later.plus_millis(-10_000)).await?;
    ensure!(taken.len() == 2, "{taken:?}");

    // A plugin action cut short by a stop is queued again, its attempt not counted.
    ensure!(
        store
            .enqueue_plugin_job("crm", &c1.id, "key-1", "visitor_request", 0, t)
            .await?
    );
    let jobs = store.claim_plugin_jobs(t, 10, 60_000).await?;
    ensure!(jobs.len() == 1 && jobs[0].attempts == 1, "{jobs:?}");
    ensure!(!store.give_back_plugin_job(&jobs[0].id, 2, t).await?);
    ensure!(store.give_back_plugin_job(&jobs[0].id, 1, t).await?);
    ensure!(!store.give_back_plugin_job(&jobs[0].id, 1, t).await?);
    let jobs = store.claim_plugin_jobs(t, 10, 60_000).await?;
    ensure!(jobs.len() == 1 && jobs[0].attempts == 1, "{jobs:?}");

    // Units run together (one commit on SQLite, one transaction on
    // PostgreSQL): one that fails half-way (a message under a client id
    // already used) is rolled back alone; the others commit.
    let with_client = |id: &str| {
        let mut m = NewMessage::text(SenderKind::Visitor, "again");
        m.client_id = Some(id.into());
        m
    };
    let tagged = |tag: &str| -> Box<dyn FnOnce(&Conversation) -> Decision + Send> {
        let tag = tag.to_owned();
        Box::new(move |_| {
            Decision::Apply(Plan {
                side: Side {
                    tags: Some(vec![tag]),
                    ..Side::default()
                },
                events: vec![EventKind::Transferred],
                ..Plan::default()
            })
        })
    };
    applied(
        store
            .unit(Unit {
                conversation_id: c2.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: messages(vec![with_client("c-1")]),
            })
            .await?,
    )?;
    let before = store.events_after(0, 10_000).await?.len();
    let results = store
        .units(vec![
            Unit {
                conversation_id: c2.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: tagged("first"),
            },
            Unit {
                conversation_id: c2.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: Box::new(move |_| {
                    Decision::Apply(Plan {
                        side: Side {
                            tags: Some(vec!["never".into()]),
                            ..Side::default()
                        },
                        messages: vec![with_client("c-1")],
                        ..Plan::default()
                    })
                }),
            },
            Unit {
                conversation_id: c1.id.clone(),
                dedupe: None,
                seat: None,
                now: t,
                plan: tagged("third"),
            },
        ])
        .await;
    ensure!(
        results[0].is_ok() && results[1].is_err() && results[2].is_ok(),
        "{results:?}"
    );
    let c2_now = store
        .conversation(&c2.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    ensure!(
        c2_now.tags == ["first"],
        "the failed unit left {:?}",
        c2_now.tags
    );
    ensure!(store.messages(&c2.id, 0, false, 100).await?.len() == 1);
    let c1_now = store
        .conversation(&c1.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    ensure!(c1_now.tags == ["third"]);
    ensure!(store.events_after(0, 10_000).await?.len() == before + 2);

    ensure!(store.delete_webhook(&hook_all.id).await?);
    ensure!(!store.delete_webhook(&hook_all.id).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_every_backend() -> Result<()> {
    baton_tests::on_every_backend(suite).await
}

/// Singleton leases: one holder; taken again by it; free to another node
/// once the holder neither took it again nor beat since `alive`; let go.
async fn singletons(backend: Backend) -> Result<()> {
    let (_db, store) = open(backend).await?;
    let t = Timestamp(1_700_000_000_000);
    let alive = |at: Timestamp| at.plus_millis(-10_000);
    store.heartbeat("node-a", t).await?;
    store.heartbeat("node-b", t).await?;
    ensure!(
        store
            .take_singleton("console:slack", "node-a", t, alive(t))
            .await?
    );
    ensure!(
        !store
            .take_singleton("console:slack", "node-b", t, alive(t))
            .await?
    );
    // Another name is its own lease.
    ensure!(
        store
            .take_singleton("channel:telegram", "node-b", t, alive(t))
            .await?
    );
    // The holder takes it again; the other node still cannot, while both beat.
    let t5 = t.plus_millis(5_000);
    store.heartbeat("node-a", t5).await?;
    store.heartbeat("node-b", t5).await?;
    ensure!(
        store
            .take_singleton("console:slack", "node-a", t5, alive(t5))
            .await?
    );
    let t12 = t.plus_millis(12_000);
    store.heartbeat("node-b", t12).await?;
    ensure!(
        !store
            .take_singleton("console:slack", "node-b", t12, alive(t12))
            .await?,
        "taken 7 s ago by a node that beat 7 s ago: still held"
    );
    // node-a hangs: neither a take nor a beat for over 10 s.
    let t16 = t.plus_millis(16_000);
    store.heartbeat("node-b", t16).await?;
    ensure!(
        store
            .take_singleton("console:slack", "node-b", t16, alive(t16))
            .await?
    );
    ensure!(store.singleton_holder("console:slack").await?.as_deref() == Some("node-b"));
    // Woken up, node-a finds it gone, though it beats again.
    store.heartbeat("node-a", t16).await?;
    ensure!(
        !store
            .take_singleton("console:slack", "node-a", t16, alive(t16))
            .await?
    );
    // A node that still beats but stopped taking its lease loses it too.
    let t30 = t.plus_millis(30_000);
    store.heartbeat("node-a", t30).await?;
    store.heartbeat("node-b", t30).await?;
    ensure!(
        store
            .take_singleton("channel:telegram", "node-a", t30, alive(t30))
            .await?
    );
    // Letting go: only the holder's release counts; then anyone takes it.
    store.release_singleton("console:slack", "node-a").await?;
    ensure!(store.singleton_holder("console:slack").await?.as_deref() == Some("node-b"));
    store.release_singleton("console:slack", "node-b").await?;
    ensure!(store.singleton_holder("console:slack").await?.is_none());
    ensure!(
        store
            .take_singleton("console:slack", "node-a", t30, alive(t30))
            .await?
    );
    // A node that stopped (its row removed) holds nothing.
    store.forget_node("node-a").await?;
    ensure!(
        store
            .take_singleton("console:slack", "node-b", t30, alive(t30))
            .await?
    );
    Ok(())
}

#[tokio::test]
async fn singleton_leases_move_only_from_a_node_that_stopped() -> Result<()> {
    baton_tests::on_every_backend(singletons).await
}
