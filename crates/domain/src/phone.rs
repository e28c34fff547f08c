//! Numbers a call can go to or come from: E.164 or a SIP URI.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PhoneAddress {
    /// `+14155552671`
    E164(String),
    /// `sip:user@host[:port][;params]` (or `sips:`), kept as given.
    SipUri(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error(
        "must be an E.164 number such as +14155552671 or a SIP URI such as sip:user@example.com"
    )]
    Invalid,
}

const MAX_SIP_URI_LEN: usize = 256;

impl PhoneAddress {
    pub fn parse(input: &str) -> Result<Self, PhoneError> {
        let input = input.trim();
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
        let lower = input.to_ascii_lowercase();
        let rest = lower
            .strip_prefix("sip:")
            .or_else(|| lower.strip_prefix("sips:"))
            .ok_or(PhoneError::Invalid)?;
        if input.len() > MAX_SIP_URI_LEN || !valid_sip_rest(rest) {
            return Err(PhoneError::Invalid);
        }
        Ok(Self::SipUri(input.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::E164(s) | Self::SipUri(s) => s,
        }
    }

    pub fn is_e164(&self) -> bool {
        matches!(self, Self::E164(_))
    }
}

/// `user@host[:port][;params]` with a plain user part and a host name or IP.
fn valid_sip_rest(rest: &str) -> bool {
    let rest = rest.split(';').next().unwrap_or_default();
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    if let Some(user) = user {
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.!~*'()&=+$,?/%#".contains(&b));
        if !user_ok {
            return false;
        }
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => return false,
        }
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if let Some(port) = port {
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return false,
        }
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
        && !host.starts_with('.')
        && !host.starts_with('-')
}

impl fmt::Display for PhoneAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        ] {
            assert!(PhoneAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
