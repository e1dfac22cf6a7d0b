//! Baton's outgoing mail, and the ids that thread it. Pure: no IO.
//!
//! Every mail Baton sends has the Message-ID `<baton.<conversation>.<seq>@<domain>>`,
//! so a reply's In-Reply-To or References names its conversation without any
//! lookup. Each mail also carries In-Reply-To/References to the customer's
//! latest mail (or to `<baton.<conversation>.0@<domain>>`, a thread root that
//! stands for a conversation that did not start by mail), a `Re:` subject, a
//! Reply-To with the conversation's reply token (`support+c-<conversation>@…`)
//! for clients that drop the headers, and a text and an HTML alternative.
//! Mail written by the bot carries `Auto-Submitted: auto-replied`
//! (RFC 3834), so that well-behaved autoresponders never answer it.

use baton_model::{ActionKind, Message, SenderKind};
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

/// The support mailbox, as the channel knows it.
#[derive(Clone, Debug)]
pub struct Sender {
    /// "Acme Support".
    pub name: String,
    /// `support@example.com`, lower-cased.
    pub address: String,
    /// Whether replies go to the plus-addressed reply token.
    pub reply_token: bool,
}

impl Sender {
    fn local_and_domain(&self) -> (&str, &str) {
        self.address
            .rsplit_once('@')
            .unwrap_or((self.address.as_str(), "localhost"))
    }

    pub fn domain(&self) -> &str {
        self.local_and_domain().1
    }

    /// The Message-ID (without `<>`) of a conversation's message.
    pub fn message_id(&self, conversation_id: &str, seq: i64) -> String {
        format!("baton.{conversation_id}.{seq}@{}", self.domain())
    }

    /// The conversation one of our own Message-IDs belongs to.
    pub fn conversation_of_id<'a>(&self, id: &'a str) -> Option<&'a str> {
        let (left, domain) = id.rsplit_once('@')?;
        if !domain.eq_ignore_ascii_case(self.domain()) {
            return None;
        }
        let (conversation, seq) = left.strip_prefix("baton.")?.rsplit_once('.')?;
        let ok = !conversation.is_empty()
            && conversation.chars().all(|c| c.is_ascii_alphanumeric())
            && seq.parse::<i64>().is_ok();
        ok.then_some(conversation)
    }

    /// The plus-address that routes a reply to its conversation.
    pub fn reply_address(&self, conversation_id: &str) -> String {
        let (local, domain) = self.local_and_domain();
        format!("{local}+c-{conversation_id}@{domain}")
    }

    /// The conversation named by a reply token among the recipients.
    pub fn conversation_of_recipient<'a>(&self, address: &'a str) -> Option<&'a str> {
        let (local, domain) = self.local_and_domain();
        let (rcpt_local, rcpt_domain) = address.rsplit_once('@')?;
        if !rcpt_domain.eq_ignore_ascii_case(domain) {
            return None;
        }
        let conversation = rcpt_local
            .strip_prefix(local)?
            .strip_prefix("+c-")
            .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_alphanumeric()))?;
        Some(conversation)
    }

    /// Whether an address is the support mailbox itself (or one of its tokens).
    pub fn is_self(&self, address: &str) -> bool {
        let (local, domain) = self.local_and_domain();
        let Some((a_local, a_domain)) = address.rsplit_once('@') else {
            return false;
        };
        a_domain.eq_ignore_ascii_case(domain)
            && (a_local.eq_ignore_ascii_case(local)
                || a_local
                    .to_lowercase()
                    .starts_with(&format!("{}+", local.to_lowercase())))
    }
}

/// What a thread needs to stay one thread in the customer's mail client.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Thread {
    /// The subject of the customer's first mail (no `Re:` added yet).
    pub subject: Option<String>,
    /// Ids of the customer's mails in this thread, oldest first (without `<>`).
    pub references: Vec<String>,
}

/// The most ids a References header carries: the first and the latest ones.
pub const MAX_REFERENCES: usize = 10;

impl Thread {
    /// Adds a mail's id, keeping the first and the latest ones.
    pub fn push(&mut self, id: &str) {
        if self.references.iter().any(|r| r == id) {
            return;
        }
        self.references.push(id.to_owned());
        if self.references.len() > MAX_REFERENCES {
            self.references.remove(1);
        }
    }
}

/// One outgoing mail.
#[derive(Clone, Debug)]
pub struct Letter<'a> {
    pub sender: &'a Sender,
    pub conversation_id: &'a str,
    pub to: Mailbox,
    pub thread: &'a Thread,
    pub message: &'a Message,
}

/// `Re: <subject>`, without piling up `Re: Re:`.
pub fn reply_subject(subject: Option<&str>, team: &str) -> String {
    match subject.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.to_lowercase().starts_with("re:") => s.to_owned(),
        Some(s) => format!("Re: {s}"),
        None => format!("Your conversation with {team}"),
    }
}

/// The text of a message as mail: the text, then its buttons as lines a
/// reader can act on (a link, "reply with …").
pub fn body_text(message: &Message) -> String {
    let mut out = message.text.trim_end().to_owned();
    let mut lines = vec![];
    for action in &message.actions {
        match action.kind {
            ActionKind::Link => lines.push(format!(
                "{}: {}",
                action.label,
                action.url.as_deref().unwrap_or("")
            )),
            ActionKind::Reply => lines.push(format!("Reply \u{201c}{}\u{201d}", action.label)),
            ActionKind::RequestHuman => {
                lines.push("To talk to a person, reply \u{201c}talk to a human\u{201d}.".to_owned())
            }
        }
    }
    for attachment in &message.attachments {
        match &attachment.url {
            Some(url) => lines.push(format!("Attachment {}: {url}", attachment.name)),
            None => lines.push(format!("Attachment: {}", attachment.name)),
        }
    }
    if !lines.is_empty() {
        out.push_str("\n\n");
        out.push_str(&lines.join("\n"));
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML alternative: the same text, paragraphs kept, links clickable.
pub fn body_html(message: &Message) -> String {
    let mut html = String::from("<!DOCTYPE html><html><body>");
    for para in message.text.trim_end().split("\n\n") {
        html.push_str("<p>");
        html.push_str(&escape(para).replace('\n', "<br>"));
        html.push_str("</p>");
    }
    let mut items = vec![];
    for action in &message.actions {
        match action.kind {
            ActionKind::Link => items.push(format!(
                "<a href=\"{}\">{}</a>",
                escape(action.url.as_deref().unwrap_or("")),
                escape(&action.label)
            )),
            ActionKind::Reply => {
                items.push(format!("Reply \u{201c}{}\u{201d}", escape(&action.label)))
            }
            ActionKind::RequestHuman => {
                items.push("To talk to a person, reply \u{201c}talk to a human\u{201d}.".to_owned())
            }
        }
    }
    for attachment in &message.attachments {
        match &attachment.url {
            Some(url) => items.push(format!(
                "<a href=\"{}\">{}</a>",
                escape(url),
                escape(&attachment.name)
            )),
            None => items.push(escape(&attachment.name)),
        }
    }
    if !items.is_empty() {
        html.push_str("<ul>");
        for item in items {
            html.push_str(&format!("<li>{item}</li>"));
        }
        html.push_str("</ul>");
    }
    html.push_str("</body></html>");
    html
}

/// The display name of the From: "Alice via Acme Support" for an agent, the
/// team's name for the bot and the system.
pub fn from_name(sender: &Sender, message: &Message) -> String {
    match (&message.sender, &message.author) {
        (SenderKind::Agent, Some(author)) if !author.name.trim().is_empty() => {
            format!("{} via {}", author.name.trim(), sender.name)
        }
        _ => sender.name.clone(),
    }
}

/// Builds the mail.
pub fn compose(letter: &Letter<'_>) -> Result<lettre::Message, String> {
    let sender = letter.sender;
    let message = letter.message;
    let address = sender
        .address
        .parse()
        .map_err(|e| format!("the support address `{}`: {e}", sender.address))?;
    let from = Mailbox::new(Some(from_name(sender, message)), address);
    let own_id = sender.message_id(letter.conversation_id, message.seq);
    let mut references: Vec<String> = vec![];
    if letter.thread.references.is_empty() {
        references.push(sender.message_id(letter.conversation_id, 0));
    } else {
        references.extend(letter.thread.references.iter().cloned());
    }
    let parent = references.last().cloned().unwrap_or_default();
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(letter.to.clone())
        .subject(reply_subject(
            letter.thread.subject.as_deref(),
            &sender.name,
        ))
        .message_id(Some(format!("<{own_id}>")))
        .in_reply_to(format!("<{parent}>"))
        .references(
            references
                .iter()
                .map(|r| format!("<{r}>"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    if sender.reply_token {
        let reply_to = sender
            .reply_address(letter.conversation_id)
            .parse()
            .map_err(|e| format!("the reply address: {e}"))?;
        builder = builder.reply_to(Mailbox::new(Some(sender.name.clone()), reply_to));
    }
    let mut mail = builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(body_text(message)),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(body_html(message)),
                ),
        )
        .map_err(|e| format!("cannot build the mail: {e}"))?;
    if message.sender != SenderKind::Agent {
        let headers = mail.headers_mut();
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".to_owned(),
        ));
        headers.insert_raw(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Auto-Response-Suppress"),
            "All".to_owned(),
        ));
    }
    Ok(mail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_model::{Action, AgentRef, Timestamp};

    fn sender() -> Sender {
        Sender {
            name: "Acme Support".into(),
            address: "support@example.test".into(),
            reply_token: true,
        }
    }

    fn message(sender: SenderKind, text: &str) -> Message {
        Message {
            id: "m1".into(),
            conversation_id: "c0ffee".into(),
            seq: 7,
            sender,
            author: (sender == SenderKind::Agent).then(|| AgentRef {
                id: "u1".into(),
                name: "Alice".into(),
            }),
            text: text.into(),
            internal: false,
            actions: vec![],
            attachments: vec![],
            client_id: None,
            channel_message_id: None,
            created_at: Timestamp::from_millis(0),
        }
    }

    #[test]
    fn our_ids_and_tokens_name_their_conversation() {
        let s = sender();
        let id = s.message_id("0194abc", 3);
        assert_eq!(id, "baton.0194abc.3@example.test");
        assert_eq!(s.conversation_of_id(&id), Some("0194abc"));
        assert_eq!(s.conversation_of_id("baton.0194abc.3@elsewhere.test"), None);
        assert_eq!(s.conversation_of_id("CAF=abc@mail.gmail.com"), None);
        assert_eq!(s.conversation_of_id("baton.x y.3@example.test"), None);
        let token = s.reply_address("0194abc");
        assert_eq!(token, "support+c-0194abc@example.test");
        assert_eq!(s.conversation_of_recipient(&token), Some("0194abc"));
        assert_eq!(s.conversation_of_recipient("support@example.test"), None);
        assert_eq!(
            s.conversation_of_recipient("sales+c-0194abc@example.test"),
            None
        );
        assert!(s.is_self("Support@Example.test"));
        assert!(s.is_self("support+c-1@example.test"));
        assert!(!s.is_self("supporter@example.test"));
    }

    #[test]
    fn subjects_get_one_re() {
        assert_eq!(
            reply_subject(Some("Printer on fire"), "Acme"),
            "Re: Printer on fire"
        );
        assert_eq!(reply_subject(Some("RE: Printer"), "Acme"), "RE: Printer");
        assert_eq!(reply_subject(None, "Acme"), "Your conversation with Acme");
    }

    #[test]
    fn references_keep_the_first_and_the_latest() {
        let mut t = Thread::default();
        for i in 0..15 {
            t.push(&format!("id{i}"));
        }
        t.push("id14");
        assert_eq!(t.references.len(), MAX_REFERENCES);
        assert_eq!(t.references[0], "id0");
        assert_eq!(t.references.last().unwrap(), "id14");
    }

    #[test]
    fn an_agent_mail_threads_and_carries_the_agents_name() {
        let s = sender();
        let thread = Thread {
            subject: Some("Printer on fire".into()),
            references: vec!["first@customer.test".into(), "second@customer.test".into()],
        };
        let msg = message(SenderKind::Agent, "Hi <Bob>, & welcome");
        let mail = compose(&Letter {
            sender: &s,
            conversation_id: "c0ffee",
            to: "Bob <bob@customer.test>".parse().unwrap(),
            thread: &thread,
            message: &msg,
        })
        .unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert!(
            raw.contains("From: \"Alice via Acme Support\" <support@example.test>"),
            "{raw}"
        );
        assert!(raw.contains("Subject: Re: Printer on fire"), "{raw}");
        assert!(
            raw.contains("Message-ID: <baton.c0ffee.7@example.test>"),
            "{raw}"
        );
        assert!(raw.contains("In-Reply-To: <second@customer.test>"), "{raw}");
        assert!(
            raw.contains("References: <first@customer.test> <second@customer.test>"),
            "{raw}"
        );
        assert!(raw.contains("support+c-c0ffee@example.test"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("Hi &lt;Bob&gt;, &amp; welcome"), "{raw}");
        assert!(!raw.contains("Auto-Submitted"), "{raw}");
    }

    #[test]
    fn a_bot_mail_is_marked_automatic_and_spells_out_its_buttons() {
        let s = sender();
        let mut msg = message(SenderKind::Bot, "Here is how.");
        msg.actions = vec![
            Action {
                id: "docs".into(),
                label: "Read the docs".into(),
                kind: ActionKind::Link,
                url: Some("https://docs.example.test".into()),
            },
            Action {
                id: "request_human".into(),
                label: "Talk to a human".into(),
                kind: ActionKind::RequestHuman,
                url: None,
            },
        ];
        let text = body_text(&msg);
        assert!(text.contains("Read the docs: https://docs.example.test"));
        assert!(text.contains("talk to a human"));
        let mail = compose(&Letter {
            sender: &s,
            conversation_id: "c0ffee",
            to: "bob@customer.test".parse().unwrap(),
            thread: &Thread::default(),
            message: &msg,
        })
        .unwrap();
        let raw = String::from_utf8(mail.formatted()).unwrap();
        assert!(raw.contains("Auto-Submitted: auto-replied"), "{raw}");
        assert!(
            raw.contains("From: \"Acme Support\" <support@example.test>"),
            "{raw}"
        );
        // A conversation that did not start by mail gets a stand-in root.
        assert!(
            raw.contains("In-Reply-To: <baton.c0ffee.0@example.test>"),
            "{raw}"
        );
        assert!(
            raw.contains("Subject: Your conversation with Acme Support"),
            "{raw}"
        );
    }
}
