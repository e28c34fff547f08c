//! Media for Switchyard's call legs, sans-IO: every type here turns bytes
//! and frames into other bytes and frames; sockets and timers live in the
//! thin I/O loop of the telephony engine.
//!
//! - [`g711`]: μ-law and A-law (ITU-T G.711).
//! - [`rtp`]: RTP packets in and out (parsing and building with `rtp-rs`),
//!   a sender that keeps sequence numbers, timestamps and the SSRC.
//! - [`dtmf`]: RFC 4733 telephone-events, sending and receiving.
//! - [`jitter`]: an adaptive jitter buffer with loss concealment.
//! - [`latch`]: which source the far end's media is taken from (the SDP
//!   address, or another by the strict-RTP rule: no hijacking).
//! - [`rtcp`]: reception statistics, sender and receiver reports.
//! - [`recorder`]: the live stereo WAV recording of a call.
//! - [`m4a`]: that WAV turned into the `audio/mp4` (AAC-LC) files people play.
//! - [`session`]: one call leg's media (all of the above, per datagram and per tick).

pub mod dtmf;
pub mod g711;
pub mod jitter;
pub mod latch;
pub mod m4a;
pub mod recorder;
pub mod rtcp;
pub mod rtp;
pub mod session;
