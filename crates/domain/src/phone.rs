//! Numbers a call can go to or come from: E.164 or a SIP URI.

use std::fmt;

use crate::sip_uri::{SipUri, SipUriError};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhoneAddress {
    /// `+14155552671`
    E164(String),
    /// `sip:user@host[:port][;params]` (or `sips:`), parsed; it renders
    /// from its parts (see [`SipUri`]).
    SipUri(SipUri),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error(
        "must be an E.164 number such as +14155552671 or a SIP URI such as sip:user@example.com"
    )]
    Invalid,
    #[error("must be a SIP URI (RFC 3261) such as sip:user@example.com: it {0}")]
    SipUri(SipUriError),
    #[error("must be a SIP URI without headers (?name=value): a call's address carries none")]
    SipUriHeaders,
}

impl PhoneAddress {
    /// An E.164 number, or a SIP URI by the grammar of RFC 3261 (without
    /// `?headers`, which a Request-URI or To may not carry). Spaces around
    /// the text are ignored; control characters anywhere are refused.
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let input = input.trim_matches(' ');
        if let Some(digits) = input.strip_prefix('+') {
            let ok = (2..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit())
                && !digits.starts_with('0');
            return if ok {
                Ok(Self::E164(input.to_owned()))
            } else {
                Err(PhoneError::Invalid)
            };
        }
        let scheme = input.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("sip" | "sips")) {
            return Err(PhoneError::Invalid);
        }
        let uri = SipUri::parse(input).map_err(PhoneError::SipUri)?;
        if !uri.headers.is_empty() {
            return Err(PhoneError::SipUriHeaders);
        }
        Ok(Self::SipUri(uri))
    }

    /// The E.164 number, if this is one.
    pub fn as_e164(&self) -> Option<&str> {
        match self {
            Self::E164(s) => Some(s),
            Self::SipUri(_) => None,
        }
    }

    pub fn is_e164(&self) -> bool {
        matches!(self, Self::E164(_))
    }
}

impl fmt::Display for PhoneAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::E164(s) => f.write_str(s),
            Self::SipUri(u) => write!(f, "{u}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_e164_and_sip() {
        for ok in [
            "+14155552671",
            "+442071838750",
            "sip:alice@example.com",
            "sip:bob@127.0.0.1:5062",
            "sips:x@[::1]:5061;transport=tls",
            "sip:example.com",
        ] {
            assert!(PhoneAddress::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn sip_uris_are_stored_as_rendered_from_their_parts() {
        let p = PhoneAddress::parse(" SIP:Bob%41@[::0001]:5062;Transport=tcp ").unwrap();
        assert_eq!(p.to_string(), "sip:BobA@[::1]:5062;Transport=tcp");
        assert_eq!(PhoneAddress::parse(&p.to_string()), Ok(p));
        assert_eq!(
            PhoneAddress::parse("sip:a@h?x=1"),
            Err(PhoneError::SipUriHeaders)
        );
        assert_eq!(
            PhoneAddress::parse("sip:a@h;x=1 SIP/2.0")
                .unwrap_err()
                .to_string(),
            "must be a SIP URI (RFC 3261) such as sip:user@example.com: it contains a space or a control character"
        );
    }

    #[test]
    fn rejects_the_rest() {
        for bad in [
            "",
            "4155552671",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1-415-555",
            "tel:+1415",
            "sip:",
            "sip:@host",
            "sip:a@",
            "sip:a@host:0",
            "sip:a@host:99999",
            "sip:a b@host",
            "http://x",
            "sip:a@host?Subject=x",
            "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+19995550000@127.0.0.1>\r\nX-A: b",
            "+14155552671\n",
            "\0+14155552671",
        ] {
            assert!(PhoneAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
