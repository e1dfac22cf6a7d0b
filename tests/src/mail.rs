//! Real mail servers for the email tests: Debian's Postfix (SMTP, with
//! STARTTLS and AUTH through Dovecot) and Dovecot (IMAP, with STARTTLS and
//! IDLE), run as private instances on free loopback ports, without systemd,
//! in a temporary folder that goes away with them.
//!
//! Two mail domains: `example.test` (the team: `support@example.test`,
//! password `secret`; plus-addresses `support+…@` land in the same mailbox)
//! and `customer.test` (every address lands in the `customer` mailbox). The
//! tests read the customer's mailbox straight from its Maildir.
//!
//! `cargo xtask test` installs the packages and the `vmail` user (uid 5000)
//! the mailboxes belong to.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The support mailbox's password (and every other account's).
pub const PASSWORD: &str = "secret";
/// The uid and gid the mailboxes belong to.
const VMAIL: u32 = 5000;

pub struct MailServers {
    /// SMTP with STARTTLS offered (and AUTH through Dovecot).
    pub smtp_port: u16,
    /// SMTP over TLS from the first byte (the "smtps" wrapper mode).
    pub smtps_port: u16,
    /// IMAP with STARTTLS offered.
    pub imap_port: u16,
    /// IMAP over TLS from the first byte.
    pub imaps_port: u16,
    /// The test CA that signed both servers' certificate (for `ca_file`).
    pub cert: PathBuf,
    dir: tempfile::TempDir,
}

fn quiet(cmd: &mut Command) -> Result<()> {
    // Daemons keep inherited pipes open, so output goes to a file, never a pipe.
    let log = tempfile::NamedTempFile::new()?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(log.reopen()?)
        .stderr(log.reopen()?)
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!(
            "{cmd:?} failed: {}",
            std::fs::read_to_string(log.path())
                .unwrap_or_default()
                .trim()
        );
    }
    Ok(())
}

fn chown_r(path: &Path) -> Result<()> {
    quiet(
        Command::new("chown")
            .args(["-R", &format!("{VMAIL}:{VMAIL}")])
            .arg(path),
    )
}

impl MailServers {
    /// Whether this machine has what the mail tests need.
    pub fn available() -> Result<()> {
        for bin in ["/usr/sbin/postfix", "/usr/sbin/dovecot", "/usr/bin/openssl"] {
            if !Path::new(bin).exists() {
                bail!("{bin} is missing: `cargo xtask test` installs the mail servers");
            }
        }
        let vmail = Command::new("id").args(["-u", "vmail"]).output()?;
        if String::from_utf8_lossy(&vmail.stdout).trim() != VMAIL.to_string() {
            bail!("the vmail user (uid {VMAIL}) is missing: `cargo xtask test` adds it");
        }
        Ok(())
    }

    pub fn start() -> Result<Self> {
        Self::available()?;
        let dir = tempfile::Builder::new().prefix("baton-mail").tempdir()?;
        let root = dir.path().to_path_buf();
        // The daemons run as their own users: they must reach into it.
        quiet(Command::new("chmod").arg("0755").arg(&root))?;
        let smtp_port = crate::free_port()?;
        let imap_port = crate::free_port()?;
        let smtps_port = crate::free_port()?;
        let imaps_port = crate::free_port()?;
        let (ca, cert, key) = certificates(&root)?;
        let mail = root.join("mail");
        for user in ["support", "customer"] {
            std::fs::create_dir_all(mail.join(user).join("Maildir"))?;
        }
        chown_r(&mail)?;
        std::fs::write(
            root.join("users"),
            format!("support:{{PLAIN}}{PASSWORD}\ncustomer:{{PLAIN}}{PASSWORD}\n"),
        )?;
        std::fs::write(
            root.join("vmailbox"),
            "support@example.test support/Maildir/\n@customer.test customer/Maildir/\n",
        )?;

        let postfix = root.join("postfix");
        std::fs::create_dir_all(&postfix)?;
        let queue = root.join("postfix-queue");
        let r = root.display();
        std::fs::write(
            postfix.join("main.cf"),
            format!(
                "compatibility_level = 3.6\n\
                 queue_directory = {queue}\n\
                 data_directory = {r}/postfix-data\n\
                 mail_owner = postfix\n\
                 myhostname = mail.example.test\n\
                 inet_interfaces = 127.0.0.1\n\
                 inet_protocols = ipv4\n\
                 mydestination =\n\
                 mynetworks = 127.0.0.0/8\n\
                 local_transport = error:no local delivery here\n\
                 virtual_mailbox_domains = example.test customer.test\n\
                 virtual_mailbox_base = {r}/mail\n\
                 virtual_mailbox_maps = texthash:{r}/vmailbox\n\
                 virtual_uid_maps = static:{VMAIL}\n\
                 virtual_gid_maps = static:{VMAIL}\n\
                 virtual_minimum_uid = {VMAIL}\n\
                 virtual_mailbox_limit = 0\n\
                 message_size_limit = 52428800\n\
                 recipient_delimiter = +\n\
                 disable_dns_lookups = yes\n\
                 smtp_dns_support_level = disabled\n\
                 smtpd_sasl_type = dovecot\n\
                 smtpd_sasl_path = private/dovecot-auth\n\
                 smtpd_sasl_auth_enable = yes\n\
                 smtpd_tls_security_level = may\n\
                 smtpd_tls_cert_file = {cert}\n\
                 smtpd_tls_key_file = {key}\n\
                 smtpd_error_sleep_time = 0\n\
                 smtpd_relay_restrictions = permit_mynetworks permit_sasl_authenticated reject_unauth_destination\n\
                 maillog_file = {r}/postfix.log\n\
                 maillog_file_prefixes = {r}\n",
                queue = queue.display(),
                cert = cert.display(),
                key = key.display(),
            ),
        )?;
        std::fs::write(postfix.join("master.cf"), master_cf(smtp_port, smtps_port)?)?;

        let dovecot = root.join("dovecot.conf");
        std::fs::write(
            &dovecot,
            format!(
                "protocols = imap\n\
                 listen = 127.0.0.1\n\
                 base_dir = {r}/dovecot-run\n\
                 state_dir = {r}/dovecot-state\n\
                 log_path = {r}/dovecot.log\n\
                 ssl = yes\n\
                 ssl_cert = <{cert}\n\
                 ssl_key = <{key}\n\
                 disable_plaintext_auth = no\n\
                 auth_mechanisms = plain login\n\
                 auth_failure_delay = 0\n\
                 login_trusted_networks = 127.0.0.0/8\n\
                 first_valid_uid = {VMAIL}\n\
                 mail_location = maildir:{r}/mail/%n/Maildir\n\
                 passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%n {r}/users\n}}\n\
                 userdb {{\n  driver = static\n  args = uid={VMAIL} gid={VMAIL} home={r}/mail/%n\n}}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {imap_port}\n  }}\n  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {imaps_port}\n  }}\n}}\n\
                 service auth {{\n  unix_listener {queue}/private/dovecot-auth {{\n    mode = 0660\n    user = postfix\n    group = postfix\n  }}\n}}\n",
                cert = cert.display(),
                key = key.display(),
                queue = queue.display(),
            ),
        )?;

        // Postfix wants both folders to exist, its data folder its own.
        std::fs::create_dir_all(&queue)?;
        std::fs::create_dir_all(root.join("postfix-data"))?;
        quiet(
            Command::new("chown")
                .arg("postfix:postfix")
                .arg(root.join("postfix-data")),
        )?;
        // `check` creates the queue (and private/, where Dovecot puts the SASL socket).
        quiet(Command::new("postfix").arg("-c").arg(&postfix).arg("check"))?;
        quiet(Command::new("dovecot").arg("-c").arg(&dovecot))?;
        quiet(Command::new("postfix").arg("-c").arg(&postfix).arg("start"))?;
        let servers = Self {
            smtp_port,
            smtps_port,
            imap_port,
            imaps_port,
            cert: ca,
            dir,
        };
        servers.wait_listening()?;
        Ok(servers)
    }

    fn wait_listening(&self) -> Result<()> {
        for port in [
            self.smtp_port,
            self.smtps_port,
            self.imap_port,
            self.imaps_port,
        ] {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if std::time::Instant::now() > deadline {
                    bail!(
                        "the mail server on port {port} did not start: {}",
                        self.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Both servers' logs, for a failure message.
    pub fn logs(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.path().join(f)).unwrap_or_default();
        format!(
            "--- postfix.log\n{}\n--- dovecot.log\n{}",
            read("postfix.log"),
            read("dovecot.log")
        )
    }

    /// Every mail in a mailbox (`support`, `customer`), oldest first.
    pub fn mailbox(&self, user: &str) -> Result<Vec<Vec<u8>>> {
        let maildir = self.dir.path().join("mail").join(user).join("Maildir");
        let mut files = vec![];
        for sub in ["new", "cur"] {
            let Ok(entries) = std::fs::read_dir(maildir.join(sub)) else {
                continue;
            };
            for e in entries {
                let e = e?;
                files.push((e.metadata()?.modified()?, e.file_name(), e.path()));
            }
        }
        // Maildir names start with the delivery time: a stable order.
        files.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        files
            .into_iter()
            .map(|(_, _, p)| std::fs::read(p).map_err(Into::into))
            .collect()
    }

    /// Waits until a mailbox holds at least `n` mails; returns them all.
    pub async fn wait_mailbox(&self, user: &str, n: usize, secs: u64) -> Result<Vec<Vec<u8>>> {
        crate::eventually_async(
            secs,
            || async {
                let mails = self.mailbox(user)?;
                Ok((mails.len() >= n).then_some(mails))
            },
            || format!("{user}'s mailbox never held {n} mails\n{}", self.logs()),
        )
        .await
    }
}

/// A throw-away CA and the servers' certificate for 127.0.0.1 signed by it
/// (rustls takes no self-signed leaf as its own root): (CA, cert, key).
fn certificates(root: &Path) -> Result<(PathBuf, PathBuf, PathBuf)> {
    let [ca, ca_key, csr, cert, key, ext] = [
        "ca.pem", "ca.key", "leaf.csr", "cert.pem", "key.pem", "leaf.ext",
    ]
    .map(|f| root.join(f));
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    quiet(
        Command::new("openssl")
            .args(["req", "-x509", "-days", "2", "-subj", "/CN=Baton test CA"])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
    )?;
    quiet(
        Command::new("openssl")
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
    )?;
    std::fs::write(
        &ext,
        "subjectAltName = IP:127.0.0.1, DNS:localhost\n\
         basicConstraints = CA:FALSE\n\
         extendedKeyUsage = serverAuth\n",
    )?;
    quiet(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "2", "-set_serial", "2"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
    )?;
    // Postfix and Dovecot read the key as root before dropping privileges.
    Ok((ca, cert, key))
}

/// Debian's master.cf with the SMTP listeners on our ports and no chroot.
fn master_cf(port: u16, smtps: u16) -> Result<String> {
    let debian = std::fs::read_to_string("/etc/postfix/master.cf")
        .context("/etc/postfix/master.cf (the postfix package)")?;
    let mut out = String::new();
    for line in debian.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let service = !line.starts_with('#') && !line.starts_with(char::is_whitespace);
        if service && fields.len() >= 8 {
            if fields[0] == "smtp" && fields[1] == "inet" {
                out.push_str(&format!("127.0.0.1:{port} inet n - n - - smtpd\n"));
                out.push_str(&format!(
                    "127.0.0.1:{smtps} inet n - n - - smtpd\n  -o smtpd_tls_wrappermode=yes\n"
                ));
                continue;
            }
            let mut f = fields.clone();
            f[4] = "n";
            out.push_str(&f.join(" "));
            out.push('\n');
        } else if service {
            out.push_str(line);
            out.push('\n');
        } else if line.starts_with(char::is_whitespace) && !out.is_empty() {
            // An option of the service above.
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

impl Drop for MailServers {
    fn drop(&mut self) {
        let root = self.dir.path();
        let _ = quiet(
            Command::new("postfix")
                .arg("-c")
                .arg(root.join("postfix"))
                .arg("abort"),
        );
        if let Ok(pid) = std::fs::read_to_string(root.join("dovecot-run/master.pid")) {
            let _ = quiet(Command::new("kill").arg(pid.trim()));
        }
    }
}

impl MailServers {
    /// Sends one raw mail through Postfix, as a mail client would (no TLS,
    /// from the loopback network Postfix trusts).
    pub async fn send_raw(&self, from: &str, to: &[&str], raw: &[u8]) -> Result<()> {
        use lettre::AsyncTransport;
        let envelope = lettre::address::Envelope::new(
            Some(from.parse()?),
            to.iter().map(|t| t.parse()).collect::<Result<_, _>>()?,
        )?;
        let smtp =
            lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
                .port(self.smtp_port)
                .build();
        smtp.send_raw(&envelope, raw).await?;
        Ok(())
    }
}
