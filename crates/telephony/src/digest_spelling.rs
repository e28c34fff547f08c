//! Digest algorithm names as the wire spells them.
//!
//! RFC 7616 and RFC 8760 name the SHA-2 digest `SHA-256` (and
//! `SHA-256-sess`, `SHA-512-256`); rsipstack 0.7.14 only parses and writes
//! `SHA256`, so a challenge with `algorithm=SHA-256` fails to parse and our
//! answer would name an algorithm the server does not know. The name is not
//! part of the hash input, so spelling it rsipstack's way on the way in and
//! the RFC's way on the way out is all that is needed. Written by hand
//! because it is a workaround for one crate's parser, nothing more.

use rsipstack::sip::message::HasHeaders;
use rsipstack::sip::{Header, SipMessage};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;

/// Rewrites `algorithm=` in challenges we receive and answers we send.
pub struct DigestSpelling;

/// `(RFC spelling, rsipstack spelling)`, longest first.
const NAMES: &[(&str, &str)] = &[
    ("SHA-256-sess", "SHA256-sess"),
    ("SHA-512-256-sess", "SHA512-sess"),
    ("SHA-512-256", "SHA512"),
    ("SHA-256", "SHA256"),
];

fn respell(value: &str, to_rfc: bool) -> Option<String> {
    let lower = value.to_ascii_lowercase();
    let at = lower.find("algorithm=")? + "algorithm=".len();
    let name_start = if value[at..].starts_with('"') {
        at + 1
    } else {
        at
    };
    let name_len = value[name_start..]
        .find(|c: char| c == ',' || c == '"' || c.is_whitespace())
        .unwrap_or(value.len() - name_start);
    let name = &value[name_start..name_start + name_len];
    let replacement = NAMES.iter().find_map(|(rfc, ours)| {
        let (from, to) = if to_rfc { (ours, rfc) } else { (rfc, ours) };
        name.eq_ignore_ascii_case(from).then_some(*to)
    })?;
    Some(format!(
        "{}{}{}",
        &value[..name_start],
        replacement,
        &value[name_start + name_len..]
    ))
}

fn rewrite(headers: &mut rsipstack::sip::Headers, to_rfc: bool) {
    use rsipstack::sip::headers as h;
    for header in headers.iter_mut() {
        let new = match &*header {
            Header::WwwAuthenticate(v) if !to_rfc => respell(v.value(), false)
                .map(|s| Header::WwwAuthenticate(h::WwwAuthenticate::new(s))),
            Header::ProxyAuthenticate(v) if !to_rfc => respell(v.value(), false)
                .map(|s| Header::ProxyAuthenticate(h::ProxyAuthenticate::new(s))),
            Header::Authorization(v) if to_rfc => {
                respell(v.value(), true).map(|s| Header::Authorization(h::Authorization::new(s)))
            }
            Header::ProxyAuthorization(v) if to_rfc => respell(v.value(), true)
                .map(|s| Header::ProxyAuthorization(h::ProxyAuthorization::new(s))),
            _ => None,
        };
        if let Some(new) = new {
            *header = new;
        }
    }
}

impl MessageInspector for DigestSpelling {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Request(req) = &mut msg {
            rewrite(req.headers_mut(), true);
        }
        msg
    }

    fn after_received(&self, mut msg: SipMessage, _from: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Response(resp) = &mut msg
            && matches!(resp.status_code.code(), 401 | 407)
        {
            rewrite(resp.headers_mut(), false);
        }
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_read_with_rsipstack_names_and_answers_written_with_rfc_names() {
        let challenge = r#"Digest realm="x", nonce="n", algorithm=SHA-256, qop="auth""#;
        assert_eq!(
            respell(challenge, false).unwrap(),
            r#"Digest realm="x", nonce="n", algorithm=SHA256, qop="auth""#
        );
        let quoted = r#"Digest realm="x", algorithm="sha-256-sess", nonce="n""#;
        assert_eq!(
            respell(quoted, false).unwrap(),
            r#"Digest realm="x", algorithm="SHA256-sess", nonce="n""#
        );
        let answer = r#"Digest username="a", response="r", algorithm=SHA256"#;
        assert_eq!(
            respell(answer, true).unwrap(),
            r#"Digest username="a", response="r", algorithm=SHA-256"#
        );
        assert_eq!(respell(r#"Digest algorithm=MD5, nonce="n""#, false), None);
        assert_eq!(respell(r#"Digest nonce="n""#, true), None);
        assert_eq!(respell("Digest algorithm=", false), None);
    }
}
