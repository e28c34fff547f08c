//! What a new INVITE asks of us, decided without I/O: the session timer it
//! wants and the media it offers, or the response that refuses it. The
//! engine calls [`screen`] once it knows the number and has room; the fuzz
//! target (`fuzz/`) calls it on whatever bytes parse as SIP.

use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Header, Request, StatusCode};

use crate::sdp::{self, Negotiated, SessionDescription};
use crate::session_timer::{MIN_SE_SECS, SessionExpires, SessionTimer, lists_timer};

/// An INVITE we can answer.
#[derive(Debug)]
pub struct AcceptableInvite {
    pub offer: SessionDescription,
    pub agreed: Negotiated,
    /// The session timer and the `Session-Expires` for our 2xx, if asked for.
    pub timer: Option<(SessionTimer, SessionExpires)>,
}

/// The final response an INVITE gets instead.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub headers: Vec<Header>,
    /// For the log.
    pub reason: String,
}

/// Decides on an INVITE's session timer (RFC 4028: under Min-SE is 422)
/// and SDP offer (unreadable is 400, nothing in common or no offer is 488).
pub fn screen(invite: &Request) -> Result<AcceptableInvite, Refusal> {
    let timer = SessionTimer::for_uas(
        invite.session_expires_header().map(|h| h.value()),
        invite.headers.iter().any(|h| match h {
            Header::Supported(v) => lists_timer(v.value()),
            Header::Require(v) => lists_timer(v.value()),
            _ => false,
        }),
    );
    if let Some((t, _)) = timer
        && t.interval.as_secs() < MIN_SE_SECS
    {
        return Err(Refusal {
            status: StatusCode::SessionIntervalTooSmall,
            headers: vec![Header::Other("Min-SE".into(), MIN_SE_SECS.to_string())],
            reason: format!(
                "session interval {} s is under Min-SE {MIN_SE_SECS}",
                t.interval.as_secs()
            ),
        });
    }
    let offer = std::str::from_utf8(&invite.body)
        .map_err(|_| sdp::SdpError::Malformed("the SDP offer is not UTF-8".into()))
        .and_then(|text| {
            if text.trim().is_empty() {
                Err(sdp::SdpError::NotAcceptable(
                    "an INVITE without an SDP offer is not supported".into(),
                ))
            } else {
                SessionDescription::parse(text)
            }
        });
    match offer.and_then(|o| sdp::negotiate(&o).map(|a| (o, a))) {
        Ok((offer, agreed)) => Ok(AcceptableInvite {
            offer,
            agreed,
            timer,
        }),
        Err(e) => Err(Refusal {
            status: match e {
                sdp::SdpError::Malformed(_) => StatusCode::BadRequest,
                _ => StatusCode::NotAcceptableHere,
            },
            headers: vec![rsipstack::sip::Warning::new(format!("399 switchyard \"{e}\"")).into()],
            reason: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsipstack::sip::SipMessage;

    fn invite(extra_headers: &str, body: &str) -> Request {
        let text = format!(
            "INVITE sip:+15550001000@127.0.0.1 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1\r\n\
             From: <sip:alice@127.0.0.1>;tag=a\r\n\
             To: <sip:+15550001000@127.0.0.1>\r\n\
             Call-ID: c1\r\n\
             CSeq: 1 INVITE\r\n\
             {extra_headers}\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match SipMessage::try_from(text.as_bytes()) {
            Ok(SipMessage::Request(r)) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    const PCMU_OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                              m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn an_offer_we_share_a_codec_with_is_accepted_with_its_timer() {
        let ok = screen(&invite(
            "Session-Expires: 1800;refresher=uac\r\nSupported: timer\r\n",
            PCMU_OFFER,
        ))
        .expect("acceptable");
        assert_eq!(ok.offer.media.len(), 1);
        let (timer, se) = ok.timer.expect("timer");
        assert_eq!(timer.interval.as_secs(), 1800);
        assert!(!timer.we_refresh);
        assert_eq!(se.secs, 1800);
    }

    #[test]
    fn refusals_carry_the_rfc_status() {
        let short = screen(&invite("Session-Expires: 30\r\n", PCMU_OFFER)).unwrap_err();
        assert_eq!(short.status, StatusCode::SessionIntervalTooSmall);
        assert!(
            short
                .headers
                .iter()
                .any(|h| matches!(h, Header::Other(n, v) if n == "Min-SE" && v == "90"))
        );
        assert_eq!(
            screen(&invite("", "")).unwrap_err().status,
            StatusCode::NotAcceptableHere
        );
        assert_eq!(
            screen(&invite("", "garbage")).unwrap_err().status,
            StatusCode::BadRequest
        );
        let g729 = PCMU_OFFER
            .replace("RTP/AVP 0", "RTP/AVP 18")
            .replace("0 PCMU", "18 G729");
        assert_eq!(
            screen(&invite("", &g729)).unwrap_err().status,
            StatusCode::NotAcceptableHere
        );
    }
}
