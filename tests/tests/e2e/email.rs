//! The email channel against real mail servers: Postfix takes the mail
//! (STARTTLS, AUTH), Dovecot serves the support mailbox over IMAP (STARTTLS,
//! IDLE), and the customer's mail client is played by raw mails sent through
//! Postfix and read back from the customer's Maildir.

use anyhow::{Context, Result, bail, ensure};
use baton_tests::mail::{MailServers, PASSWORD};
use baton_tests::{
    Backend, Process, Server, StaffClient, TestDb, VisitorClient, baton_binary, eventually_async,
    on_every_backend,
};
use mail_parser::MessageParser;
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "relay-token-0123456789";

/// How Baton reaches the mail servers in a test.
#[derive(Clone, Copy)]
enum Mode {
    /// STARTTLS on both, IMAP IDLE.
    StartTls,
    /// TLS from the first byte on both (SMTPS, IMAPS), IMAP IDLE.
    Tls,
    /// STARTTLS, and IMAP polling every second instead of IDLE.
    Polling,
}

fn config(mail: &MailServers, mode: Mode, extra: &str) -> String {
    let (security, smtp, imap) = match mode {
        Mode::Tls => ("tls", mail.smtps_port, mail.imaps_port),
        Mode::StartTls | Mode::Polling => ("starttls", mail.smtp_port, mail.imap_port),
    };
    let polling = match mode {
        Mode::Polling => "idle = false\npoll_seconds = 1\n",
        _ => "",
    };
    format!(
        "[channels.email]\n\
         address = \"support@example.test\"\n\
         name = \"Acme Support\"\n\
         {extra}\n\
         [channels.email.smtp]\n\
         host = \"127.0.0.1\"\n\
         port = {smtp}\n\
         security = \"{security}\"\n\
         ca_file = \"{cert}\"\n\
         [channels.email.imap]\n\
         host = \"127.0.0.1\"\n\
         port = {imap}\n\
         security = \"{security}\"\n\
         ca_file = \"{cert}\"\n\
         {polling}",
        cert = mail.cert.display(),
    )
}

const ENV: [(&str, &str); 3] = [
    ("BATON_IMAP_PASSWORD", PASSWORD),
    ("BATON_SMTP_PASSWORD", PASSWORD),
    ("BATON_EMAIL_INBOUND_TOKEN", TOKEN),
];

/// A mail as Bob's mail client would write it.
fn bob_mail(id: &str, replying_to: &[&str], subject: &str, body: &str) -> Vec<u8> {
    let mut head = format!(
        "From: Bob Customer <bob@customer.test>\r\n\
         To: Acme Support <support@example.test>\r\n\
         Subject: {subject}\r\n\
         Date: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n"
    );
    if let Some(parent) = replying_to.last() {
        head.push_str(&format!("In-Reply-To: <{parent}>\r\n"));
        let refs: Vec<String> = replying_to.iter().map(|r| format!("<{r}>")).collect();
        head.push_str(&format!("References: {}\r\n", refs.join(" ")));
    }
    format!("{head}\r\n{}\r\n", body.replace('\n', "\r\n")).into_bytes()
}

/// What the customer's mail client shows of one of Baton's mails.
#[derive(Debug)]
struct Seen {
    message_id: String,
    from: String,
    subject: String,
    in_reply_to: Vec<String>,
    references: Vec<String>,
    reply_to: String,
    text: String,
    auto_submitted: bool,
    has_html: bool,
}

fn ids(v: &mail_parser::HeaderValue<'_>) -> Vec<String> {
    match v {
        mail_parser::HeaderValue::Text(t) => vec![t.to_string()],
        mail_parser::HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => vec![],
    }
}

fn seen(raw: &[u8]) -> Result<Seen> {
    let m = MessageParser::default()
        .parse(raw)
        .context("Baton's mail does not parse")?;
    let from = m.from().and_then(|a| a.first()).context("no From")?;
    Ok(Seen {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        from: format!(
            "{} <{}>",
            from.name().unwrap_or_default(),
            from.address().unwrap_or_default()
        ),
        subject: m.subject().unwrap_or_default().to_owned(),
        in_reply_to: ids(m.in_reply_to()),
        references: ids(m.references()),
        reply_to: m
            .reply_to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap_or_default()
            .to_owned(),
        text: m.body_text(0).unwrap_or_default().into_owned(),
        auto_submitted: m.header_raw("Auto-Submitted").is_some(),
        has_html: m.html_body_count() > 0,
    })
}

/// Bob's mailbox, as his mail client lists it.
fn inbox(mail: &MailServers) -> Result<Vec<Seen>> {
    mail.mailbox("customer")?.iter().map(|r| seen(r)).collect()
}

async fn wait_inbox(mail: &MailServers, n: usize) -> Result<Vec<Seen>> {
    mail.wait_mailbox("customer", n, 20).await?;
    inbox(mail)
}

/// The conversation one of Baton's Message-IDs names.
fn conversation_of(message_id: &str) -> Result<String> {
    let rest = message_id
        .strip_prefix("baton.")
        .with_context(|| format!("not Baton's id: {message_id}"))?;
    Ok(rest.split('.').next().unwrap_or_default().to_owned())
}

async fn send(mail: &MailServers, raw: &[u8]) -> Result<()> {
    mail.send_raw("bob@customer.test", &["support@example.test"], raw)
        .await
}

fn visitor_texts(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["sender"] == "visitor")
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until a visitor message matching `found` is stored; returns all messages.
async fn wait_stored(
    staff: &StaffClient,
    id: &str,
    found: impl Fn(&str) -> bool,
    failure: &str,
) -> Result<Vec<Value>> {
    eventually_async(
        20,
        || async {
            let m = staff.messages_of(id).await?;
            Ok(visitor_texts(&m).iter().any(|t| found(t)).then_some(m))
        },
        || failure.to_owned(),
    )
    .await
}

async fn staff(db: &TestDb, base: &str) -> Result<StaffClient> {
    let store = baton_store::Store::connect(&db.url).await?;
    baton_tests::add_user(
        &store,
        "alice@example.com",
        "Alice Example",
        "responder",
        "alice-password",
    )
    .await?;
    StaffClient::login(base, "alice@example.com", "alice-password").await
}

async fn email_hand_over(backend: Backend) -> Result<()> {
    let mail = MailServers::start()?;
    let db = TestDb::new(backend).await?;
    let binary = baton_binary()?;
    let cfg = config(&mail, Mode::StartTls, "");
    let baton = Process::start_with_env(&binary, &db, &cfg, "email-1", &ENV).await?;
    let alice = staff(&db, &baton.base()).await?;

    // 1. Bob mails support; the bot answers in the thread.
    send(
        &mail,
        &bob_mail(
            "q1@customer.test",
            &[],
            "Shipping question",
            "Hello,\n\nDo you ship to Canada?\n\n-- \nBob Customer\nCustomer Corp",
        ),
    )
    .await?;
    let first = wait_inbox(&mail, 1).await?.remove(0);
    ensure!(first.text.contains("Canada"), "the bot's answer: {first:?}");
    ensure!(first.subject == "Re: Shipping question", "{first:?}");
    ensure!(first.in_reply_to == ["q1@customer.test"], "{first:?}");
    ensure!(
        first.from == "Acme Support <support@example.test>",
        "{first:?}"
    );
    ensure!(first.auto_submitted && first.has_html, "{first:?}");
    let id = conversation_of(&first.message_id)?;
    ensure!(
        first.reply_to == format!("support+c-{id}@example.test"),
        "{first:?}"
    );
    let (_, conv) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(conv["conversation"]["channel"] == "email", "{conv}");
    ensure!(
        conv["conversation"]["contact"]["email"] == "bob@customer.test"
            && conv["conversation"]["contact"]["name"] == "Bob Customer",
        "{conv}"
    );
    let stored = alice.messages_of(&id).await?;
    ensure!(
        visitor_texts(&stored) == ["Shipping question\n\nHello,\n\nDo you ship to Canada?"],
        "subject in front, signature cut: {stored:?}"
    );

    // 2. Bob replies (quoting, as mail clients do) and asks for a human.
    send(
        &mail,
        &bob_mail(
            "q2@customer.test",
            &["q1@customer.test", &first.message_id],
            "Re: Shipping question",
            &format!(
                "Thanks. I would like to talk to a human please.\n\n\
                 On Sat, Nov 21, 2026 at 10:01 AM Acme Support <support@example.test> wrote:\n> {}",
                first.text.lines().next().unwrap_or_default()
            ),
        ),
    )
    .await?;
    alice.wait_status(&id, "waiting").await?;

    // 3. Baton stops; Bob writes meanwhile; Baton starts again and takes
    //    that mail once, and none of the earlier ones again.
    baton.stop().await?;
    send(
        &mail,
        &bob_mail(
            "q3@customer.test",
            &["q1@customer.test", "q2@customer.test"],
            "Re: Shipping question",
            "My order number is 1234.",
        ),
    )
    .await?;
    mail.wait_mailbox("support", 3, 20).await?;
    let baton = Process::start_with_env(&binary, &db, &cfg, "email-2", &ENV).await?;
    let alice = StaffClient::login(&baton.base(), "alice@example.com", "alice-password").await?;
    let stored = wait_stored(
        &alice,
        &id,
        |t| t == "My order number is 1234.",
        "the mail sent while Baton was down never arrived",
    )
    .await?;
    ensure!(
        visitor_texts(&stored)
            == [
                "Shipping question\n\nHello,\n\nDo you ship to Canada?",
                "Thanks. I would like to talk to a human please.",
                "My order number is 1234.",
            ],
        "each mail once, quotes cut: {stored:?}"
    );

    // 4. Alice claims it in the inbox and replies: the mail carries her name.
    let before = inbox(&mail)?.len();
    alice
        .claim_and_reply(
            &id,
            "Hi Bob, yes we ship to Canada. Order 1234 leaves today.",
        )
        .await?;
    let reply = eventually_async(
        20,
        || async {
            Ok(inbox(&mail)?
                .into_iter()
                .skip(before)
                .find(|m| m.text.contains("Order 1234 leaves today")))
        },
        || format!("Alice's reply never reached Bob\n{}", mail.logs()),
    )
    .await?;
    ensure!(
        reply.from == "Alice Example via Acme Support <support@example.test>",
        "{reply:?}"
    );
    ensure!(!reply.auto_submitted, "a person's mail is not automatic");
    ensure!(reply.in_reply_to == ["q3@customer.test"], "{reply:?}");

    // 5. While Alice holds it the bot stays silent.
    let before = inbox(&mail)?.len();
    send(
        &mail,
        &bob_mail(
            "q4@customer.test",
            &["q1@customer.test", &reply.message_id],
            "Re: Shipping question",
            "Do you ship to Canada?",
        ),
    )
    .await?;
    eventually_async(
        20,
        || async { Ok((visitor_texts(&alice.messages_of(&id).await?).len() == 4).then_some(())) },
        || "Bob's fourth mail never arrived".to_owned(),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after: Vec<Seen> = inbox(&mail)?.into_iter().skip(before).collect();
    ensure!(
        !after.iter().any(|m| m.auto_submitted),
        "the bot spoke while a human held the conversation: {after:?}"
    );

    // 6. Hand back: the bot answers the next mail, in the same thread.
    alice.hand_back(&id).await?;
    let before = inbox(&mail)?.len();
    send(
        &mail,
        &bob_mail(
            "q5@customer.test",
            &["q1@customer.test", "q4@customer.test"],
            "Re: Shipping question",
            "And do you ship to Canada by express?",
        ),
    )
    .await?;
    eventually_async(
        20,
        || async {
            Ok(inbox(&mail)?
                .into_iter()
                .skip(before)
                .find(|m| m.auto_submitted && m.text.contains("Canada")))
        },
        || format!("the bot did not answer after hand back\n{}", mail.logs()),
    )
    .await?;

    // 7. Bob's mail client shows one thread: every mail Baton sent answers
    //    his first one and keeps the subject; none arrived twice.
    let all = inbox(&mail)?;
    let mut ids: Vec<&str> = all.iter().map(|m| m.message_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    ensure!(ids.len() == all.len(), "a mail arrived twice: {all:?}");
    for m in &all {
        ensure!(
            m.references.first().map(String::as_str) == Some("q1@customer.test"),
            "not in Bob's thread: {m:?}"
        );
        ensure!(m.subject == "Re: Shipping question", "{m:?}");
    }
    let stored = alice.messages_of(&id).await?;
    ensure!(visitor_texts(&stored).len() == 5, "{stored:?}");
    // The IMAP cursor stands on the fifth mail of the mailbox: each one
    // taken once, across the restart, none skipped.
    let cursor = baton_store::Store::connect(&db.url)
        .await?
        .channel_state(
            "email",
            &format!(
                "imap:support@example.test@127.0.0.1:{}/INBOX",
                mail.imap_port
            ),
        )
        .await?
        .context("no IMAP cursor stored")?;
    ensure!(cursor.ends_with(" 5"), "cursor {cursor}");
    baton.stop().await?;
    Ok(())
}

#[tokio::test]
async fn a_customer_mails_support_and_goes_from_bot_to_human_and_back() -> Result<()> {
    on_every_backend(email_hand_over).await
}

#[tokio::test]
async fn auto_replies_and_bounces_are_stored_and_never_answered() -> Result<()> {
    let mail = MailServers::start()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    // Without IDLE: the mailbox is polled.
    let server = Server::start_with_env(&db, &config(&mail, Mode::Polling, ""), &ENV).await?;
    let alice = server.staff("Alice Example", "responder").await?;

    send(
        &mail,
        &bob_mail("a1@customer.test", &[], "Returns", "Do you ship to Canada?"),
    )
    .await?;
    let answer = wait_inbox(&mail, 1).await?.remove(0);
    let id = conversation_of(&answer.message_id)?;

    // Bob's out-of-office answers the bot's mail; a bounce comes back too.
    let ooo = format!(
        "From: Bob Customer <bob@customer.test>\r\n\
         To: support+c-{id}@example.test\r\n\
         Subject: Automatic reply: Re: Returns\r\n\
         Message-ID: <ooo1@customer.test>\r\n\
         In-Reply-To: <{mid}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         X-Autoreply: yes\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         I am out of the office until Monday. Do you ship to Canada?\r\n",
        mid = answer.message_id
    );
    mail.send_raw(
        "bob@customer.test",
        &[&format!("support+c-{id}@example.test")],
        ooo.as_bytes(),
    )
    .await?;
    let bounce = include_bytes!("../../../channels/email/tests/corpus/bounce.eml");
    mail.send_raw(
        "mailer-daemon@customer.test",
        &["support@example.test"],
        bounce,
    )
    .await?;
    let newsletter = include_bytes!("../../../channels/email/tests/corpus/newsletter.eml");
    mail.send_raw("news@customer.test", &["support@example.test"], newsletter)
        .await?;

    let stored = wait_stored(
        &alice,
        &id,
        |t| t.starts_with("[auto-reply]"),
        "the auto-reply was not stored in its conversation",
    )
    .await?;
    ensure!(
        !stored
            .iter()
            .any(|m| m["text"].as_str().is_some_and(|t| t.contains("[bounce]"))),
        "the bounce names no conversation of ours: {stored:?}"
    );
    // The bounce and the newsletter are kept too, each in a quiet
    // conversation of its own (nobody greeted them).
    for thread in [
        "20261121101300.9F1A2B3C4D@mx.example.test",
        "digest.2026-47@carrier.test",
    ] {
        let other = server
            .conversation_on(baton_model::ChannelKind::Email, thread, 20)
            .await
            .with_context(|| mail.logs())?;
        let m = alice.messages_of(&other).await?;
        ensure!(
            m.len() == 1 && m[0]["sender"] == "visitor",
            "stored, nothing else: {m:?}"
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = inbox(&mail)?;
    ensure!(
        after.len() == 1,
        "only the bot's first answer, nothing to the auto-reply: {after:?}"
    );
    let (_, conv) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(conv["conversation"]["status"] == "bot", "{conv}");
    Ok(())
}

#[tokio::test]
async fn a_web_visitor_who_left_their_address_is_answered_by_email() -> Result<()> {
    let mail = MailServers::start()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    // SMTPS and IMAPS: TLS from the first byte.
    let server = Server::start_with_env(&db, &config(&mail, Mode::Tls, ""), &ENV).await?;
    let alice = server.staff("Alice Example", "responder").await?;
    let visitor = VisitorClient::start(&server.base()).await?;
    let left = reqwest::Client::new()
        .post(format!("{}/api/v1/widget/contact", server.base()))
        .bearer_auth(&visitor.token)
        .json(
            &json!({"name": "Bob Customer", "email": "bob@customer.test",
                      "text": "My parcel to Toronto is late."}),
        )
        .send()
        .await?;
    ensure!(left.status() == 200, "{}", left.text().await?);
    let id = visitor.conversation_id.clone();
    alice
        .claim_and_reply(&id, "Sorry Bob, it leaves the depot tomorrow.")
        .await?;
    let got = wait_inbox(&mail, 1).await?.remove(0);
    ensure!(got.text.contains("leaves the depot tomorrow"), "{got:?}");
    ensure!(
        got.from == "Alice Example via Acme Support <support@example.test>",
        "{got:?}"
    );
    ensure!(conversation_of(&got.message_id)? == id, "{got:?}");

    // Bob answers from his mail client; it lands in the same conversation.
    let reply = bob_mail(
        "w2@customer.test",
        &[&got.message_id],
        &format!("Re: {}", got.subject),
        "Great, thank you!\n\nOn Sat, Nov 21, 2026, Alice wrote:\n> Sorry Bob",
    );
    send(&mail, &reply).await?;
    let stored = eventually_async(
        20,
        || async {
            let m = alice.messages_of(&id).await?;
            Ok(visitor_texts(&m)
                .iter()
                .any(|t| t == "Great, thank you!")
                .then_some(m))
        },
        || {
            format!(
                "Bob's emailed reply never reached the conversation\n{}",
                mail.logs()
            )
        },
    )
    .await?;
    let (_, conv) = alice.get(&format!("/api/v1/conversations/{id}")).await?;
    ensure!(conv["conversation"]["channel"] == "web", "{conv}");
    ensure!(visitor_texts(&stored).len() == 2, "{stored:?}");

    // Someone else answering the same mail does not get into Bob's
    // conversation: their mail starts one of its own.
    let eve = format!(
        "From: Eve <eve@customer.test>\r\nTo: support@example.test\r\n\
         Subject: Re: {}\r\nMessage-ID: <e1@customer.test>\r\n\
         In-Reply-To: <{}>\r\n\r\nLet me in.\r\n",
        got.subject, got.message_id
    );
    mail.send_raw(
        "eve@customer.test",
        &["support@example.test"],
        eve.as_bytes(),
    )
    .await?;
    let other = server
        .conversation_on(baton_model::ChannelKind::Email, "e1@customer.test", 20)
        .await?;
    ensure!(other != id);
    ensure!(
        visitor_texts(&alice.messages_of(&id).await?).len() == 2,
        "Eve's mail got into Bob's conversation"
    );
    Ok(())
}

/// A mail with a 2 MB attachment, base64 of zeros, built without a crate.
fn mail_with_big_attachment() -> Vec<u8> {
    let groups = 2 * 1024 * 1024 / 3;
    let b64 = "AAAA".repeat(groups);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "From: Bob Customer <bob@customer.test>\r\n\
         To: support@example.test\r\n\
         Subject: Damaged box\r\n\
         Message-ID: <big1@customer.test>\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n\
         The box arrived crushed, photo attached.\r\n\
         --b1\r\n\
         Content-Type: image/jpeg; name=\"damage.jpg\"\r\n\
         Content-Disposition: attachment; filename=\"damage.jpg\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n\
         {}\r\n\
         --b1--\r\n",
        lines.join("\r\n")
    )
    .into_bytes()
}

#[tokio::test]
async fn the_relay_endpoint_takes_raw_mail_and_refuses_big_attachments_politely() -> Result<()> {
    let mail = MailServers::start()?;
    let db = TestDb::new(Backend::Sqlite).await?;
    // Relay only: no IMAP table, mail arrives over HTTP.
    let cfg = config(&mail, Mode::StartTls, "max_attachment_mb = 1");
    let cfg = cfg
        .split("[channels.email.imap]")
        .next()
        .unwrap_or_default()
        .to_owned();
    let server = Server::start_with_env(&db, &cfg, &ENV).await?;
    let alice = server.staff("Alice Example", "responder").await?;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/channels/email/inbound", server.base());
    let post = |token: &str, body: Vec<u8>| {
        http.post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "message/rfc822")
            .body(body)
            .send()
    };

    let wrong = post("nope", mail_with_big_attachment()).await?;
    ensure!(wrong.status() == 401, "{}", wrong.status());
    let garbage = post(TOKEN, b"\x00\x01 not mail".to_vec()).await?;
    ensure!(garbage.status() == 400, "{}", garbage.status());
    let body: Value = garbage.json().await?;
    ensure!(body["error"]["message"].is_string(), "{body}");

    let taken = post(TOKEN, mail_with_big_attachment()).await?;
    ensure!(taken.status() == 201, "{}", taken.status());
    let taken: Value = taken.json().await?;
    let id = taken["conversation_id"].as_str().context("id")?.to_owned();
    let again = post(TOKEN, mail_with_big_attachment()).await?;
    ensure!(again.status() == 200, "a relay's retry is stored once");

    let notice = eventually_async(
        20,
        || async {
            Ok(inbox(&mail)?
                .into_iter()
                .find(|m| m.text.contains("could not accept")))
        },
        || format!("no polite refusal reached Bob\n{}", mail.logs()),
    )
    .await?;
    ensure!(notice.text.contains("damage.jpg (2.0 MB)"), "{notice:?}");
    ensure!(notice.text.contains("at most 1 MB"), "{notice:?}");
    let stored = alice.messages_of(&id).await?;
    let texts = visitor_texts(&stored);
    ensure!(texts.len() == 1, "{stored:?}");
    ensure!(
        texts[0].contains("The box arrived crushed") && texts[0].contains("refused"),
        "{texts:?}"
    );
    // The relay's retry must not bring a second refusal: give it time to.
    tokio::time::sleep(Duration::from_secs(2)).await;
    if inbox(&mail)?
        .iter()
        .filter(|m| m.text.contains("could not accept"))
        .count()
        != 1
    {
        bail!("the refusal was sent more than once");
    }
    Ok(())
}
