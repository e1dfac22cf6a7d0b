//! Where Baton may send a request that someone typed in: webhook
//! subscriptions and `webhook` hand-over actions.
//!
//! An admin (or whoever steals an admin's session) must not be able to turn
//! Baton into a probe of its own network: the cloud's metadata service at
//! 169.254.169.254, a database on 127.0.0.1:5432, a router on 10.0.0.1. So a
//! target whose address is loopback, private, link-local, unique-local,
//! carrier-grade NAT, multicast, broadcast, reserved or unspecified is
//! refused, in every spelling (`0x7f000001`, `2130706433`,
//! `[::ffff:169.254.169.254]`):
//! - when the URL is entered: [`OutboundPolicy::check_url`] parses it the
//!   way the HTTP client will and resolves its host;
//! - when a request connects: the [`client`] resolves through
//!   [`GuardedResolver`], which refuses a name that resolves (now) to such
//!   an address, so a DNS answer that changes after the check (rebinding)
//!   gains nothing; the client follows no redirects and uses no proxy.
//!
//! A refused target is recorded as "refused by policy" and nothing more, so
//! the delivery log cannot be read as a port scan. Operators whose
//! receivers live on their own network switch the check off with
//! `[security] allow_private_webhooks = true` or
//! `BATON_ALLOW_PRIVATE_WEBHOOKS=true`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the delivery log says of a blocked target, and nothing more.
pub const REFUSED: &str = "refused by policy";

/// Whether private targets are allowed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    pub allow_private: bool,
}

/// Why an outbound URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("url must be an absolute http:// or https:// URL with a host")]
    Malformed,
    #[error("url is too long (at most 2048 bytes)")]
    TooLong,
    #[error("url's host `{0}` does not resolve")]
    Unresolvable(String),
    #[error(
        "url is refused by policy: it points at a loopback, private, link-local or otherwise \
         internal address (operators can allow such receivers with [security] \
         allow_private_webhooks = true)"
    )]
    Blocked,
}

/// Names that are internal wherever Baton runs, whatever DNS says of them.
fn internal_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "metadata"
        || host == "metadata.google.internal"
        || host.ends_with(".internal")
}

impl OutboundPolicy {
    /// Parses `url` as the HTTP client will and, unless private targets are
    /// allowed, refuses it when its host is or resolves to an internal
    /// address. Returns the URL, trimmed.
    pub async fn check_url(&self, url: &str) -> Result<String, UrlError> {
        let url = url.trim();
        if url.len() > 2048 {
            return Err(UrlError::TooLong);
        }
        // The URL parser drops tabs and newlines silently; refuse them instead.
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(UrlError::Malformed);
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| UrlError::Malformed)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(UrlError::Malformed);
        }
        let port = parsed.port_or_known_default().ok_or(UrlError::Malformed)?;
        let host = parsed.host().ok_or(UrlError::Malformed)?;
        if self.allow_private {
            return Ok(url.to_owned());
        }
        match host {
            url::Host::Ipv4(ip) if blocked(IpAddr::V4(ip)) => return Err(UrlError::Blocked),
            url::Host::Ipv6(ip) if blocked(IpAddr::V6(ip)) => return Err(UrlError::Blocked),
            url::Host::Domain(name) => {
                if internal_name(name) {
                    return Err(UrlError::Blocked);
                }
                let addrs: Vec<SocketAddr> = tokio::time::timeout(
                    Duration::from_secs(5),
                    tokio::net::lookup_host((name, port)),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .map(Iterator::collect)
                .unwrap_or_default();
                if addrs.is_empty() {
                    return Err(UrlError::Unresolvable(name.to_owned()));
                }
                if addrs.iter().any(|a| blocked(a.ip())) {
                    return Err(UrlError::Blocked);
                }
            }
            _ => {}
        }
        Ok(url.to_owned())
    }

    /// Whether a request to `url` may go out now, before it connects. The
    /// resolver checks names at connect time; an address written into the
    /// URL never reaches a resolver, so it is checked here.
    pub fn allows_literal(&self, url: &str) -> bool {
        if self.allow_private {
            return true;
        }
        let Ok(parsed) = reqwest::Url::parse(url) else {
            return false;
        };
        match parsed.host() {
            Some(url::Host::Ipv4(ip)) => !blocked(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => !blocked(IpAddr::V6(ip)),
            Some(url::Host::Domain(name)) => !internal_name(name),
            None => false,
        }
    }
}

/// Whether an address is one Baton must not be made to call.
pub fn blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn blocked_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT, 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn blocked_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated), fec0::/10
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:ab:cd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(low);
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return Some(low);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// The error a refused connection carries, so that the delivery log can
/// tell "refused by policy" from a receiver that is down.
#[derive(Debug, thiserror::Error)]
#[error("{REFUSED}")]
pub struct Refused;

/// Whether a failed request was refused by the policy (anywhere in its causes).
pub fn is_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if e.is::<Refused>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// How a name becomes addresses: the system resolver, or a test's table.
type Lookup = Arc<
    dyn Fn(String) -> futures_util::future::BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>
        + Send
        + Sync,
>;

fn system_lookup() -> Lookup {
    Arc::new(|host: String| {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    })
}

/// Resolves names at connect time and refuses any that resolve to an
/// internal address.
#[derive(Clone)]
pub struct GuardedResolver {
    policy: OutboundPolicy,
    lookup: Lookup,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let lookup = self.lookup.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            if !policy.allow_private && internal_name(&host) {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            let addrs: Vec<SocketAddr> = lookup(host).await?;
            if !policy.allow_private && addrs.iter().any(|a| blocked(a.ip())) {
                return Err(Box::new(Refused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client for URLs entered through the API: it resolves through
/// [`GuardedResolver`], follows no redirect and ignores proxy settings
/// (a proxy would resolve the name where we cannot check it). It fails
/// rather than fall back to an unguarded client.
pub fn client(policy: OutboundPolicy) -> Result<reqwest::Client, String> {
    client_with(policy, system_lookup())
}

fn client_with(policy: OutboundPolicy, lookup: Lookup) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { policy, lookup }))
        .build()
        .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn internal_targets_are_refused_in_every_spelling() {
        let policy = OutboundPolicy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://10.0.0.1/",
            "http://127.0.0.1:5432/",
            "http://[::1]/",
            "http://0x7f000001/",
            "http://2130706433/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:7f00:1]/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://192.168.1.10:8080/hook",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:7f00:1::]/",
            "http://localhost:8080/",
            "http://api.localhost/",
        ] {
            assert_eq!(
                policy.check_url(url).await,
                Err(UrlError::Blocked),
                "{url} must be refused"
            );
            assert!(!policy.allows_literal(url), "{url} must be refused at send");
        }
    }

    #[tokio::test]
    async fn public_addresses_and_the_opt_in_pass() {
        let policy = OutboundPolicy::default();
        assert_eq!(
            policy.check_url("https://93.184.215.14/hook").await,
            Ok("https://93.184.215.14/hook".to_owned())
        );
        assert!(policy.allows_literal("https://[2606:4700::1111]/hook"));
        let open = OutboundPolicy {
            allow_private: true,
        };
        assert!(open.check_url("http://127.0.0.1:9/x").await.is_ok());
        assert!(open.allows_literal("http://[::1]/"));
        for bad in [
            "ftp://example.com/",
            "http://",
            "not a url",
            "file:///etc/passwd",
        ] {
            assert_eq!(
                policy.check_url(bad).await,
                Err(UrlError::Malformed),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_refused_connection_says_so_and_no_more() {
        let client = client(OutboundPolicy::default()).unwrap();
        // `localhost` goes through the resolver (a name, not an address).
        let err = client
            .get("http://localhost:1/")
            .send()
            .await
            .expect_err("refused");
        assert!(is_refused(&err), "{err:?}");
    }

    #[tokio::test]
    async fn a_name_that_resolves_inside_is_refused_when_connecting() {
        // A public-looking name whose DNS answer (now) is loopback: the
        // check at entry may have seen another answer (DNS rebinding).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let rebinding: Lookup = Arc::new(move |_host: String| {
            Box::pin(async move { Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))]) })
        });
        let url = format!("http://hooks.example.com:{port}/x");
        let guarded = client_with(OutboundPolicy::default(), rebinding.clone()).unwrap();
        let err = guarded.get(&url).send().await.expect_err("refused");
        assert!(is_refused(&err), "{err:?}");
        let accepted =
            tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
        assert!(accepted.is_err(), "the refused request connected");
        // With the operator's opt-in the same answer is used.
        let open = client_with(
            OutboundPolicy {
                allow_private: true,
            },
            rebinding,
        )
        .unwrap();
        let sent = tokio::spawn(async move { open.get(&url).send().await });
        let accepted =
            tokio::time::timeout(std::time::Duration::from_secs(5), listener.accept()).await;
        assert!(
            accepted.is_ok_and(|a| a.is_ok()),
            "the allowed request did not connect"
        );
        sent.abort();
    }
}
