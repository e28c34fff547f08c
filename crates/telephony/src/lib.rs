//! Telephony for Switchyard. Today: SDP offer/answer for G.711 audio with
//! RFC 4733 telephone-events ([`sdp`]), sans-IO. SIP signalling, call legs
//! and trunks follow in this crate.

pub mod sdp;
