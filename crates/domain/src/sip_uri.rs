//! SIP and SIPS URIs, parsed with the grammar of RFC 3261 §25.1 and
//! rendered again from their parts.
//!
//! ```text
//! SIP-URI  = ("sip:" / "sips:") [ userinfo ] hostport uri-parameters [ headers ]
//! userinfo = user [ ":" password ] "@"
//! hostport = host [ ":" port ]       host = hostname / IPv4address / IPv6reference
//! ```
//!
//! Whatever a SIP message carries of a URI comes from [`SipUri`]'s parts,
//! never from the text it was parsed from, so nothing outside the grammar
//! (a CR, LF, NUL, space, `>` or `"`) can reach the wire. The user and the
//! password are kept decoded (their `%HH` escapes undone) and escaped again
//! when rendered, exactly as rsipstack escapes them; parameters and headers
//! are kept as written, each character checked against the grammar.
//!
//! Written by hand: SIP parsers in crates (rsipstack's included) are lenient
//! by design, taking whatever follows a `;` as a parameter, which is how a
//! CRLF and a whole header rode in on a URI.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest URI accepted, in bytes.
pub const MAX_SIP_URI_LEN: usize = 256;

/// A parsed `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    pub secure: bool,
    /// Decoded: `%41` is `A`. Never contains `;`, `?` or a control character.
    pub user: Option<String>,
    /// Decoded, like the user. Only with a user.
    pub password: Option<String>,
    pub host: SipHost,
    pub port: Option<u16>,
    /// In order, as written (escapes kept); names are unique, ignoring case.
    pub params: Vec<UriParam>,
    /// `?name=value&...`, as written (escapes kept).
    pub headers: Vec<(String, String)>,
}

/// A URI's host.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SipHost {
    /// A host name (`example.com`), as written.
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// `;name` or `;name=value`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UriParam {
    pub name: String,
    pub value: Option<String>,
}

/// Why a text is not a SIP URI we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SipUriError {
    #[error("is longer than {MAX_SIP_URI_LEN} characters")]
    TooLong,
    #[error("contains a space or a control character")]
    Whitespace,
    #[error("must start with sip: or sips:")]
    Scheme,
    #[error("has an invalid user part")]
    User,
    #[error("has a user part with ';' or '?', which is not supported")]
    UserDelimiter,
    #[error("has an invalid password")]
    Password,
    #[error("has an invalid host (a host name, an IPv4 address or [an IPv6 address])")]
    Host,
    #[error("has an invalid port (1 to 65535)")]
    Port,
    #[error("has an invalid parameter: {0}")]
    Param(String),
    #[error("repeats the parameter {0}")]
    DuplicateParam(String),
    #[error("has an invalid header part (?name=value&...)")]
    Headers,
    #[error("has an invalid %-escape")]
    Escape,
}

/// RFC 3261 `unreserved`: alphanum / mark.
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// `user` characters besides `unreserved` and escapes, less `;` and `?`
/// (see [`SipUriError::UserDelimiter`]).
const USER_EXTRA: &[u8] = b"&=+$,/";
const PASSWORD_EXTRA: &[u8] = b"&=+$,";
/// `param-unreserved`.
const PARAM_EXTRA: &[u8] = b"[]/:&+$";
/// `hnv-unreserved`.
const HEADER_EXTRA: &[u8] = b"[]/?:+$";

/// Transports rsipstack (and so the engine) knows, for `transport=`.
const TRANSPORTS: &[&str] = &["udp", "tcp", "tls", "sctp", "tls-sctp", "ws", "wss"];

/// Checks `s` against `unreserved / escaped / extra` and returns it decoded;
/// an escape must be two hex digits and the result UTF-8 without control
/// characters.
fn decode(s: &str, extra: &[u8]) -> Result<String, SipUriError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(SipUriError::Escape)?;
            let hex = std::str::from_utf8(hex).map_err(|_| SipUriError::Escape)?;
            if !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
                return Err(SipUriError::Escape);
            }
            out.push(u8::from_str_radix(hex, 16).map_err(|_| SipUriError::Escape)?);
            i += 3;
        } else if unreserved(b) || extra.contains(&b) {
            out.push(b);
            i += 1;
        } else {
            return Err(SipUriError::Escape);
        }
    }
    let text = String::from_utf8(out).map_err(|_| SipUriError::Escape)?;
    if text.chars().any(char::is_control) {
        return Err(SipUriError::Escape);
    }
    Ok(text)
}

/// Escapes every byte outside `unreserved / extra` as `%HH` (upper case),
/// as rsipstack's `Auth` does.
fn encode(s: &str, extra: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for &b in s.as_bytes() {
        if unreserved(b) || extra.contains(&b) {
            write!(f, "{}", b as char)?;
        } else {
            write!(f, "%{b:02X}")?;
        }
    }
    Ok(())
}

impl SipHost {
    /// `hostname / IPv4address / IPv6reference`, as in a URI.
    pub fn parse(s: &str) -> Result<SipHost, SipUriError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(SipUriError::Host)?;
            return inner
                .parse::<Ipv6Addr>()
                .map(SipHost::V6)
                .map_err(|_| SipUriError::Host);
        }
        if let Ok(v4) = s.parse::<Ipv4Addr>() {
            return Ok(SipHost::V4(v4));
        }
        if valid_hostname(s) {
            Ok(SipHost::Name(s.to_owned()))
        } else {
            Err(SipUriError::Host)
        }
    }

    /// A host as a configuration field holds it: [`SipHost::parse`], or an
    /// IPv6 address without brackets.
    pub fn parse_field(s: &str) -> Result<SipHost, SipUriError> {
        match s.parse::<Ipv6Addr>() {
            Ok(v6) => Ok(SipHost::V6(v6)),
            Err(_) => SipHost::parse(s),
        }
    }
}

/// `hostname = *( domainlabel "." ) toplabel [ "." ]`, at most 253
/// characters, labels of at most 63.
fn valid_hostname(s: &str) -> bool {
    let body = s.strip_suffix('.').unwrap_or(s);
    if body.is_empty() || body.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = body.split('.').collect();
    let label_ok = |l: &str| {
        let b = l.as_bytes();
        !b.is_empty()
            && b.len() <= 63
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    let top = labels[labels.len() - 1];
    labels.iter().all(|l| label_ok(l)) && top.as_bytes()[0].is_ascii_alphabetic()
}

impl fmt::Display for SipHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SipHost::Name(n) => f.write_str(n),
            SipHost::V4(ip) => write!(f, "{ip}"),
            SipHost::V6(ip) => write!(f, "[{ip}]"),
        }
    }
}

fn parse_port(s: &str) -> Result<u16, SipUriError> {
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SipUriError::Port);
    }
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(SipUriError::Port),
    }
}

/// `host [ ":" port ]`.
fn parse_hostport(s: &str) -> Result<(SipHost, Option<u16>), SipUriError> {
    let (host, port) = if s.starts_with('[') {
        let close = s.find(']').ok_or(SipUriError::Host)?;
        let (host, rest) = s.split_at(close + 1);
        match rest {
            "" => (host, None),
            _ => (host, Some(rest.strip_prefix(':').ok_or(SipUriError::Host)?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let host = SipHost::parse(host)?;
    let port = port.map(parse_port).transpose()?;
    Ok((host, port))
}

/// One `uri-parameter`: the generic `pname [ "=" pvalue ]`, plus what the
/// named ones of RFC 3261 require of their values.
fn parse_param(s: &str) -> Result<UriParam, SipUriError> {
    let bad = || SipUriError::Param(s.chars().take(32).collect());
    let (name, value) = match s.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (s, None),
    };
    if name.is_empty() || value.is_some_and(str::is_empty) {
        return Err(bad());
    }
    decode(name, PARAM_EXTRA).map_err(|_| bad())?;
    if let Some(v) = value {
        decode(v, PARAM_EXTRA).map_err(|_| bad())?;
    }
    let lower = name.to_ascii_lowercase();
    let ok = match (lower.as_str(), value) {
        ("transport", Some(v)) => TRANSPORTS.iter().any(|t| t.eq_ignore_ascii_case(v)),
        ("user", Some(v)) => v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        ("ttl", Some(v)) => v.len() <= 3 && v.parse::<u8>().is_ok(),
        ("maddr", Some(v)) => SipHost::parse(v).is_ok(),
        // rsipstack reads it as a number: only the number's own spelling.
        ("rport", Some(v)) => v.parse::<u16>().is_ok_and(|p| p.to_string() == v),
        ("lr", v) => v.is_none(),
        ("transport" | "user" | "ttl" | "maddr", None) => false,
        // Not allowed in a Request-URI or To (RFC 3261 table 1).
        ("method", _) => false,
        _ => true,
    };
    if !ok {
        return Err(bad());
    }
    Ok(UriParam {
        name: name.to_owned(),
        value: value.map(str::to_owned),
    })
}

fn parse_headers(s: &str) -> Result<Vec<(String, String)>, SipUriError> {
    s.split('&')
        .map(|h| {
            let (name, value) = h.split_once('=').ok_or(SipUriError::Headers)?;
            if name.is_empty() {
                return Err(SipUriError::Headers);
            }
            decode(name, HEADER_EXTRA).map_err(|_| SipUriError::Headers)?;
            decode(value, HEADER_EXTRA).map_err(|_| SipUriError::Headers)?;
            Ok((name.to_owned(), value.to_owned()))
        })
        .collect()
}

impl SipUri {
    /// Parses `input` exactly: no surrounding spaces, nothing outside the
    /// grammar anywhere.
    pub fn parse(input: &str) -> Result<SipUri, SipUriError> {
        if input.len() > MAX_SIP_URI_LEN {
            return Err(SipUriError::TooLong);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(SipUriError::Whitespace);
        }
        let (scheme, rest) = input.split_once(':').ok_or(SipUriError::Scheme)?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else {
            return Err(SipUriError::Scheme);
        };
        // '@' is in no part after the userinfo, so the first one ends it.
        let (userinfo, rest) = match rest.split_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (info, None),
                };
                if user.bytes().any(|b| b == b';' || b == b'?') {
                    return Err(SipUriError::UserDelimiter);
                }
                let user = decode(user, USER_EXTRA).map_err(|_| SipUriError::User)?;
                if user.is_empty() {
                    return Err(SipUriError::User);
                }
                if user.contains([';', '?']) {
                    return Err(SipUriError::UserDelimiter);
                }
                let password = password
                    .map(|p| decode(p, PASSWORD_EXTRA).map_err(|_| SipUriError::Password))
                    .transpose()?;
                (Some(user), password)
            }
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, parse_headers(h)?),
            None => (rest, Vec::new()),
        };
        let mut parts = rest.split(';');
        let (host, port) = parse_hostport(parts.next().unwrap_or_default())?;
        let mut params: Vec<UriParam> = Vec::new();
        for p in parts {
            let param = parse_param(p)?;
            if params
                .iter()
                .any(|q| q.name.eq_ignore_ascii_case(&param.name))
            {
                return Err(SipUriError::DuplicateParam(param.name));
            }
            params.push(param);
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers,
        })
    }

    /// The value of parameter `name` (ignoring case): `Some(None)` for a
    /// parameter without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_deref())
    }
}

/// The user as it goes on the wire (escaped as rsipstack escapes it).
pub struct EscapedUser<'a>(pub &'a str);

impl fmt::Display for EscapedUser<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        encode(self.0, USER_EXTRA, f)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            encode(user, USER_EXTRA, f)?;
            if let Some(pw) = &self.password {
                f.write_str(":")?;
                encode(pw, PASSWORD_EXTRA, f)?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            let sep = if i == 0 { '?' } else { '&' };
            write!(f, "{sep}{name}={value}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "sip_uri_tests.rs"]
mod tests;
