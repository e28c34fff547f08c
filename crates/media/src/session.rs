//! One call leg's media, sans-IO: RTP and RTCP datagrams in, 20 ms PCM
//! frames out (through the jitter buffer), PCM frames and DTMF digits in,
//! RTP datagrams out. The telephony engine's I/O loop owns the sockets and
//! the clock and calls into this once per datagram and once per tick.
//!
//! Where the far end's media is taken from is [`crate::latch`]'s: the SDP
//! address at once, another (a far end behind NAT) only by the strict-RTP
//! rule; our RTP goes where the latch points (symmetric RTP, RFC 4961), and
//! packets from anywhere else are counted and dropped.

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::dtmf::{Digit, DtmfReceiver, EventPacket, digit_packets};
use crate::g711::G711;
use crate::jitter::{FrameKind, JitterBuffer};
use crate::latch::{SourceLatch, Verdict};
use crate::rtcp::{self, ReceptionStats, RtcpPacket};
use crate::rtp::{self, RtpError, RtpSender};

/// The bus rate and frame: 8 kHz, 20 ms.
pub const SAMPLE_RATE: u32 = 8000;
pub const FRAME_SAMPLES: usize = 160;
/// A digit whose end packets all got lost is reported after this long.
const DTMF_SILENCE_MS: u64 = 300;
/// Comfort noise (RFC 3389): accepted, carries no audio for us.
const COMFORT_NOISE_PT: u8 = 13;
/// How long one sent digit lasts (RFC 4733 suggests 40 ms or more).
const DIGIT_SAMPLES: u16 = 800;

/// What was agreed for the leg (from the SDP offer/answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegParams {
    pub codec: G711,
    pub codec_pt: u8,
    pub dtmf_pt: Option<u8>,
    /// Where the SDP says to send RTP (RTCP goes to the next port).
    pub remote: SocketAddr,
    /// Whether we send audio (false while the far end holds the call).
    pub send: bool,
}

/// Counters kept for the whole leg; the engine stores them with the call.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LegStats {
    pub packets_received: u64,
    pub packets_sent: u64,
    pub packets_lost: i64,
    /// Interarrival jitter in milliseconds.
    pub jitter_ms: f64,
    pub frames_concealed: u64,
    pub frames_late: u64,
    /// Datagrams that were not RTP, or carried a payload type we did not agree.
    pub packets_malformed: u64,
    /// RTP packets from an address other than the latched one, and RTCP
    /// from another host.
    pub packets_foreign: u64,
    /// Times the far end's source was latched (the first included).
    pub latches: u64,
    pub digits_received: u64,
    /// Round trip from the far end's RTCP reports, in milliseconds.
    pub round_trip_ms: Option<f64>,
}

/// One leg's media state.
pub struct LegMedia {
    params: LegParams,
    sender: RtpSender,
    jitter: JitterBuffer,
    reframer: Reframer,
    dtmf_in: DtmfReceiver,
    reception: ReceptionStats,
    latch: SourceLatch,
    remote_rtcp: SocketAddr,
    last_packet_ms: Option<u64>,
    last_event_ms: u64,
    digits: VecDeque<Digit>,
    dtmf_out: VecDeque<EventPacket>,
    /// The next audio packet starts a talkspurt (RFC 3551 marker bit).
    talkspurt: bool,
    /// From the far end's last SR: (middle NTP bits, when we got it in ms).
    last_sr: Option<(u32, u64)>,
    stats: LegStats,
}

impl LegMedia {
    /// `ssrc`, first sequence number and first timestamp should be random
    /// (RFC 3550 §5.1); the engine draws them.
    pub fn new(params: LegParams, ssrc: u32, first_seq: u16, first_ts: u32) -> Self {
        Self {
            params,
            sender: RtpSender::new(ssrc, first_seq, first_ts),
            // 3 to 10 frames of delay (60 to 200 ms), adapting to the network:
            // 60 ms rides out the scheduling hiccups of a busy sender.
            jitter: JitterBuffer::new(FRAME_SAMPLES as u32, SAMPLE_RATE, 3, 10),
            reframer: Reframer::default(),
            dtmf_in: DtmfReceiver::new(),
            reception: ReceptionStats::new(),
            latch: SourceLatch::new(params.remote),
            remote_rtcp: rtcp_address(params.remote),
            last_packet_ms: None,
            last_event_ms: 0,
            digits: VecDeque::new(),
            dtmf_out: VecDeque::new(),
            talkspurt: true,
            last_sr: None,
            stats: LegStats::default(),
        }
    }

    pub fn params(&self) -> LegParams {
        self.params
    }

    /// New parameters from a re-INVITE or UPDATE (hold, codec change, new
    /// address). A new address drops the latch: that address is taken at
    /// once.
    pub fn update(&mut self, params: LegParams) {
        if params.remote != self.params.remote {
            self.latch.resignal(params.remote);
            self.remote_rtcp = rtcp_address(params.remote);
        }
        if !self.params.send && params.send {
            self.talkspurt = true;
        }
        self.params = params;
    }

    /// Where our RTP goes now.
    pub fn remote_rtp(&self) -> SocketAddr {
        self.latch.remote()
    }

    pub fn remote_rtcp(&self) -> SocketAddr {
        self.remote_rtcp
    }

    /// Milliseconds since the last RTP packet (or since `started_ms` if
    /// none came), for the no-media watchdog.
    pub fn silent_for(&self, now_ms: u64, started_ms: u64) -> u64 {
        now_ms.saturating_sub(self.last_packet_ms.unwrap_or(started_ms))
    }

    /// Times the far end's source was latched so far.
    pub fn latches(&self) -> u64 {
        self.stats.latches
    }

    pub fn stats(&self) -> LegStats {
        let j = self.jitter.stats();
        LegStats {
            packets_lost: self.reception.lost(),
            jitter_ms: self.reception.jitter() as f64 * 1000.0 / SAMPLE_RATE as f64,
            frames_concealed: j.concealed,
            frames_late: j.late,
            packets_sent: self.sender.counts().0,
            ..self.stats
        }
    }

    /// A datagram arrived on the RTP port (RTCP there too, for rtcp-mux).
    pub fn receive_rtp(&mut self, now_ms: u64, from: SocketAddr, datagram: &[u8]) {
        let packet = match rtp::parse(datagram) {
            Ok(p) => p,
            Err(RtpError::Rtcp) => return self.receive_rtcp(now_ms, from, datagram),
            Err(RtpError::Malformed(_)) => {
                self.stats.packets_malformed += 1;
                return;
            }
        };
        let pt = packet.payload_type;
        let ours =
            pt == self.params.codec_pt || Some(pt) == self.params.dtmf_pt || pt == COMFORT_NOISE_PT;
        if !ours {
            self.stats.packets_malformed += 1;
            return;
        }
        match self.latch.rtp(now_ms, from, packet.ssrc, packet.sequence) {
            Verdict::Accept => {}
            Verdict::Latched { restart } => {
                self.remote_rtcp = rtcp_address(from);
                self.stats.latches += 1;
                if restart {
                    // Another stream: its timestamps have nothing to do
                    // with what is buffered.
                    self.jitter.restart();
                    self.reframer = Reframer::default();
                }
            }
            Verdict::Reject => {
                self.stats.packets_foreign += 1;
                return;
            }
        }
        self.stats.packets_received += 1;
        self.last_packet_ms = Some(now_ms);
        let arrival_units = (now_ms as i64) * (SAMPLE_RATE as i64) / 1000;
        self.reception.record(
            packet.ssrc,
            packet.sequence,
            packet.timestamp,
            arrival_units,
        );

        if Some(pt) == self.params.dtmf_pt {
            self.last_event_ms = now_ms;
            if let Ok(digits) = self.dtmf_in.receive(packet.timestamp, packet.payload) {
                for d in digits {
                    self.stats.digits_received += 1;
                    self.digits.push_back(d.digit);
                }
            } else {
                self.stats.packets_malformed += 1;
            }
            return;
        }
        if pt == COMFORT_NOISE_PT {
            return;
        }
        let mut pcm = Vec::with_capacity(packet.payload.len());
        self.params.codec.decode(packet.payload, &mut pcm);
        for (ts, frame) in self.reframer.push(packet.timestamp, pcm) {
            self.jitter.push(now_ms, ts, frame);
        }
    }

    /// A datagram arrived on the RTCP port.
    pub fn receive_rtcp(&mut self, now_ms: u64, from: SocketAddr, datagram: &[u8]) {
        if !self.latch.rtcp_allowed(from) {
            self.stats.packets_foreign += 1;
            return;
        }
        let Ok(packets) = rtcp::parse(datagram) else {
            self.stats.packets_malformed += 1;
            return;
        };
        let ours = self.sender.ssrc();
        for p in packets {
            let blocks = match p {
                RtcpPacket::SenderReport { ntp, reports, .. } => {
                    self.last_sr = Some((rtcp::ntp_middle(ntp), now_ms));
                    reports
                }
                RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { .. } => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == ours) {
                if let Some(rtt) = rtcp::round_trip(b, ntp_now(now_ms)) {
                    self.stats.round_trip_ms = Some(rtt as f64 * 1000.0 / 65536.0);
                }
            }
        }
    }

    /// One 20 ms tick: the far end's next frame (received, concealed or
    /// silence).
    pub fn pull_far_frame(&mut self, now_ms: u64) -> (FrameKind, Vec<i16>) {
        if self.dtmf_in.in_progress()
            && now_ms.saturating_sub(self.last_event_ms) > DTMF_SILENCE_MS
            && let Some(d) = self.dtmf_in.flush()
        {
            self.stats.digits_received += 1;
            self.digits.push_back(d.digit);
        }
        self.jitter.pop()
    }

    /// A digit the far end sent (each reported once).
    pub fn next_digit(&mut self) -> Option<Digit> {
        self.digits.pop_front()
    }

    /// Queues RFC 4733 digits to send; they replace audio while they play.
    pub fn send_digits(&mut self, digits: &[Digit]) {
        let Some(_) = self.params.dtmf_pt else {
            return;
        };
        let step = FRAME_SAMPLES as u16;
        let mut ts = self.sender.timestamp();
        for d in digits {
            self.dtmf_out
                .extend(digit_packets(*d, ts, DIGIT_SAMPLES, step));
            // Each event starts after the previous one plus a pause of one duration.
            ts = ts.wrapping_add(2 * DIGIT_SAMPLES as u32);
        }
    }

    /// Our 20 ms frame for this tick; returns the datagram to send (if we
    /// send at all).
    pub fn send_frame(&mut self, pcm: &[i16]) -> Option<Vec<u8>> {
        if !self.params.send {
            self.sender.advance(FRAME_SAMPLES as u32);
            return None;
        }
        if let Some(dtmf_pt) = self.params.dtmf_pt
            && let Some(event) = self.dtmf_out.pop_front()
        {
            let packet = self.sender.event(dtmf_pt, &event);
            // End packets are repeated at the same time; the others take a frame.
            let end = event.payload[1] & 0x80 != 0;
            let next_is_repeat = self
                .dtmf_out
                .front()
                .is_some_and(|n| n.timestamp == event.timestamp && n.payload == event.payload);
            if !end || !next_is_repeat {
                self.sender.advance(FRAME_SAMPLES as u32);
            }
            self.talkspurt = true;
            return Some(packet);
        }
        let mut payload = Vec::with_capacity(pcm.len());
        self.params.codec.encode(pcm, &mut payload);
        let marker = std::mem::take(&mut self.talkspurt);
        Some(
            self.sender
                .audio(self.params.codec_pt, marker, &payload, pcm.len() as u32),
        )
    }

    /// Our RTCP report for now: a sender report with a block about the far
    /// end's stream once we have one.
    pub fn rtcp_report(&mut self, now_ms: u64) -> Vec<u8> {
        let blocks = if self.stats.packets_received > 0 {
            let (lsr, dlsr) = match self.last_sr {
                Some((lsr, at)) => (lsr, ((now_ms.saturating_sub(at)) * 65536 / 1000) as u32),
                None => (0, 0),
            };
            vec![self.reception.report_block(lsr, dlsr)]
        } else {
            Vec::new()
        };
        let (packets, octets) = self.sender.counts();
        rtcp::sender_report(
            self.sender.ssrc(),
            ntp_now(now_ms),
            self.sender.timestamp(),
            packets as u32,
            octets as u32,
            &blocks,
        )
    }
}

/// RTCP goes to the RTP port + 1 (RFC 3550 §11) unless rtcp-mux is used.
fn rtcp_address(rtp: SocketAddr) -> SocketAddr {
    SocketAddr::new(rtp.ip(), rtp.port().wrapping_add(1))
}

/// An NTP-format timestamp from the leg's millisecond clock. Only
/// differences matter (round trips), so the epoch is the clock's own.
fn ntp_now(now_ms: u64) -> u64 {
    let secs = now_ms / 1000;
    let frac = ((now_ms % 1000) << 32) / 1000;
    (secs << 32) | frac
}

/// Cuts decoded packets into 20 ms frames for the jitter buffer. Packets
/// of exactly one frame pass straight through (keeping full reordering);
/// other packet times (10, 30, 60 ms) are joined and cut in arrival order,
/// restarting at any gap.
#[derive(Debug, Default)]
struct Reframer {
    /// Samples waiting to make a whole frame, and the timestamp of the first.
    carry: Vec<i16>,
    carry_ts: u32,
}

impl Reframer {
    fn push(&mut self, ts: u32, pcm: Vec<i16>) -> Vec<(u32, Vec<i16>)> {
        if pcm.len() == FRAME_SAMPLES && self.carry.is_empty() {
            return vec![(ts, pcm)];
        }
        let expected = self.carry_ts.wrapping_add(self.carry.len() as u32);
        if self.carry.is_empty() || ts != expected {
            self.carry.clear();
            self.carry_ts = ts;
        }
        self.carry.extend_from_slice(&pcm);
        let mut out = Vec::new();
        while self.carry.len() >= FRAME_SAMPLES {
            let rest = self.carry.split_off(FRAME_SAMPLES);
            let frame = std::mem::replace(&mut self.carry, rest);
            out.push((self.carry_ts, frame));
            self.carry_ts = self.carry_ts.wrapping_add(FRAME_SAMPLES as u32);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::g711::G711;

    fn params() -> LegParams {
        LegParams {
            codec: G711::Ulaw,
            codec_pt: 0,
            dtmf_pt: Some(101),
            remote: "198.51.100.7:5004".parse().unwrap(),
            send: true,
        }
    }

    fn tone(n: usize, offset: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (((i + offset) as f64 * 0.2).sin() * 8000.0) as i16)
            .collect()
    }

    /// A far end that sends `frames` of `samples` each from `from`.
    fn far_packets(samples: usize, frames: usize) -> Vec<(u32, Vec<u8>)> {
        let mut sender = RtpSender::new(7, 100, 1000);
        (0..frames)
            .map(|i| {
                let mut payload = Vec::new();
                G711::Ulaw.encode(&tone(samples, i * samples), &mut payload);
                let ts = sender.timestamp();
                (ts, sender.audio(0, i == 0, &payload, samples as u32))
            })
            .collect()
    }

    #[test]
    fn takes_the_sdp_source_and_drops_others() {
        let mut leg = LegMedia::new(params(), 1, 1, 1);
        let real: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        let other: SocketAddr = "198.51.100.8:5004".parse().unwrap();
        let packets = far_packets(160, 3);
        // Another host's packet before the far end's first one: dropped,
        // and our media still goes to the SDP address.
        leg.receive_rtp(0, other, &packets[0].1);
        assert_eq!(leg.stats().packets_foreign, 1);
        assert_eq!(leg.stats().packets_received, 0);
        assert_eq!(leg.remote_rtp(), real);
        leg.receive_rtp(10, real, &packets[0].1);
        assert_eq!(leg.remote_rtp(), real);
        assert_eq!(leg.remote_rtcp(), "198.51.100.7:5005".parse().unwrap());
        leg.receive_rtp(20, other, &packets[1].1);
        assert_eq!(leg.stats().packets_foreign, 2);
        assert_eq!(leg.stats().packets_received, 1);
        assert_eq!(leg.stats().latches, 1);
        assert_eq!(leg.remote_rtp(), real);
        // RTCP from the other host is not taken either.
        let report = leg.rtcp_report(0);
        leg.receive_rtcp(30, other, &report);
        assert_eq!(leg.stats().packets_foreign, 3);
    }

    #[test]
    fn a_new_source_after_silence_is_played_from_its_own_timestamps() {
        let mut leg = LegMedia::new(params(), 1, 1, 1);
        let real: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        let natd: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let mut t = 0;
        for (_, p) in far_packets(160, 20) {
            leg.receive_rtp(t, real, &p);
            let _ = leg.pull_far_frame(t);
            t += 20;
        }
        // The far end falls silent and comes back through another address,
        // a new SSRC with timestamps far behind the old stream's.
        t += 1000;
        let mut sender = RtpSender::new(99, 7, 3);
        let mut played = 0;
        for i in 0..50 {
            let mut payload = Vec::new();
            G711::Ulaw.encode(&tone(160, i * 160), &mut payload);
            leg.receive_rtp(t, natd, &sender.audio(0, false, &payload, 160));
            if leg.pull_far_frame(t).0 == FrameKind::Received {
                played += 1;
            }
            t += 20;
        }
        assert_eq!(leg.remote_rtp(), natd);
        assert_eq!(leg.stats().latches, 2);
        assert!(played >= 40, "played {played} frames of the new stream");
    }

    #[test]
    fn audio_round_trips_through_the_jitter_buffer() {
        let mut leg = LegMedia::new(params(), 1, 1, 1);
        let from: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        let mut got = Vec::new();
        for (i, (_, p)) in far_packets(160, 20).iter().enumerate() {
            leg.receive_rtp(i as u64 * 20, from, p);
            let (kind, frame) = leg.pull_far_frame(i as u64 * 20);
            if kind == FrameKind::Received {
                got.extend(frame);
            }
        }
        assert!(got.len() >= 160 * 17, "got {} samples", got.len());
        let want = tone(got.len(), 0);
        // G.711 error is small relative to the signal.
        let err: f64 = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - *b as f64).abs())
            .sum::<f64>()
            / got.len() as f64;
        assert!(err < 200.0, "mean error {err}");
    }

    #[test]
    fn thirty_ms_packets_are_cut_into_twenty_ms_frames() {
        let mut r = Reframer::default();
        let mut frames = Vec::new();
        for i in 0..4u32 {
            frames.extend(r.push(1000 + i * 240, tone(240, (i * 240) as usize)));
        }
        assert_eq!(frames.len(), 6);
        for (i, (ts, f)) in frames.iter().enumerate() {
            assert_eq!(*ts, 1000 + i as u32 * 160);
            assert_eq!(f.len(), 160);
            assert_eq!(f[..], tone(160, i * 160)[..]);
        }
        // A gap restarts the cut at the new packet.
        let after_gap = r.push(5000, tone(240, 0));
        assert_eq!(after_gap[0].0, 5000);
    }

    #[test]
    fn digits_are_reported_once_and_flushed_when_ends_are_lost() {
        let mut leg = LegMedia::new(params(), 1, 1, 1);
        let from: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        let mut s = RtpSender::new(9, 1, 0);
        for p in digit_packets(Digit::new('5').unwrap(), 800, 480, 160) {
            leg.receive_rtp(0, from, &s.event(101, &p));
        }
        assert_eq!(leg.next_digit().map(Digit::as_char), Some('5'));
        assert_eq!(leg.next_digit(), None);
        // A digit whose end packets never come: reported after a while.
        let mut packets = digit_packets(Digit::new('#').unwrap(), 4000, 480, 160);
        packets.retain(|p| p.payload[1] & 0x80 == 0);
        for p in packets {
            leg.receive_rtp(1000, from, &s.event(101, &p));
        }
        let _ = leg.pull_far_frame(1100);
        assert_eq!(leg.next_digit(), None);
        let _ = leg.pull_far_frame(1000 + DTMF_SILENCE_MS + 1);
        assert_eq!(leg.next_digit().map(Digit::as_char), Some('#'));
        assert_eq!(leg.stats().digits_received, 2);
    }

    #[test]
    fn sent_digits_replace_audio_then_audio_resumes_with_a_marker() {
        let mut leg = LegMedia::new(params(), 1, 1, 0);
        leg.send_digits(&[Digit::new('1').unwrap()]);
        let silence = vec![0i16; 160];
        let mut events = 0;
        loop {
            let p = leg.send_frame(&silence).unwrap();
            let parsed = rtp::parse(&p).unwrap();
            if parsed.payload_type == 101 {
                events += 1;
                continue;
            }
            assert_eq!(parsed.payload_type, 0);
            assert!(parsed.marker, "audio after an event starts a talkspurt");
            break;
        }
        // 800 samples in 160-sample steps: 5 packets, the last one 3 times.
        assert_eq!(events, 7);
    }

    #[test]
    fn hold_stops_sending_and_keeps_the_clock() {
        let mut leg = LegMedia::new(params(), 1, 1, 0);
        let silence = vec![0i16; 160];
        assert!(leg.send_frame(&silence).is_some());
        leg.update(LegParams {
            send: false,
            ..params()
        });
        assert!(leg.send_frame(&silence).is_none());
        leg.update(params());
        let p = leg.send_frame(&silence).unwrap();
        let parsed = rtp::parse(&p).unwrap();
        assert_eq!(parsed.timestamp, 320);
        assert!(parsed.marker);
    }

    #[test]
    fn garbage_and_foreign_payload_types_are_counted_not_fatal() {
        let mut leg = LegMedia::new(params(), 1, 1, 0);
        let from: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        leg.receive_rtp(0, from, &[0xff; 3]);
        leg.receive_rtp(0, from, &[]);
        let mut s = RtpSender::new(9, 1, 0);
        leg.receive_rtp(0, from, &s.audio(96, false, &[1, 2, 3], 3));
        leg.receive_rtcp(0, from, &[0x80, 200, 0, 50]);
        assert_eq!(leg.stats().packets_malformed, 4);
        assert_eq!(leg.stats().packets_received, 0);
    }

    #[test]
    fn rtcp_reports_describe_the_far_stream() {
        let mut leg = LegMedia::new(params(), 1, 1, 0);
        let from: SocketAddr = "198.51.100.7:5004".parse().unwrap();
        for (i, (_, p)) in far_packets(160, 10).iter().enumerate() {
            if i != 4 {
                leg.receive_rtp(i as u64 * 20, from, p);
            }
        }
        let report = leg.rtcp_report(500);
        let parsed = rtcp::parse(&report).unwrap();
        match &parsed[0] {
            RtcpPacket::SenderReport { reports, .. } => {
                assert_eq!(reports.len(), 1);
                assert_eq!(reports[0].ssrc, 7);
                assert_eq!(reports[0].cumulative_lost, 1);
            }
            other => panic!("expected an SR, got {other:?}"),
        }
        assert_eq!(leg.stats().packets_lost, 1);
    }

    proptest::proptest! {
        #[test]
        fn any_datagram_is_safe(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut leg = LegMedia::new(params(), 1, 1, 0);
            let from: SocketAddr = "198.51.100.7:5004".parse().unwrap();
            leg.receive_rtp(0, from, &bytes);
            leg.receive_rtcp(0, from, &bytes);
            let _ = leg.pull_far_frame(20);
        }
    }
}
