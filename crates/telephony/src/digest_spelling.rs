//! Digest algorithm names as the wire spells them, and the SHA-512-256
//! digest rsipstack cannot compute.
//!
//! RFC 7616 and RFC 8760 name the SHA-2 digests `SHA-256` (and
//! `SHA-256-sess`, `SHA-512-256`, `SHA-512-256-sess`); rsipstack 0.7.14
//! only parses and writes `SHA256` and `SHA512`, so a challenge with
//! `algorithm=SHA-256` fails to parse and our answer would name an
//! algorithm the server does not know. The name is not part of the hash
//! input, so for SHA-256 spelling it rsipstack's way on the way in and the
//! RFC's way on the way out is all that is needed.
//!
//! SHA-512-256 is another matter: rsipstack's `SHA512` is the full SHA-512,
//! a different hash (SHA-512/256 has its own initial values, it is not a
//! truncation). So a `SHA-512-256` challenge is read as rsipstack's
//! `SHA512`, and on the way out the answer's `response` is computed again
//! with SHA-512/256 (RFC 7616 §3.4.1) from the call's credentials, which
//! the call registers here under its Call-ID for as long as it lives
//! ([`DigestSpelling::register`]). RFC 7616 defines no plain SHA-512
//! digest, so every `SHA512` answer is one of these. Written by hand
//! because it is a workaround for one crate, nothing more.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rsipstack::sip::message::HasHeaders;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::typed::tokenizers::AuthTokenizer;
use rsipstack::sip::{Header, Request, SipMessage};
use rsipstack::transaction::endpoint::MessageInspector;
use rsipstack::transport::SipAddr;
use sha2::{Digest, Sha512_256};

/// Rewrites `algorithm=` in challenges we receive and answers we send, and
/// computes SHA-512-256 answers. Cheap to clone (the clones share the
/// registered credentials).
#[derive(Clone, Default)]
pub struct DigestSpelling {
    passwords: Arc<Mutex<HashMap<String, String>>>,
}

/// Keeps a call's password registered; dropping it forgets it.
pub struct Registered {
    passwords: Arc<Mutex<HashMap<String, String>>>,
    call_id: String,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Ok(mut map) = self.passwords.lock() {
            map.remove(&self.call_id);
        }
    }
}

impl DigestSpelling {
    /// The password a call with SIP Call-ID `call_id` answers challenges
    /// with (the user name is the answer's own), until the returned guard
    /// is dropped.
    pub fn register(&self, call_id: &str, password: &str) -> Registered {
        if let Ok(mut map) = self.passwords.lock() {
            map.insert(call_id.to_owned(), password.to_owned());
        }
        Registered {
            passwords: self.passwords.clone(),
            call_id: call_id.to_owned(),
        }
    }

    fn password(&self, call_id: &str) -> Option<String> {
        self.passwords.lock().ok()?.get(call_id).cloned()
    }
}

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

fn hex_sha512_256(input: &[u8]) -> String {
    hex::encode(Sha512_256::digest(input))
}

/// The `response` of a SHA-512-256 digest answer (RFC 7616 §3.4.1), from
/// the answer's own parameters (`params`, as the tokenizer unquoted them),
/// the request's method and body, and the password. `None` when the answer
/// lacks a parameter the hash needs.
fn sha512_256_response(
    params: &[(&str, &str)],
    method: &str,
    body: &[u8],
    password: &str,
) -> Option<String> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let (username, realm, nonce, uri) =
        (get("username")?, get("realm")?, get("nonce")?, get("uri")?);
    let sess = get("algorithm").is_some_and(|a| a.to_ascii_lowercase().ends_with("-sess"));
    let qop = get("qop");
    let mut ha1 = hex_sha512_256(format!("{username}:{realm}:{password}").as_bytes());
    if sess {
        ha1 = hex_sha512_256(format!("{ha1}:{nonce}:{}", get("cnonce")?).as_bytes());
    }
    let ha2 = match qop {
        Some(q) if q.eq_ignore_ascii_case("auth-int") => {
            hex_sha512_256(format!("{method}:{uri}:{}", hex_sha512_256(body)).as_bytes())
        }
        _ => hex_sha512_256(format!("{method}:{uri}").as_bytes()),
    };
    let value = match qop {
        Some(qop) => format!(
            "{ha1}:{nonce}:{}:{}:{qop}:{ha2}",
            get("nc")?,
            get("cnonce")?
        ),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    Some(hex_sha512_256(value.as_bytes()))
}

/// An answer rsipstack computed with its `SHA512` (full SHA-512), with the
/// `response` computed again with SHA-512/256; `None` if it is no such
/// answer or cannot be recomputed.
fn answer_with_sha512_256(
    value: &str,
    method: &str,
    body: &[u8],
    password: &str,
) -> Option<String> {
    let tokens = AuthTokenizer::parse(value).ok()?;
    let algorithm = tokens
        .params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("algorithm"))
        .map(|(_, v)| *v)?;
    if !(algorithm.eq_ignore_ascii_case("SHA512") || algorithm.eq_ignore_ascii_case("SHA512-sess"))
    {
        return None;
    }
    let old = tokens
        .params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("response"))
        .map(|(_, v)| *v)?;
    let new = sha512_256_response(&tokens.params, method, body, password)?;
    // The response is hex, so its quoted form occurs once.
    let quoted = format!("\"{old}\"");
    value
        .contains(&quoted)
        .then(|| value.replacen(&quoted, &format!("\"{new}\""), 1))
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

impl DigestSpelling {
    /// Computes SHA-512-256 answers again with the call's password (before
    /// they are respelled).
    fn fix_sha512_256(&self, req: &mut Request) {
        use rsipstack::sip::headers as h;
        let answers = req
            .headers
            .iter()
            .any(|h| matches!(h, Header::Authorization(_) | Header::ProxyAuthorization(_)));
        if !answers {
            return;
        }
        let Some(call_id) = req.call_id_header().ok().map(|c| c.value().to_owned()) else {
            return;
        };
        let method = req.method.to_string();
        let body = req.body.clone();
        let password = self.password(&call_id);
        for header in req.headers.iter_mut() {
            let (value, proxy) = match &*header {
                Header::Authorization(v) => (v.value().to_owned(), false),
                Header::ProxyAuthorization(v) => (v.value().to_owned(), true),
                _ => continue,
            };
            let Some(password) = &password else {
                if value.to_ascii_lowercase().contains("algorithm=sha512") {
                    tracing::warn!(%call_id, "a SHA-512-256 answer without the call's credentials: it will be refused");
                }
                continue;
            };
            if let Some(fixed) = answer_with_sha512_256(&value, &method, &body, password) {
                *header = if proxy {
                    Header::ProxyAuthorization(h::ProxyAuthorization::new(fixed))
                } else {
                    Header::Authorization(h::Authorization::new(fixed))
                };
            }
        }
    }
}

impl MessageInspector for DigestSpelling {
    fn before_send(&self, mut msg: SipMessage, _dest: Option<&SipAddr>) -> SipMessage {
        if let SipMessage::Request(req) = &mut msg {
            self.fix_sha512_256(req);
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

    /// RFC 7616 §3.9.2 with its erratum 4897 (the RFC's printed response
    /// is not that of its inputs): SHA-512-256, qop=auth.
    #[test]
    fn sha512_256_response_matches_rfc_7616() {
        let params = [
            ("username", "J\u{e4}s\u{f8}n Doe"),
            ("realm", "api@example.org"),
            ("uri", "/doe.json"),
            ("algorithm", "SHA-512-256"),
            ("nonce", "5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK"),
            ("nc", "00000001"),
            ("cnonce", "NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"),
            ("qop", "auth"),
        ];
        assert_eq!(
            sha512_256_response(&params, "GET", b"", "Secret, or not?").as_deref(),
            Some("3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5")
        );
        assert_eq!(sha512_256_response(&params[1..], "GET", b"", "x"), None);
    }

    #[test]
    fn sha512_answers_are_recomputed_with_the_call_password_then_respelled() {
        let digest = DigestSpelling::default();
        let answer = r#"Digest username="alice", realm="r", nonce="n", uri="sip:+1@h", response="abc", algorithm=SHA512, qop="auth", nc=00000001, cnonce="c""#;
        let request = |value: &str| {
            let text = format!(
                "INVITE sip:+1@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx\r\nCall-ID: id@us\r\nFrom: <sip:a@us>;tag=1\r\nTo: <sip:+1@h>\r\nCSeq: 2 INVITE\r\nAuthorization: {value}\r\nContent-Length: 0\r\n\r\n"
            );
            SipMessage::try_from(text.as_str()).unwrap()
        };
        let sent = |msg: SipMessage| match digest.before_send(msg, None) {
            SipMessage::Request(r) => r
                .headers
                .iter()
                .find_map(|h| match h {
                    Header::Authorization(v) => Some(v.value().to_owned()),
                    _ => None,
                })
                .unwrap(),
            _ => unreachable!(),
        };
        // Without the call's password the answer is only respelled.
        assert!(sent(request(answer)).contains(r#"response="abc", algorithm=SHA-512-256"#));
        let registered = digest.register("id@us", "pw");
        let ha1 = hex_sha512_256(b"alice:r:pw");
        let ha2 = hex_sha512_256(b"INVITE:sip:+1@h");
        let expected = hex_sha512_256(format!("{ha1}:n:00000001:c:auth:{ha2}").as_bytes());
        assert_eq!(
            sent(request(answer)),
            answer
                .replace("abc", &expected)
                .replace("SHA512", "SHA-512-256")
        );
        // The -sess variant hashes HA1 with the nonces.
        let sess = answer.replace("SHA512", "SHA512-sess");
        let ha1 = hex_sha512_256(format!("{ha1}:n:c").as_bytes());
        let expected = hex_sha512_256(format!("{ha1}:n:00000001:c:auth:{ha2}").as_bytes());
        assert!(sent(request(&sess)).contains(&format!(
            r#"response="{expected}", algorithm=SHA-512-256-sess"#
        )));
        // Other algorithms are rsipstack's to compute.
        let md5 = answer.replace("SHA512", "MD5");
        assert_eq!(sent(request(&md5)), md5);
        drop(registered);
        assert!(
            sent(request(answer)).contains(r#"response="abc""#),
            "forgotten"
        );
    }
}
