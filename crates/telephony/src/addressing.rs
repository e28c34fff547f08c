//! The addresses of an outbound INVITE (Request-URI and To, From, where it
//! is sent), built from parsed parts, sans-IO.
//!
//! The call's `to_number` and `from_number` and the trunk's `host`,
//! `port`, `transport` and `from_domain` are parsed again here (the API
//! checked them when they were stored, but rows written before that check
//! are refused here too) and every rsipstack URI is assembled from those
//! parts: no text as the API received it is ever formatted into a message.
//! The fuzz target `outbound_uri` checks that what this builds parses back,
//! with rsipstack's parser, to the same parts and adds no header.

use std::net::IpAddr;

use rsipstack::sip::uri::{Auth, Domain, Host, HostWithPort, OtherParam, OtherParamValue, Param};
use rsipstack::sip::{Port, Scheme, Transport, Uri};
use rsipstack::transport::SipAddr;
use switchyard_domain::phone::PhoneAddress;
use switchyard_domain::sip_uri::{SipHost, SipUri, UriParam};

/// What an outbound INVITE is addressed with.
#[derive(Debug, Clone)]
pub struct OutboundAddresses {
    /// Request-URI and To.
    pub callee: Uri,
    /// From (without its tag).
    pub caller: Uri,
    /// Where the INVITE goes: the trunk.
    pub destination: SipAddr,
}

/// Why no INVITE can be addressed (the call fails `invalid_destination`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("the call has no to_number")]
    NoDestination,
    #[error("to_number {0}")]
    ToNumber(String),
    #[error("from_number {0}")]
    FromNumber(String),
    #[error("the trunk's {0} is not a host name or an IP address")]
    TrunkHost(&'static str),
    #[error("the trunk's port {0} is out of range")]
    TrunkPort(i64),
}

/// The trunk fields that address an INVITE.
#[derive(Debug, Clone, Copy)]
pub struct TrunkAddress<'a> {
    pub host: &'a str,
    pub port: i64,
    /// `udp` or `tcp`.
    pub transport: &'a str,
    pub from_domain: Option<&'a str>,
}

impl<'a> From<&'a switchyard_domain::model::SipTrunk> for TrunkAddress<'a> {
    fn from(t: &'a switchyard_domain::model::SipTrunk) -> Self {
        TrunkAddress {
            host: &t.host,
            port: t.port,
            transport: &t.transport,
            from_domain: t.from_domain.as_deref(),
        }
    }
}

/// The parsed URIs an INVITE to `to_number` through `trunk` carries, as
/// [`SipUri`]s (the fuzz target compares what the wire holds with these).
pub fn outbound_sip_uris(
    to_number: Option<&str>,
    from_number: Option<&str>,
    trunk: TrunkAddress<'_>,
) -> Result<(SipUri, SipUri), AddressError> {
    let to = to_number.ok_or(AddressError::NoDestination)?;
    let (host, port) = trunk_hostport(trunk)?;
    let tcp = trunk.transport.eq_ignore_ascii_case("tcp");
    let callee = match PhoneAddress::parse(to).map_err(|e| AddressError::ToNumber(e.to_string()))? {
        PhoneAddress::SipUri(uri) => uri,
        PhoneAddress::E164(number) => SipUri {
            secure: false,
            user: Some(number),
            password: None,
            host: host.clone(),
            port: Some(port),
            params: if tcp {
                vec![UriParam {
                    name: "transport".into(),
                    value: Some("tcp".into()),
                }]
            } else {
                Vec::new()
            },
            headers: Vec::new(),
        },
    };
    let from_user = match from_number {
        None => "anonymous".to_owned(),
        Some(f) => match PhoneAddress::parse(f) {
            Ok(PhoneAddress::E164(number)) => number,
            Ok(PhoneAddress::SipUri(_)) => {
                return Err(AddressError::FromNumber("is not an E.164 number".into()));
            }
            Err(e) => return Err(AddressError::FromNumber(e.to_string())),
        },
    };
    let from_host = match trunk.from_domain {
        Some(d) => SipHost::parse_field(d).map_err(|_| AddressError::TrunkHost("from_domain"))?,
        None => host,
    };
    let caller = SipUri {
        secure: false,
        user: Some(from_user),
        password: None,
        host: from_host,
        port: None,
        params: Vec::new(),
        headers: Vec::new(),
    };
    Ok((callee, caller))
}

fn trunk_hostport(trunk: TrunkAddress<'_>) -> Result<(SipHost, u16), AddressError> {
    let host = SipHost::parse_field(trunk.host).map_err(|_| AddressError::TrunkHost("host"))?;
    let port = u16::try_from(trunk.port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or(AddressError::TrunkPort(trunk.port))?;
    Ok((host, port))
}

/// [`outbound_sip_uris`] as rsipstack values, with the trunk as the
/// destination.
pub fn outbound_addresses(
    to_number: Option<&str>,
    from_number: Option<&str>,
    trunk: TrunkAddress<'_>,
) -> Result<OutboundAddresses, AddressError> {
    let (callee, caller) = outbound_sip_uris(to_number, from_number, trunk)?;
    let (host, port) = trunk_hostport(trunk)?;
    let destination = SipAddr {
        r#type: trunk
            .transport
            .eq_ignore_ascii_case("tcp")
            .then_some(Transport::Tcp),
        addr: HostWithPort {
            host: rsip_host(&host),
            port: Some(Port(port)),
        },
    };
    Ok(OutboundAddresses {
        callee: rsip_uri(&callee),
        caller: rsip_uri(&caller),
        destination,
    })
}

pub fn rsip_host(host: &SipHost) -> Host {
    match host {
        SipHost::Name(n) => Host::Domain(Domain(n.clone())),
        SipHost::V4(ip) => Host::IpAddr(IpAddr::V4(*ip)),
        SipHost::V6(ip) => Host::IpAddr(IpAddr::V6(*ip)),
    }
}

/// An rsipstack URI from a parsed one, part by part. Parameters go in as
/// rsipstack's "other" parameters, written exactly as parsed; the user and
/// password decoded, for rsipstack escapes them (as [`SipUri`] renders).
pub fn rsip_uri(uri: &SipUri) -> Uri {
    Uri {
        scheme: Some(if uri.secure {
            Scheme::Sips
        } else {
            Scheme::Sip
        }),
        auth: uri.user.as_ref().map(|user| Auth {
            user: user.clone(),
            password: uri.password.clone(),
        }),
        host_with_port: HostWithPort {
            host: rsip_host(&uri.host),
            port: uri.port.map(Port),
        },
        params: uri
            .params
            .iter()
            .map(|p| {
                Param::Other(
                    OtherParam::new(p.name.clone()),
                    p.value.clone().map(OtherParamValue::new),
                )
            })
            .collect(),
        headers: uri.headers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRUNK: TrunkAddress<'static> = TrunkAddress {
        host: "trunk.example",
        port: 5070,
        transport: "tcp",
        from_domain: None,
    };

    #[test]
    fn e164_goes_to_the_trunk_and_a_sip_uri_as_parsed() {
        let a = outbound_addresses(Some("+14155552671"), Some("+15550001000"), TRUNK).unwrap();
        assert_eq!(
            a.callee.to_string(),
            "sip:+14155552671@trunk.example:5070;transport=tcp"
        );
        assert_eq!(a.caller.to_string(), "sip:+15550001000@trunk.example");
        assert_eq!(a.destination.r#type, Some(Transport::Tcp));
        assert_eq!(a.destination.addr.to_string(), "trunk.example:5070");

        let v6 = TrunkAddress {
            host: "::1",
            transport: "udp",
            from_domain: Some("calls.example"),
            ..TRUNK
        };
        let a = outbound_addresses(Some("sip:a%20b@[::1]:5062;user=phone"), None, v6).unwrap();
        assert_eq!(a.callee.to_string(), "sip:a%20b@[::1]:5062;user=phone");
        assert_eq!(a.caller.to_string(), "sip:anonymous@calls.example");
        assert_eq!(a.destination.r#type, None);
        assert_eq!(a.destination.addr.to_string(), "[::1]:5070");

        let v6 = TrunkAddress {
            host: "2001:db8::1",
            port: 5060,
            ..TRUNK
        };
        let a = outbound_addresses(Some("+14155552671"), None, v6).unwrap();
        assert_eq!(
            a.callee.to_string(),
            "sip:+14155552671@[2001:db8::1]:5060;transport=tcp"
        );
        assert_eq!(a.destination.addr.to_string(), "[2001:db8::1]:5060");
    }

    #[test]
    fn stored_text_outside_the_grammar_addresses_nothing() {
        let injected = "sip:svc@127.0.0.1;x=1 SIP/2.0\r\nP-Asserted-Identity: <sip:+1@h>\r\nX-A: b";
        assert!(matches!(
            outbound_addresses(Some(injected), None, TRUNK),
            Err(AddressError::ToNumber(_))
        ));
        let bad_domain = TrunkAddress {
            from_domain: Some("x>;tag=1"),
            ..TRUNK
        };
        assert_eq!(
            outbound_addresses(Some("+14155552671"), None, bad_domain).unwrap_err(),
            AddressError::TrunkHost("from_domain")
        );
        let bad_host = TrunkAddress {
            host: "a b",
            ..TRUNK
        };
        assert_eq!(
            outbound_addresses(Some("+14155552671"), None, bad_host).unwrap_err(),
            AddressError::TrunkHost("host")
        );
        assert!(matches!(
            outbound_addresses(Some("+14155552671"), Some("+1 555"), TRUNK),
            Err(AddressError::FromNumber(_))
        ));
        assert_eq!(
            outbound_addresses(None, None, TRUNK).unwrap_err(),
            AddressError::NoDestination
        );
    }
}
