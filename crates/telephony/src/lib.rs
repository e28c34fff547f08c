//! Telephony for Switchyard: the SIP engine (rsipstack) that places and
//! answers calls through the organizations' trunks, and runs each call's
//! media.
//!
//! - [`addressing`]: an outbound INVITE's URIs, built from parsed parts, sans-IO;
//!   [`addressing_check`] the property its fuzz target and tests check.
//! - [`sdp`]: SDP offer/answer for G.711 with RFC 4733 telephone-events, sans-IO.
//! - [`engine`]: the SIP endpoint, dispatch of QUEUED calls, inbound INVITEs,
//!   heartbeats and the restart sweep; implements the service's `Telephony` port.
//! - `call`: one call's task, from INVITE to the stored final status.
//! - [`media_loop`]: the tokio loop around one leg's sans-IO media.
//! - [`bus`]: a live call's audio for the rest of the system.
//! - [`ports`]: RTP/RTCP port pairs.
//! - [`session_timer`]: RFC 4028 session timers (who refreshes, when to give up).
//! - [`dialog_record`]: an answered call's dialog, stored so another process can hang up.
//! - [`invite`]: a new INVITE's timer and offer accepted or refused, sans-IO.
//! - [`digest_spelling`]: `SHA-256` digest challenges despite rsipstack's parser.
//! - [`sip_screen`]: RFC 3261's checks on a request datagram before rsipstack
//!   parses it (400, 420, 501, 505, 513), sans-IO; `screened_udp` the socket
//!   that applies them, `screened_stream` the same for requests over TCP.

pub mod addressing;
pub mod addressing_check;
pub mod bus;
mod call;
pub mod dialog_record;
pub mod digest_spelling;
pub mod engine;
pub mod inbound_trust;
pub mod invite;
pub mod media_loop;
pub mod ports;
pub mod recording_writer;
pub mod rtp_socket;
mod screened_stream;
mod screened_udp;
pub mod sdp;
pub mod session_timer;
pub mod sip_screen;

pub use engine::{Engine, EngineConfig};
