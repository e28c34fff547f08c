//! RTCP (RFC 3550 §6): reception statistics for a source, and sender and
//! receiver reports built and parsed, sans-IO. The call leg keeps these as
//! per-call stats (loss, jitter, round trip).

use thiserror::Error;

/// Reception statistics of one incoming RTP source (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Clone, Default)]
pub struct ReceptionStats {
    ssrc: u32,
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u64,
    started: bool,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    jitter_q4: i64,
}

/// A report block: what we tell a sender about its stream, or what it
/// tells us about ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Packets lost since the beginning (may be negative with duplicates).
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub last_sr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub delay_since_last_sr: u32,
}

impl ReceptionStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one packet: its sequence number, RTP timestamp and arrival
    /// time in the same clock units as the RTP timestamp.
    pub fn record(&mut self, ssrc: u32, seq: u16, rtp_timestamp: u32, arrival_units: i64) {
        if !self.started || ssrc != self.ssrc {
            *self = Self {
                ssrc,
                base_seq: seq as u32,
                max_seq: seq,
                started: true,
                ..Self::default()
            };
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                // In order (maybe with a gap); count a wrap.
                if seq < self.max_seq {
                    self.cycles += 1 << 16;
                }
                self.max_seq = seq;
            }
            // Otherwise a duplicate or a reordered (older) packet: counted, not advancing.
        }
        self.received += 1;
        let transit = arrival_units - rtp_timestamp as i64;
        if let Some(prev) = self.transit {
            let d = (transit - prev).abs();
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.transit = Some(transit);
    }

    pub fn extended_highest_seq(&self) -> u32 {
        self.cycles + self.max_seq as u32
    }

    pub fn expected(&self) -> u64 {
        if !self.started {
            0
        } else {
            (self.extended_highest_seq() as u64 + 1).saturating_sub(self.base_seq as u64)
        }
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// The block for our next report; resets the "since last report" counters.
    pub fn report_block(&mut self, last_sr: u32, delay_since_last_sr: u32) -> ReportBlock {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior;
        let received_interval = self.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        };
        ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            extended_highest_seq: self.extended_highest_seq(),
            jitter: self.jitter(),
            last_sr,
            delay_since_last_sr,
        }
    }
}

/// A parsed RTCP packet of a compound datagram (others are skipped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport {
        ssrc: u32,
        ntp: u64,
        rtp_timestamp: u32,
        packets: u32,
        octets: u32,
        reports: Vec<ReportBlock>,
    },
    ReceiverReport {
        ssrc: u32,
        reports: Vec<ReportBlock>,
    },
    Bye {
        ssrcs: Vec<u32>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtcpError {
    #[error("malformed RTCP: {0}")]
    Malformed(&'static str),
}

fn header(out: &mut Vec<u8>, count: u8, packet_type: u8, words_after_header: usize) {
    out.push(0x80 | (count & 0x1F));
    out.push(packet_type);
    out.extend_from_slice(&(words_after_header as u16).to_be_bytes());
}

fn block(out: &mut Vec<u8>, b: &ReportBlock) {
    out.extend_from_slice(&b.ssrc.to_be_bytes());
    let lost = (b.cumulative_lost as u32) & 0x00FF_FFFF;
    out.extend_from_slice(&(((b.fraction_lost as u32) << 24) | lost).to_be_bytes());
    out.extend_from_slice(&b.extended_highest_seq.to_be_bytes());
    out.extend_from_slice(&b.jitter.to_be_bytes());
    out.extend_from_slice(&b.last_sr.to_be_bytes());
    out.extend_from_slice(&b.delay_since_last_sr.to_be_bytes());
}

/// A sender report (at most 31 blocks are sent; more are dropped).
pub fn sender_report(
    ssrc: u32,
    ntp: u64,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
    reports: &[ReportBlock],
) -> Vec<u8> {
    let reports = &reports[..reports.len().min(31)];
    let mut out = Vec::with_capacity(28 + 24 * reports.len());
    header(&mut out, reports.len() as u8, 200, 6 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&ntp.to_be_bytes());
    out.extend_from_slice(&rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&packets.to_be_bytes());
    out.extend_from_slice(&octets.to_be_bytes());
    reports.iter().for_each(|b| block(&mut out, b));
    out
}

/// A receiver report (at most 31 blocks).
pub fn receiver_report(ssrc: u32, reports: &[ReportBlock]) -> Vec<u8> {
    let reports = &reports[..reports.len().min(31)];
    let mut out = Vec::with_capacity(8 + 24 * reports.len());
    header(&mut out, reports.len() as u8, 201, 1 + 6 * reports.len());
    out.extend_from_slice(&ssrc.to_be_bytes());
    reports.iter().for_each(|b| block(&mut out, b));
    out
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, RtcpError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(RtcpError::Malformed("truncated"))
}

fn blocks(body: &[u8], at: usize, count: usize) -> Result<Vec<ReportBlock>, RtcpError> {
    (0..count)
        .map(|i| {
            let o = at + i * 24;
            let word = u32_at(body, o + 4)?;
            // Sign-extend the 24-bit cumulative loss.
            let lost = ((word & 0x00FF_FFFF) << 8) as i32 >> 8;
            Ok(ReportBlock {
                ssrc: u32_at(body, o)?,
                fraction_lost: (word >> 24) as u8,
                cumulative_lost: lost,
                extended_highest_seq: u32_at(body, o + 8)?,
                jitter: u32_at(body, o + 12)?,
                last_sr: u32_at(body, o + 16)?,
                delay_since_last_sr: u32_at(body, o + 20)?,
            })
        })
        .collect()
}

/// Parses a compound RTCP datagram.
pub fn parse(datagram: &[u8]) -> Result<Vec<RtcpPacket>, RtcpError> {
    let mut out = Vec::new();
    let mut rest = datagram;
    if rest.is_empty() {
        return Err(RtcpError::Malformed("empty"));
    }
    while !rest.is_empty() {
        if rest.len() < 4 || rest[0] >> 6 != 2 {
            return Err(RtcpError::Malformed("bad header"));
        }
        let count = (rest[0] & 0x1F) as usize;
        let packet_type = rest[1];
        let len = (u16::from_be_bytes([rest[2], rest[3]]) as usize + 1) * 4;
        let body = rest
            .get(..len)
            .ok_or(RtcpError::Malformed("length beyond the datagram"))?;
        match packet_type {
            200 => {
                let ntp = ((u32_at(body, 8)? as u64) << 32) | u32_at(body, 12)? as u64;
                out.push(RtcpPacket::SenderReport {
                    ssrc: u32_at(body, 4)?,
                    ntp,
                    rtp_timestamp: u32_at(body, 16)?,
                    packets: u32_at(body, 20)?,
                    octets: u32_at(body, 24)?,
                    reports: blocks(body, 28, count)?,
                });
            }
            201 => out.push(RtcpPacket::ReceiverReport {
                ssrc: u32_at(body, 4)?,
                reports: blocks(body, 8, count)?,
            }),
            203 => out.push(RtcpPacket::Bye {
                ssrcs: (0..count)
                    .map(|i| u32_at(body, 4 + 4 * i))
                    .collect::<Result<_, _>>()?,
            }),
            _ => {}
        }
        rest = &rest[len..];
    }
    Ok(out)
}

/// The middle 32 bits of an NTP timestamp, as LSR carries them.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round-trip time in 1/65536 s from a report block about our stream,
/// given the arrival time of that report as an NTP timestamp (RFC 3550 6.4.1).
pub fn round_trip(block: &ReportBlock, arrival_ntp: u64) -> Option<u32> {
    if block.last_sr == 0 {
        return None;
    }
    Some(
        ntp_middle(arrival_ntp)
            .wrapping_sub(block.last_sr)
            .wrapping_sub(block.delay_since_last_sr),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_and_fraction_with_reordering_and_wrap() {
        let mut s = ReceptionStats::new();
        // Sequence numbers 65 501..=65 699 (through the wrap), every one divisible
        // by 10 lost (20 of 199), pairs swapped after the first packet.
        let mut seqs: Vec<u16> = (1..200u32)
            .map(|i| 65_500u16.wrapping_add(i as u16))
            .filter(|q| q % 10 != 0)
            .collect();
        for pair in seqs[1..].chunks_mut(2) {
            pair.reverse();
        }
        for (i, seq) in seqs.iter().enumerate() {
            s.record(7, *seq, *seq as u32 * 160, i as i64 * 160);
        }
        assert_eq!(s.extended_highest_seq(), (1 << 16) + 163);
        assert_eq!(s.expected(), 199);
        assert_eq!(s.received(), 179);
        assert_eq!(s.lost(), 20);
        let b = s.report_block(0, 0);
        assert_eq!(b.cumulative_lost, 20);
        assert_eq!(b.fraction_lost, (20 * 256 / 199) as u8);
        // Nothing new: no loss in the next interval.
        assert_eq!(s.report_block(0, 0).fraction_lost, 0);
    }

    #[test]
    fn jitter_follows_arrival_variation() {
        let mut steady = ReceptionStats::new();
        let mut shaky = ReceptionStats::new();
        for i in 0..500u32 {
            steady.record(1, i as u16, i * 160, i as i64 * 160);
            shaky.record(
                1,
                i as u16,
                i * 160,
                i as i64 * 160 + if i % 2 == 0 { 0 } else { 320 },
            );
        }
        assert_eq!(steady.jitter(), 0);
        assert!((300..=330).contains(&shaky.jitter()), "{}", shaky.jitter());
    }

    #[test]
    fn reports_round_trip() {
        let block = ReportBlock {
            ssrc: 0x1234,
            fraction_lost: 25,
            cumulative_lost: -3,
            extended_highest_seq: 70_000,
            jitter: 42,
            last_sr: 0xAABB_CCDD,
            delay_since_last_sr: 65_536,
        };
        let sr = sender_report(9, 0x0102_0304_0506_0708, 160, 10, 1600, &[block]);
        assert_eq!(sr.len(), 52);
        let rr = receiver_report(9, &[block, block]);
        let mut compound = sr.clone();
        compound.extend_from_slice(&rr);
        compound.extend_from_slice(&[0x81, 203, 0, 1, 0, 0, 0, 9]);
        let parsed = parse(&compound).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(
            parsed[0],
            RtcpPacket::SenderReport {
                ssrc: 9,
                ntp: 0x0102_0304_0506_0708,
                rtp_timestamp: 160,
                packets: 10,
                octets: 1600,
                reports: vec![block]
            }
        );
        assert_eq!(
            parsed[1],
            RtcpPacket::ReceiverReport {
                ssrc: 9,
                reports: vec![block, block]
            }
        );
        assert_eq!(parsed[2], RtcpPacket::Bye { ssrcs: vec![9] });
        // 1 s after the SR, with 1 s of holding delay: a round trip of 0.
        let arrival = ((0xAABB_CCDDu64) << 16) + (2 << 32);
        assert_eq!(round_trip(&block, arrival), Some(65_536));
    }

    #[test]
    fn malformed_is_refused() {
        for bad in [
            &[][..],
            &[0x80, 200],
            &[0x40, 200, 0, 0],
            &[0x80, 201, 0, 9, 0, 0, 0, 1],
            &[0x81, 201, 0, 1, 0, 0, 0, 1],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = parse(&bytes);
        }
    }
}
