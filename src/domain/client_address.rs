//! The client's address: the TCP peer, or, when the peer is a proxy the operator named
//! (`--trusted-proxy`), the address that proxy chain reports in RFC 7239 `Forwarded` or in
//! `X-Forwarded-For`. Throttling, the access log and the audit trail all use it.
//!
//! A proxy appends the address it received the request from, so the header's entries are in hop
//! order and only the rightmost ones were written by proxies the operator trusts; anything to the
//! left of the first untrusted entry is whatever the client chose to send. The rule: walking from
//! the right, skip entries that are themselves trusted proxies; the first that is not is the
//! client. An entry that is `unknown`, an obfuscated identifier (RFC 7239 6.3) or does not parse
//! stops the walk at the last trusted hop, which is then the best address known.
//!
//! Which header is read is the operator's choice ([`ForwardedHeaders`]): by default RFC 7239
//! `Forwarded` when a request carries it, else `X-Forwarded-For`. A header is only as trustworthy
//! as the proxies that write it (RFC 7239 8.1): behind a proxy that appends only to
//! `X-Forwarded-For` and passes a client's own `Forwarded` through, the default would read the
//! client's header, so such a proxy must drop `Forwarded` or the operator must choose
//! `x-forwarded-for`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// The proxies whose forwarding headers are believed, and which header they write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    ranges: Vec<IpNet>,
    headers: ForwardedHeaders,
}

/// Which forwarding header the trusted proxies write (`--forwarded-headers`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ForwardedHeaders {
    /// `Forwarded` when the request carries it, else `X-Forwarded-For`.
    #[default]
    ForwardedFirst,
    /// Only RFC 7239 `Forwarded`.
    Forwarded,
    /// Only `X-Forwarded-For` (a client's `Forwarded` is ignored).
    XForwardedFor,
}

impl ForwardedHeaders {
    pub const NAMES: [&'static str; 3] = ["forwarded-first", "forwarded", "x-forwarded-for"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "forwarded-first" => Some(Self::ForwardedFirst),
            "forwarded" => Some(Self::Forwarded),
            "x-forwarded-for" => Some(Self::XForwardedFor),
            _ => None,
        }
    }
}

impl TrustedProxies {
    pub fn new(ranges: Vec<IpNet>, headers: ForwardedHeaders) -> Self {
        Self { ranges, headers }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.ranges.iter().any(|range| range.contains(&address))
    }
}

/// Parses one `--trusted-proxy` value: a CIDR range (`10.0.0.0/8`, `fd00::/8`) or a single
/// address (`/32` or `/128`).
pub fn parse_trusted_proxy(value: &str) -> Result<IpNet, String> {
    let value = value.trim();
    IpNet::from_str(value)
        .or_else(|_| IpAddr::from_str(value).map(IpNet::from))
        .map(|range| range.trunc())
        .map_err(|_| {
            format!("not a CIDR range or an IP address: {value:?} (expected e.g. 10.0.0.0/8)")
        })
}

/// Why a forwarded address was not taken, for the debug log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// `unknown`, an obfuscated identifier, or a value that is not an address.
    Unusable,
    /// The header itself is not in the expected syntax.
    Malformed,
}

/// The client's address and, when a header entry could not be used, why not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved {
    pub address: IpAddr,
    pub fallback: Option<Fallback>,
}

/// The client address of a request from `peer` carrying these `Forwarded` and `X-Forwarded-For`
/// header lines (each in the order received).
pub fn resolve<'a>(
    peer: IpAddr,
    forwarded: impl IntoIterator<Item = &'a [u8]>,
    x_forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    trusted: &TrustedProxies,
) -> Resolved {
    let direct = Resolved {
        address: canonical(peer),
        fallback: None,
    };
    if !trusted.trusts(peer) {
        return direct;
    }
    let forwarded: Vec<&[u8]> = match trusted.headers {
        ForwardedHeaders::XForwardedFor => Vec::new(),
        _ => forwarded.into_iter().collect(),
    };
    let entries = if !forwarded.is_empty() {
        forwarded_for_entries(&forwarded)
    } else if trusted.headers == ForwardedHeaders::Forwarded {
        return direct;
    } else {
        let lines: Vec<&[u8]> = x_forwarded_for.into_iter().collect();
        if lines.is_empty() {
            return direct;
        }
        x_forwarded_for_entries(&lines)
    };
    let Some(entries) = entries else {
        return Resolved {
            fallback: Some(Fallback::Malformed),
            ..direct
        };
    };
    let mut last_trusted = direct.address;
    for entry in entries.iter().rev() {
        match node_address(entry) {
            Some(address) if trusted.trusts(address) => last_trusted = canonical(address),
            Some(address) => {
                return Resolved {
                    address: canonical(address),
                    fallback: None,
                }
            }
            None => {
                return Resolved {
                    address: last_trusted,
                    fallback: Some(Fallback::Unusable),
                }
            }
        }
    }
    Resolved {
        address: last_trusted,
        fallback: None,
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack socket reports) as IPv4.
pub fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    }
}

/// The `for=` values of every `Forwarded` element, in order (RFC 7239 4: elements are separated by
/// commas, within and across header lines; pairs by semicolons; a value is a token or a quoted
/// string). `None` when a line is not in that syntax.
fn forwarded_for_entries(lines: &[&[u8]]) -> Option<Vec<String>> {
    let mut entries = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        for element in split_outside_quotes(line, ',')? {
            for pair in split_outside_quotes(&element, ';')? {
                let pair = pair.trim();
                if pair.is_empty() {
                    continue;
                }
                let (name, value) = pair.split_once('=')?;
                if name.trim().eq_ignore_ascii_case("for") {
                    entries.push(unquote(value.trim())?);
                }
            }
        }
    }
    Some(entries)
}

/// `X-Forwarded-For`: comma-separated addresses, within and across lines.
fn x_forwarded_for_entries(lines: &[&[u8]]) -> Option<Vec<String>> {
    let mut entries = Vec::new();
    for line in lines {
        let line = std::str::from_utf8(line).ok()?;
        entries.extend(line.split(',').map(|entry| entry.trim().to_string()));
    }
    Some(entries)
}

/// Splits at `separator` outside double-quoted strings; `None` when a quote is left open.
fn split_outside_quotes(text: &str, separator: char) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            current.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' if quoted => {
                current.push(c);
                escaped = true;
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c == separator && !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return None;
    }
    parts.push(current);
    Some(parts)
}

/// A token as is, a quoted string without its quotes and escapes.
fn unquote(value: &str) -> Option<String> {
    match value.strip_prefix('"') {
        None => Some(value.to_string()),
        Some(rest) => {
            let inner = rest.strip_suffix('"')?;
            let mut unquoted = String::with_capacity(inner.len());
            let mut escaped = false;
            for c in inner.chars() {
                if escaped || c != '\\' {
                    unquoted.push(c);
                    escaped = false;
                } else {
                    escaped = true;
                }
            }
            Some(unquoted)
        }
    }
}

/// RFC 7239 6: `node = nodename [ ":" node-port ]`, a nodename being an IPv4 address, an IPv6
/// address in brackets, `unknown` or an obfuscated `_identifier`. `X-Forwarded-For` entries are
/// taken the same way, plus a bare IPv6 address. `None` for anything that names no address.
fn node_address(node: &str) -> Option<IpAddr> {
    let node = node.trim();
    if let Ok(address) = IpAddr::from_str(node) {
        return Some(address);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        let port_ok = after.is_empty() || after.strip_prefix(':').is_some_and(valid_port);
        return port_ok
            .then(|| Ipv6Addr::from_str(inside).ok().map(IpAddr::V6))
            .flatten();
    }
    let (host, port) = node.rsplit_once(':')?;
    if !valid_port(port) {
        return None;
    }
    Ipv4Addr::from_str(host).ok().map(IpAddr::V4)
}

/// RFC 7239 6.1: `node-port = port / obfport`.
fn valid_port(port: &str) -> bool {
    port.parse::<u16>().is_ok()
        || (port.starts_with('_')
            && port.len() > 1
            && port[1..]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(ranges: &[&str]) -> TrustedProxies {
        proxies_writing(ranges, ForwardedHeaders::default())
    }

    fn proxies_writing(ranges: &[&str], headers: ForwardedHeaders) -> TrustedProxies {
        TrustedProxies::new(
            ranges
                .iter()
                .map(|range| parse_trusted_proxy(range).unwrap())
                .collect(),
            headers,
        )
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn client(peer: &str, forwarded: &[&str], xff: &[&str], trusted: &[&str]) -> Resolved {
        resolve(
            ip(peer),
            forwarded.iter().map(|line| line.as_bytes()),
            xff.iter().map(|line| line.as_bytes()),
            &proxies(trusted),
        )
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_sends() {
        let resolved = client(
            "198.51.100.7",
            &["for=203.0.113.9"],
            &["203.0.113.9"],
            &["10.0.0.0/8"],
        );
        assert_eq!(resolved.address, ip("198.51.100.7"));
        let none_trusted = client("10.0.0.1", &[], &["203.0.113.9"], &[]);
        assert_eq!(none_trusted.address, ip("10.0.0.1"));
    }

    #[test]
    fn a_chain_of_trusted_proxies_yields_the_first_untrusted_address_from_the_right() {
        let trusted = ["10.0.0.0/8", "2001:db8:ffff::/48"];
        let xff = client(
            "10.0.0.1",
            &[],
            &["198.51.100.1, 203.0.113.9, 10.0.0.2"],
            &trusted,
        );
        assert_eq!(
            xff.address,
            ip("203.0.113.9"),
            "the spoofed first entry is ignored"
        );
        let lines = client(
            "10.0.0.1",
            &[],
            &["198.51.100.1", "203.0.113.9, 10.0.0.2"],
            &trusted,
        );
        assert_eq!(lines.address, ip("203.0.113.9"), "several header lines");
        let forwarded = client(
            "10.0.0.1",
            &[
                "for=198.51.100.1;proto=https, for=\"[2001:db8::7]:4711\"",
                "For=\"[2001:db8:ffff::1]\";by=10.0.0.1",
            ],
            &["192.0.2.99"],
            &trusted,
        );
        assert_eq!(
            forwarded.address,
            ip("2001:db8::7"),
            "Forwarded wins, IPv6 with a port"
        );
        let all_trusted = client("10.0.0.1", &[], &["10.0.0.3, 10.0.0.2"], &trusted);
        assert_eq!(all_trusted.address, ip("10.0.0.3"));
    }

    #[test]
    fn unknown_obfuscated_or_malformed_entries_mean_the_last_trusted_hop() {
        let trusted = ["10.0.0.0/8"];
        for (forwarded, expected, why) in [
            ("for=unknown, for=10.0.0.2", "10.0.0.2", Fallback::Unusable),
            ("for=_hidden", "10.0.0.1", Fallback::Unusable),
            (
                "for=\"203.0.113.9:_port\", for=nonsense",
                "10.0.0.1",
                Fallback::Unusable,
            ),
            ("for=\"unterminated", "10.0.0.1", Fallback::Malformed),
            ("garbage", "10.0.0.1", Fallback::Malformed),
        ] {
            let resolved = client("10.0.0.1", &[forwarded], &[], &trusted);
            assert_eq!(resolved.address, ip(expected), "{forwarded}");
            assert_eq!(resolved.fallback, Some(why), "{forwarded}");
        }
        let ported = client("10.0.0.1", &["for=\"203.0.113.9:8080\""], &[], &trusted);
        assert_eq!((ported.address, ported.fallback), (ip("203.0.113.9"), None));
        let bad_xff = client("10.0.0.1", &[], &["203.0.113.9, not-an-ip"], &trusted);
        assert_eq!(bad_xff.address, ip("10.0.0.1"));
    }

    /// Behind a proxy that appends only to `X-Forwarded-For`, a client's own `Forwarded` must not
    /// choose its address: the operator says which header the proxies write.
    #[test]
    fn the_operator_chooses_which_header_the_proxies_write() {
        let lines = (["for=198.51.100.7"], ["203.0.113.9"]);
        let resolve_with = |headers| {
            resolve(
                ip("10.0.0.1"),
                lines.0.iter().map(|line| line.as_bytes()),
                lines.1.iter().map(|line| line.as_bytes()),
                &proxies_writing(&["10.0.0.0/8"], headers),
            )
            .address
        };
        assert_eq!(
            resolve_with(ForwardedHeaders::XForwardedFor),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve_with(ForwardedHeaders::Forwarded),
            ip("198.51.100.7")
        );
        assert_eq!(
            resolve_with(ForwardedHeaders::ForwardedFirst),
            ip("198.51.100.7")
        );
        let only_forwarded = resolve(
            ip("10.0.0.1"),
            std::iter::empty(),
            ["203.0.113.9".as_bytes()],
            &proxies_writing(&["10.0.0.0/8"], ForwardedHeaders::Forwarded),
        );
        assert_eq!(
            only_forwarded.address,
            ip("10.0.0.1"),
            "X-Forwarded-For is not read"
        );
        for name in ForwardedHeaders::NAMES {
            assert!(ForwardedHeaders::parse(name).is_some());
        }
        assert_eq!(ForwardedHeaders::parse("both"), None);
    }

    #[test]
    fn mapped_ipv4_peers_and_entries_count_as_ipv4() {
        let resolved = client(
            "::ffff:10.0.0.1",
            &[],
            &["::ffff:203.0.113.9"],
            &["10.0.0.0/8"],
        );
        assert_eq!(resolved.address, ip("203.0.113.9"));
    }

    #[test]
    fn trusted_proxy_values_are_ranges_or_single_addresses() {
        assert_eq!(
            parse_trusted_proxy("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_trusted_proxy("192.0.2.1").unwrap().to_string(),
            "192.0.2.1/32"
        );
        assert_eq!(parse_trusted_proxy("::1").unwrap().to_string(), "::1/128");
        for bad in ["10.0.0.0/33", "example.com", "", "10.0.0/8", "fd00::/129"] {
            let message = parse_trusted_proxy(bad).unwrap_err();
            assert!(message.contains(&format!("{bad:?}")), "{message}");
        }
    }
}
