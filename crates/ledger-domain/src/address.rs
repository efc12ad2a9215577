//! Where an IP address lives: on the public internet, or somewhere a server-side request must
//! not reach unless an operator says so (loopback, private networks, link-local cloud metadata
//! endpoints such as `169.254.169.254`, multicast, ...).
//!
//! Ranges from the IANA special-purpose address registries (RFC 6890 and its updates:
//! <https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>). IPv6 addresses that embed an
//! IPv4 address (IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible `::a.b.c.d`, NAT64
//! `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`) are judged by the IPv4 address they reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The scope of an IP address, for deciding whether the ledger may send to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressScope {
    /// Routable on the internet.
    Public,
    /// `0.0.0.0/8`, `::`: "this host"; connecting to it reaches the local machine.
    Unspecified,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// `10/8`, `172.16/12`, `192.168/16`, `100.64/10` (carrier-grade NAT), `fc00::/7`
    /// (unique local), `fec0::/10` (site-local).
    Private,
    /// `169.254/16` (cloud metadata services), `fe80::/10`.
    LinkLocal,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation, benchmarking, protocol-assignment and future-use ranges (`192.0.0/24`,
    /// `192.0.2/24`, `198.18/15`, `198.51.100/24`, `203.0.113/24`, `240/4`, `2001:db8::/32`,
    /// `100::/64`): never a real receiver.
    Reserved,
}

impl AddressScope {
    /// The scope of `address` (IPv6 forms embedding an IPv4 address are judged by it).
    pub fn of(address: IpAddr) -> AddressScope {
        match address {
            IpAddr::V4(v4) => scope_v4(v4),
            IpAddr::V6(v6) => scope_v6(v6),
        }
    }

    /// Whether a server-side request may go there without an operator's allowlist.
    pub fn is_public(self) -> bool {
        self == AddressScope::Public
    }

    /// Whether no configuration can make it a receiver: "this host", multicast and broadcast
    /// are refused when an integration is registered, whatever the allowlist.
    pub fn is_never_a_receiver(self) -> bool {
        matches!(
            self,
            AddressScope::Unspecified | AddressScope::Multicast | AddressScope::Broadcast
        )
    }

    /// The word used in rejections and delivery errors: `public`, `unspecified`, `loopback`,
    /// `private`, `link-local`, `multicast`, `broadcast`, `reserved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressScope::Public => "public",
            AddressScope::Unspecified => "unspecified",
            AddressScope::Loopback => "loopback",
            AddressScope::Private => "private",
            AddressScope::LinkLocal => "link-local",
            AddressScope::Multicast => "multicast",
            AddressScope::Broadcast => "broadcast",
            AddressScope::Reserved => "reserved",
        }
    }
}

fn scope_v4(address: Ipv4Addr) -> AddressScope {
    let [a, b, c, _] = address.octets();
    match (a, b, c) {
        _ if address.is_broadcast() => AddressScope::Broadcast,
        (0, _, _) => AddressScope::Unspecified,
        (127, _, _) => AddressScope::Loopback,
        (10, _, _) | (192, 168, _) => AddressScope::Private,
        (172, 16..=31, _) | (100, 64..=127, _) => AddressScope::Private,
        (169, 254, _) => AddressScope::LinkLocal,
        (224..=239, _, _) => AddressScope::Multicast,
        (240..=255, _, _) => AddressScope::Reserved,
        (192, 0, 0 | 2) | (198, 18 | 19, _) | (198, 51, 100) | (203, 0, 113) => {
            AddressScope::Reserved
        }
        _ => AddressScope::Public,
    }
}

fn scope_v6(address: Ipv6Addr) -> AddressScope {
    if let Some(v4) = embedded_v4(address) {
        return scope_v4(v4);
    }
    let segments = address.segments();
    match segments[0] {
        _ if address.is_unspecified() => AddressScope::Unspecified,
        _ if address.is_loopback() => AddressScope::Loopback,
        0xfc00..=0xfdff | 0xfec0..=0xfeff => AddressScope::Private,
        0xfe80..=0xfebf => AddressScope::LinkLocal,
        0xff00..=0xffff => AddressScope::Multicast,
        0x2001 if segments[1] == 0x0db8 => AddressScope::Reserved,
        0x0100 if segments[1..4] == [0, 0, 0] => AddressScope::Reserved,
        _ => AddressScope::Public,
    }
}

/// The IPv4 address an IPv6 address stands for, if it embeds one.
fn embedded_v4(address: Ipv6Addr) -> Option<Ipv4Addr> {
    let segments = address.segments();
    let low = |high: u16, low: u16| {
        let [a, b] = high.to_be_bytes();
        let [c, d] = low.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    match segments {
        // IPv4-mapped `::ffff:a.b.c.d` and IPv4-compatible `::a.b.c.d` (deprecated, but some
        // stacks still route it); `::` and `::1` are IPv6's own.
        [0, 0, 0, 0, 0, 0xffff, high, lower] => Some(low(high, lower)),
        [0, 0, 0, 0, 0, 0, high, lower] if high != 0 => Some(low(high, lower)),
        // NAT64 (RFC 6052), well-known and local-use prefixes.
        [0x64, 0xff9b, 0, 0, 0, 0, high, lower] | [0x64, 0xff9b, 1, _, _, _, high, lower] => {
            Some(low(high, lower))
        }
        // 6to4 (RFC 3056): 2002:aabb:ccdd::/48.
        [0x2002, high, lower, ..] => Some(low(high, lower)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(text: &str) -> &'static str {
        AddressScope::of(text.parse().expect("an IP address")).as_str()
    }

    #[test]
    fn every_internal_range_and_ipv6_spelling_is_classified() {
        let cases = [
            ("8.8.8.8", "public"),
            ("2606:4700::1111", "public"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("::1", "loopback"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:7f00:1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::127.0.0.1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("172.32.0.1", "public"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "private"),
            ("100.128.0.1", "public"),
            ("fc00::1", "private"),
            ("fd12:3456::1", "private"),
            ("fec0::1", "private"),
            ("::ffff:10.0.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("::ffff:169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.1", "reserved"),
            ("198.18.0.1", "reserved"),
            ("2001:db8::1", "reserved"),
            ("::ffff:8.8.8.8", "public"),
        ];
        for (address, expected) in cases {
            assert_eq!(scope(address), expected, "{address}");
        }
    }
}
