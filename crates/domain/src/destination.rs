//! Where webhooks may be sent: http(s) URLs whose addresses are public,
//! unless an allow-list (CIDRs, from the configuration) permits a special one.
//!
//! Refused without the allow-list: loopback, private (RFC 1918, unique
//! local), link-local (cloud metadata at 169.254.169.254 among them),
//! shared/CGNAT, unspecified, multicast, documentation, benchmarking and
//! reserved ranges, also when written inside IPv6 (IPv4-mapped, NAT64,
//! 6to4). The same check runs on every address a name resolves to, when the
//! endpoint is saved and again when each delivery connects.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The longest URL accepted (Envoy: 1–2083 characters).
pub const MAX_URL_CHARS: usize = 2083;

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a CIDR (e.g. 127.0.0.0/8, ::1/128, or a bare IP address)")]
pub struct CidrError(pub String);

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Whether `ip` is inside this network. IPv4 networks also contain the
    /// IPv4-mapped IPv6 form of their addresses.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u32::from(net) & mask) == (u32::from(ip) & mask)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                (u128::from(net) & mask) == (u128::from(ip) & mask)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || CidrError(text.to_owned());
        let text_trimmed = text.trim();
        let (addr, prefix) = match text_trimmed.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text_trimmed, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| fail())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| fail())?,
            None => max,
        };
        if prefix > max {
            return Err(fail());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// The IPv4 address inside an IPv4-mapped IPv6 address, else `ip` itself.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

/// Special-use ranges no webhook goes to unless allow-listed, with why.
const SPECIAL_USE: &[(Cidr, &str)] = &[
    (Cidr::v4(0, 0, 0, 0, 8), "unspecified (0.0.0.0/8)"),
    (Cidr::v4(10, 0, 0, 0, 8), "private (10.0.0.0/8)"),
    (
        Cidr::v4(100, 64, 0, 0, 10),
        "shared address space (100.64.0.0/10)",
    ),
    (Cidr::v4(127, 0, 0, 0, 8), "loopback (127.0.0.0/8)"),
    (Cidr::v4(169, 254, 0, 0, 16), "link-local (169.254.0.0/16)"),
    (Cidr::v4(172, 16, 0, 0, 12), "private (172.16.0.0/12)"),
    (
        Cidr::v4(192, 0, 0, 0, 24),
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    (Cidr::v4(192, 0, 2, 0, 24), "documentation (192.0.2.0/24)"),
    (
        Cidr::v4(192, 88, 99, 0, 24),
        "6to4 relay anycast (192.88.99.0/24)",
    ),
    (Cidr::v4(192, 168, 0, 0, 16), "private (192.168.0.0/16)"),
    (Cidr::v4(198, 18, 0, 0, 15), "benchmarking (198.18.0.0/15)"),
    (
        Cidr::v4(198, 51, 100, 0, 24),
        "documentation (198.51.100.0/24)",
    ),
    (
        Cidr::v4(203, 0, 113, 0, 24),
        "documentation (203.0.113.0/24)",
    ),
    (Cidr::v4(224, 0, 0, 0, 4), "multicast (224.0.0.0/4)"),
    (Cidr::v4(240, 0, 0, 0, 4), "reserved (240.0.0.0/4)"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified (::)"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback (::1)"),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (::/96)",
    ),
    (
        Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        "discard (100::/64)",
    ),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation (2001:db8::/32)",
    ),
    (
        Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7),
        "unique local (fc00::/7)",
    ),
    (
        Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10),
        "link-local (fe80::/10)",
    ),
    (
        Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        "site-local (fec0::/10)",
    ),
    (
        Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8),
        "multicast (ff00::/8)",
    ),
];

/// Why `ip` is special-use, if it is. IPv4 written inside IPv6 (mapped,
/// NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged as the IPv4 address.
pub fn special_use(ip: IpAddr) -> Option<&'static str> {
    let ip = canonical(ip);
    if let IpAddr::V6(v6) = ip {
        let s = v6.segments();
        let embedded = if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
            Some(Ipv4Addr::new(
                (s[6] >> 8) as u8,
                s[6] as u8,
                (s[7] >> 8) as u8,
                s[7] as u8,
            ))
        } else if s[0] == 0x2002 {
            Some(Ipv4Addr::new(
                (s[1] >> 8) as u8,
                s[1] as u8,
                (s[2] >> 8) as u8,
                s[2] as u8,
            ))
        } else {
            None
        };
        if let Some(v4) = embedded
            && let Some(why) = special_use(IpAddr::V4(v4))
        {
            return Some(why);
        }
    }
    SPECIAL_USE
        .iter()
        .find(|(net, _)| net.contains(ip))
        .map(|(_, why)| *why)
}

/// Which addresses webhooks may reach: every public address, and the
/// special-use ones inside an allow-listed network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DestinationPolicy {
    allow: Vec<Cidr>,
}

impl DestinationPolicy {
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// Parses each entry as a CIDR (or a bare IP address).
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, CidrError> {
        entries
            .iter()
            .map(|e| e.as_ref().parse())
            .collect::<Result<Vec<Cidr>, _>>()
            .map(Self::new)
    }

    pub fn allow_list(&self) -> &[Cidr] {
        &self.allow
    }

    /// `Err(reason)` when `ip` may not be a destination.
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        match special_use(ip) {
            None => Ok(()),
            Some(_) if self.allow.iter().any(|n| n.contains(ip)) => Ok(()),
            Some(why) => Err(format!(
                "{ip} is {why}, which webhooks may not reach unless webhook_allow_destinations permits it"
            )),
        }
    }
}

/// The host of a destination URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationHost {
    Ip(IpAddr),
    /// A name to resolve (lower-case, without a trailing dot).
    Name(String),
}

/// A URL that may be a webhook destination, as far as its text tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationUrl {
    /// The URL as it is stored and requested (normalised by the URL parser).
    pub url: String,
    pub host: DestinationHost,
    pub port: u16,
}

/// Parses a destination URL: absolute, http or https, a host, no user
/// name or password (they would be sent to whoever answers), no fragment.
pub fn parse_url(text: &str) -> Result<DestinationUrl, String> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be a URL of 1 to {MAX_URL_CHARS} characters"));
    }
    let url = url::Url::parse(text).map_err(|e| format!("must be an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment (#…)".into());
    }
    let host = match url.host() {
        Some(url::Host::Ipv4(ip)) => DestinationHost::Ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => DestinationHost::Ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name.is_empty() {
                return Err("must name a host".into());
            }
            DestinationHost::Name(name)
        }
        None => return Err("must name a host".into()),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "must have a port".to_owned())?;
    let normalised = url.to_string();
    if normalised.chars().count() > MAX_URL_CHARS {
        return Err(format!("must be a URL of 1 to {MAX_URL_CHARS} characters"));
    }
    Ok(DestinationUrl {
        url: normalised,
        host,
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_parse_and_contain() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped IPv6");
        let bare: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(bare.to_string(), "127.0.0.1/32");
        assert!(bare.contains(ip("127.0.0.1")) && !bare.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let host_bits: Cidr = "192.168.1.77/24".parse().unwrap();
        assert!(
            host_bits.contains(ip("192.168.1.1")),
            "host bits are ignored"
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn special_use_ranges_are_refused_unless_allowed() {
        let closed = DestinationPolicy::default();
        for refused in [
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "169.254.169.254",
            "10.0.0.5",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "fd00::1",
            "fe80::1",
            "224.0.0.1",
            "255.255.255.255",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "::127.0.0.1",
            "198.18.0.1",
        ] {
            assert!(closed.check(ip(refused)).is_err(), "{refused} refused");
        }
        for public in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(closed.check(ip(public)).is_ok(), "{public} allowed");
        }
        let reason = closed.check(ip("169.254.169.254")).unwrap_err();
        assert!(reason.contains("link-local"), "{reason}");

        let loopback = DestinationPolicy::parse(&["127.0.0.0/8", "::1/128"]).unwrap();
        assert!(loopback.check(ip("127.0.0.1")).is_ok());
        assert!(loopback.check(ip("::1")).is_ok());
        assert!(loopback.check(ip("::ffff:127.0.0.1")).is_ok());
        assert!(loopback.check(ip("169.254.169.254")).is_err());
        assert!(loopback.check(ip("10.0.0.1")).is_err());
        assert!(DestinationPolicy::parse(&["nope"]).is_err());
    }

    #[test]
    fn urls_must_be_http_with_a_host_and_no_credentials() {
        let u = parse_url("https://Hooks.Example.com./in?x=1").unwrap();
        assert_eq!(u.host, DestinationHost::Name("hooks.example.com".into()));
        assert_eq!(u.port, 443);
        let u = parse_url("http://127.0.0.1:9000/h").unwrap();
        assert_eq!(u.host, DestinationHost::Ip(ip("127.0.0.1")));
        assert_eq!((u.port, u.url.as_str()), (9000, "http://127.0.0.1:9000/h"));
        let u = parse_url("http://[::1]/").unwrap();
        assert_eq!(u.host, DestinationHost::Ip(ip("::1")));
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://user:pw@example.com/",
            "http://example.com/#frag",
            "javascript:alert(1)",
            "http://",
            "http://:80/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        assert!(parse_url(&long).is_err());
    }
}
