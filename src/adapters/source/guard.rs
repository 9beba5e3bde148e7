//! The source guard: which URLs may be fetched and which addresses may be connected to. The
//! URL comes from an unauthenticated request body, so before a byte is sent the guard checks
//! scheme, userinfo, host and port, resolves the host itself and refuses addresses that are not
//! public; the client connects only through the same checking resolver.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::error::{Error, Result};

/// A name that does not resolve in this long is treated as a passing failure.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One `SOURCE_HOSTS` entry. IP literals and `localhost` name a local address explicitly, which
/// is the only way a non-public address (or plain http, for loopback) is ever allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Allowed {
    Domain(String),
    Localhost,
    Ip(IpAddr),
}

/// Name resolution, replaceable so tests can make an allowed name resolve anywhere.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: String) -> LookupFuture;
}

pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// The system resolver (getaddrinfo), as every other program on the host uses.
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> LookupFuture {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((host.as_str(), 0)).await?;
            Ok(addrs.map(|a| a.ip()).collect())
        })
    }
}

/// Decides which URLs may be fetched and which addresses may be connected to.
pub struct SourceGuard {
    allowed: Vec<Allowed>,
    lookup: Arc<dyn Lookup>,
    lookup_timeout: Duration,
}

/// A refusal raised inside the client's resolver, recognised again in the request error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct Refused(pub(super) String);

impl SourceGuard {
    /// `hosts` as in `SOURCE_HOSTS`: bare host names or IP literals (`[::1]` for IPv6).
    pub fn new(hosts: &[String]) -> Result<SourceGuard> {
        let allowed = hosts
            .iter()
            .map(|raw| parse_entry(raw))
            .collect::<Result<Vec<_>>>()?;
        Ok(SourceGuard {
            allowed,
            lookup: Arc::new(SystemLookup),
            lookup_timeout: LOOKUP_TIMEOUT,
        })
    }

    pub fn with_lookup(mut self, lookup: Arc<dyn Lookup>) -> SourceGuard {
        self.lookup = lookup;
        self
    }

    /// Everything that needs no network: userinfo, scheme, host, port.
    fn check_url(&self, url: &Url) -> Result<Allowed> {
        if !url.username().is_empty() || url.password().is_some() {
            return Err(refused("the URL carries credentials"));
        }
        let scheme = url.scheme();
        if scheme != "https" && scheme != "http" {
            return Err(refused(format!("scheme {scheme} is not allowed")));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(refused("the URL has no host"));
        };
        // The URL parser has already normalised IPv4 forms (`2130706433` is `127.0.0.1`).
        let entry = match literal_ip(host) {
            Some(ip) => self.entry_for_ip(ip),
            None => self.entry_for_name(host),
        };
        let Some(entry) = entry else {
            return Err(refused(format!("host {host} is not in SOURCE_HOSTS")));
        };
        let loopback_named = match &entry {
            Allowed::Localhost => true,
            Allowed::Ip(ip) => ip.is_loopback(),
            Allowed::Domain(_) => false,
        };
        if scheme == "http" && !loopback_named {
            return Err(refused(format!(
                "plain http to {host}: only https, unless SOURCE_HOSTS names a loopback host"
            )));
        }
        // Public hosts are storage endpoints: their only port is 443.
        if matches!(entry, Allowed::Domain(_)) && url.port().is_some_and(|p| p != 443) {
            return Err(refused(format!("port {:?} on {host}", url.port())));
        }
        Ok(entry)
    }

    fn entry_for_name(&self, domain: &str) -> Option<Allowed> {
        let name = domain.trim_end_matches('.').to_ascii_lowercase();
        self.allowed
            .iter()
            .find(|entry| match entry {
                Allowed::Domain(d) => *d == name,
                Allowed::Localhost => name == "localhost",
                Allowed::Ip(_) => false,
            })
            .cloned()
    }

    fn entry_for_ip(&self, ip: IpAddr) -> Option<Allowed> {
        self.allowed
            .iter()
            .find(|entry| **entry == Allowed::Ip(ip))
            .cloned()
    }

    /// The addresses `host` may be reached at; refuses the host if any of them is not allowed,
    /// since one bad answer is enough to show the name is not what it claims.
    async fn addresses(&self, host: &str, entry: &Allowed) -> Result<Vec<IpAddr>> {
        if let Allowed::Ip(ip) = entry {
            return Ok(vec![*ip]);
        }
        let lookup = self.lookup.lookup(host.trim_end_matches('.').to_owned());
        let addrs = match tokio::time::timeout(self.lookup_timeout, lookup).await {
            Ok(Ok(addrs)) => addrs,
            Ok(Err(err)) => return Err(Error::source_from(&format!("resolving {host}"), err)),
            Err(_) => return Err(Error::source(format!("resolving {host}: timed out"))),
        };
        if addrs.is_empty() {
            return Err(Error::source(format!("{host} has no address")));
        }
        for ip in &addrs {
            let ok = match entry {
                Allowed::Localhost => ip.is_loopback(),
                _ => is_public(*ip),
            };
            if !ok {
                return Err(refused(format!(
                    "{host} resolves to {ip}, which is not a public address"
                )));
            }
        }
        Ok(addrs)
    }

    /// The whole check of one URL, before any request is sent for it.
    pub async fn check(&self, url: &Url) -> Result<()> {
        let entry = self.check_url(url)?;
        self.addresses(url.host_str().unwrap_or_default(), &entry)
            .await
            .map(drop)
    }
}

/// The client's resolver: connections go only to addresses the guard has just approved.
pub(super) struct GuardedResolver(pub(super) Arc<SourceGuard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = Arc::clone(&self.0);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let Some(entry) = guard.entry_for_name(&host) else {
                return Err(Refused(format!("host {host} is not in SOURCE_HOSTS")).into());
            };
            match guard.addresses(&host, &entry).await {
                Ok(ips) => {
                    let addrs: Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
                    Ok(addrs)
                }
                // Plain values, not boxes: `.into()` on a box would box it again and hide
                // the type from the downcast in `request_error`.
                Err(Error::SourceRefused(why)) => Err(Refused(why).into()),
                Err(other) => Err(other.into()),
            }
        })
    }
}

fn literal_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

pub(super) fn refused(why: impl Into<String>) -> Error {
    Error::SourceRefused(why.into())
}

fn parse_entry(raw: &str) -> Result<Allowed> {
    let entry = raw.trim().trim_end_matches('.').to_ascii_lowercase();
    if let Some(ip) = literal_ip(&entry) {
        return Ok(Allowed::Ip(ip));
    }
    if entry == "localhost" {
        return Ok(Allowed::Localhost);
    }
    let valid = !entry.is_empty()
        && entry.len() <= 253
        && entry.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(Error::Config(format!(
            "SOURCE_HOSTS entry {raw:?} is not a host name or IP address (no scheme, port or path)"
        )));
    }
    Ok(Allowed::Domain(entry))
}
/// such an IPv4 address) is refused unless SOURCE_HOSTS names it.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0                                  // "this network"
        || a == 10                                        // private
        || a == 127                                       // loopback
        || (a == 100 && (64..128).contains(&b))           // shared (CGNAT)
        || (a == 169 && b == 254)                         // link-local
        || (a == 172 && (16..32).contains(&b))            // private
        || (a == 192 && b == 0 && c == 0)                 // IETF protocol assignments
        || (a == 192 && b == 0 && c == 2)                 // documentation
        || (a == 192 && b == 88 && c == 99)               // 6to4 relay anycast
        || (a == 192 && b == 168)                         // private
        || (a == 198 && (b == 18 || b == 19))             // benchmarking
        || (a == 198 && b == 51 && c == 100)              // documentation
        || (a == 203 && b == 0 && c == 113)               // documentation
        || a >= 224; // multicast, reserved, broadcast
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    // Forms that carry an IPv4 address are judged by that address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if seg[0] == 0x0064 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        // NAT64 well-known prefix 64:ff9b::/96.
        return is_public_v4(Ipv4Addr::new(
            (seg[6] >> 8) as u8,
            seg[6] as u8,
            (seg[7] >> 8) as u8,
            seg[7] as u8,
        ));
    }
    if seg[0] == 0x2002 {
        // 6to4: the IPv4 address follows the prefix.
        return is_public_v4(Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        ));
    }
    // Only global unicast (2000::/3) is public, minus its special blocks: 2001::/23 (IETF
    // protocol assignments, Teredo, benchmarking, ORCHID) and 2001:db8::/32 (documentation).
    let global_unicast = (seg[0] & 0xe000) == 0x2000;
    let ietf = seg[0] == 0x2001 && seg[1] < 0x0200;
    let documentation = seg[0] == 0x2001 && seg[1] == 0x0db8;
    global_unicast && !ietf && !documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(hosts: &[&str]) -> SourceGuard {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        SourceGuard::new(&hosts).expect("valid hosts")
    }

    fn check(guard: &SourceGuard, url: &str) -> Result<Allowed> {
        guard.check_url(&Url::parse(url).expect("parsable URL"))
    }

    #[test]
    fn non_public_addresses_are_recognised() {
        for ip in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001::1",
            "2001:db8::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert!(!is_public(ip), "{ip} should not be public");
        }
        for ip in [
            "52.217.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "::ffff:52.217.1.1",
            "64:ff9b::808:808",
            "2600:1f18::1",
            "2a00:1450::1",
        ] {
            let ip: IpAddr = ip.parse().expect("test address");
            assert!(is_public(ip), "{ip} should be public");
        }
    }

    #[test]
    fn urls_are_checked_before_any_lookup() {
        let g = guard(&["lalals.s3.amazonaws.com", "127.0.0.1", "10.0.0.7"]);
        assert!(
            check(
                &g,
                "https://lalals.s3.amazonaws.com/a/b.mp3?X-Amz-Signature=s"
            )
            .is_ok()
        );
        assert!(check(&g, "https://LALALS.s3.amazonaws.com./a.mp3").is_ok());
        assert!(check(&g, "https://lalals.s3.amazonaws.com:443/a.mp3").is_ok());
        assert!(check(&g, "http://127.0.0.1:8080/a.mp3").is_ok());
        assert!(check(&g, "https://10.0.0.7/a.mp3").is_ok());
        // Other spellings of a named address are that address.
        assert!(check(&g, "http://2130706433:8080/a.mp3").is_ok());
        for bad in [
            "http://lalals.s3.amazonaws.com/a.mp3",
            "https://lalals.s3.amazonaws.com:8443/a.mp3",
            "https://user:pw@lalals.s3.amazonaws.com/a.mp3",
            "https://user@lalals.s3.amazonaws.com/a.mp3",
            "https://evil.example/a.mp3",
            "https://lalals.s3.amazonaws.com.evil.example/a.mp3",
            "ftp://lalals.s3.amazonaws.com/a.mp3",
            "file:///etc/passwd",
            "http://10.0.0.7/a.mp3",
            "http://localhost:8080/a.mp3",
            "http://[::1]:8080/a.mp3",
        ] {
            let err = check(&g, bad).expect_err(bad);
            assert!(matches!(err, Error::SourceRefused(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn entries_must_be_bare_hosts() {
        for bad in [
            "https://h.example",
            "h.example:443",
            "h.example/x",
            "*",
            "a..b",
        ] {
            let hosts = vec![bad.to_owned()];
            assert!(SourceGuard::new(&hosts).is_err(), "{bad}");
        }
        let g = guard(&["[::1]", "localhost"]);
        assert!(check(&g, "http://[::1]:9/a").is_ok());
        assert!(check(&g, "http://localhost:9/a").is_ok());
    }

    struct Fixed(Vec<IpAddr>);

    impl Lookup for Fixed {
        fn lookup(&self, _host: String) -> LookupFuture {
            let addrs = self.0.clone();
            Box::pin(async move { Ok(addrs) })
        }
    }

    #[tokio::test]
    async fn allowed_names_resolving_to_private_addresses_are_refused() {
        let private =
            guard(&["lalals.s3.amazonaws.com", "localhost"]).with_lookup(Arc::new(Fixed(vec![
                "52.217.1.1".parse().expect("ip"),
                "10.0.0.1".parse().expect("ip"),
            ])));
        let url = Url::parse("https://lalals.s3.amazonaws.com/a.mp3").expect("url");
        let err = private.check(&url).await.expect_err("private");
        assert!(matches!(err, Error::SourceRefused(_)), "{err}");
        // localhost is named explicitly, but must then really be loopback.
        let url = Url::parse("http://localhost:1/a.mp3").expect("url");
        let err = private.check(&url).await.expect_err("not loopback");
        assert!(matches!(err, Error::SourceRefused(_)), "{err}");
        let public = guard(&["lalals.s3.amazonaws.com"])
            .with_lookup(Arc::new(Fixed(vec!["52.217.1.1".parse().expect("ip")])));
        let url = Url::parse("https://lalals.s3.amazonaws.com/a.mp3").expect("url");
        assert!(public.check(&url).await.is_ok());
    }
}
