//! An SDP offer as a peer may send it: parsing and negotiation never
//! panic, and whatever we answer to an offer we accept is SDP we read back
//! with one `m=` line per offered one and the agreed codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_telephony::sdp::{self, LocalMedia, SessionDescription};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = SessionDescription::parse(text) else {
        return;
    };
    let Ok(agreed) = sdp::negotiate(&offer) else {
        return;
    };
    let local = LocalMedia {
        address: "192.0.2.10:20000".parse().expect("a socket address"),
        session_id: 1,
        session_version: 1,
    };
    let answer = sdp::answer(&offer, &agreed, &local);
    let read_back = SessionDescription::parse(&answer)
        .unwrap_or_else(|e| panic!("our answer does not parse ({e}):\n{answer}"));
    assert_eq!(read_back.media.len(), offer.media.len(), "{answer}");
    let ours = sdp::negotiate(&read_back)
        .unwrap_or_else(|e| panic!("our answer is not acceptable ({e}):\n{answer}"));
    assert_eq!(ours.codec, agreed.codec, "{answer}");
});
