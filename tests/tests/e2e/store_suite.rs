//! The store suite: one test body, run on SQLite and on PostgreSQL.

use anyhow::{Result, ensure};
use baton_model::wire::{ConversationView, EventData, EventEnvelope};
use baton_model::{
    AgentRef, ChannelKind, EventKind, HandoverState, Input, Reason, Role, SenderKind, Status,
    Timestamp, step,
};
use baton_store::{
    AssigneeFilter, ConversationFilter, Deactivation, DeliveryStatus, NewContact, NewConversation,
    NewMessage, NewUser, NewWebhook, Store,
};
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
    let mut tx = store.begin().await?;
    let c1 = tx.create_conversation(&new("chat-1"), t).await?;
    let c2 = tx.create_conversation(&new("chat-2"), t).await?;
    tx.commit().await?;
    ensure!(
        c1.contact.id == c2.contact.id,
        "one contact for one identity"
    );
    ensure!(c1.state.status == Status::Bot && c1.last_seq == 0 && c1.version == 0);
    let mut tx = store.begin().await?;
    let again = tx.create_conversation(&new("chat-1"), t).await;
    ensure!(
        again.is_err_and(|e| e.is_unique_violation()),
        "a thread key maps to one conversation"
    );
    drop(tx);
    ensure!(
        store
            .conversation_by_thread(ChannelKind::Telegram, "chat-2")
            .await?
            .is_some_and(|c| c.id == c2.id)
    );

    // Messages get consecutive sequence numbers; duplicates are found by either id.
    let mut tx = store.begin().await?;
    let mut msg = NewMessage::text(SenderKind::Visitor, "hello");
    msg.channel_message_id = Some("tg-msg-1".into());
    let m1 = tx.append_message(&c1.id, &msg, t).await?;
    let m2 = tx
        .append_message(&c1.id, &NewMessage::text(SenderKind::Bot, "hi!"), t)
        .await?;
    ensure!(
        tx.find_duplicate(&c1.id, None, Some("tg-msg-1"))
            .await?
            .is_some_and(|m| m.id == m1.id)
    );
    ensure!(
        tx.find_duplicate(&c1.id, None, Some("tg-msg-2"))
            .await?
            .is_none()
    );
    tx.commit().await?;
    ensure!((m1.seq, m2.seq) == (1, 2));
    let stored = store.messages(&c1.id, 0, false, 100).await?;
    ensure!(stored.len() == 2 && stored[0].text == "hello" && stored[1].sender == SenderKind::Bot);
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

    // Internal notes are kept from the visitor's view.
    let mut tx = store.begin().await?;
    let mut note = NewMessage::text(SenderKind::Agent, "internal");
    note.internal = true;
    tx.append_message(&c1.id, &note, t).await?;
    tx.commit().await?;
    ensure!(store.messages(&c1.id, 0, false, 100).await?.len() == 2);
    ensure!(store.messages(&c1.id, 0, true, 100).await?.len() == 3);

    // The compare-and-swap: a stale version loses, and nothing changes.
    let agent = AgentRef {
        id: user.id.clone(),
        name: user.name.clone(),
    };
    let (escalated, _) = step(
        &c1.state,
        Input::Escalate {
            reason: Reason::known(Reason::BOT_FAILURE),
            by: None,
            department: Some("billing".into()),
            pause_bot_for_ms: 0,
        },
        t,
    )?;
    let mut tx = store.begin().await?;
    ensure!(tx.cas_state(&c1.id, c1.version, &escalated, t).await?);
    tx.commit().await?;
    let (claimed, _) = step(
        &escalated,
        Input::Claim {
            agent: agent.clone(),
            pause_bot_for_ms: 0,
        },
        t,
    )?;
    let mut tx = store.begin().await?;
    ensure!(
        !tx.cas_state(&c1.id, c1.version, &claimed, t).await?,
        "a stale version must lose"
    );
    tx.rollback().await?;
    let now = store
        .conversation(&c1.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("gone"))?;
    ensure!(now.state == escalated && now.version == c1.version + 1);
    ensure!(
        now.state
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

    let mut tx = store.begin().await?;
    ensure!(tx.cas_state(&c1.id, now.version, &claimed, t).await?);
    tx.commit().await?;
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
    let envelope = |kind| EventEnvelope {
        id: baton_store::new_event_id(),
        kind,
        created_at: t,
        data: EventData {
            conversation: ConversationView::from(&held),
            message: None,
        },
    };
    let mut tx = store.begin().await?;
    let e1 = tx.insert_event(&envelope(EventKind::Escalated)).await?;
    let e2 = tx.insert_event(&envelope(EventKind::Claimed)).await?;
    tx.commit().await?;
    ensure!(e1.seq < e2.seq);
    let after = store.events_after(e1.seq - 1, 10).await?;
    ensure!(
        after.len() == 2
            && after[0].envelope.kind == EventKind::Escalated
            && after[1].body == e2.body
    );
    ensure!(store.deliveries(&hook_all.id, 10).await?.len() == 2);
    ensure!(store.deliveries(&hook_claims.id, 10).await?.len() == 1);

    // A rolled-back transaction leaves no event behind.
    let mut tx = store.begin().await?;
    tx.insert_event(&envelope(EventKind::Resolved)).await?;
    tx.rollback().await?;
    ensure!(store.events_after(e2.seq, 10).await?.is_empty());

    // Leases: a delivery goes to one worker at a time; attempts are recorded.
    let leased = store
        .lease_due_deliveries(t, t.plus_millis(60_000), 10)
        .await?;
    ensure!(leased.len() == 3, "{}", leased.len());
    ensure!(
        store
            .lease_due_deliveries(t, t.plus_millis(60_000), 10)
            .await?
            .is_empty()
    );
    let d = &leased[0];
    store
        .record_attempt(
            &d.id,
            DeliveryStatus::Pending,
            Some(500),
            Some("receiver answered 500"),
            t.plus_millis(5000),
            t,
        )
        .await?;
    ensure!(
        store
            .lease_due_deliveries(t.plus_millis(4999), t.plus_millis(90_000), 10)
            .await?
            .is_empty()
    );
    let retried = store
        .lease_due_deliveries(t.plus_millis(5000), t.plus_millis(90_000), 10)
        .await?;
    ensure!(retried.len() == 1 && retried[0].attempts == 1 && retried[0].last_status == Some(500));
    store
        .record_attempt(
            &d.id,
            DeliveryStatus::Delivered,
            Some(204),
            None,
            t,
            t.plus_millis(5001),
        )
        .await?;
    ensure!(store.next_delivery_due().await?.is_none_or(|due| due >= t));

    // A stopping node gives back what it leased and did not finish, and only that.
    let (a, b) = (&leased[1].id, &leased[2].id);
    ensure!(
        store
            .release_leases(std::slice::from_ref(b), t.plus_millis(1))
            .await?
            == 0
    );
    ensure!(
        store
            .release_leases(&[a.clone(), d.id.clone()], t.plus_millis(60_000))
            .await?
            == 1
    );
    ensure!(
        store
            .release_leases(std::slice::from_ref(a), t.plus_millis(60_000))
            .await?
            == 0
    );
    let again = store
        .lease_due_deliveries(t.plus_millis(10), t.plus_millis(90_000), 10)
        .await?;
    ensure!(again.len() == 1 && again[0].id == *a, "{again:?}");

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

    ensure!(store.delete_webhook(&hook_all.id).await?);
    ensure!(!store.delete_webhook(&hook_all.id).await?);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_suite_passes_on_every_backend() -> Result<()> {
    baton_tests::on_every_backend(suite).await
}
