//! RTP packets (RFC 3550) in and out. Parsing and building are `rtp-rs`'s;
//! this module adds what a call leg needs around them: RTCP told apart on a
//! shared port (RFC 5761), and a sender that owns the SSRC, sequence numbers
//! and the media clock.

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use thiserror::Error;

use crate::dtmf::EventPacket;

/// A parsed RTP packet, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub payload_type: u8,
    pub marker: bool,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpError {
    #[error("not an RTP packet: {0}")]
    Malformed(String),
    /// An RTCP packet arrived on the RTP port (rtcp-mux).
    #[error("RTCP packet")]
    Rtcp,
}

/// Parses a datagram. Malformed packets are errors (the caller drops them);
/// RTCP packet types 200-204 are reported as [`RtpError::Rtcp`].
pub fn parse(datagram: &[u8]) -> Result<RtpPacket<'_>, RtpError> {
    if datagram.len() >= 2 && (200..=204).contains(&datagram[1]) {
        return Err(RtpError::Rtcp);
    }
    let r = RtpReader::new(datagram).map_err(|e| RtpError::Malformed(format!("{e:?}")))?;
    Ok(RtpPacket {
        payload_type: r.payload_type(),
        marker: r.mark(),
        sequence: r.sequence_number().into(),
        timestamp: r.timestamp(),
        ssrc: r.ssrc(),
        payload: r.payload(),
    })
}

/// Builds the outgoing packets of one RTP stream.
#[derive(Debug, Clone)]
pub struct RtpSender {
    ssrc: u32,
    next_sequence: u16,
    /// The media clock: the timestamp of the next audio frame.
    timestamp: u32,
    sent_packets: u64,
    sent_octets: u64,
}

impl RtpSender {
    /// `ssrc`, the first sequence number and the first timestamp should be
    /// random (RFC 3550 §5.1); the caller draws them.
    pub fn new(ssrc: u32, first_sequence: u16, first_timestamp: u32) -> Self {
        Self {
            ssrc,
            next_sequence: first_sequence,
            timestamp: first_timestamp,
            sent_packets: 0,
            sent_octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The timestamp the next audio frame will carry.
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }

    /// Packets and payload octets sent (for RTCP sender reports).
    pub fn counts(&self) -> (u64, u64) {
        (self.sent_packets, self.sent_octets)
    }

    fn build(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) -> Vec<u8> {
        let packet = RtpPacketBuilder::new()
            .payload_type(payload_type)
            .marked(marker)
            .sequence(Seq::from(self.next_sequence))
            .ssrc(self.ssrc)
            .timestamp(timestamp)
            .payload(payload)
            .build()
            // Only an out-of-range payload type or too many CSRCs can fail; we set neither.
            .expect("a valid RTP header");
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.sent_packets += 1;
        self.sent_octets += payload.len() as u64;
        packet
    }

    /// One audio frame of `samples` samples; the clock advances by as many.
    /// `marker` starts a talkspurt (the first packet after silence).
    pub fn audio(
        &mut self,
        payload_type: u8,
        marker: bool,
        payload: &[u8],
        samples: u32,
    ) -> Vec<u8> {
        let ts = self.timestamp;
        let packet = self.build(payload_type & 0x7F, marker, ts, payload);
        self.timestamp = self.timestamp.wrapping_add(samples);
        packet
    }

    /// One telephone-event packet (its timestamp is the event's start).
    pub fn event(&mut self, payload_type: u8, packet: &EventPacket) -> Vec<u8> {
        self.build(
            payload_type & 0x7F,
            packet.marker,
            packet.timestamp,
            &packet.payload,
        )
    }

    /// Moves the media clock on without sending (while events play, or in
    /// silence), so the next audio frame keeps real time.
    pub fn advance(&mut self, samples: u32) {
        self.timestamp = self.timestamp.wrapping_add(samples);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{Digit, digit_packets};

    #[test]
    fn audio_frames_advance_sequence_and_clock() {
        let mut tx = RtpSender::new(0xDEADBEEF, 65_535, u32::MAX - 100);
        let a = tx.audio(0, true, &[0xFF; 160], 160);
        let b = tx.audio(0, false, &[0xFF; 160], 160);
        let pa = parse(&a).unwrap();
        let pb = parse(&b).unwrap();
        assert_eq!((pa.sequence, pb.sequence), (65_535, 0), "sequence wraps");
        assert_eq!(
            pb.timestamp,
            pa.timestamp.wrapping_add(160),
            "timestamp wraps"
        );
        assert!(pa.marker && !pb.marker);
        assert_eq!(pa.ssrc, 0xDEADBEEF);
        assert_eq!(pa.payload.len(), 160);
        assert_eq!(a.len(), 12 + 160);
        assert_eq!(tx.counts(), (2, 320));
    }

    #[test]
    fn events_keep_their_start_timestamp() {
        let mut tx = RtpSender::new(1, 10, 8000);
        let start = tx.timestamp();
        let pkts = digit_packets(Digit::new('5').unwrap(), start, 480, 160);
        let wire: Vec<_> = pkts.iter().map(|p| tx.event(101, p)).collect();
        for (i, w) in wire.iter().enumerate() {
            let p = parse(w).unwrap();
            assert_eq!(p.payload_type, 101);
            assert_eq!(p.timestamp, start);
            assert_eq!(p.sequence, 10 + i as u16);
            assert_eq!(p.marker, i == 0);
        }
        tx.advance(480);
        let wire = tx.audio(0, true, &[0; 160], 160);
        let after = parse(&wire).unwrap();
        assert_eq!(after.timestamp, start + 480);
    }

    #[test]
    fn malformed_and_rtcp_are_refused() {
        assert!(matches!(parse(&[]), Err(RtpError::Malformed(_))));
        assert!(matches!(
            parse(&[0x80, 0x00, 0x00]),
            Err(RtpError::Malformed(_))
        ));
        // Version 1.
        assert!(matches!(
            parse(&[0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Malformed(_))
        ));
        // CSRC count larger than the packet.
        assert!(matches!(
            parse(&[0x8F, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(RtpError::Malformed(_))
        ));
        // An RTCP receiver report (PT 201).
        assert!(matches!(
            parse(&[0x81, 201, 0, 7, 0, 0, 0, 1]),
            Err(RtpError::Rtcp)
        ));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn build_then_parse_round_trips(pt in 0u8..128, marker: bool, seq: u16, ts: u32, ssrc: u32,
                                        payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut tx = RtpSender::new(ssrc, seq, ts);
            let wire = tx.audio(pt, marker, &payload, 160);
            if (200..=204).contains(&(pt | if marker { 0x80 } else { 0 })) {
                // A marked PT 72-76 looks like RTCP on a muxed port; SDP never assigns those.
                proptest::prop_assert_eq!(parse(&wire), Err(RtpError::Rtcp));
            } else {
                let p = parse(&wire).unwrap();
                proptest::prop_assert_eq!((p.payload_type, p.marker, p.sequence, p.timestamp, p.ssrc, p.payload), (pt, marker, seq, ts, ssrc, &payload[..]));
            }
        }
    }
}
