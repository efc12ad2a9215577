//! Where the delivery worker may connect: its defence against server-side request forgery.
//!
//! Every connection goes to an address checked when it is made: a host name is resolved and
//! its addresses filtered ([`CheckedResolver`] for HTTP, [`EgressPolicy::resolve`] for SMTP),
//! so a name that resolves to an internal address, now or after a DNS change, is refused too;
//! an IP literal in a URL (which an HTTP client connects to without resolving) is checked
//! before the request. Internal means any [`AddressScope`] but `public`, judged on the
//! address reached (IPv4-mapped and other IPv6 forms by their IPv4 address).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use ipnet::IpNet;
use ledger_domain::AddressScope;

/// The SMTP ports allowed by default: 25 (relay), 465 (implicit TLS), 587 (submission).
pub const SMTP_PORTS_DEFAULT: [u16; 3] = [25, 465, 587];

/// An allowlist entry: an IP network (`10.1.0.0/16`, or one address `127.0.0.1`, `::1`) or a
/// host name whose addresses are all allowed (`relay.internal`, compared without case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedTarget {
    Network(IpNet),
    Host(String),
}

impl FromStr for AllowedTarget {
    type Err = EgressRefused;

    /// `a.b.c.d/len`, `x::y/len`, an IP address, or a host name (letters, digits, `-`, `.`).
    fn from_str(value: &str) -> Result<AllowedTarget, EgressRefused> {
        let value = value.trim();
        if let Ok(network) = value.parse::<IpNet>() {
            return Ok(AllowedTarget::Network(network.trunc()));
        }
        if let Ok(address) = value.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(AllowedTarget::Network(IpNet::from(address.to_canonical())));
        }
        let is_name = !value.is_empty()
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if is_name {
            Ok(AllowedTarget::Host(value.to_ascii_lowercase()))
        } else {
            Err(EgressRefused::AllowlistEntry {
                entry: value.to_owned(),
            })
        }
    }
}

impl fmt::Display for AllowedTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AllowedTarget::Network(network) => network.fmt(f),
            AllowedTarget::Host(host) => f.write_str(host),
        }
    }
}

/// Where the delivery worker may send. The default: `https` only, SMTP ports 25, 465 and
/// 587, no internal address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Also send to `http://` URLs (a receiver inside a private network, tests).
    pub allow_http: bool,
    /// Internal addresses and hosts the worker may reach anyway.
    pub allowlist: Vec<AllowedTarget>,
    /// The SMTP ports the worker may connect to.
    pub smtp_ports: Vec<u16>,
}

impl Default for EgressPolicy {
    fn default() -> EgressPolicy {
        EgressPolicy {
            allow_http: false,
            allowlist: Vec::new(),
            smtp_ports: SMTP_PORTS_DEFAULT.to_vec(),
        }
    }
}

/// Why the worker refused to connect; recorded as the attempt's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefused {
    #[error(
        "scheme `{scheme}` refused: the worker sends to https:// URLs (http:// only with --notify-allow-http)"
    )]
    Scheme { scheme: String },
    #[error("not a URL with a host")]
    NotAUrl,
    #[error(
        "`{host}` is {address}, a {scope} address, not in the worker's allowlist (--notify-allow-internal)"
    )]
    InternalAddress {
        host: String,
        address: IpAddr,
        scope: &'static str,
    },
    #[error("SMTP port {port} refused: not in the worker's --notify-smtp-ports")]
    SmtpPort { port: u16 },
    #[error("cannot resolve `{host}`: {reason}")]
    Unresolved { host: String, reason: String },
    #[error("allowlist entry `{entry}` is neither an IP network, an IP address nor a host name")]
    AllowlistEntry { entry: String },
}

impl EgressPolicy {
    /// Whether `host` (the name as written in the target) may reach `address`.
    pub fn check_address(&self, host: &str, address: IpAddr) -> Result<(), EgressRefused> {
        let address = address.to_canonical();
        let scope = AddressScope::of(address);
        let host = host.trim_matches(['[', ']']);
        let allowed = scope.is_public()
            || self.allowlist.iter().any(|allowed| match allowed {
                AllowedTarget::Network(network) => network.contains(&address),
                AllowedTarget::Host(name) => name.eq_ignore_ascii_case(host),
            });
        if allowed {
            Ok(())
        } else {
            Err(EgressRefused::InternalAddress {
                host: host.to_owned(),
                address,
                scope: scope.as_str(),
            })
        }
    }

    /// Checks an HTTP target before the request: the scheme, and the host when it is an IP
    /// literal in any spelling (`http://0x7f.1/` is 127.0.0.1), which is connected to without
    /// resolving. Names are checked by [`CheckedResolver`] at connection time.
    pub fn check_url(&self, url: &str) -> Result<reqwest::Url, EgressRefused> {
        let url = reqwest::Url::parse(url).map_err(|_| EgressRefused::NotAUrl)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            scheme => {
                return Err(EgressRefused::Scheme {
                    scheme: scheme.to_owned(),
                });
            }
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        match url.host() {
            None => return Err(EgressRefused::NotAUrl),
            Some(url::Host::Domain(_)) => {}
            Some(url::Host::Ipv4(address)) => self.check_address(&host, address.into())?,
            Some(url::Host::Ipv6(address)) => self.check_address(&host, address.into())?,
        }
        Ok(url)
    }

    /// Resolves `host` (a name or an IP address) and keeps the addresses it may reach, in the
    /// resolver's order; refuses when none is left.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressRefused> {
        let bare = host.trim_matches(['[', ']']);
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|error| EgressRefused::Unresolved {
                host: host.to_owned(),
                reason: error.to_string(),
            })?
            .collect();
        let mut allowed = Vec::with_capacity(resolved.len());
        let mut first_refusal = None;
        for address in resolved {
            match self.check_address(bare, address.ip()) {
                Ok(()) => allowed.push(address),
                Err(refused) => {
                    first_refusal.get_or_insert(refused);
                }
            }
        }
        match (allowed.is_empty(), first_refusal) {
            (false, _) => Ok(allowed),
            (true, Some(refused)) => Err(refused),
            (true, None) => Err(EgressRefused::Unresolved {
                host: host.to_owned(),
                reason: "no address".to_owned(),
            }),
        }
    }

    /// Whether the worker may connect to SMTP port `port`.
    pub fn check_smtp_port(&self, port: u16) -> Result<(), EgressRefused> {
        if self.smtp_ports.contains(&port) {
            Ok(())
        } else {
            Err(EgressRefused::SmtpPort { port })
        }
    }
}

/// reqwest's resolver for the worker: resolves with the system resolver, then keeps only the
/// addresses the policy allows; called for every new connection.
#[derive(Debug)]
pub(crate) struct CheckedResolver {
    pub(crate) policy: Arc<EgressPolicy>,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addresses = policy.resolve(name.as_str(), 0).await?;
            let addresses: reqwest::dns::Addrs = Box::new(addresses.into_iter());
            Ok(addresses)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(policy: &EgressPolicy, url: &str) -> Option<String> {
        policy
            .check_url(url)
            .err()
            .map(|refused| refused.to_string())
    }

    #[test]
    fn literal_internal_addresses_are_refused_in_every_spelling() {
        let policy = EgressPolicy {
            allow_http: true,
            ..EgressPolicy::default()
        };
        let cases = [
            (
                "http://169.254.169.254/latest/meta-data",
                "169.254.169.254",
                "169.254.169.254",
                "link-local",
            ),
            ("http://10.0.0.1/", "10.0.0.1", "10.0.0.1", "private"),
            ("http://[::1]/", "::1", "::1", "loopback"),
            ("http://2130706433/", "127.0.0.1", "127.0.0.1", "loopback"),
            (
                "http://127.0.0.1:6379/",
                "127.0.0.1",
                "127.0.0.1",
                "loopback",
            ),
            ("http://0x7f.1/", "127.0.0.1", "127.0.0.1", "loopback"),
            ("http://017700000001/", "127.0.0.1", "127.0.0.1", "loopback"),
            ("http://0177.0.0.1/", "127.0.0.1", "127.0.0.1", "loopback"),
            ("http://127.1/", "127.0.0.1", "127.0.0.1", "loopback"),
            (
                "http://[::ffff:127.0.0.1]/",
                "::ffff:7f00:1",
                "127.0.0.1",
                "loopback",
            ),
            (
                "http://[::ffff:a9fe:a9fe]/",
                "::ffff:a9fe:a9fe",
                "169.254.169.254",
                "link-local",
            ),
            (
                "http://[0:0:0:0:0:ffff:7f00:1]/",
                "::ffff:7f00:1",
                "127.0.0.1",
                "loopback",
            ),
            ("http://[fe80::1]/", "fe80::1", "fe80::1", "link-local"),
            ("http://[fd00::1]/", "fd00::1", "fd00::1", "private"),
            ("http://[::]/", "::", "::", "unspecified"),
            ("http://0.0.0.0/", "0.0.0.0", "0.0.0.0", "unspecified"),
            (
                "http://192.168.0.1%2e/",
                "192.168.0.1",
                "192.168.0.1",
                "private",
            ),
            (
                "http://user:pass@127.0.0.1/",
                "127.0.0.1",
                "127.0.0.1",
                "loopback",
            ),
        ];
        for (url, host, address, scope) in cases {
            assert_eq!(
                refusal(&policy, url),
                Some(format!(
                    "`{host}` is {address}, a {scope} address, not in the worker's allowlist (--notify-allow-internal)"
                )),
                "{url}"
            );
        }
        assert_eq!(refusal(&policy, "https://8.8.8.8/"), None);
        assert_eq!(
            refusal(&policy, "https://hooks.slack.com/services/T/B/X"),
            None
        );
    }

    #[test]
    fn only_https_by_default() {
        let policy = EgressPolicy::default();
        assert_eq!(
            policy.check_url("http://8.8.8.8/").err(),
            Some(EgressRefused::Scheme {
                scheme: "http".to_owned()
            })
        );
        assert_eq!(
            policy.check_url("gopher://8.8.8.8:6379/").err(),
            Some(EgressRefused::Scheme {
                scheme: "gopher".to_owned()
            })
        );
        assert_eq!(policy.check_smtp_port(587), Ok(()));
        assert_eq!(
            policy.check_smtp_port(6379),
            Err(EgressRefused::SmtpPort { port: 6379 })
        );
    }

    #[test]
    fn the_allowlist_names_networks_addresses_and_hosts() {
        let allowlist = ["127.0.0.1", "10.1.0.0/16", "[fd00::5]", "Relay.Internal"]
            .iter()
            .map(|entry| entry.parse())
            .collect::<Result<Vec<AllowedTarget>, _>>()
            .expect("valid entries");
        assert_eq!(
            allowlist
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            [
                "127.0.0.1/32",
                "10.1.0.0/16",
                "fd00::5/128",
                "relay.internal"
            ]
        );
        let policy = EgressPolicy {
            allow_http: true,
            allowlist,
            ..EgressPolicy::default()
        };
        let loopback = "127.0.0.1".parse().expect("an address");
        assert_eq!(policy.check_address("127.0.0.1", loopback), Ok(()));
        assert_eq!(refusal(&policy, "http://[::ffff:127.0.0.1]:8080/"), None);
        assert_eq!(refusal(&policy, "http://10.1.200.3/"), None);
        assert!(refusal(&policy, "http://10.2.0.1/").is_some());
        assert!(refusal(&policy, "http://127.0.0.2/").is_some());
        assert!(refusal(&policy, "http://[::1]/").is_some());
        let private = "10.9.9.9".parse().expect("an address");
        assert_eq!(policy.check_address("relay.internal", private), Ok(()));
        assert_eq!(
            "not a host/".parse::<AllowedTarget>(),
            Err(EgressRefused::AllowlistEntry {
                entry: "not a host/".to_owned()
            })
        );
    }

    #[tokio::test]
    async fn names_are_checked_on_the_addresses_they_resolve_to() {
        let policy = EgressPolicy::default();
        let refused = policy
            .resolve("localhost", 443)
            .await
            .expect_err("loopback");
        assert!(
            matches!(
                &refused,
                EgressRefused::InternalAddress { host, scope: "loopback", .. } if host == "localhost"
            ),
            "{refused:?}"
        );
        let allowed = EgressPolicy {
            allowlist: vec![AllowedTarget::Network(
                "127.0.0.0/8".parse().expect("a network"),
            )],
            ..EgressPolicy::default()
        };
        let addresses = allowed.resolve("localhost", 443).await.expect("allowed");
        assert_eq!(
            addresses,
            vec!["127.0.0.1:443".parse::<SocketAddr>().expect("an address")],
            "::1 is filtered out, 127.0.0.1 kept"
        );
    }
}
