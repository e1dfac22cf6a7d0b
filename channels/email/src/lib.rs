//! The email channel: IMAP (or a relay's HTTP POST) in, SMTP out.
//!
//! - [`parse`] reads raw MIME (pure): text and HTML, any charset, quotes and
//!   signatures cut, attachments as metadata, threading headers, and whether
//!   the mail is automated (an auto-reply, a bounce, bulk mail).
//! - [`compose`] builds Baton's mail (pure): `<baton.<conversation>.<seq>@…>`
//!   Message-IDs, In-Reply-To/References, `Re:` subjects, a reply token in
//!   Reply-To, text and HTML alternatives, "Alice via Acme Support".
//! - [`imap`] is the receive loop: TLS or STARTTLS, IDLE with a polling
//!   fallback, and a cursor (UIDVALIDITY and the last UID) kept across
//!   restarts so that no mail is skipped or taken twice.
//! - `POST /api/v1/channels/email/inbound` takes raw MIME from a mail relay,
//!   with `Authorization: Bearer $BATON_EMAIL_INBOUND_TOKEN`.
//!
//! A mail finds its conversation by our own Message-ID in In-Reply-To or
//! References, then by any earlier mail's id of the thread, then by the reply
//! token among its recipients; otherwise it starts one. Automated mail is
//! stored but never answered (the runtime's `no_reply`), so no mail loop can
//! start; mail from the support address itself is dropped.
//!
//! Architecture invariant: like every channel, this crate never decides who
//! may speak; the runtime does, before anything reaches [`Channel::deliver`].

pub mod compose;
pub mod imap;
pub mod parse;

use async_trait::async_trait;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use baton_channel::{
    Backoff, Channel, Delivered, Error, Inbound, InboundSender, Ingest, Outbound, RawInbound,
    Result, error_response, same_secret,
};
use baton_model::ChannelKind;
use compose::{Letter, Sender, Thread};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tracing::{info, warn};

/// The SMTP password, when the server wants one.
pub const SMTP_PASSWORD_ENV: &str = "BATON_SMTP_PASSWORD";
/// The IMAP password (needed with `[channels.email.imap]`).
pub const IMAP_PASSWORD_ENV: &str = "BATON_IMAP_PASSWORD";
/// The token a mail relay sends to the inbound endpoint; without it the endpoint is off.
pub const INBOUND_TOKEN_ENV: &str = "BATON_EMAIL_INBOUND_TOKEN";

/// The longest text kept from one mail (after quotes are cut).
const MAX_TEXT_BYTES: usize = 48 * 1024;
/// The largest raw mail taken (the inbound endpoint's body limit, IMAP's size check).
pub const MAX_MAIL_BYTES: usize = 40 * 1024 * 1024;
/// The most ancestors (In-Reply-To, References) a mail is threaded by.
const MAX_ANCESTORS: usize = 20;
/// SMTP tries per message before delivery gives up.
const SMTP_ATTEMPTS: u32 = 4;

/// How a connection is secured.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (SMTP 587, IMAP 143).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS 465, IMAPS 993).
    Tls,
    /// No TLS at all: only for a relay on the same machine.
    None,
}

/// `[channels.email.smtp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    /// Defaults: 587 (STARTTLS), 465 (TLS), 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    /// Defaults to the support address; with no `BATON_SMTP_PASSWORD` there is no AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// A PEM file with the CA (or the self-signed certificate) to trust besides the usual roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[channels.email.imap]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    pub host: String,
    /// Defaults: 143 (STARTTLS, none), 993 (TLS).
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default)]
    pub security: Security,
    /// Defaults to the support address.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default = "default_mailbox")]
    pub mailbox: String,
    /// Wait with IMAP IDLE when the server offers it; otherwise poll.
    #[serde(default = "default_true")]
    pub idle: bool,
    /// How often to look for new mail without IDLE.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_mailbox() -> String {
    "INBOX".into()
}
fn default_true() -> bool {
    true
}
fn default_poll() -> u64 {
    60
}
fn default_name() -> String {
    "Support".into()
}
fn default_max_attachment_mb() -> u64 {
    10
}

/// `[channels.email]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The support address: customers write to it, Baton's mail comes from it.
    pub address: String,
    /// The team's name, as in "Alice via Acme Support".
    #[serde(default = "default_name")]
    pub name: String,
    /// Replies go to `local+c-<conversation>@domain` (needs plus-addressing
    /// at the mail server); off, they go to the address itself and thread by
    /// their headers only.
    #[serde(default = "default_true")]
    pub reply_token: bool,
    /// Attachments larger than this are refused with a polite note.
    #[serde(default = "default_max_attachment_mb")]
    pub max_attachment_mb: u64,
    pub smtp: SmtpConfig,
    /// Without it, mail comes in through the inbound endpoint only.
    #[serde(default)]
    pub imap: Option<ImapConfig>,
}

/// What became of one inbound mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    Stored {
        conversation_id: String,
        duplicate: bool,
        automated: Option<parse::Automated>,
    },
    /// Not stored, and why (mail from the support address itself).
    Ignored(String),
}

/// The channel. Cheap to clone.
#[derive(Clone)]
pub struct EmailChannel {
    inner: Arc<Inner>,
}

struct Inner {
    config: EmailConfig,
    sender: Sender,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    imap_password: Option<String>,
    inbound_token: Option<String>,
    /// The runtime, once the node serves (routes) or receives (run): thread
    /// bookkeeping for outgoing mail.
    ingest: OnceLock<Arc<dyn Ingest>>,
}

fn read_ca(path: &std::path::Path, table: &str) -> std::result::Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| {
        format!(
            "[channels.email.{table}] ca_file `{}` cannot be read: {e}",
            path.display()
        )
    })
}

fn smtp_transport(
    config: &SmtpConfig,
    username: &str,
    password: Option<String>,
) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let port = config.port.unwrap_or(match config.security {
        Security::Starttls => 587,
        Security::Tls => 465,
        Security::None => 25,
    });
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
        .port(port)
        .timeout(Some(Duration::from_secs(30)));
    if config.security != Security::None {
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(path) = &config.ca_file {
            let pem = read_ca(path, "smtp")?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| format!("[channels.email.smtp] ca_file: {e}"))?;
            tls = tls.add_root_certificate(cert);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("[channels.email.smtp]: TLS: {e}"))?;
        builder = builder.tls(match config.security {
            Security::Tls => Tls::Wrapper(tls),
            _ => Tls::Required(tls),
        });
    }
    if let Some(password) = password {
        builder = builder.credentials(Credentials::new(username.to_owned(), password));
    }
    Ok(builder.build())
}

fn valid_address(a: &str) -> bool {
    a.parse::<lettre::Address>().is_ok()
}

impl EmailChannel {
    /// Reads `[channels.email]` and the passwords from `env`; says what is
    /// missing or wrong in one sentence.
    pub fn from_config(
        table: &toml::Table,
        env: impl Fn(&str) -> Option<String>,
    ) -> std::result::Result<Self, String> {
        let config: EmailConfig = table
            .clone()
            .try_into()
            .map_err(|e| format!("[channels.email]: {e}"))?;
        let address = config.address.trim().to_lowercase();
        if !valid_address(&address) {
            return Err(format!(
                "[channels.email] address `{}` is not an email address",
                config.address
            ));
        }
        if config.name.trim().is_empty() {
            return Err("[channels.email] name must not be empty".into());
        }
        if config.smtp.host.trim().is_empty() {
            return Err("[channels.email.smtp] host must not be empty".into());
        }
        if let Some(path) = &config.smtp.ca_file {
            read_ca(path, "smtp")?;
        }
        let secret = |k: &str| env(k).filter(|v| !v.is_empty());
        let smtp_user = config.smtp.username.clone().unwrap_or(address.clone());
        let smtp = smtp_transport(&config.smtp, &smtp_user, secret(SMTP_PASSWORD_ENV))?;
        let imap_password = match &config.imap {
            Some(imap) => {
                if imap.host.trim().is_empty() {
                    return Err("[channels.email.imap] host must not be empty".into());
                }
                if imap.poll_seconds == 0 {
                    return Err("[channels.email.imap] poll_seconds must be at least 1".into());
                }
                if let Some(path) = &imap.ca_file {
                    read_ca(path, "imap")?;
                }
                Some(secret(IMAP_PASSWORD_ENV).ok_or_else(|| {
                    format!("[channels.email.imap] needs the password in {IMAP_PASSWORD_ENV}")
                })?)
            }
            None => None,
        };
        let sender = Sender {
            name: config.name.trim().to_owned(),
            address,
            reply_token: config.reply_token,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                sender,
                smtp,
                imap_password,
                inbound_token: secret(INBOUND_TOKEN_ENV),
                ingest: OnceLock::new(),
                config,
            }),
        })
    }

    pub fn config(&self) -> &EmailConfig {
        &self.inner.config
    }

    pub fn sender(&self) -> &Sender {
        &self.inner.sender
    }

    fn max_attachment(&self) -> u64 {
        self.inner
            .config
            .max_attachment_mb
            .saturating_mul(1024 * 1024)
    }

    fn remember(&self, ingest: &Arc<dyn Ingest>) {
        let _ = self.inner.ingest.set(ingest.clone());
    }

    /// Takes one raw mail: finds or starts its conversation, stores it once,
    /// and tells the customer about refused attachments.
    pub async fn receive(&self, ingest: &Arc<dyn Ingest>, raw: &[u8]) -> Result<Received> {
        let mail = parse::parse(raw, self.max_attachment()).map_err(|reason| Error::Malformed {
            channel: ChannelKind::Email,
            reason,
        })?;
        let Some(from) = mail.from.clone() else {
            return Err(Error::Malformed {
                channel: ChannelKind::Email,
                reason: "the mail has no From address".into(),
            });
        };
        if self.inner.sender.is_self(&from.address) {
            return Ok(Received::Ignored(
                "mail from the support address itself".into(),
            ));
        }
        let conversation_id = self.thread_of(ingest, &mail).await?;
        let mut inbound = inbound_of(
            &mail,
            raw,
            conversation_id.is_none(),
            self.inner.config.max_attachment_mb,
        );
        inbound.conversation_id = conversation_id;
        let message_id = inbound.channel_message_id.clone().unwrap_or_default();
        if inbound.conversation_id.is_none() && !mail.subject.is_empty() {
            // A new thread: its subject, for the `Re:` of every answer. Kept
            // before the mail is stored, as the bot may answer at once.
            ingest
                .set_state(
                    ChannelKind::Email,
                    &format!("subject:{message_id}"),
                    &mail.subject,
                )
                .await?;
        }
        let ingested = ingest.ingest(inbound).await?;
        let conv_id = ingested.conversation.id.clone();
        // Later mails of the thread may name this one only.
        ingest
            .set_state(ChannelKind::Email, &format!("msg:{message_id}"), &conv_id)
            .await?;
        if !ingested.duplicate && mail.automated.is_none() && !mail.refused.is_empty() {
            ingest
                .notice(
                    &conv_id,
                    &refusal_notice(&mail.refused, self.inner.config.max_attachment_mb),
                )
                .await?;
        }
        info!(conversation_id = %conv_id, duplicate = ingested.duplicate, automated = ?mail.automated, "mail received");
        Ok(Received::Stored {
            conversation_id: conv_id,
            duplicate: ingested.duplicate,
            automated: mail.automated,
        })
    }

    /// The conversation a mail answers, if any: our Message-ID in its
    /// ancestors, an earlier mail of the thread, or the reply token.
    async fn thread_of(
        &self,
        ingest: &Arc<dyn Ingest>,
        mail: &parse::Mail,
    ) -> Result<Option<String>> {
        let sender = &self.inner.sender;
        let mut candidates: Vec<String> = vec![];
        // The nearest ones are enough; a crafted References header with
        // thousands of ids must not cost thousands of lookups.
        for id in mail.ancestors().into_iter().take(MAX_ANCESTORS) {
            if let Some(conv) = sender.conversation_of_id(&id) {
                candidates.push(conv.to_owned());
            } else if let Some(conv) = ingest
                .state(ChannelKind::Email, &format!("msg:{id}"))
                .await?
            {
                candidates.push(conv);
            }
        }
        // A repeat of a mail already taken belongs where it went the first time.
        if let Some(id) = &mail.message_id
            && let Some(conv) = ingest
                .state(ChannelKind::Email, &format!("msg:{id}"))
                .await?
        {
            candidates.insert(0, conv);
        }
        candidates.extend(
            mail.recipients
                .iter()
                .filter_map(|r| sender.conversation_of_recipient(r))
                .map(str::to_owned),
        );
        let from = mail.from.as_ref().map(|f| f.address.as_str());
        for conv in candidates {
            if let Some(c) = ingest.conversation(&conv).await?
                && c.accepts_mail_from(from)
            {
                return Ok(Some(conv));
            }
        }
        Ok(None)
    }

    async fn send(&self, mail: lettre::Message) -> Result<()> {
        let mut backoff = Backoff::default();
        let mut attempt = 1;
        loop {
            match self.inner.smtp.send(mail.clone()).await {
                Ok(_) => return Ok(()),
                // A permanent refusal (5xx): trying again changes nothing.
                Err(e) if e.is_permanent() => {
                    return Err(Error::Rejected {
                        channel: ChannelKind::Email,
                        reason: smtp_reason(&e),
                    });
                }
                Err(e) if attempt >= SMTP_ATTEMPTS => {
                    return Err(Error::Delivery {
                        channel: ChannelKind::Email,
                        reason: smtp_reason(&e),
                        retry_after: None,
                    });
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    warn!(error = %smtp_reason(&e), attempt, ?wait, "SMTP send failed; trying again");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
            }
        }
    }
}

fn smtp_reason(e: &lettre::transport::smtp::Error) -> String {
    use std::error::Error as _;
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        reason.push_str(": ");
        reason.push_str(&s.to_string());
        source = s.source();
    }
    reason
}

/// What an answer needs to join the customer's thread: the subject of the
/// first mail (the conversation's thread key) and the ids of the customer's
/// latest mails, oldest first, the first mail in front.
async fn thread(ingest: &dyn Ingest, conv: &baton_model::Conversation) -> Result<Thread> {
    let mut thread = Thread::default();
    if let Some(root) = conv
        .thread_key
        .as_deref()
        .filter(|_| conv.channel == ChannelKind::Email)
    {
        thread.subject = ingest
            .state(ChannelKind::Email, &format!("subject:{root}"))
            .await?;
        thread.push(root);
    }
    let recent = ingest.recent_messages(&conv.id, 40).await?;
    for m in recent
        .iter()
        .filter(|m| m.sender == baton_model::SenderKind::Visitor)
    {
        if let Some(id) = &m.channel_message_id {
            thread.push(id);
        }
    }
    Ok(thread)
}

/// "We could not accept report.pdf (12.0 MB): …".
fn refusal_notice(refused: &[parse::Refused], limit_mb: u64) -> String {
    let names: Vec<String> = refused.iter().map(|r| r.describe()).collect();
    format!(
        "We could not accept {} — attachments can be at most {limit_mb} MB. \
         Please send a smaller file or a link to it; the rest of your message reached us.",
        names.join(", ")
    )
}

/// A short stable id for a mail without a Message-ID (FNV-1a of its bytes).
fn content_id(raw: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in raw {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("no-message-id.{h:016x}")
}

/// Cuts `text` to at most `max` bytes at a character boundary.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n[…] (shortened: the mail's text was longer)",
        &text[..end]
    )
}

/// The runtime's view of a mail. `first` when it starts a conversation: the
/// subject goes in front of the text, as the question is often there.
fn inbound_of(mail: &parse::Mail, raw: &[u8], first: bool, limit_mb: u64) -> Inbound {
    let from = mail.from.clone().unwrap_or(parse::Mailbox {
        name: None,
        address: String::new(),
    });
    let mut text = mail.text.trim().to_owned();
    if first && !mail.subject.is_empty() && !text.starts_with(&mail.subject) {
        text = if text.is_empty() {
            mail.subject.clone()
        } else {
            format!("{}\n\n{text}", mail.subject)
        };
    }
    for r in &mail.refused {
        text.push_str(&format!(
            "\n[attachment {} refused: over {limit_mb} MB]",
            r.describe()
        ));
    }
    if let Some(kind) = mail.automated {
        text = format!("[{}] {text}", kind.as_str());
    }
    if text.trim().is_empty() && mail.attachments.is_empty() {
        text = "(an empty mail)".into();
    }
    let message_id = mail.message_id.clone().unwrap_or_else(|| content_id(raw));
    Inbound {
        channel: ChannelKind::Email,
        conversation_id: None,
        thread_key: message_id.clone(),
        sender: InboundSender {
            external_id: from.address.clone(),
            name: from.name.clone(),
            email: Some(from.address.clone()),
        },
        text: shorten(&text, MAX_TEXT_BYTES),
        attachments: mail.attachments.clone(),
        action: None,
        client_id: None,
        channel_message_id: Some(message_id),
        no_reply: mail.automated.is_some(),
    }
}

#[derive(Clone)]
struct Hook {
    channel: EmailChannel,
    ingest: Arc<dyn Ingest>,
}

/// `POST /api/v1/channels/email/inbound`: one raw mail from a relay.
async fn inbound(
    State(hook): State<Hook>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = &hook.channel.inner.inbound_token else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the inbound endpoint is off: set {INBOUND_TOKEN_ENV} to switch it on"),
        );
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !same_secret(given.trim().as_bytes(), token.as_bytes()) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid inbound token is required (Authorization: Bearer <token>)",
        );
    }
    if body.is_empty() {
        return error_response(
            StatusCode::BAD_REQUEST,
            "invalid",
            "the body must be one raw MIME message",
        );
    }
    match hook.channel.receive(&hook.ingest, &body).await {
        Ok(Received::Stored {
            conversation_id,
            duplicate,
            automated,
        }) => (
            if duplicate {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            axum::Json(serde_json::json!({
                "conversation_id": conversation_id,
                "duplicate": duplicate,
                "automated": automated.map(|a| a.as_str()),
            })),
        )
            .into_response(),
        Ok(Received::Ignored(reason)) => (
            StatusCode::ACCEPTED,
            axum::Json(serde_json::json!({"ignored": reason})),
        )
            .into_response(),
        Err(Error::Malformed { reason, .. }) => {
            error_response(StatusCode::BAD_REQUEST, "invalid", reason)
        }
        // Sending it again would change nothing.
        Err(Error::Refused(reason)) => {
            error_response(StatusCode::UNPROCESSABLE_ENTITY, "refused", reason)
        }
        Err(e) => {
            warn!(error = %e, "inbound mail not stored");
            error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the mail was not stored, send it again: {e}"),
            )
        }
    }
}

#[async_trait]
impl Channel for EmailChannel {
    fn kind(&self) -> ChannelKind {
        ChannelKind::Email
    }

    fn normalize(&self, raw: &RawInbound) -> Result<Vec<Inbound>> {
        let mail =
            parse::parse(&raw.body, self.max_attachment()).map_err(|reason| Error::Malformed {
                channel: ChannelKind::Email,
                reason,
            })?;
        if mail
            .from
            .as_ref()
            .is_some_and(|f| self.inner.sender.is_self(&f.address))
        {
            return Ok(vec![]);
        }
        Ok(vec![inbound_of(
            &mail,
            &raw.body,
            true,
            self.inner.config.max_attachment_mb,
        )])
    }

    async fn deliver(&self, out: Outbound<'_>) -> Result<Delivered> {
        let conv = out.conversation;
        let Some(address) = conv.contact.email.as_deref() else {
            return Err(Error::Rejected {
                channel: ChannelKind::Email,
                reason: "the contact has no email address".into(),
            });
        };
        let to = address.parse().map_err(|e| Error::Rejected {
            channel: ChannelKind::Email,
            reason: format!("`{address}` is not an address: {e}"),
        })?;
        let to = lettre::message::Mailbox::new(conv.contact.name.clone(), to);
        let thread = match self.inner.ingest.get() {
            Some(ingest) => thread(ingest.as_ref(), conv).await?,
            None => Thread::default(),
        };
        let mail = compose::compose(&Letter {
            sender: &self.inner.sender,
            conversation_id: &conv.id,
            to,
            thread: &thread,
            message: out.message,
        })
        .map_err(|reason| Error::Delivery {
            channel: ChannelKind::Email,
            reason,
            retry_after: None,
        })?;
        self.send(mail).await?;
        Ok(Delivered::Sent {
            platform_id: Some(self.inner.sender.message_id(&conv.id, out.message.seq)),
        })
    }

    fn routes(&self, ingest: Arc<dyn Ingest>) -> Option<axum::Router> {
        self.remember(&ingest);
        Some(
            axum::Router::new()
                .route("/inbound", post(inbound))
                .layer(axum::extract::DefaultBodyLimit::max(MAX_MAIL_BYTES))
                .with_state(Hook {
                    channel: self.clone(),
                    ingest,
                }),
        )
    }

    async fn run(&self, ingest: Arc<dyn Ingest>) -> Result<()> {
        self.remember(&ingest);
        let (Some(config), Some(password)) = (
            self.inner.config.imap.clone(),
            self.inner.imap_password.clone(),
        ) else {
            // Mail comes in through the inbound endpoint only.
            return Ok(());
        };
        let username = config
            .username
            .clone()
            .unwrap_or_else(|| self.inner.sender.address.clone());
        imap::Receiver::new(self.clone(), config, username, password)
            .run(ingest)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_at_a_character() {
        let t = "é".repeat(10);
        let s = shorten(&t, 5);
        assert!(s.starts_with("éé\n[…]"), "{s}");
        assert_eq!(shorten("short", 10), "short");
    }

    #[test]
    fn a_refusal_names_the_file_and_the_limit() {
        let n = refusal_notice(
            &[parse::Refused {
                name: "scan.pdf".into(),
                size: 12 * 1024 * 1024,
            }],
            10,
        );
        assert!(
            n.contains("scan.pdf (12.0 MB)") && n.contains("10 MB"),
            "{n}"
        );
    }

    #[test]
    fn mail_without_an_id_gets_a_stable_one() {
        assert_eq!(content_id(b"abc"), content_id(b"abc"));
        assert_ne!(content_id(b"abc"), content_id(b"abd"));
    }
}
