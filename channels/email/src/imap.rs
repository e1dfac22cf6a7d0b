//! The IMAP receive loop.
//!
//! Connects over TLS or STARTTLS (tokio-rustls with ring; the webpki roots
//! plus an optional `ca_file`), signs in, selects the mailbox and takes every
//! mail after the stored cursor, oldest first, one at a time. The cursor is
//! the mailbox's UIDVALIDITY and the last UID taken, stored after each mail:
//! a restart neither skips nor repeats mail (a mail taken again after a crash
//! between storing it and moving the cursor is stored once anyway: its
//! Message-ID is the platform id the runtime deduplicates on). The first
//! start, and a changed UIDVALIDITY (a rebuilt mailbox), take the unread
//! mail and nothing older.
//!
//! Then it waits with IDLE when the server offers it (and `idle` is on),
//! renewing it every 25 minutes, else it polls every `poll_seconds`; new
//! mail announced while other commands ran is taken before waiting. Every
//! command has a deadline; a dropped connection is opened again with
//! back-off. Mail is fetched with `BODY.PEEK[]` and flagged `\Seen` once
//! stored, so a person looking at the same mailbox sees what Baton took. A
//! mail that cannot be stored at all (not mail, over 40 MB, refused by the
//! runtime) is logged and left unread in the mailbox for a person.

use crate::{EmailChannel, ImapConfig, MAX_MAIL_BYTES, Received, Security};
use async_imap::{Client, Session};
use baton_channel::{Backoff, Error, Ingest, Result};
use baton_model::ChannelKind;
use futures_util::TryStreamExt;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tracing::{debug, info, warn};

/// A connection IMAP can run over: plain TCP, or TLS on top of it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Debug> Io for T {}

type ImapSession = Session<Box<dyn Io>>;

/// How long an IDLE waits before it is renewed (servers drop it after 30 minutes).
const IDLE_RENEW: Duration = Duration::from_secs(25 * 60);
/// Connecting and signing in must not take longer than this.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Nor any later command (a large FETCH included).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the receiver stands in one mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor {
    pub uid_validity: u32,
    pub last_uid: u32,
}

impl Cursor {
    pub fn parse(s: &str) -> Option<Self> {
        let (v, u) = s.split_once(' ')?;
        Some(Self {
            uid_validity: v.parse().ok()?,
            last_uid: u.parse().ok()?,
        })
    }

    pub fn render(self) -> String {
        format!("{} {}", self.uid_validity, self.last_uid)
    }
}

/// Where to start in a mailbox with this UIDVALIDITY, given the stored
/// cursor: after the last UID taken; `None` on the very first start and
/// when the mailbox was rebuilt (its UIDs mean nothing any more): then the
/// unread mail is taken, not years of read mail.
pub fn resume_after(stored: Option<Cursor>, uid_validity: u32) -> Option<u32> {
    stored
        .filter(|c| c.uid_validity == uid_validity)
        .map(|c| c.last_uid)
}

pub struct Receiver {
    channel: EmailChannel,
    config: ImapConfig,
    username: String,
    password: String,
}

fn io_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Other(format!("IMAP {what}: {e}"))
}

impl Receiver {
    pub fn new(
        channel: EmailChannel,
        config: ImapConfig,
        username: String,
        password: String,
    ) -> Self {
        Self {
            channel,
            config,
            username,
            password,
        }
    }

    fn port(&self) -> u16 {
        self.config.port.unwrap_or(match self.config.security {
            Security::Tls => 993,
            _ => 143,
        })
    }

    /// The key the cursor is stored under: one per account and mailbox.
    fn cursor_key(&self) -> String {
        format!(
            "imap:{}@{}:{}/{}",
            self.username,
            self.config.host,
            self.port(),
            self.config.mailbox
        )
    }

    /// Runs until the process ends: connection problems are logged and the
    /// connection opened again with back-off.
    pub async fn run(self, ingest: Arc<dyn Ingest>) -> Result<()> {
        let mut backoff = Backoff::default();
        loop {
            if let Err(e) = self.session(&ingest, &mut backoff).await {
                let wait = backoff.next_wait();
                warn!(error = %e, host = %self.config.host, ?wait, "IMAP connection ended; connecting again");
                tokio::time::sleep(wait).await;
            }
        }
    }

    async fn tls(&self, stream: Box<dyn Io>) -> Result<Box<dyn Io>> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &self.config.ca_file {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| io_error("ca_file", e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| io_error("ca_file", e))?;
            for cert in certs {
                roots.add(cert).map_err(|e| io_error("ca_file", e))?;
            }
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| io_error("TLS", e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            ServerName::try_from(self.config.host.clone()).map_err(|e| io_error("host", e))?;
        let tls = TlsConnector::from(Arc::new(config))
            .connect(name, stream)
            .await
            .map_err(|e| io_error("TLS handshake", e))?;
        Ok(Box::new(tls))
    }

    async fn connect(&self) -> Result<ImapSession> {
        let tcp = tokio::time::timeout(
            CONNECT_TIMEOUT,
            TcpStream::connect((self.config.host.as_str(), self.port())),
        )
        .await
        .map_err(|_| io_error("connect", "timed out"))?
        .map_err(|e| io_error("connect", e))?;
        let plain: Box<dyn Io> = Box::new(tcp);
        let client = match self.config.security {
            Security::None => greeted(plain).await?,
            Security::Tls => greeted(self.tls(plain).await?).await?,
            Security::Starttls => {
                let mut client = greeted(plain).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| io_error("STARTTLS", e))?;
                // No greeting after STARTTLS.
                Client::new(self.tls(client.into_inner()).await?)
            }
        };
        let session = tokio::time::timeout(
            CONNECT_TIMEOUT,
            client.login(&self.username, &self.password),
        )
        .await
        .map_err(|_| io_error("login", "timed out"))?
        .map_err(|(e, _)| io_error(&format!("login as {}", self.username), e))?;
        Ok(session)
    }

    async fn session(&self, ingest: &Arc<dyn Ingest>, backoff: &mut Backoff) -> Result<()> {
        let mut session = self.connect().await?;
        let idle = self.config.idle
            && timed("CAPABILITY", session.capabilities())
                .await?
                .has_str("IDLE");
        let mailbox = timed(
            &format!("SELECT {}", self.config.mailbox),
            session.select(&self.config.mailbox),
        )
        .await?;
        let uid_validity = mailbox.uid_validity.unwrap_or(0);
        let key = self.cursor_key();
        let stored = ingest
            .state(ChannelKind::Email, &key)
            .await?
            .and_then(|s| Cursor::parse(&s));
        if stored.is_some_and(|c| c.uid_validity != uid_validity) {
            warn!(mailbox = %self.config.mailbox, "UIDVALIDITY changed: the mailbox was rebuilt; taking its unread mail again (mail already taken is stored once)");
        }
        info!(host = %self.config.host, mailbox = %self.config.mailbox, idle, "IMAP connected");
        let mut last = match resume_after(stored, uid_validity) {
            Some(last) => last,
            None => {
                // First start (or a rebuilt mailbox): the unread mail, then everything new.
                let mut unseen: Vec<u32> = timed("SEARCH", session.uid_search("UNSEEN"))
                    .await?
                    .into_iter()
                    .collect();
                unseen.sort_unstable();
                for uid in &unseen {
                    self.take(&mut session, ingest, *uid).await?;
                }
                let start = mailbox.uid_next.unwrap_or(1).saturating_sub(1);
                let last = unseen.last().copied().unwrap_or(0).max(start);
                self.save(ingest, &key, uid_validity, last).await?;
                last
            }
        };
        loop {
            last = self
                .take_new(&mut session, ingest, &key, uid_validity, last)
                .await?;
            // A working session: the next failure starts the back-off afresh.
            backoff.reset();
            // New mail announced while the last commands ran waits here;
            // the server does not announce it again.
            if drain_unsolicited(&mut session) {
                continue;
            }
            if idle {
                let mut handle = session.idle();
                timed("IDLE", handle.init()).await?;
                {
                    let (wait, _stop) = handle.wait_with_timeout(IDLE_RENEW);
                    // Keepalives reset async-imap's own timeout: renew the
                    // IDLE ourselves before the server drops it.
                    match tokio::time::timeout(IDLE_RENEW, wait).await {
                        Ok(woke) => {
                            debug!(woke = ?woke.map_err(|e| io_error("IDLE", e))?, "IDLE woke")
                        }
                        Err(_) => debug!("IDLE renewed"),
                    }
                }
                session = timed("DONE", handle.done()).await?;
            } else {
                tokio::time::sleep(Duration::from_secs(self.config.poll_seconds)).await;
                timed("NOOP", session.noop()).await?;
            }
        }
    }

    async fn save(
        &self,
        ingest: &Arc<dyn Ingest>,
        key: &str,
        uid_validity: u32,
        last_uid: u32,
    ) -> Result<()> {
        let cursor = Cursor {
            uid_validity,
            last_uid,
        };
        ingest
            .set_state(ChannelKind::Email, key, &cursor.render())
            .await
    }

    /// Takes every mail after `last`, oldest first; returns the new last UID.
    async fn take_new(
        &self,
        session: &mut ImapSession,
        ingest: &Arc<dyn Ingest>,
        key: &str,
        uid_validity: u32,
        mut last: u32,
    ) -> Result<u32> {
        // `n:*` always names the newest mail, even below n: filter.
        let mut uids: Vec<u32> = fetch(session, &format!("{}:*", last.saturating_add(1)), "(UID)")
            .await?
            .iter()
            .filter_map(|f| f.uid)
            .filter(|uid| *uid > last)
            .collect();
        uids.sort_unstable();
        for uid in uids {
            self.take(session, ingest, uid).await?;
            last = uid;
            self.save(ingest, key, uid_validity, last).await?;
        }
        Ok(last)
    }

    /// Fetches one mail, hands it to the channel, and flags it seen. A mail
    /// Baton cannot read or store at all (not mail, over the size limit, or
    /// refused by the runtime) is skipped with a warning and left in the
    /// mailbox unread; any other failure stops here, so the cursor stays
    /// before it and it is taken again.
    async fn take(
        &self,
        session: &mut ImapSession,
        ingest: &Arc<dyn Ingest>,
        uid: u32,
    ) -> Result<()> {
        let size = fetch(session, &uid.to_string(), "(UID RFC822.SIZE)")
            .await?
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.size);
        let Some(size) = size else {
            // Expunged in the meantime.
            return Ok(());
        };
        if size as usize > MAX_MAIL_BYTES {
            warn!(
                uid,
                size,
                limit = MAX_MAIL_BYTES,
                "a mail over the size limit was left unread in the mailbox"
            );
            return Ok(());
        }
        let fetched = fetch(session, &uid.to_string(), "(UID BODY.PEEK[])").await?;
        let Some(raw) = fetched
            .iter()
            .find(|f| f.uid == Some(uid))
            .and_then(|f| f.body())
        else {
            return Ok(());
        };
        match self.channel.receive(ingest, raw).await {
            Ok(Received::Stored { .. }) => {}
            Ok(Received::Ignored(reason)) => debug!(uid, %reason, "mail ignored"),
            Err(Error::Malformed { reason, .. }) => {
                warn!(uid, %reason, "a mail Baton cannot read was left unread in the mailbox");
                return Ok(());
            }
            Err(Error::Refused(reason)) => {
                warn!(uid, %reason, "a mail the runtime refused was left unread in the mailbox");
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        timed("STORE", async {
            session
                .uid_store(uid.to_string(), "+FLAGS.SILENT (\\Seen)")
                .await?
                .try_collect::<Vec<_>>()
                .await
        })
        .await?;
        Ok(())
    }
}

/// Empties the queue of responses the server sent on its own; whether one
/// of them announced new mail.
fn drain_unsolicited(session: &mut ImapSession) -> bool {
    let mut new_mail = false;
    while let Ok(response) = session.unsolicited_responses.try_recv() {
        new_mail |= matches!(
            response,
            async_imap::types::UnsolicitedResponse::Exists(_)
                | async_imap::types::UnsolicitedResponse::Recent(_)
        );
    }
    new_mail
}

/// `UID FETCH <uids> <items>`, all of it, with a deadline.
async fn fetch(
    session: &mut ImapSession,
    uids: &str,
    items: &str,
) -> Result<Vec<async_imap::types::Fetch>> {
    timed("FETCH", async {
        session.uid_fetch(uids, items).await?.try_collect().await
    })
    .await
}

/// An IMAP command with a deadline: a half-open connection must not hang
/// the receiver until TCP gives up.
async fn timed<T>(
    what: &str,
    command: impl std::future::Future<Output = async_imap::error::Result<T>>,
) -> Result<T> {
    tokio::time::timeout(COMMAND_TIMEOUT, command)
        .await
        .map_err(|_| io_error(what, "timed out"))?
        .map_err(|e| io_error(what, e))
}

/// A client that has read the server's greeting.
async fn greeted(stream: Box<dyn Io>) -> Result<Client<Box<dyn Io>>> {
    let mut client = Client::new(stream);
    let greeting = tokio::time::timeout(CONNECT_TIMEOUT, client.read_response())
        .await
        .map_err(|_| io_error("greeting", "timed out"))?
        .map_err(|e| io_error("greeting", e))?;
    if greeting.is_none() {
        return Err(io_error("greeting", "the server closed the connection"));
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_survives_a_restart_and_notices_a_rebuilt_mailbox() {
        let c = Cursor {
            uid_validity: 1_700_000_000,
            last_uid: 42,
        };
        assert_eq!(Cursor::parse(&c.render()), Some(c));
        assert_eq!(Cursor::parse("garbage"), None);
        assert_eq!(resume_after(Some(c), 1_700_000_000), Some(42));
        assert_eq!(resume_after(Some(c), 1_800_000_000), None);
        assert_eq!(resume_after(None, 1), None);
    }
}
