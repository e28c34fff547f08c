//! Which address a leg's media is taken from, sans-IO: the defence against
//! RTP hijacking (a packet from another host taking over the call's audio).
//!
//! - Until a source is latched, only the address the SDP signalled (the far
//!   end's connection address and port) is taken, and its first packet
//!   latches it at once.
//! - Any other source, the SDP address included once another one holds the
//!   latch, must earn it by the strict-RTP rule (as Asterisk's `strictrtp`
//!   and rtpengine do): a run of [`MIN_SEQUENTIAL`] packets in sequence,
//!   of one SSRC, while the latched source has been silent for
//!   [`SILENCE_MS`]. That is how a far end behind NAT, whose media comes from
//!   another address than its SDP says, is learned. When nothing is
//!   latched yet the run must also last [`FIRST_LEARN_MS`] of continuous
//!   sending: a NAT'd far end loses that much audio at the start, and a
//!   spray sent before the real far end's first packet never wins.
//! - RTCP is taken only from the latched source's host (before a latch,
//!   from the SDP host).
//!
//! Packets from a source that is not latched are dropped by the caller;
//! they are watched here only to tell a continuous stream from a spray.

use std::net::{IpAddr, SocketAddr};

/// Packets in sequence (each one more than the last) a new source sends
/// before it may take the latch.
pub const MIN_SEQUENTIAL: u32 = 4;
/// How long the latched source must have been silent before another takes
/// over.
pub const SILENCE_MS: u64 = 500;
/// How long a new source must have been sending, continuously, to take the
/// latch when nothing holds it yet (the SDP address never sent).
pub const FIRST_LEARN_MS: u64 = 2000;
/// The same once a source was latched: the run must at least span more
/// than one 20 ms packet time, so a burst sent all at once does not count.
pub const RELEARN_MS: u64 = 22;
/// A pause longer than this ends a run.
const RUN_GAP_MS: u64 = 500;
/// A run survives losing up to this many packets in a row (a jump further
/// in the sequence starts a new run).
const MAX_SEQ_STEP: u16 = 50;
/// Sources watched at once; the least recently heard gives way.
const WATCHED: usize = 4;

/// What to do with an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// From the latched source.
    Accept,
    /// The source is latched from now on (the first one, or one replacing
    /// the last): take the packet and send to this source. `restart`: the
    /// stream is not the one before (another SSRC), so what was buffered
    /// of the old one must go.
    Latched { restart: bool },
    /// From anywhere else: drop it.
    Reject,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    addr: SocketAddr,
    last_ms: u64,
}

/// A source that is not latched, sending.
#[derive(Debug, Clone, Copy)]
struct Run {
    from: SocketAddr,
    ssrc: u32,
    last_seq: u16,
    /// Packets in sequence up to the last one.
    sequential: u32,
    first_ms: u64,
    last_ms: u64,
}

/// The latch of one leg.
#[derive(Debug, Clone)]
pub struct SourceLatch {
    signalled: SocketAddr,
    current: Option<Current>,
    /// The SSRC of the last packet taken (kept across a new SDP address).
    last_ssrc: Option<u32>,
    runs: Vec<Run>,
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl SourceLatch {
    /// Nothing latched; `signalled` is where the SDP says the far end's
    /// RTP comes from.
    pub fn new(signalled: SocketAddr) -> Self {
        Self {
            signalled: canonical(signalled),
            current: None,
            last_ssrc: None,
            runs: Vec::new(),
        }
    }

    /// The SDP signalled a new address (re-INVITE, UPDATE): the latch is
    /// dropped and that address is the one taken at once.
    pub fn resignal(&mut self, signalled: SocketAddr) {
        self.signalled = canonical(signalled);
        self.current = None;
        self.runs.clear();
    }

    /// Where the far end is: the latched source, or the SDP address until
    /// one is latched.
    pub fn remote(&self) -> SocketAddr {
        self.current.map_or(self.signalled, |c| c.addr)
    }

    pub fn is_latched(&self) -> bool {
        self.current.is_some()
    }

    /// An RTP packet (of a payload type we agreed) from `from`.
    pub fn rtp(&mut self, now_ms: u64, from: SocketAddr, ssrc: u32, seq: u16) -> Verdict {
        let from = canonical(from);
        match &mut self.current {
            Some(c) if c.addr == from => {
                c.last_ms = c.last_ms.max(now_ms);
                self.last_ssrc = Some(ssrc);
                return Verdict::Accept;
            }
            None if from == self.signalled => return self.latch(now_ms, from, ssrc),
            _ => {}
        }
        let run = self.watch(now_ms, from, ssrc, seq);
        let (span, quiet) = match self.current {
            None => (FIRST_LEARN_MS, true),
            Some(c) => (RELEARN_MS, now_ms.saturating_sub(c.last_ms) >= SILENCE_MS),
        };
        if quiet
            && run.sequential >= MIN_SEQUENTIAL
            && run.last_ms.saturating_sub(run.first_ms) >= span
        {
            return self.latch(now_ms, from, ssrc);
        }
        Verdict::Reject
    }

    /// Whether RTCP from `from` is taken: from the latched source's host
    /// (the SDP host before a latch).
    pub fn rtcp_allowed(&self, from: SocketAddr) -> bool {
        let host: IpAddr = self.remote().ip();
        from.ip().to_canonical() == host
    }

    fn latch(&mut self, now_ms: u64, from: SocketAddr, ssrc: u32) -> Verdict {
        let restart = self.last_ssrc.is_some_and(|s| s != ssrc);
        self.current = Some(Current {
            addr: from,
            last_ms: now_ms,
        });
        self.last_ssrc = Some(ssrc);
        self.runs.clear();
        Verdict::Latched { restart }
    }

    /// Follows the run of a source that is not latched.
    fn watch(&mut self, now_ms: u64, from: SocketAddr, ssrc: u32, seq: u16) -> Run {
        let fresh = Run {
            from,
            ssrc,
            last_seq: seq,
            sequential: 1,
            first_ms: now_ms,
            last_ms: now_ms,
        };
        let Some(run) = self.runs.iter_mut().find(|r| r.from == from) else {
            if self.runs.len() >= WATCHED
                && let Some(oldest) = self.runs.iter_mut().min_by_key(|r| r.last_ms)
            {
                *oldest = fresh;
            } else {
                self.runs.push(fresh);
            }
            return fresh;
        };
        let step = seq.wrapping_sub(run.last_seq);
        let paused = now_ms.saturating_sub(run.last_ms) > RUN_GAP_MS;
        if run.ssrc != ssrc || paused {
            *run = fresh;
        } else if step == 1 {
            run.sequential += 1;
            run.last_seq = seq;
            run.last_ms = run.last_ms.max(now_ms);
        } else if (2..=MAX_SEQ_STEP).contains(&step) {
            // Packets lost on the way: the stream goes on, the count of
            // packets in sequence starts again.
            run.sequential = 1;
            run.last_seq = seq;
            run.last_ms = run.last_ms.max(now_ms);
        } else if step == 0 || step >= u16::MAX - MAX_SEQ_STEP {
            // A duplicate, or a packet that came late: neither adds nor ends.
        } else {
            *run = fresh;
        }
        *run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const SDP: &str = "192.0.2.10:4000";
    const SPOOFER: &str = "203.0.113.66:31337";
    const NAT: &str = "198.51.100.20:61000";

    /// A source sending one packet every 20 ms from `start_ms`.
    struct Stream {
        from: SocketAddr,
        ssrc: u32,
        seq: u16,
        at_ms: u64,
    }

    impl Stream {
        fn new(from: &str, ssrc: u32, start_ms: u64) -> Self {
            Self {
                from: addr(from),
                ssrc,
                seq: 0xfffd,
                at_ms: start_ms,
            }
        }

        fn send(&mut self, latch: &mut SourceLatch) -> Verdict {
            let v = latch.rtp(self.at_ms, self.from, self.ssrc, self.seq);
            self.seq = self.seq.wrapping_add(1);
            self.at_ms += 20;
            v
        }
    }

    #[test]
    fn the_sdp_address_latches_at_once() {
        let mut latch = SourceLatch::new(addr(SDP));
        assert_eq!(latch.remote(), addr(SDP));
        let mut far = Stream::new(SDP, 1, 0);
        assert_eq!(far.send(&mut latch), Verdict::Latched { restart: false });
        assert!(latch.is_latched());
        for _ in 0..10 {
            assert_eq!(far.send(&mut latch), Verdict::Accept);
        }
        assert_eq!(latch.remote(), addr(SDP));
    }

    #[test]
    fn sprayed_packets_from_another_host_before_the_real_peer_never_latch() {
        let mut latch = SourceLatch::new(addr(SDP));
        // A spoofer streams in sequence, at the real rate, for 1.5 s before
        // the far end's first packet, then goes on through the call.
        let mut spoofer = Stream::new(SPOOFER, 0xbad, 0);
        for _ in 0..75 {
            assert_eq!(spoofer.send(&mut latch), Verdict::Reject);
        }
        assert!(!latch.is_latched());
        assert_eq!(
            latch.remote(),
            addr(SDP),
            "we keep sending to the SDP address"
        );
        let mut far = Stream::new(SDP, 7, spoofer.at_ms + 5);
        assert_eq!(far.send(&mut latch), Verdict::Latched { restart: false });
        for _ in 0..500 {
            assert_eq!(spoofer.send(&mut latch), Verdict::Reject);
            assert_eq!(far.send(&mut latch), Verdict::Accept);
        }
        assert_eq!(latch.remote(), addr(SDP));
    }

    #[test]
    fn a_burst_or_random_sequence_numbers_never_latch_whatever_their_length() {
        let mut latch = SourceLatch::new(addr(SDP));
        let from = addr(SPOOFER);
        // 1000 packets in sequence within 100 ms: no 2 s of sending.
        for i in 0..1000u16 {
            let v = latch.rtp(u64::from(i) / 10, from, 5, i);
            assert_eq!(v, Verdict::Reject);
        }
        // Ten seconds of packets at 20 ms, sequence numbers all over.
        let mut x: u32 = 12345;
        for i in 0..500u64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let v = latch.rtp(200 + i * 20, from, 5, (x >> 8) as u16);
            assert_eq!(v, Verdict::Reject);
        }
        // One packet each from many addresses.
        for i in 0..1000u64 {
            let from = SocketAddr::new(from.ip(), 1024 + i as u16);
            assert_eq!(latch.rtp(10_200 + i, from, 5, 1), Verdict::Reject);
        }
        assert!(!latch.is_latched());
    }

    #[test]
    fn a_natd_peer_latches_after_a_continuous_run_while_the_sdp_address_is_silent() {
        let mut latch = SourceLatch::new(addr(SDP));
        let mut nat = Stream::new(NAT, 9, 1000);
        let mut rejected = 0;
        let verdict = loop {
            match nat.send(&mut latch) {
                Verdict::Reject => rejected += 1,
                v => break v,
            }
        };
        assert_eq!(verdict, Verdict::Latched { restart: false });
        // 2 s of audio at 20 ms a packet are lost, no more.
        assert_eq!(rejected, (FIRST_LEARN_MS / 20) as usize);
        assert_eq!(latch.remote(), addr(NAT));
        assert_eq!(nat.send(&mut latch), Verdict::Accept);
        // RTCP now comes from the NAT'd host, not the SDP one.
        assert!(latch.rtcp_allowed(addr("198.51.100.20:61001")));
        assert!(!latch.rtcp_allowed(addr("192.0.2.10:4001")));
    }

    #[test]
    fn a_natd_peer_on_a_lossy_path_still_latches() {
        let mut latch = SourceLatch::new(addr(SDP));
        let from = addr(NAT);
        let mut latched_at = None;
        for i in 0..500u16 {
            // Every seventh packet lost, every eleventh a duplicate.
            if i % 7 == 3 {
                continue;
            }
            let at = u64::from(i) * 20;
            if latch.rtp(at, from, 9, i) != Verdict::Reject {
                latched_at = Some(at);
                break;
            }
            if i % 11 == 0 {
                let _ = latch.rtp(at + 1, from, 9, i);
            }
        }
        let at = latched_at.expect("latched");
        assert!(
            (FIRST_LEARN_MS..FIRST_LEARN_MS + 200).contains(&at),
            "latched at {at} ms"
        );
    }

    #[test]
    fn a_new_source_takes_over_only_while_the_latched_one_is_silent() {
        let mut latch = SourceLatch::new(addr(SDP));
        let mut far = Stream::new(SDP, 1, 0);
        assert!(matches!(far.send(&mut latch), Verdict::Latched { .. }));
        // While the far end keeps sending, another source never takes over.
        let mut other = Stream::new(NAT, 2, 5);
        for _ in 0..500 {
            assert_eq!(far.send(&mut latch), Verdict::Accept);
            assert_eq!(other.send(&mut latch), Verdict::Reject);
        }
        // The far end stops; after 500 ms of its silence the other source,
        // which kept its run going, takes over (a new SSRC: a new stream).
        let stopped = far.at_ms - 20;
        let verdict = loop {
            match other.send(&mut latch) {
                Verdict::Reject => assert!(other.at_ms - 20 < stopped + SILENCE_MS),
                v => break v,
            }
        };
        assert_eq!(verdict, Verdict::Latched { restart: true });
        assert!(other.at_ms - 20 >= stopped + SILENCE_MS);
        assert_eq!(latch.remote(), addr(NAT));
    }

    #[test]
    fn the_old_source_resuming_does_not_flap() {
        let mut latch = SourceLatch::new(addr(SDP));
        let mut far = Stream::new(SDP, 1, 0);
        far.send(&mut latch);
        far.send(&mut latch);
        // Silent for a second; the NAT'd source learns in the meantime.
        let mut nat = Stream::new(NAT, 2, far.at_ms + 1000);
        let mut v = Verdict::Reject;
        for _ in 0..MIN_SEQUENTIAL {
            v = nat.send(&mut latch);
        }
        assert_eq!(v, Verdict::Latched { restart: true });
        // The old source comes back while the new one sends: no flapping.
        far.at_ms = nat.at_ms + 3;
        for _ in 0..1000 {
            assert_eq!(far.send(&mut latch), Verdict::Reject);
            assert_eq!(nat.send(&mut latch), Verdict::Accept);
        }
        assert_eq!(latch.remote(), addr(NAT));
        // Only if the new one goes silent does the old one get it back.
        let mut back = Verdict::Reject;
        for _ in 0..100 {
            back = far.send(&mut latch);
            if back != Verdict::Reject {
                break;
            }
        }
        assert_eq!(back, Verdict::Latched { restart: true });
        assert_eq!(latch.remote(), addr(SDP));
    }

    #[test]
    fn rtcp_comes_only_from_the_latched_host() {
        let mut latch = SourceLatch::new(addr(SDP));
        assert!(latch.rtcp_allowed(addr("192.0.2.10:4001")));
        assert!(!latch.rtcp_allowed(addr("203.0.113.66:4001")));
        Stream::new(SDP, 1, 0).send(&mut latch);
        assert!(latch.rtcp_allowed(addr("192.0.2.10:9999")));
        assert!(!latch.rtcp_allowed(addr("203.0.113.66:4001")));
        // IPv4-mapped IPv6 is the same host.
        assert!(latch.rtcp_allowed(addr("[::ffff:192.0.2.10]:4001")));
    }

    #[test]
    fn a_new_sdp_address_is_taken_at_once_and_restarts_a_new_stream() {
        let mut latch = SourceLatch::new(addr(SDP));
        let mut far = Stream::new(SDP, 1, 0);
        far.send(&mut latch);
        latch.resignal(addr("192.0.2.11:5000"));
        assert!(!latch.is_latched());
        assert_eq!(far.send(&mut latch), Verdict::Reject);
        let mut moved = Stream::new("192.0.2.11:5000", 3, far.at_ms);
        assert_eq!(moved.send(&mut latch), Verdict::Latched { restart: true });
        assert_eq!(far.send(&mut latch), Verdict::Reject);
    }
}
