//! Raw MIME → what a support conversation needs. Pure: no IO.
//!
//! - Text and HTML parts (HTML turned into text when there is no text part),
//!   any charset mail-parser knows (with `full_encoding`, all of WHATWG's).
//! - The quoted history and the signature are cut from a reply: "On … wrote:"
//!   (Gmail, Apple Mail, Thunderbird and their translations), Outlook's
//!   "-----Original Message-----" and "From: … Sent: …" blocks, trailing
//!   `>` lines, the `-- ` separator and "Sent from my iPhone".
//! - Threading headers (Message-ID, In-Reply-To, References) without `<>`.
//! - Attachments as metadata; those over the limit are listed as refused.
//! - Mail that must never be answered (auto-replies, bounces, bulk and list
//!   mail) is recognised, so that no mail loop can start.

use baton_model::Attachment;
use mail_parser::{Address, HeaderValue, MessageParser, MimeHeaders};

/// Why a mail must not be answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Automated {
    /// An out-of-office or other automatic answer (`Auto-Submitted`, `X-Autoreply`, …).
    AutoReply,
    /// A delivery status notification (mailer-daemon, `multipart/report`, an empty return path).
    Bounce,
    /// Bulk or list mail (`Precedence: bulk|list|junk`, `List-Id`, `List-Unsubscribe`).
    Bulk,
}

impl Automated {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AutoReply => "auto-reply",
            Self::Bounce => "bounce",
            Self::Bulk => "bulk",
        }
    }
}

/// One person's address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    /// Lower-cased.
    pub address: String,
}

/// An attachment that was not kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub name: String,
    pub size: u64,
}

impl Refused {
    /// "scan.pdf (12.0 MB)".
    pub fn describe(&self) -> String {
        format!(
            "{} ({:.1} MB)",
            self.name,
            self.size as f64 / (1024.0 * 1024.0)
        )
    }
}

/// A parsed mail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// Message-ID without the angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from: Option<Mailbox>,
    pub reply_to: Option<Mailbox>,
    /// To, Cc and Delivered-To addresses (a reply token may hide in one).
    pub recipients: Vec<String>,
    pub subject: String,
    /// The new text of the mail: quotes and signature cut.
    pub text: String,
    /// Kept attachments (metadata only).
    pub attachments: Vec<Attachment>,
    /// Attachments over the size limit.
    pub refused: Vec<Refused>,
    pub automated: Option<Automated>,
}

impl Mail {
    /// Every id this mail points back to, nearest first: In-Reply-To, then
    /// References from the newest.
    pub fn ancestors(&self) -> Vec<String> {
        let mut out = self.in_reply_to.clone();
        for r in self.references.iter().rev() {
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        out
    }
}

/// Parses raw MIME. `max_attachment` bytes is the largest attachment kept.
pub fn parse(raw: &[u8], max_attachment: u64) -> Result<Mail, String> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or("not a mail message")?;
    // A message with no header at all is not mail (mail-parser accepts any bytes).
    if message.headers().is_empty() {
        return Err("not a mail message: it has no headers".into());
    }
    let from = first_mailbox(message.from());
    if from.is_none() {
        return Err("the mail has no From address".into());
    }
    let body = message
        .body_text(0)
        .map(|t| t.into_owned())
        .unwrap_or_default();
    let mut attachments = vec![];
    let mut refused = vec![];
    for part in message.attachments() {
        // A forwarded mail or a delivery report part counts as an attachment too.
        let name = part
            .attachment_name()
            .map(str::to_owned)
            .unwrap_or_else(|| "attachment".into());
        let size = part.len() as u64;
        if size > max_attachment {
            refused.push(Refused { name, size });
            continue;
        }
        let content_type = part.content_type().map(|c| match c.subtype() {
            Some(sub) => format!("{}/{}", c.ctype(), sub),
            None => c.ctype().to_owned(),
        });
        attachments.push(Attachment {
            name,
            content_type,
            size: Some(size as i64),
            url: None,
        });
    }
    let recipients = message
        .to()
        .into_iter()
        .chain(message.cc())
        .flat_map(|a| a.iter())
        .filter_map(|a| a.address())
        .map(str::to_lowercase)
        .chain(
            message
                .header_values("Delivered-To")
                .filter_map(|v| v.as_text())
                .map(|s| s.trim().to_lowercase()),
        )
        .collect();
    Ok(Mail {
        message_id: message.message_id().map(clean_id),
        in_reply_to: ids(message.in_reply_to()),
        references: ids(message.references()),
        reply_to: first_mailbox(message.reply_to()),
        recipients,
        subject: message.subject().unwrap_or_default().trim().to_owned(),
        text: strip_reply(&body),
        attachments,
        refused,
        automated: automated(&message, from.as_ref()),
        from,
    })
}

fn first_mailbox(a: Option<&Address<'_>>) -> Option<Mailbox> {
    let a = a?.first()?;
    let address = a.address()?.trim().to_lowercase();
    if !address.contains('@') {
        return None;
    }
    Some(Mailbox {
        name: a
            .name()
            .map(|n| n.trim().trim_matches('"').to_owned())
            .filter(|n| !n.is_empty()),
        address,
    })
}

fn clean_id(id: &str) -> String {
    id.trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_owned()
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => t.split_whitespace().map(clean_id).collect(),
        HeaderValue::TextList(list) => list
            .iter()
            .flat_map(|t| t.split_whitespace())
            .map(clean_id)
            .collect(),
        _ => vec![],
    }
    .into_iter()
    .filter(|s| !s.is_empty())
    .collect()
}

fn automated(message: &mail_parser::Message<'_>, from: Option<&Mailbox>) -> Option<Automated> {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let from_local = from
        .map(|f| f.address.split('@').next().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let is_report = message.content_type().is_some_and(|c| {
        c.ctype().eq_ignore_ascii_case("multipart")
            && c.subtype()
                .is_some_and(|s| s.eq_ignore_ascii_case("report"))
    });
    let empty_return_path = header("Return-Path").is_some_and(|p| p == "<>");
    if is_report
        || empty_return_path
        || matches!(from_local.as_str(), "mailer-daemon" | "postmaster")
    {
        return Some(Automated::Bounce);
    }
    if header("Auto-Submitted").is_some_and(|v| !v.starts_with("no"))
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress")
            .is_some_and(|v| v.contains("oof") || v.contains("autoreply") || v == "all")
        || header("Precedence").is_some_and(|v| v == "auto_reply")
    {
        return Some(Automated::AutoReply);
    }
    if header("Precedence").is_some_and(|v| matches!(v.as_str(), "bulk" | "list" | "junk"))
        || header("List-Id").is_some()
        || header("List-Unsubscribe").is_some()
        || matches!(
            from_local.as_str(),
            "noreply" | "no-reply" | "donotreply" | "do-not-reply"
        )
    {
        return Some(Automated::Bulk);
    }
    None
}

/// Cuts the quoted history and the signature from a reply's text.
pub fn strip_reply(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut end = lines.len();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim();
        let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or_default();
        if is_attribution(t)
            || is_attribution(&format!("{t} {next}"))
            || t.starts_with("-----Original Message-----")
            || t.starts_with("-----Ursprüngliche Nachricht-----")
            || t.starts_with("-----Message d'origine-----")
            || (t.starts_with("________________________________") && next.starts_with("From:"))
            || is_outlook_header(t, next)
            || line.trim_end() == "--"
            || *line == "-- "
            || is_mobile_signature(t)
        {
            end = i;
            break;
        }
    }
    // Trailing `>` lines (a quote with no attribution line).
    let mut kept: Vec<&str> = lines[..end].to_vec();
    while let Some(last) = kept.last() {
        let t = last.trim();
        if t.is_empty() || t.starts_with('>') {
            kept.pop();
        } else {
            break;
        }
    }
    kept.join("\n").trim().to_owned()
}

fn attribution_start(t: &str) -> bool {
    ["On ", "Le ", "Am ", "El ", "Il ", "Op "]
        .iter()
        .any(|p| t.starts_with(p))
}

/// "On Tue, 3 Nov 2026 at 10:02, Acme Support <support@example.test> wrote:"
/// and its translations.
fn is_attribution(t: &str) -> bool {
    if !attribution_start(t) {
        return false;
    }
    let t = t.trim_end();
    [
        "wrote:",
        "a écrit :",
        "a écrit:",
        "schrieb:",
        "escribió:",
        "ha scritto:",
        "schreef:",
    ]
    .iter()
    .any(|s| t.ends_with(s))
}

/// Outlook's quoted header block: "From: …" followed by "Sent: …" or "Date: …".
fn is_outlook_header(t: &str, next: &str) -> bool {
    (t.starts_with("From:")
        || t.starts_with("*From:*")
        || t.starts_with("De :")
        || t.starts_with("Von:"))
        && (next.starts_with("Sent:")
            || next.starts_with("*Sent:*")
            || next.starts_with("Date:")
            || next.starts_with("Envoyé :")
            || next.starts_with("Gesendet:"))
}

fn is_mobile_signature(t: &str) -> bool {
    let t = t.to_ascii_lowercase();
    t.starts_with("sent from my ")
        || t.starts_with("get outlook for ")
        || t == "sent from outlook"
        || t.starts_with("sent from mail for windows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_signatures_are_cut() {
        let gmail = "Yes please, tomorrow works.\n\nOn Sat, 21 Nov 2026 at 09:12, Acme Support <\nsupport@example.test> wrote:\n\n> When would suit you?\n";
        assert_eq!(strip_reply(gmail), "Yes please, tomorrow works.");
        let apple = "Thanks!\n\nSent from my iPhone\n\n> On 21 Nov 2026, at 09:12, Acme Support <support@example.test> wrote:\n> \n> Hello\n";
        assert_eq!(strip_reply(apple), "Thanks!");
        let outlook = "It still fails.\r\n\r\n________________________________\r\nFrom: Acme Support <support@example.test>\r\nSent: Saturday, November 21, 2026 9:12 AM\r\nTo: Ada <ada@customer.test>\r\nSubject: Re: Login\r\n\r\nHave you tried again?\r\n";
        assert_eq!(strip_reply(outlook), "It still fails.");
        let sig = "See the attached invoice.\n\n-- \nAda Lovelace\nAnalytical Engines Ltd\n";
        assert_eq!(strip_reply(sig), "See the attached invoice.");
        let french = "Merci beaucoup.\n\nLe sam. 21 nov. 2026 à 09:12, Acme Support <support@example.test> a écrit :\n> Bonjour";
        assert_eq!(strip_reply(french), "Merci beaucoup.");
        let bare_quote = "Agreed.\n\n> earlier text\n> more\n";
        assert_eq!(strip_reply(bare_quote), "Agreed.");
        // A line that merely starts like an attribution stays.
        let plain = "On Monday I could not log in.\nNow it works.";
        assert_eq!(strip_reply(plain), plain);
    }
}
