//! Bytes as the SIP engine receives them (UDP datagram or TCP frame): the
//! parse rsipstack's transports do, the digest respelling every message
//! passes through, and what the engine reads of requests and responses,
//! including the screening of a new INVITE (session timer, SDP offer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rsipstack::sip::prelude::HeadersExt;
use rsipstack::sip::{Method, SipMessage, ToTypedHeader};
use rsipstack::transaction::endpoint::MessageInspector;
use switchyard_telephony::digest_spelling::DigestSpelling;
use switchyard_telephony::session_timer::SessionTimer;
use switchyard_telephony::{invite, sdp};

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = SipMessage::try_from(data) else {
        return;
    };
    let digest = DigestSpelling::default();
    // A call's password, as if the message were of one of our calls.
    let _registered = msg
        .call_id_header()
        .ok()
        .map(|c| digest.register(c.value(), "fuzz-password"));
    match digest.after_received(msg, None) {
        SipMessage::Request(req) => {
            let _ = req.uri.user();
            let _ = req.from_header().ok().and_then(|f| f.typed().ok());
            if req.method == Method::Invite {
                let _ = invite::screen(&req);
            }
            // Our own requests go out through the same inspector.
            let _ = digest.before_send(SipMessage::Request(req), None);
        }
        SipMessage::Response(resp) => {
            let _ = SessionTimer::for_uac(resp.session_expires_header().map(|h| h.value()));
            if let Ok(text) = std::str::from_utf8(&resp.body)
                && let Ok(answer) = sdp::SessionDescription::parse(text)
            {
                let _ = sdp::negotiate(&answer);
            }
        }
    }
});
