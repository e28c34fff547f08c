use proptest::prelude::*;

use super::*;

fn parse(s: &str) -> SipUri {
    SipUri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn parts_of_a_full_uri() {
    let u =
        parse("sips:al%69ce:p%40ss@Example.COM:5061;transport=TLS;lr;x-a=%5B1%5D?subject=hi&h=");
    assert!(u.secure);
    assert_eq!(u.user.as_deref(), Some("alice"));
    assert_eq!(u.password.as_deref(), Some("p@ss"));
    assert_eq!(u.host, SipHost::Name("Example.COM".into()));
    assert_eq!(u.port, Some(5061));
    assert_eq!(u.param("transport"), Some(Some("TLS")));
    assert_eq!(u.param("LR"), Some(None));
    assert_eq!(u.param("x-a"), Some(Some("%5B1%5D")));
    assert_eq!(u.param("maddr"), None);
    assert_eq!(
        u.headers,
        vec![("subject".into(), "hi".into()), ("h".into(), "".into())]
    );
    assert_eq!(
        u.to_string(),
        "sips:alice:p%40ss@Example.COM:5061;transport=TLS;lr;x-a=%5B1%5D?subject=hi&h="
    );
}

#[test]
fn hosts() {
    assert_eq!(
        parse("sip:10.0.0.1").host,
        SipHost::V4([10, 0, 0, 1].into())
    );
    let v6 = parse("sip:bob@[2001:DB8::1]:5062");
    assert_eq!(v6.host, SipHost::V6("2001:db8::1".parse().unwrap()));
    assert_eq!(v6.to_string(), "sip:bob@[2001:db8::1]:5062");
    assert_eq!(
        parse("sip:a.b-c.example.").host,
        SipHost::Name("a.b-c.example.".into())
    );
    assert_eq!(
        SipHost::parse_field("::1"),
        Ok(SipHost::V6("::1".parse().unwrap()))
    );
    assert_eq!(
        SipHost::parse_field("[::1]"),
        Ok(SipHost::V6("::1".parse().unwrap()))
    );
    for bad in [
        "",
        "-a.com",
        "a-.com",
        "a..com",
        "1.2.3",
        "256.1.1.1",
        "01.1.1.1",
        "a_b.com",
        "[::1",
        "::1",
        "[1.2.3.4]",
        "a.1com",
        ".",
        "a b",
    ] {
        assert_eq!(SipHost::parse(bad), Err(SipUriError::Host), "{bad:?}");
    }
    assert!(SipHost::parse(&format!("{}.com", "a".repeat(64))).is_err());
    assert!(SipHost::parse(&format!("{}.com", "a".repeat(63))).is_ok());
}

#[test]
fn users_are_decoded_and_escaped_again() {
    let u = parse("sip:%2B1%20415@h");
    assert_eq!(u.user.as_deref(), Some("+1 415"));
    assert_eq!(u.to_string(), "sip:+1%20415@h");
    assert_eq!(parse("sip:j%C3%A4s@h").user.as_deref(), Some("jäs"));
    assert_eq!(parse("sip:a%3ab@h").to_string(), "sip:a%3Ab@h");
    assert_eq!(
        parse("SIP:+14155552671@h").to_string(),
        "sip:+14155552671@h"
    );
}

#[test]
fn the_injection_of_the_issue_is_refused() {
    let injected = "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+19995550000@127.0.0.1>\r\nX-A: b";
    assert_eq!(SipUri::parse(injected), Err(SipUriError::Whitespace));
}

#[test]
fn refusals() {
    use SipUriError as E;
    let cases: &[(&str, SipUriError)] = &[
        ("sip:a@h\0", E::Whitespace),
        ("sip:a@h\n", E::Whitespace),
        ("sip:a@h\r", E::Whitespace),
        (" sip:a@h", E::Whitespace),
        ("sip:a\tb@h", E::Whitespace),
        ("sip:a@h\u{85}", E::Whitespace),
        ("tel:+1415", E::Scheme),
        ("sip", E::Scheme),
        ("http://x", E::Scheme),
        ("sip:@h", E::User),
        ("sip:a<b@h", E::User),
        ("sip:a\"@h", E::User),
        ("sip:%zz@h", E::User),
        ("sip:%4@h", E::User),
        ("sip:%0d%0a@h", E::User),
        ("sip:%00@h", E::User),
        ("sip:%ff@h", E::User),
        ("sip:a;b@h", E::UserDelimiter),
        ("sip:a?b@h", E::UserDelimiter),
        ("sip:a%3bb@h", E::UserDelimiter),
        ("sip:a%3Fb@h", E::UserDelimiter),
        ("sip:a:p:q@h", E::Password),
        ("sip:a:p%0A@h", E::Password),
        ("sip:a@", E::Host),
        ("sip:a@b@h", E::Host),
        ("sip:a@h>", E::Host),
        ("sip:a@h:0", E::Port),
        ("sip:a@h:65536", E::Port),
        ("sip:a@h:000005060", E::Port),
        ("sip:a@h:", E::Port),
        ("sip:a@h:+5", E::Port),
        ("sip:a@[::1]x", E::Host),
        ("sip:a@h;", E::Param("".into())),
        ("sip:a@h;=1", E::Param("=1".into())),
        ("sip:a@h;x=", E::Param("x=".into())),
        ("sip:a@h;x=<", E::Param("x=<".into())),
        ("sip:a@h;x=a=b", E::Param("x=a=b".into())),
        ("sip:a@h;x=%0D", E::Param("x=%0D".into())),
        ("sip:a@h;x=\"q\"", E::Param("x=\"q\"".into())),
        (
            "sip:a@h;transport=carrier-pigeon",
            E::Param("transport=carrier-pigeon".into()),
        ),
        ("sip:a@h;transport", E::Param("transport".into())),
        ("sip:a@h;method=INVITE", E::Param("method=INVITE".into())),
        ("sip:a@h;ttl=256", E::Param("ttl=256".into())),
        ("sip:a@h;maddr=-x", E::Param("maddr=-x".into())),
        ("sip:a@h;lr=on", E::Param("lr=on".into())),
        ("sip:a@h;rport=x", E::Param("rport=x".into())),
        ("sip:a@h;rport=05", E::Param("rport=05".into())),
        ("sip:a@h;x;X", E::DuplicateParam("X".into())),
        ("sip:a@h?", E::Headers),
        ("sip:a@h?x", E::Headers),
        ("sip:a@h?=1", E::Headers),
        ("sip:a@h?x=1&", E::Headers),
        ("sip:a@h?x=%0D%0A", E::Headers),
        ("sip:a@h?x=<", E::Headers),
    ];
    for (input, expected) in cases {
        assert_eq!(SipUri::parse(input).as_ref(), Err(expected), "{input:?}");
    }
    let long = format!("sip:{}@h", "a".repeat(MAX_SIP_URI_LEN));
    assert_eq!(SipUri::parse(&long), Err(E::TooLong));
}

fn arb_uri() -> impl Strategy<Value = SipUri> {
    let host = prop_oneof![
        "[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\\.[a-z]([a-z0-9-]{0,8}[a-z0-9])?){0,3}"
            .prop_map(SipHost::Name),
        any::<[u8; 4]>().prop_map(|b| SipHost::V4(b.into())),
        any::<[u16; 8]>().prop_map(|s| SipHost::V6(s.into())),
    ];
    let user = proptest::option::of("[^;?\\p{Cc}]{1,12}");
    let password = proptest::option::of("[^\\p{Cc}]{0,8}");
    let params = proptest::collection::vec(
        (
            "[a-z][a-zA-Z0-9_.!~*'()\\[\\]/:&+$-]{0,6}",
            proptest::option::of("[a-zA-Z0-9_.!~*'()\\[\\]/:&+$-]{1,6}"),
        ),
        0..4,
    );
    let headers = proptest::collection::vec(
        (
            "[a-zA-Z0-9_.!~*'()\\[\\]/?:+$-]{1,6}",
            "[a-zA-Z0-9_.!~*'()\\[\\]/?:+$-]{0,6}",
        ),
        0..3,
    );
    (
        any::<bool>(),
        user,
        password,
        host,
        proptest::option::of(1u16..),
        params,
        headers,
    )
        .prop_map(|(secure, user, password, host, port, params, headers)| {
            let mut seen = std::collections::HashSet::new();
            let params = params
                .into_iter()
                .map(|(n, v)| (format!("x{n}"), v))
                .filter(|(n, _)| seen.insert(n.to_ascii_lowercase()))
                .map(|(name, value)| UriParam { name, value })
                .collect();
            SipUri {
                secure,
                password: user.as_ref().and(password),
                user,
                host,
                port,
                params,
                headers,
            }
        })
}

proptest! {
    #[test]
    fn every_uri_renders_to_text_that_parses_back_to_it(uri in arb_uri()) {
        let text = uri.to_string();
        prop_assert!(text.len() > MAX_SIP_URI_LEN || SipUri::parse(&text).as_ref() == Ok(&uri), "{}", text);
    }

    #[test]
    fn whatever_parses_renders_to_plain_grammar_and_back(input in "(sip|sips|SIP):[ -~]{0,40}") {
        if let Ok(uri) = SipUri::parse(&input) {
            let text = uri.to_string();
            prop_assert!(!text.contains(|c: char| c.is_whitespace() || c.is_control() || "<>\"\\".contains(c)), "{}", text);
            prop_assert_eq!(SipUri::parse(&text), Ok(uri));
        }
    }
}
