//! RFC 3261 checks on a request datagram before rsipstack reads it, and
//! the answers to the requests that fail them. Sans-IO.
//!
//! rsipstack 0.7.14's parser is lenient where RFC 3261 wants an answer: a
//! Content-Length that is negative, not a number or longer than the
//! datagram reads as 0 or as "the rest"; method names match without regard
//! to case; an unknown method or a request without Call-ID or CSeq is
//! dropped without an answer (so the peer retransmits for 32 s); `Require`
//! is never looked at; a bare LF ends a header line. This module frames the
//! datagram itself (§7, §18.3) and answers, in this order:
//!
//! | what | answer |
//! |---|---|
//! | the datagram is larger than rsipstack reads | 513 |
//! | head not as §7.3 (CRLF lines, token names, controls), request line not three parts | 400 |
//! | SIP version other than 2.0 | 505 |
//! | From, To, Call-ID or CSeq missing, repeated or not as their grammar | 400 |
//! | Content-Length repeated, not `1*DIGIT`, or past the datagram's end | 400 |
//! | method not a token, or not CSeq's | 400 |
//! | method unknown (case-sensitive, §7.1) | 501 |
//! | `Require` with an option tag we do not support (not for ACK, CANCEL) | 420 + `Unsupported` |
//!
//! A request without a Via we can read is dropped: there is nowhere to
//! send an answer (§18.2.2), and an ACK is never answered. Answers go to
//! the datagram's source, never to an address the message names, and are
//! built from the parsed parts (typed Via, From, To; Call-ID and CSeq
//! checked against their grammar), each rendered value parsed back and
//! compared before use: no input text is pasted into them.

use std::net::SocketAddr;

use rsipstack::sip::headers::{self as untyped};
use rsipstack::sip::typed;
use rsipstack::sip::uri::{Host, Received, Tag};
use rsipstack::sip::{Header, Headers, Response, StatusCode, Version};

/// What to do with one datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Hand it to rsipstack as it is.
    Pass,
    /// Nothing to answer (no Via, an ACK, not a message): drop it.
    Drop(&'static str),
    /// Send these bytes back to the datagram's source and drop it.
    Answer { status: u16, bytes: Vec<u8> },
}

/// Methods we know (RFC 3261 and the extensions rsipstack parses), exactly
/// as spelt: method names are case-sensitive (§7.1). Known ones we do not
/// serve get 405 with `Allow` from the engine.
const KNOWN_METHODS: &[&str] = &[
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

/// Option tags we support in `Require` (RFC 4028 session timers).
pub const SUPPORTED_OPTION_TAGS: &[&str] = &["timer"];

/// Checks one datagram from `source`; `limit` is the most rsipstack reads.
pub fn screen_datagram(datagram: &[u8], source: SocketAddr, limit: usize) -> Verdict {
    let head = match Head::parse(datagram) {
        Ok(h) => h,
        Err(Skip::Pass) => return Verdict::Pass,
        Err(Skip::Drop(why)) => return Verdict::Drop(why),
    };
    let echo = Echo::from_head(&head);
    if echo.vias.is_empty() {
        return Verdict::Drop("no Via to answer to");
    }
    let problem = if datagram.len() > limit {
        Some(Problem::new(
            StatusCode::MessageTooLarge,
            "message too large",
        ))
    } else {
        check(&head, &echo)
    };
    let Some(problem) = problem else {
        return Verdict::Pass;
    };
    if head.method == "ACK" {
        return Verdict::Drop("an ACK is never answered");
    }
    tracing::debug!(
        %source,
        status = problem.status.code(),
        why = problem.why,
        "SIP request refused before parsing"
    );
    Verdict::Answer {
        status: problem.status.code(),
        bytes: echo.answer(problem.status, &problem.unsupported, source),
    }
}

enum Skip {
    /// Not ours to judge (a response, a keep-alive): rsipstack's.
    Pass,
    Drop(&'static str),
}

/// A request's head, framed per RFC 3261 §7.
struct Head<'a> {
    method: &'a str,
    version: &'a str,
    /// (name, value), folded lines joined, in order.
    headers: Vec<(&'a str, String)>,
    /// Bytes after the blank line.
    body_len: usize,
    /// The first thing in the head that is not as the grammar says.
    malformed: Option<&'static str>,
}

impl<'a> Head<'a> {
    fn parse(datagram: &'a [u8]) -> Result<Self, Skip> {
        if datagram.iter().all(u8::is_ascii_whitespace) {
            return Err(Skip::Pass);
        }
        let Some(end) = find(datagram, b"\r\n\r\n") else {
            return Err(Skip::Drop("no end of head"));
        };
        let mut malformed = None;
        let mut flag = |why| {
            malformed.get_or_insert(why);
        };
        let mut lines = Vec::new();
        for raw in split_crlf(&datagram[..end]) {
            match std::str::from_utf8(raw) {
                Ok(line) => {
                    if line.chars().any(|c| c.is_control() && c != '\t') {
                        flag("a control character (or a bare CR or LF) in the head");
                    }
                    lines.push(line);
                }
                Err(_) => {
                    flag("a head line that is not UTF-8");
                    lines.push("");
                }
            }
        }
        let start = lines.first().copied().unwrap_or_default();
        if start.starts_with("SIP/") {
            return Err(Skip::Pass);
        }
        let parts: Vec<&str> = start.split(' ').collect();
        let (method, version) = match parts.as_slice() {
            [m, uri, v] if !m.is_empty() && !uri.is_empty() && !v.is_empty() => (*m, *v),
            _ => {
                flag("the request line is not `Method SP Request-URI SP SIP-Version`");
                (parts.first().copied().unwrap_or_default(), "")
            }
        };
        let mut headers: Vec<(&str, String)> = Vec::new();
        for line in lines.iter().skip(1) {
            if line.starts_with([' ', '\t']) {
                match headers.last_mut() {
                    Some((_, value)) => {
                        value.push(' ');
                        value.push_str(line.trim());
                    }
                    None => flag("a folded line before any header"),
                }
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                flag("a header line without a colon");
                continue;
            };
            let name = name.trim_end_matches([' ', '\t']);
            if !is_token(name) {
                flag("a header name that is not a token");
                continue;
            }
            headers.push((name, value.trim().to_owned()));
        }
        Ok(Head {
            method,
            version,
            headers,
            body_len: datagram.len() - end - 4,
            malformed,
        })
    }

    /// Values of the header `long` (or its compact form `short`).
    fn values(&self, long: &str, short: Option<&str>) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| {
                n.eq_ignore_ascii_case(long) || short.is_some_and(|s| n.eq_ignore_ascii_case(s))
            })
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Lines separated by CRLF; a bare CR or LF stays inside its line (and is
/// refused there as a control character).
fn split_crlf(head: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = head;
    while let Some(at) = find(rest, b"\r\n") {
        lines.push(&rest[..at]);
        rest = &rest[at + 2..];
    }
    lines.push(rest);
    lines
}

/// RFC 3261 §25.1 `token`.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

/// RFC 3261 §25.1 `word`.
fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~()<>:\\\"/[]?{}".contains(&b))
}

/// `callid = word [ "@" word ]`.
fn is_call_id(s: &str) -> bool {
    match s.split_once('@') {
        Some((a, b)) => is_word(a) && is_word(b),
        None => is_word(s),
    }
}

/// `CSeq: 1*DIGIT LWS Method`, the number below 2**31 (§8.1.1.5).
fn parse_cseq(value: &str) -> Option<(u32, &str)> {
    let (seq, method) = value.split_once([' ', '\t'])?;
    let method = method.trim();
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || !is_token(method) {
        return None;
    }
    let seq: u32 = seq.parse().ok()?;
    (seq < 1 << 31).then_some((seq, method))
}

/// The sent-protocol of one Via: its version, to give back as it came.
struct ViaValue {
    major: u8,
    minor: u8,
    via: typed::Via,
}

impl ViaValue {
    fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (protocol, rest) = value.split_once('/')?;
        let (version, _) = rest.split_once('/')?;
        let (major, minor) = version.trim().split_once('.')?;
        if !protocol.trim().eq_ignore_ascii_case("SIP") {
            return None;
        }
        let parsed = ViaValue {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
            via: typed::Via::parse(value).ok()?,
        };
        // What we would write must read back as the same Via, in the
        // characters a Via's grammar allows (no quoted strings).
        let text = parsed.render();
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~/ ;=:[]".contains(c);
        (text.chars().all(allowed) && typed::Via::parse(&text).ok()? == parsed.via)
            .then_some(parsed)
    }

    fn render(&self) -> String {
        let mut text = format!(
            "SIP/{}.{}/{} {}",
            self.major, self.minor, self.via.transport, self.via.uri.host_with_port
        );
        for p in &self.via.params {
            text.push_str(&p.to_string());
        }
        text
    }
}

/// From or To, only if what we would write parses back the same.
fn parse_from(value: &str) -> Option<typed::From> {
    let parsed = typed::From::parse(value).ok()?;
    let text = parsed.to_string();
    (!text.chars().any(char::is_control) && typed::From::parse(&text).ok()? == parsed)
        .then_some(parsed)
}

fn parse_to(value: &str) -> Option<typed::To> {
    let parsed = typed::To::parse(value).ok()?;
    let text = parsed.to_string();
    (!text.chars().any(char::is_control) && typed::To::parse(&text).ok()? == parsed)
        .then_some(parsed)
}

/// The parts of a request an answer copies (§8.2.6.2), each present only
/// if it was there once and parsed.
struct Echo<'a> {
    vias: Vec<ViaValue>,
    from: Option<typed::From>,
    to: Option<typed::To>,
    call_id: Option<&'a str>,
    cseq: Option<(u32, &'a str)>,
}

/// One header that must appear exactly once.
fn single<'h>(head: &'h Head, long: &str, short: Option<&str>) -> Option<&'h str> {
    match head.values(long, short).as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

impl<'a> Echo<'a> {
    fn from_head(head: &'a Head) -> Self {
        let mut vias = Vec::new();
        for value in head.values("Via", Some("v")) {
            for one in value.split(',') {
                match ViaValue::parse(one) {
                    Some(v) => vias.push(v),
                    // An answer with some of the Vias is no answer.
                    None => {
                        vias.clear();
                        return Self::empty(vias);
                    }
                }
            }
        }
        Echo {
            vias,
            from: single(head, "From", Some("f")).and_then(parse_from),
            to: single(head, "To", Some("t")).and_then(parse_to),
            call_id: single(head, "Call-ID", Some("i")).filter(|v| is_call_id(v)),
            cseq: single(head, "CSeq", None).and_then(parse_cseq),
        }
    }

    fn empty(vias: Vec<ViaValue>) -> Self {
        Echo {
            vias,
            from: None,
            to: None,
            call_id: None,
            cseq: None,
        }
    }

    /// The answer, to be sent to `source` (§18.2.2: `received` and `rport`
    /// in the top Via say where it went).
    fn answer(&self, status: StatusCode, unsupported: &[String], source: SocketAddr) -> Vec<u8> {
        let mut headers = Headers::default();
        for (i, v) in self.vias.iter().enumerate() {
            let mut top = ViaValue {
                major: v.major,
                minor: v.minor,
                via: v.via.clone(),
            };
            if i == 0 {
                if top.via.uri.host_with_port.host != Host::IpAddr(source.ip()) {
                    top.via = top
                        .via
                        .with_received(Received::new(source.ip().to_string()));
                }
                if top.via.rport().is_some() {
                    top.via = top.via.with_rport(Some(source.port()));
                }
            }
            headers.push(Header::Via(untyped::Via::new(top.render())));
        }
        if let Some(from) = &self.from {
            headers.push(from.clone().into());
        }
        if let Some(to) = &self.to {
            let to = if to.tag().is_some() {
                to.clone()
            } else {
                // §8.2.6.2: a final answer adds a To tag.
                to.clone().with_tag(Tag::new(new_tag()))
            };
            headers.push(to.into());
        }
        if let Some(call_id) = self.call_id {
            headers.push(Header::CallId(untyped::CallId::new(call_id)));
        }
        if let Some((seq, method)) = self.cseq {
            headers.push(Header::CSeq(untyped::CSeq::new(format!("{seq} {method}"))));
        }
        if !unsupported.is_empty() {
            headers.push(Header::Unsupported(untyped::Unsupported::new(
                unsupported.join(", "),
            )));
        }
        headers.push(Header::ContentLength(untyped::ContentLength::new("0")));
        Response {
            status_code: status,
            wire_reason: None,
            version: Version::V2,
            headers,
            body: Vec::new(),
        }
        .to_bytes()
    }
}

fn new_tag() -> String {
    format!("{:016x}", rand::random::<u64>())
}

struct Problem {
    status: StatusCode,
    why: &'static str,
    /// Option tags (checked tokens) for `Unsupported`.
    unsupported: Vec<String>,
}

impl Problem {
    fn new(status: StatusCode, why: &'static str) -> Self {
        Problem {
            status,
            why,
            unsupported: Vec::new(),
        }
    }

    fn bad(why: &'static str) -> Option<Self> {
        Some(Self::new(StatusCode::BadRequest, why))
    }
}

/// The first rule of the table in the module comment that `head` breaks.
fn check(head: &Head, echo: &Echo) -> Option<Problem> {
    if let Some(why) = head.malformed {
        return Problem::bad(why);
    }
    match head.version.split_once('/') {
        Some((sip, number)) if sip.eq_ignore_ascii_case("SIP") => match number.split_once('.') {
            Some((a, b)) if is_digits(a) && is_digits(b) => {
                if number != "2.0" {
                    return Some(Problem::new(
                        StatusCode::VersionNotSupported,
                        "SIP version not 2.0",
                    ));
                }
            }
            _ => return Problem::bad("a SIP-Version that is not SIP/n.n"),
        },
        _ => return Problem::bad("a SIP-Version that is not SIP/n.n"),
    }
    if echo.from.is_none() {
        return Problem::bad("From missing, repeated or malformed");
    }
    if echo.to.is_none() {
        return Problem::bad("To missing, repeated or malformed");
    }
    if echo.call_id.is_none() {
        return Problem::bad("Call-ID missing, repeated or malformed");
    }
    let Some((_, cseq_method)) = echo.cseq else {
        return Problem::bad("CSeq missing, repeated or malformed");
    };
    match head.values("Content-Length", Some("l")).as_slice() {
        [] => {}
        [one] => {
            if !is_digits(one) {
                return Problem::bad("Content-Length not a number");
            }
            // Digits only: a number too long for u64 is past the end too.
            if one
                .parse::<u64>()
                .map_or(true, |n| n > head.body_len as u64)
            {
                return Problem::bad("Content-Length past the end of the datagram");
            }
        }
        _ => return Problem::bad("Content-Length repeated"),
    }
    if !is_token(head.method) {
        return Problem::bad("a method that is not a token");
    }
    if cseq_method != head.method {
        return Problem::bad("CSeq's method is not the request's");
    }
    if !KNOWN_METHODS.contains(&head.method) {
        return Some(Problem::new(StatusCode::NotImplemented, "unknown method"));
    }
    if head.method != "ACK" && head.method != "CANCEL" {
        let mut unsupported: Vec<String> = Vec::new();
        for value in head.values("Require", None) {
            for tag in value.split(',').map(str::trim) {
                if !is_token(tag) {
                    return Problem::bad("a Require option tag that is not a token");
                }
                if !SUPPORTED_OPTION_TAGS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(tag))
                {
                    unsupported.push(tag.to_owned());
                }
            }
        }
        if !unsupported.is_empty() {
            return Some(Problem {
                status: StatusCode::BadExtension,
                why: "Require names an extension we do not support",
                unsupported,
            });
        }
    }
    None
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "192.0.2.7:5099";

    fn request(start: &str, extra: &[&str], body: &str) -> Vec<u8> {
        let mut t = format!(
            "{start}\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-u1;rport\r\n\
             From: \"Al\" <sip:al@10.0.0.1>;tag=f1\r\nTo: <sip:bo@10.0.0.2>\r\n\
             Call-ID: u1@10.0.0.1\r\nCSeq: 3 OPTIONS\r\n"
        );
        for h in extra {
            t.push_str(h);
            t.push_str("\r\n");
        }
        t.push_str("\r\n");
        t.push_str(body);
        t.into_bytes()
    }

    fn verdict(d: &[u8]) -> Verdict {
        screen_datagram(d, SRC.parse().expect("addr"), 8192)
    }

    fn answered(d: &[u8]) -> (u16, rsipstack::sip::Response) {
        match verdict(d) {
            Verdict::Answer { status, bytes } => {
                match rsipstack::sip::SipMessage::try_from(bytes.as_slice()) {
                    Ok(rsipstack::sip::SipMessage::Response(r)) => (status, r),
                    other => panic!("our answer does not parse: {other:?}"),
                }
            }
            other => panic!("not answered: {other:?}"),
        }
    }

    #[test]
    fn a_good_request_passes_and_a_response_is_not_judged() {
        let ok = request(
            "OPTIONS sip:bo@10.0.0.2 SIP/2.0",
            &["Content-Length: 0"],
            "",
        );
        assert_eq!(verdict(&ok), Verdict::Pass);
        let resp = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n\r\n";
        assert_eq!(verdict(resp), Verdict::Pass);
        assert_eq!(verdict(b"\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn the_answer_copies_the_parsed_parts_and_goes_where_the_request_came_from() {
        use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
        let foo = String::from_utf8(request("FOO sip:bo@10.0.0.2 SIP/2.0", &[], ""))
            .expect("utf8")
            .replace("CSeq: 3 OPTIONS", "CSeq: 3 FOO");
        let (status, r) = answered(foo.as_bytes());
        assert_eq!(status, 501);
        assert_eq!(r.cseq_header().expect("cseq").value(), "3 FOO");
        let via = r.via_header().expect("via").typed().expect("typed");
        assert_eq!(
            via.branch().map(|b| b.to_string()).as_deref(),
            Some("z9hG4bK-u1")
        );
        assert_eq!(via.rport(), Some(Some(5099)));
        assert_eq!(
            via.received().and_then(Result::ok),
            Some("192.0.2.7".parse().expect("ip"))
        );
        assert_eq!(r.call_id_header().expect("call-id").value(), "u1@10.0.0.1");
        // CSeq says OPTIONS, the method FOO: that is a 400 first.
        let (status, _) = answered(&request("FOO sip:bo@10.0.0.2 SIP/2.0", &[], ""));
        assert_eq!(status, 400);
        let to = r.to_header().expect("to").typed().expect("typed");
        assert!(to.tag().is_some(), "a To tag is added");
        let from = r.from_header().expect("from").typed().expect("typed");
        assert_eq!(from.display_name.as_deref(), Some("Al"));
    }

    #[test]
    fn each_rule_gets_its_status() {
        let cases: &[(&str, &[&str], &str, u16)] = &[
            ("OPTIONS sip:bo@h SIP/2.0", &["Require: foo"], "", 420),
            ("OPTIONS sip:bo@h SIP/2.0", &["Require: timer"], "", 0),
            ("OPTIONS sip:bo@h SIP/3.0", &[], "", 505),
            ("OPTIONS sip:bo@h SIP/2.x", &[], "", 400),
            ("options sip:bo@h SIP/2.0", &[], "", 400), // CSeq says OPTIONS
            (
                "OPTIONS sip:bo@h SIP/2.0",
                &["Content-Length: 9"],
                "abc",
                400,
            ),
            ("OPTIONS sip:bo@h SIP/2.0", &["Content-Length: -1"], "", 400),
            (
                "OPTIONS sip:bo@h SIP/2.0",
                &["Content-Length: +1"],
                "a",
                400,
            ),
            (
                "OPTIONS sip:bo@h SIP/2.0",
                &["l: 1", "Content-Length: 1"],
                "a",
                400,
            ),
            (
                "OPTIONS sip:bo@h SIP/2.0",
                &["Content-Length: 99999999999999999999999"],
                "",
                400,
            ),
            ("OPTIONS sip:bo@h SIP/2.0", &["Content-Length: 1"], "ab", 0),
            ("OPTIONS sip:bo@h SIP/2.0", &["Call-ID: again@x"], "", 400),
            ("OPTIONS sip:bo@h SIP/2.0", &["X-Bad\u{0}: v"], "", 400),
            (
                "OPTIONS sip:bo@h SIP/2.0",
                &["X: a\nVia: SIP/2.0/UDP 6.6.6.6"],
                "",
                400,
            ),
            ("OPTIONS sip:bo@h SIP/2.0", &["no colon here"], "", 400),
            ("OPTIONS  sip:bo@h SIP/2.0", &[], "", 400),
        ];
        for (start, extra, body, want) in cases {
            let d = request(start, extra, body);
            match verdict(&d) {
                Verdict::Pass => assert_eq!(*want, 0, "{start} {extra:?} passed"),
                Verdict::Answer { status, .. } => {
                    assert_eq!(status, *want, "{start} {extra:?}")
                }
                Verdict::Drop(why) => panic!("{start} {extra:?} dropped: {why}"),
            }
        }
    }

    #[test]
    fn unknown_and_miscased_methods_are_501() {
        for m in ["FROB", "invite", "Invite"] {
            let d = String::from_utf8(request(&format!("{m} sip:bo@h SIP/2.0"), &[], ""))
                .expect("utf8")
                .replace("CSeq: 3 OPTIONS", &format!("CSeq: 3 {m}"));
            assert_eq!(answered(d.as_bytes()).0, 501, "{m}");
        }
    }

    #[test]
    fn missing_or_broken_mandatory_headers_are_400_and_unanswerable_ones_dropped() {
        use rsipstack::sip::prelude::HeadersExt;
        let d = String::from_utf8(request("OPTIONS sip:bo@h SIP/2.0", &[], "")).expect("utf8");
        for cut in [
            "Call-ID: u1@10.0.0.1\r\n",
            "CSeq: 3 OPTIONS\r\n",
            "To: <sip:bo@10.0.0.2>\r\n",
        ] {
            let (status, r) = answered(d.replace(cut, "").as_bytes());
            assert_eq!(status, 400, "{cut}");
            assert!(r.via_header().is_ok());
        }
        let bad_cseq = d.replace("CSeq: 3 OPTIONS", "CSeq: 4294967296 OPTIONS");
        assert_eq!(answered(bad_cseq.as_bytes()).0, 400);
        let bad_call_id = d.replace("Call-ID: u1@10.0.0.1", "Call-ID: a@b@c");
        assert_eq!(answered(bad_call_id.as_bytes()).0, 400);
        // No Via, a Via we cannot read, an ACK, no end of head: nothing to say.
        let no_via = d.replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-u1;rport\r\n",
            "",
        );
        assert!(matches!(verdict(no_via.as_bytes()), Verdict::Drop(_)));
        let quoted = d.replace(";rport", ";x=\"a b\"");
        assert!(matches!(verdict(quoted.as_bytes()), Verdict::Drop(_)));
        let ack = d
            .replace("OPTIONS", "ACK")
            .replace("Call-ID: u1@10.0.0.1\r\n", "");
        assert!(matches!(verdict(ack.as_bytes()), Verdict::Drop(_)));
        assert!(matches!(
            verdict(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h"),
            Verdict::Drop(_)
        ));
    }

    #[test]
    fn a_datagram_longer_than_rsipstack_reads_is_513() {
        let big = "a".repeat(9000);
        let d = request("OPTIONS sip:bo@h SIP/2.0", &[&format!("X-Big: {big}")], "");
        assert_eq!(answered(&d).0, 513);
    }

    #[test]
    fn every_via_is_given_back_in_order() {
        use rsipstack::sip::prelude::HeadersExt;
        let d = request(
            "FOO sip:bo@h SIP/2.0",
            &[
                "Via: SIP/2.0/TCP p1.example:5060;branch=z9hG4bK-p1, SIP/2.0/UDP [2001:db8::1];branch=z9hG4bK-p2",
            ],
            "",
        );
        let d = String::from_utf8(d)
            .expect("utf8")
            .replace("CSeq: 3 OPTIONS", "CSeq: 3 FOO");
        let (_, r) = answered(d.as_bytes());
        let vias: Vec<String> = r
            .headers
            .iter()
            .filter_map(|h| match h {
                Header::Via(v) => Some(v.value().to_owned()),
                _ => None,
            })
            .collect();
        assert_eq!(vias.len(), 3, "{vias:?}");
        assert!(
            vias[1].contains("p1.example:5060;branch=z9hG4bK-p1"),
            "{vias:?}"
        );
        assert!(vias[2].contains("[2001:db8::1]"), "{vias:?}");
        let _ = r.via_header();
    }
}

#[cfg(test)]
mod forms {
    #[test]
    fn the_usual_from_and_to_forms_are_taken() {
        for v in [
            "sip:al@h;tag=1",
            "\"A B\" <sip:al@h>;tag=1",
            "A <sip:al@h>;tag=1",
            "<sip:al@h;user=phone>;tag=1",
            "<tel:+15551234567>;tag=1",
            "\"Ünïcode\" <sip:a@h>;tag=1",
            "<sip:+15551234567@10.0.0.1:5060;transport=udp>",
            "\"\" <sip:a@h>;tag=x",
            "<sips:a@h>",
            "<sip:a@[2001:db8::1]:5060>;tag=z",
        ] {
            assert!(super::parse_from(v).is_some(), "From {v:?}");
            assert!(super::parse_to(v).is_some(), "To {v:?}");
        }
        for v in [
            "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-1;rport",
            "SIP/2.0/TCP h.example;branch=z9hG4bK-1;received=1.2.3.4;rport=5",
            "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-1",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK776asdhds;alias",
            "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bK-1",
        ] {
            assert!(super::ViaValue::parse(v).is_some(), "Via {v:?}");
        }
    }
}
