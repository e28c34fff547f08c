//! RFC 4733 telephone-events (DTMF digits in RTP).
//!
//! Payload: `event (8) | E (1) | R (1) | volume (6) | duration (16)`. One
//! event keeps its RTP timestamp (its start) across all its packets; the
//! first carries the marker bit; the duration grows; the end is sent three
//! times with the E bit, because any packet may be lost.

use thiserror::Error;

/// A DTMF digit: `0`-`9`, `*`, `#`, `A`-`D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Digit(char);

impl Digit {
    pub fn new(c: char) -> Option<Self> {
        let c = c.to_ascii_uppercase();
        matches!(c, '0'..='9' | '*' | '#' | 'A'..='D').then_some(Digit(c))
    }

    pub fn as_char(self) -> char {
        self.0
    }

    /// The RFC 4733 event code.
    pub fn event_code(self) -> u8 {
        match self.0 {
            c @ '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c => c as u8 - b'A' + 12,
        }
    }

    pub fn from_event_code(code: u8) -> Option<Self> {
        let c = match code {
            0..=9 => (b'0' + code) as char,
            10 => '*',
            11 => '#',
            12..=15 => (b'A' + code - 12) as char,
            _ => return None,
        };
        Some(Digit(c))
    }
}

/// One telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    pub event: u8,
    pub end: bool,
    /// 0 to 63: -dBm0 (lower is louder).
    pub volume: u8,
    /// In RTP timestamp units since the event's start.
    pub duration: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DtmfError {
    #[error("telephone-event payload must be at least 4 bytes, got {0}")]
    TooShort(usize),
}

impl EventPayload {
    pub fn parse(bytes: &[u8]) -> Result<Self, DtmfError> {
        if bytes.len() < 4 {
            return Err(DtmfError::TooShort(bytes.len()));
        }
        Ok(Self {
            event: bytes[0],
            end: bytes[1] & 0x80 != 0,
            volume: bytes[1] & 0x3F,
            duration: u16::from_be_bytes([bytes[2], bytes[3]]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// A packet the sender wants on the wire: the RTP fields it decides and the
/// payload. The RTP sender adds the sequence number and the SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    pub marker: bool,
    /// The event's start, in RTP timestamp units.
    pub timestamp: u32,
    pub payload: [u8; 4],
}

/// The packets of one digit, sent every `packet_samples` of RTP time:
/// updates while the tone lasts, then the end three times.
pub fn digit_packets(
    digit: Digit,
    start_timestamp: u32,
    duration_samples: u16,
    packet_samples: u16,
) -> Vec<EventPacket> {
    let step = packet_samples.max(1);
    let mut packets = Vec::new();
    let mut elapsed = step.min(duration_samples.max(1));
    loop {
        let end = elapsed >= duration_samples;
        let payload = EventPayload {
            event: digit.event_code(),
            end,
            volume: 10,
            duration: elapsed,
        };
        let repeats = if end { 3 } else { 1 };
        for _ in 0..repeats {
            packets.push(EventPacket {
                marker: packets.is_empty(),
                timestamp: start_timestamp,
                payload: payload.to_bytes(),
            });
        }
        if end {
            return packets;
        }
        elapsed = elapsed.saturating_add(step).min(duration_samples);
    }
}

/// A digit the far end sent, reported once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceivedDigit {
    pub digit: Digit,
    /// The event's RTP timestamp (its start).
    pub timestamp: u32,
    /// In RTP timestamp units, as far as the packets told.
    pub duration: u16,
}

/// Turns telephone-event packets into digits, each reported exactly once:
/// at its first end packet, or — when every end packet was lost — when the
/// next event starts or [`DtmfReceiver::flush`] is called after a timeout.
/// Packets of an event already reported (repeated ends, late reordered
/// updates) are ignored; so is a lost start (no marker) or a missing
/// update. Events are told apart by their RTP timestamp.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    /// The event in progress: (timestamp, digit, longest duration seen).
    current: Option<(u32, Digit, u16)>,
    /// Timestamps of recently finished events (late packets for them are dropped).
    finished: [Option<u32>; 8],
    next_slot: usize,
}

impl DtmfReceiver {
    pub fn new() -> Self {
        Self::default()
    }

    fn is_finished(&self, ts: u32) -> bool {
        self.finished.contains(&Some(ts))
    }

    fn finish(&mut self, ts: u32) {
        self.finished[self.next_slot] = Some(ts);
        self.next_slot = (self.next_slot + 1) % self.finished.len();
    }

    /// Feeds one packet's RTP timestamp and payload. May report the digit
    /// of an earlier event (whose end was lost) as well as this one.
    pub fn receive(
        &mut self,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<Vec<ReceivedDigit>, DtmfError> {
        let p = EventPayload::parse(payload)?;
        let mut out = Vec::new();
        if self.is_finished(timestamp) {
            return Ok(out);
        }
        let Some(digit) = Digit::from_event_code(p.event) else {
            // Other events (flash, tones) are not digits.
            return Ok(out);
        };
        match self.current {
            Some((ts, d, dur)) if ts != timestamp => {
                // A new event began: the previous one lost all its end packets.
                self.finish(ts);
                out.push(ReceivedDigit {
                    digit: d,
                    timestamp: ts,
                    duration: dur,
                });
                self.current = Some((timestamp, digit, p.duration));
            }
            Some((ts, d, dur)) => self.current = Some((ts, d, dur.max(p.duration))),
            None => self.current = Some((timestamp, digit, p.duration)),
        }
        if p.end
            && let Some((ts, d, dur)) = self.current.take()
        {
            self.finish(ts);
            out.push(ReceivedDigit {
                digit: d,
                timestamp: ts,
                duration: dur,
            });
        }
        Ok(out)
    }

    /// Reports the event in progress as finished (no packet for it for a
    /// while: every end packet was lost).
    pub fn flush(&mut self) -> Option<ReceivedDigit> {
        let (ts, d, dur) = self.current.take()?;
        self.finish(ts);
        Some(ReceivedDigit {
            digit: d,
            timestamp: ts,
            duration: dur,
        })
    }

    /// Whether an event is in progress (the I/O loop times it out).
    pub fn in_progress(&self) -> bool {
        self.current.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(rx: &mut DtmfReceiver, packets: &[EventPacket]) -> Vec<char> {
        packets
            .iter()
            .flat_map(|p| rx.receive(p.timestamp, &p.payload).unwrap())
            .map(|d| d.digit.as_char())
            .collect()
    }

    #[test]
    fn digits_and_codes() {
        for (c, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('d', 15),
        ] {
            let d = Digit::new(c).unwrap();
            assert_eq!(d.event_code(), code);
            assert_eq!(Digit::from_event_code(code), Some(d));
        }
        assert!(Digit::new('E').is_none());
        assert!(Digit::from_event_code(16).is_none());
    }

    #[test]
    fn payload_round_trip_and_rfc_example() {
        let p = EventPayload {
            event: 5,
            end: true,
            volume: 10,
            duration: 800,
        };
        assert_eq!(EventPayload::parse(&p.to_bytes()).unwrap(), p);
        // Digit 1, E set, volume 10, duration 1120 (sipp's dtmf_2833_1.pcap end packet).
        assert_eq!(
            EventPayload::parse(&[0x01, 0x8a, 0x04, 0x60]).unwrap(),
            EventPayload {
                event: 1,
                end: true,
                volume: 10,
                duration: 1120
            }
        );
        assert!(EventPayload::parse(&[1, 2, 3]).is_err());
    }

    #[test]
    fn sender_shape() {
        let d = Digit::new('7').unwrap();
        let pkts = digit_packets(d, 1000, 800, 160);
        // 160, 320, 480, 640 updates, then 800 three times with E.
        assert_eq!(pkts.len(), 7);
        assert!(pkts[0].marker && pkts[1..].iter().all(|p| !p.marker));
        assert!(pkts.iter().all(|p| p.timestamp == 1000));
        let payloads: Vec<_> = pkts
            .iter()
            .map(|p| EventPayload::parse(&p.payload).unwrap())
            .collect();
        assert_eq!(
            payloads.iter().map(|p| p.duration).collect::<Vec<_>>(),
            vec![160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(payloads.iter().filter(|p| p.end).count(), 3);
        // A digit shorter than one packet is still sent, as its end.
        let short = digit_packets(d, 5, 80, 160);
        assert_eq!(short.len(), 3);
        assert!(short[0].marker);
    }

    #[test]
    fn each_digit_once_despite_repeats() {
        let mut rx = DtmfReceiver::new();
        let mut all = Vec::new();
        for (i, c) in "123#".chars().enumerate() {
            all.extend(digit_packets(
                Digit::new(c).unwrap(),
                1000 + i as u32 * 2000,
                800,
                160,
            ));
        }
        assert_eq!(feed(&mut rx, &all), vec!['1', '2', '3', '#']);
        assert!(!rx.in_progress());
    }

    #[test]
    fn lost_start_lost_ends_and_late_packets() {
        let d1 = digit_packets(Digit::new('4').unwrap(), 100, 800, 160);
        let d2 = digit_packets(Digit::new('5').unwrap(), 3000, 800, 160);
        let mut rx = DtmfReceiver::new();
        // Start (marker) lost: still one digit.
        assert_eq!(feed(&mut rx, &d1[1..]), vec!['4']);
        // A late update of the finished event: ignored.
        assert!(feed(&mut rx, &d1[2..3]).is_empty());
        // All ends of '5' lost: reported when '6' starts.
        let d3 = digit_packets(Digit::new('6').unwrap(), 6000, 800, 160);
        assert!(feed(&mut rx, &d2[..4]).is_empty());
        assert_eq!(feed(&mut rx, &d3[..1]), vec!['5']);
        // All ends of '6' lost too: the timeout flushes it.
        assert_eq!(rx.flush().map(|d| d.digit.as_char()), Some('6'));
        assert_eq!(rx.flush(), None);
        // The same digit twice in a row is two events (two timestamps).
        let a = digit_packets(Digit::new('9').unwrap(), 9000, 480, 160);
        let b = digit_packets(Digit::new('9').unwrap(), 11000, 480, 160);
        assert_eq!(feed(&mut rx, &[a, b].concat()), vec!['9', '9']);
    }

    #[test]
    fn non_digit_events_and_garbage() {
        let mut rx = DtmfReceiver::new();
        let flash = EventPayload {
            event: 16,
            end: true,
            volume: 10,
            duration: 160,
        }
        .to_bytes();
        assert!(rx.receive(1, &flash).unwrap().is_empty());
        assert!(rx.receive(1, &[0xff]).is_err());
    }
}
