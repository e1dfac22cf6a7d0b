//! The shared channel compliance test, on the parsing corpus, and the
//! configuration's error messages.

use baton_channel::{Channel, RawInbound};
use baton_channel_email::EmailChannel;
use baton_runtime::testkit::{Samples, channel_compliance};
use std::sync::Arc;

fn mail(body: &[u8]) -> RawInbound {
    RawInbound {
        thread_hint: None,
        body: body.to_vec(),
    }
}

fn table(s: &str) -> toml::Table {
    toml::from_str(s).unwrap()
}

const MINIMAL: &str = "address = \"support@example.test\"\n[smtp]\nhost = \"127.0.0.1\"\nport = 9\nsecurity = \"none\"\n";

#[tokio::test]
async fn the_email_channel_is_compliant() {
    // Deliveries go nowhere: nothing listens on the discard port.
    let channel = EmailChannel::from_config(&table(MINIMAL), |_| None).unwrap();
    let samples = Samples {
        messages: vec![
            mail(include_bytes!("corpus/first_mail.eml")),
            mail(include_bytes!("corpus/gmail_reply.eml")),
            mail(include_bytes!("corpus/outlook_reply.eml")),
        ],
        garbage: vec![
            mail(b""),
            mail(b"\x00\x01\x02"),
            mail(b"Subject: no sender\r\n\r\nhello"),
            mail(include_bytes!("corpus/bounce.eml")),
        ],
    };
    channel_compliance(Arc::new(channel), samples).await;
}

#[test]
fn automated_mail_is_marked_never_to_be_answered() {
    let channel = EmailChannel::from_config(&table(MINIMAL), |_| None).unwrap();
    for raw in [
        &include_bytes!("corpus/auto_reply.eml")[..],
        &include_bytes!("corpus/bounce.eml")[..],
        &include_bytes!("corpus/newsletter.eml")[..],
    ] {
        let inbound = channel.normalize(&mail(raw)).unwrap().remove(0);
        assert!(inbound.no_reply, "{inbound:?}");
        assert!(inbound.text.starts_with('['), "{inbound:?}");
    }
    let first = channel
        .normalize(&mail(include_bytes!("corpus/first_mail.eml")))
        .unwrap()
        .remove(0);
    assert!(!first.no_reply);
    // Mail from the support address itself is dropped: no loop with ourselves.
    let own = b"From: support@example.test\r\nTo: support@example.test\r\nSubject: x\r\n\r\nhi";
    assert!(channel.normalize(&mail(own)).unwrap().is_empty());
}

#[test]
fn the_config_says_what_is_missing() {
    let no_env = |_: &str| None;
    let err = |toml: &str, env: &dyn Fn(&str) -> Option<String>| {
        EmailChannel::from_config(&table(toml), env).err().unwrap()
    };
    let e = err("", &no_env);
    assert!(e.contains("address"), "{e}");
    let e = err(&MINIMAL.replace("support@example.test", "support"), &no_env);
    assert!(e.contains("not an email address"), "{e}");
    let e = err(&format!("{MINIMAL}[imap]\nhost = \"127.0.0.1\"\n"), &no_env);
    assert!(e.contains("BATON_IMAP_PASSWORD"), "{e}");
    let e = err(&MINIMAL.replace("\"none\"", "\"ssl\""), &no_env);
    assert!(e.contains("security"), "{e}");
    let e = err(
        &format!("{MINIMAL}ca_file = \"/nonexistent.pem\"\n"),
        &no_env,
    );
    assert!(e.contains("ca_file"), "{e}");
    let e = err(&format!("colour = 1\n{MINIMAL}"), &no_env);
    assert!(e.contains("colour"), "{e}");
    let imap = |k: &str| (k == "BATON_IMAP_PASSWORD").then(|| "pw".to_owned());
    let ok = EmailChannel::from_config(
        &table(&format!("{MINIMAL}[imap]\nhost = \"127.0.0.1\"\n")),
        imap,
    );
    assert!(ok.is_ok());
}
