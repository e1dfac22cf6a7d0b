//! The parsing corpus: realistic mail from Gmail, Outlook and Apple Mail,
//! HTML-only and non-UTF-8 mail, an auto-reply, a bounce, a newsletter and
//! an attachment over the limit.

use baton_channel_email::parse::{Automated, Mail, parse};

const LIMIT: u64 = 10 * 1024 * 1024;

fn mail(raw: &[u8]) -> Mail {
    parse(raw, LIMIT).unwrap()
}

#[test]
fn a_first_mail_with_an_attachment() {
    let m = mail(include_bytes!("corpus/first_mail.eml"));
    let from = m.from.clone().unwrap();
    assert_eq!(from.address, "ada@customer.test");
    assert_eq!(from.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        m.message_id.as_deref(),
        Some("CAF=q1xYz0mP3n@mail.customer.test")
    );
    assert_eq!(m.subject, "Do you ship to Canada?");
    assert_eq!(
        m.text,
        "Hello,\n\nDo you ship to Canada? I attached my order confirmation.\n\nAda"
    );
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].name, "order-1234.pdf");
    assert_eq!(
        m.attachments[0].content_type.as_deref(),
        Some("application/pdf")
    );
    assert!(m.ancestors().is_empty());
    assert!(m.recipients.contains(&"support@example.test".to_owned()));
    assert_eq!(m.automated, None);
}

#[test]
fn a_gmail_reply_loses_its_quote_and_keeps_its_thread() {
    let m = mail(include_bytes!("corpus/gmail_reply.eml"));
    assert_eq!(
        m.text,
        "I would like to talk to a human, please — the parcel is 40 kg."
    );
    assert_eq!(
        m.in_reply_to,
        vec!["baton.0195f3a2-7c1e-7b3d-9a11-5e2f0c4d8b21.3@example.test"]
    );
    assert_eq!(
        m.ancestors(),
        vec![
            "baton.0195f3a2-7c1e-7b3d-9a11-5e2f0c4d8b21.3@example.test",
            "CAF=q1xYz0mP3n@mail.customer.test"
        ]
    );
    assert!(
        m.recipients
            .contains(&"support+c-0195f3a2-7c1e-7b3d-9a11-5e2f0c4d8b21@example.test".to_owned())
    );
}

#[test]
fn an_outlook_reply_in_windows_1252() {
    let m = mail(include_bytes!("corpus/outlook_reply.eml"));
    assert_eq!(
        m.text,
        "Thanks – the café address is fine for delivery.\n\nKind regards,\nAda"
    );
    assert_eq!(m.from.unwrap().name.as_deref(), Some("Lovelace, Ada"));
    assert_eq!(m.subject, "RE: Do you ship to Canada?");
}

#[test]
fn an_apple_mail_reply_loses_the_iphone_line_and_the_quote() {
    let m = mail(include_bytes!("corpus/apple_mail_reply.eml"));
    assert_eq!(m.text, "Perfect, thank you! Ça marche.");
    assert_eq!(
        m.message_id.as_deref(),
        Some("8E1F0A2B-3C4D-4E5F-9A0B-1C2D3E4F5A6B@customer.test")
    );
}

#[test]
fn html_only_mail_in_latin_1_becomes_text() {
    let m = mail(include_bytes!("corpus/html_latin1.eml"));
    assert_eq!(m.subject, "Prüfung der Rechnung");
    assert_eq!(
        m.from.clone().unwrap().name.as_deref(),
        Some("Renée Müller")
    );
    assert!(m.text.contains("Grüß Gott,"), "{}", m.text);
    assert!(m.text.contains("die Rechnung über 12"), "{}", m.text);
    assert!(!m.text.contains('<'), "no markup: {}", m.text);
    assert!(!m.text.contains("color:red"), "no style: {}", m.text);
}

#[test]
fn shift_jis_mail_is_read() {
    let m = mail(include_bytes!("corpus/shift_jis.eml"));
    assert_eq!(m.text, "注文が届きません。");
    assert_eq!(m.subject, "お問い合わせ");
    assert_eq!(m.from.unwrap().name.as_deref(), Some("山田"));
}

#[test]
fn auto_replies_bounces_and_bulk_mail_are_recognised() {
    let auto = mail(include_bytes!("corpus/auto_reply.eml"));
    assert_eq!(auto.automated, Some(Automated::AutoReply));
    let bounce = mail(include_bytes!("corpus/bounce.eml"));
    assert_eq!(bounce.automated, Some(Automated::Bounce));
    let news = mail(include_bytes!("corpus/newsletter.eml"));
    assert_eq!(news.automated, Some(Automated::Bulk));
    for human in [
        &include_bytes!("corpus/first_mail.eml")[..],
        include_bytes!("corpus/gmail_reply.eml"),
        include_bytes!("corpus/outlook_reply.eml"),
        include_bytes!("corpus/apple_mail_reply.eml"),
    ] {
        assert_eq!(mail(human).automated, None);
    }
}

#[test]
fn an_attachment_over_the_limit_is_refused_and_the_rest_kept() {
    let raw = include_bytes!("corpus/oversized_attachment.eml");
    let m = parse(raw, 4096).unwrap();
    assert_eq!(m.text, "The box arrived crushed, photos attached.");
    assert_eq!(m.refused.len(), 1);
    assert_eq!(m.refused[0].name, "damage.jpg");
    assert_eq!(m.refused[0].size, 6144);
    assert_eq!(m.attachments.len(), 1);
    assert_eq!(m.attachments[0].name, "note.txt");
    // Under a larger limit both are kept.
    assert!(mail(raw).refused.is_empty());
}

#[test]
fn what_is_not_mail_is_refused() {
    assert!(parse(b"", LIMIT).is_err());
    assert!(parse(b"\x00\x01\x02 binary", LIMIT).is_err());
    assert!(parse(b"Subject: no sender\n\nhello", LIMIT).is_err());
    assert!(parse(b"just some words without headers", LIMIT).is_err());
}
