//! The property the fuzz target `outbound_uri` (and the property test
//! below) checks of [`crate::addressing`]: whatever the API accepts as a
//! call's `to_number` (and a trunk's `host` and `from_domain`) makes an
//! INVITE whose Request-URI, To and From parse back, with rsipstack's own
//! parser, to exactly the parts that were parsed from the input, and whose
//! headers are exactly the ones meant: nothing in an input can add, end or
//! change a header.

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Request, SipMessage, Uri, Version, headers, typed};
use switchyard_domain::phone::PhoneAddress;
use switchyard_domain::sip_uri::{SipHost, SipUri};

use crate::addressing::{TrunkAddress, outbound_addresses, outbound_sip_uris};

/// The headers of the INVITE [`check`] builds, in order.
pub const HEADERS: &[&str] = &[
    "Via",
    "Call-ID",
    "From",
    "To",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
];

const FROM_NUMBER: &str = "+15550001000";

/// Checks the property for one input; `Err` says how it fails. Inputs the
/// API refuses (422) pass: they never reach the engine.
pub fn check(to_number: &str, host: &str, from_domain: Option<&str>) -> Result<(), String> {
    let Ok(to) = PhoneAddress::parse(to_number) else {
        return Ok(());
    };
    if SipHost::parse_field(host).is_err()
        || from_domain.is_some_and(|d| SipHost::parse_field(d).is_err())
    {
        return Ok(());
    }
    // What the API stores is what it parsed, and parses back to it.
    let stored = to.to_string();
    if PhoneAddress::parse(&stored).as_ref() != Ok(&to) {
        return Err(format!("{stored:?} does not parse back to {to:?}"));
    }
    for transport in ["udp", "tcp"] {
        let trunk = TrunkAddress {
            host,
            port: 5060,
            transport,
            from_domain,
        };
        let (callee, caller) = outbound_sip_uris(Some(&stored), Some(FROM_NUMBER), trunk)
            .map_err(|e| format!("accepted but not addressable: {e}"))?;
        let addresses = outbound_addresses(Some(&stored), Some(FROM_NUMBER), trunk)
            .map_err(|e| format!("accepted but not addressable: {e}"))?;
        let wire = invite(addresses.callee, addresses.caller).to_string();
        let parsed = match SipMessage::try_from(wire.as_str()) {
            Ok(SipMessage::Request(r)) => r,
            Ok(_) => return Err(format!("not a request: {wire:?}")),
            Err(e) => return Err(format!("does not parse ({e}): {wire:?}")),
        };
        let names: Vec<&str> = parsed.headers.iter().map(Header::name).collect();
        if names != HEADERS {
            return Err(format!("headers {names:?} in {wire:?}"));
        }
        same_parts("Request-URI", &parsed.uri, &callee)?;
        let to_header = parsed
            .to_header()
            .and_then(|h| h.typed())
            .map_err(|e| format!("To does not parse ({e}): {wire:?}"))?;
        if to_header.display_name.is_some() || !to_header.params.is_empty() {
            return Err(format!("To grew a name or parameters: {wire:?}"));
        }
        same_parts("To", &to_header.uri, &callee)?;
        let from_header = parsed
            .from_header()
            .and_then(|h| h.typed())
            .map_err(|e| format!("From does not parse ({e}): {wire:?}"))?;
        if from_header.display_name.is_some() || from_header.params.len() != 1 {
            return Err(format!("From grew a name or parameters: {wire:?}"));
        }
        same_parts("From", &from_header.uri, &caller)?;
    }
    Ok(())
}

/// An INVITE with the headers rsipstack's `make_invite_request` starts with.
fn invite(callee: Uri, caller: Uri) -> Request {
    let from = typed::From {
        display_name: None,
        uri: caller,
        params: vec![],
    }
    .with_tag("fuzztag".into());
    let to = typed::To {
        display_name: None,
        uri: callee.clone(),
        params: vec![],
    };
    Request {
        method: Method::Invite,
        uri: callee,
        headers: vec![
            Header::Via(headers::Via::new(
                "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz",
            )),
            Header::CallId("fuzz@127.0.0.1".into()),
            Header::From(from.into()),
            Header::To(to.into()),
            Header::CSeq(
                typed::CSeq {
                    seq: 1,
                    method: Method::Invite,
                }
                .into(),
            ),
            Header::MaxForwards(70.into()),
            Header::ContentLength(0.into()),
        ]
        .into(),
        body: vec![],
        version: Version::V2,
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether rsipstack's parse of a URI we sent has the parts we meant.
fn same_parts(what: &str, got: &Uri, want: &SipUri) -> Result<(), String> {
    let fail = |part: &str| Err(format!("{what}: {part} differs: {got:?} vs {want:?}"));
    let scheme = if want.secure {
        rsipstack::sip::Scheme::Sips
    } else {
        rsipstack::sip::Scheme::Sip
    };
    if got.scheme.as_ref() != Some(&scheme) {
        return fail("scheme");
    }
    let user = got.auth.as_ref().map(|a| percent_decode(&a.user));
    if user != want.user.clone().map(Some) {
        return fail("user");
    }
    let password = got
        .auth
        .as_ref()
        .and_then(|a| a.password.as_deref().map(percent_decode));
    if password != want.password.clone().map(Some) {
        return fail("password");
    }
    if got.host_with_port.host != crate::addressing::rsip_host(&want.host) {
        return fail("host");
    }
    if got.host_with_port.port.map(|p| p.0) != want.port {
        return fail("port");
    }
    if got.params.len() != want.params.len() {
        return fail("parameters");
    }
    for (g, w) in got.params.iter().zip(&want.params) {
        let text = g.to_string();
        let text = text.strip_prefix(';').unwrap_or(&text);
        let (name, value) = match text.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (text, None),
        };
        let value_matches = match (value, w.value.as_deref()) {
            (Some(g), Some(w)) if name.eq_ignore_ascii_case("transport") => {
                g.eq_ignore_ascii_case(w)
            }
            (g, w) => g == w,
        };
        if !name.eq_ignore_ascii_case(&w.name) || !value_matches {
            return fail("a parameter");
        }
    }
    if got.headers != want.headers {
        return fail("headers");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::check;

    #[test]
    fn examples_hold() {
        for to in [
            "+14155552671",
            "sip:a%20b:p%3Aw@[2001:db8::1]:5062;transport=TCP;lr;maddr=10.0.0.1;rport=5;x=%5B1%5D",
            "sips:bob@Example.COM.;user=phone;ttl=15;ob",
            "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+1@h>\r\nX-A: b",
        ] {
            check(to, "trunk.example", None).unwrap();
            check(to, "::1", Some("10.1.2.3")).unwrap();
        }
    }

    proptest! {
        #[test]
        fn whatever_is_accepted_reaches_the_wire_as_parsed(
            to in "(sip|sips):[ -~]{0,48}|\\+[0-9]{1,16}",
            host in "[a-z0-9.:\\[\\]-]{1,16}",
        ) {
            prop_assert_eq!(check(&to, &host, None), Ok(()));
        }
    }
}
