//! An adaptive jitter buffer with packet-loss concealment, sans-IO.
//!
//! The I/O loop pushes decoded frames as packets arrive (with its clock) and
//! pops one frame per frame period. The buffer reorders by RTP timestamp,
//! drops late and duplicate frames, conceals losses by repeating the last
//! frame with decreasing gain (then silence), and sizes its delay from the
//! RFC 3550 interarrival jitter estimate: it grows after an underrun and
//! trims itself when it holds more than it needs.

use std::collections::BTreeMap;

/// What a popped frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Audio that arrived.
    Received,
    /// Made up for a lost or late frame.
    Concealed,
    /// Nothing to play yet (before the first frame, or while prefilling).
    Silence,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub received: u64,
    pub played: u64,
    pub concealed: u64,
    pub late: u64,
    pub duplicates: u64,
    /// Frames dropped to cut delay after the network calmed down.
    pub trimmed: u64,
    /// RFC 3550 interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Current target delay, in frames.
    pub target_frames: u32,
}

#[derive(Debug)]
pub struct JitterBuffer {
    frame_samples: u32,
    clock_rate: u32,
    min_frames: u32,
    max_frames: u32,
    target_frames: u32,
    frames: BTreeMap<u64, Vec<i16>>,
    /// Extended (wrap-free) timestamp of the next frame to play.
    playout: Option<u64>,
    prefilling: bool,
    last_ts: Option<u64>,
    /// For the jitter estimate: previous (arrival in ts units, extended ts).
    last_transit: Option<i64>,
    jitter_q4: i64,
    last_played: Vec<i16>,
    consecutive_concealed: u32,
    /// The last pop found the buffer empty and kept its place (underrun).
    holding: bool,
    /// Pops in a row that wanted less delay than the target.
    calm_pops: u32,
    stats: JitterStats,
}

/// Pops (frames) of calm before the delay shrinks by one frame.
const CALM_POPS_PER_STEP: u32 = 50;

impl JitterBuffer {
    /// `frame_samples` per frame (160 for 20 ms at 8 kHz) at `clock_rate`;
    /// the delay adapts between `min_frames` and `max_frames`.
    pub fn new(frame_samples: u32, clock_rate: u32, min_frames: u32, max_frames: u32) -> Self {
        let min_frames = min_frames.max(1);
        let max_frames = max_frames.max(min_frames);
        Self {
            frame_samples: frame_samples.max(1),
            clock_rate: clock_rate.max(1),
            min_frames,
            max_frames,
            target_frames: min_frames,
            frames: BTreeMap::new(),
            playout: None,
            prefilling: true,
            last_ts: None,
            last_transit: None,
            jitter_q4: 0,
            last_played: vec![0; frame_samples as usize],
            consecutive_concealed: 0,
            holding: false,
            calm_pops: 0,
            stats: JitterStats {
                target_frames: min_frames,
                ..Default::default()
            },
        }
    }

    /// Forgets the stream (a new source or SSRC took over: its timestamps
    /// have nothing to do with the old ones) and starts over, prefilling;
    /// the counters carry on.
    pub fn restart(&mut self) {
        let stats = self.stats;
        *self = Self::new(
            self.frame_samples,
            self.clock_rate,
            self.min_frames,
            self.max_frames,
        );
        self.stats = JitterStats {
            target_frames: self.min_frames,
            ..stats
        };
    }

    pub fn stats(&self) -> JitterStats {
        JitterStats {
            jitter: (self.jitter_q4 >> 4) as u32,
            target_frames: self.target_frames,
            ..self.stats
        }
    }

    /// Frames held now.
    pub fn depth(&self) -> usize {
        self.frames.len()
    }

    /// Extends a 32-bit RTP timestamp relative to the last one seen.
    fn extend(&mut self, ts: u32) -> u64 {
        let ext = match self.last_ts {
            None => ts as u64 + (1u64 << 32),
            Some(last) => {
                let candidate = (last & !0xFFFF_FFFF) | ts as u64;
                let up = candidate + (1u64 << 32);
                let down = candidate.wrapping_sub(1u64 << 32);
                [candidate, up, down]
                    .into_iter()
                    .min_by_key(|c| c.abs_diff(last))
                    .unwrap_or(candidate)
            }
        };
        if self.last_ts.is_none_or(|l| ext > l) {
            self.last_ts = Some(ext);
        }
        ext
    }

    /// A frame arrived at `arrival_ms` (the caller's monotonic clock).
    pub fn push(&mut self, arrival_ms: u64, timestamp: u32, pcm: Vec<i16>) {
        let ts = self.extend(timestamp);
        // RFC 3550 A.8: J += (|D| - J) / 16, kept in 1/16 units.
        let arrival_units = (arrival_ms as i128 * self.clock_rate as i128 / 1000) as i64;
        let transit = arrival_units - ts as i64;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs();
            self.jitter_q4 += d - ((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);

        if self.playout.is_some_and(|p| ts < p) {
            self.stats.late += 1;
            return;
        }
        if self.frames.contains_key(&ts) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.received += 1;
        self.frames.insert(ts, pcm);
        if self.playout.is_none() {
            self.playout = Some(ts);
        }
        // A frame earlier than the planned start, while still prefilling: start there.
        if self.prefilling && self.playout.is_some_and(|p| ts < p) {
            self.playout = Some(ts);
        }
    }

    fn jitter_frames(&self) -> u32 {
        let jitter = (self.jitter_q4 >> 4) as u32;
        // Cover about three times the mean deviation.
        (3 * jitter).div_ceil(self.frame_samples)
    }

    /// The next frame to play, once per frame period.
    pub fn pop(&mut self) -> (FrameKind, Vec<i16>) {
        let Some(playout) = self.playout else {
            return (FrameKind::Silence, vec![0; self.frame_samples as usize]);
        };
        if self.prefilling {
            if (self.frames.len() as u32) < self.target_frames {
                return (FrameKind::Silence, vec![0; self.frame_samples as usize]);
            }
            self.prefilling = false;
        }
        // Follow the jitter: up at once, down one frame per calm second.
        let wanted =
            (self.min_frames + self.jitter_frames()).clamp(self.min_frames, self.max_frames);
        if wanted > self.target_frames {
            self.target_frames = wanted;
            self.calm_pops = 0;
        } else if wanted < self.target_frames {
            self.calm_pops += 1;
            if self.calm_pops >= CALM_POPS_PER_STEP {
                self.target_frames -= 1;
                self.calm_pops = 0;
            }
        }
        // Too much buffered for the current jitter: skip the oldest frame.
        if self.frames.len() as u32 > self.target_frames + 2
            && let Some((&ts, _)) = self.frames.first_key_value()
        {
            self.frames.remove(&ts);
            self.stats.trimmed += 1;
            self.playout = Some(ts + self.frame_samples as u64);
        }
        let mut playout = self.playout.unwrap_or(playout);
        // After an underrun the buffer waited in place; if what came next
        // is not the frame it waited for (that one was lost, or the stream
        // resumed further on after a pause), play on from what came.
        if self.holding
            && !self.frames.contains_key(&playout)
            && let Some((&first, _)) = self.frames.first_key_value()
        {
            playout = first;
        }
        self.holding = false;
        match self.frames.remove(&playout) {
            Some(pcm) => {
                self.playout = Some(playout + self.frame_samples as u64);
                self.stats.played += 1;
                self.consecutive_concealed = 0;
                self.last_played.clone_from(&pcm);
                (FrameKind::Received, pcm)
            }
            None => {
                if self.frames.is_empty() {
                    // Underrun: the network is slower than our delay. Wait
                    // for this frame in place (the delay grows by the
                    // underrun) rather than give it up: a frame given up is
                    // dropped as late when it comes, and so would every one
                    // after it, with the stream now behind our clock.
                    self.target_frames = (self.target_frames + 1).min(self.max_frames);
                    self.calm_pops = 0;
                    self.holding = true;
                    self.playout = Some(playout);
                } else {
                    // Lost (or reordered past the delay): skip it.
                    self.playout = Some(playout + self.frame_samples as u64);
                }
                self.stats.concealed += 1;
                self.consecutive_concealed += 1;
                // Repeat the last frame at half, quarter… gain; silence after three.
                let shift = self.consecutive_concealed.min(16);
                let pcm: Vec<i16> = if self.consecutive_concealed > 3 {
                    vec![0; self.frame_samples as usize]
                } else {
                    self.last_played.iter().map(|s| s >> shift).collect()
                };
                (FrameKind::Concealed, pcm)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u32 = 160;

    fn frame(i: u32) -> Vec<i16> {
        vec![(i % 1000) as i16 + 1; N as usize]
    }

    /// Sends frames `order` (indices) at their nominal times plus `delay_ms(i)`,
    /// pops every 20 ms, and returns what was played.
    fn run(
        start_ts: u32,
        order: &[u32],
        delay_ms: impl Fn(u32) -> u64,
        total_pops: usize,
    ) -> (Vec<(FrameKind, i16)>, JitterStats) {
        let mut jb = JitterBuffer::new(N, 8000, 2, 10);
        let mut arrivals: Vec<(u64, u32)> = order
            .iter()
            .map(|&i| (i as u64 * 20 + delay_ms(i), i))
            .collect();
        arrivals.sort_by_key(|a| a.0);
        let mut out = Vec::new();
        let mut next = 0;
        for tick in 0..total_pops as u64 {
            let now = tick * 20;
            while next < arrivals.len() && arrivals[next].0 <= now {
                let i = arrivals[next].1;
                jb.push(arrivals[next].0, start_ts.wrapping_add(i * N), frame(i));
                next += 1;
            }
            let (kind, pcm) = jb.pop();
            out.push((kind, pcm[0]));
        }
        (out, jb.stats())
    }

    fn received_values(out: &[(FrameKind, i16)]) -> Vec<i16> {
        out.iter()
            .filter(|(k, _)| *k == FrameKind::Received)
            .map(|(_, v)| *v)
            .collect()
    }

    /// Concealed frames while the stream lasted (after it ends, every pop is concealment).
    fn concealed_within(out: &[(FrameKind, i16)]) -> usize {
        let first = out
            .iter()
            .position(|(k, _)| *k == FrameKind::Received)
            .unwrap_or(0);
        let last = out
            .iter()
            .rposition(|(k, _)| *k == FrameKind::Received)
            .unwrap_or(0);
        out[first..=last]
            .iter()
            .filter(|(k, _)| *k == FrameKind::Concealed)
            .count()
    }

    #[test]
    fn in_order_stream_plays_everything_in_order() {
        let order: Vec<u32> = (0..100).collect();
        let (out, stats) = run(1000, &order, |_| 5, 110);
        assert_eq!(
            received_values(&out),
            (0..100).map(|i| i as i16 + 1).collect::<Vec<_>>()
        );
        assert_eq!(concealed_within(&out), 0, "{stats:?}");
        assert_eq!(stats.late + stats.duplicates, 0);
    }

    #[test]
    fn reordering_within_the_delay_is_repaired() {
        let mut order: Vec<u32> = (0..100).collect();
        for pair in order.chunks_mut(2) {
            pair.reverse();
        }
        let (out, stats) = run(0, &order, |i| if i % 2 == 0 { 15 } else { 0 }, 110);
        assert_eq!(
            received_values(&out),
            (0..100).map(|i| i as i16 + 1).collect::<Vec<_>>()
        );
        assert_eq!(stats.late, 0, "{stats:?}");
    }

    #[test]
    fn a_step_in_delay_is_absorbed_not_lost_for_good() {
        // The far end stalls once: from frame 20 on, every frame comes 60 ms
        // later than before (more than the buffer's delay). The buffer must
        // wait the stream out, not give up each frame just before it comes.
        let order: Vec<u32> = (0..120).collect();
        let (out, stats) = run(50, &order, |i| if i < 20 { 3 } else { 63 }, 140);
        let played = received_values(&out);
        assert!(
            (30..120).all(|i| played.contains(&(i as i16 + 1))),
            "frames lost after the step: {stats:?}"
        );
        assert!(concealed_within(&out) <= 6, "{stats:?}");
        assert!(stats.late <= 3, "{stats:?}");
    }

    #[test]
    fn losses_are_concealed_and_the_length_is_kept() {
        // Every 10th frame lost.
        let order: Vec<u32> = (0..200).filter(|i| i % 10 != 3).collect();
        let (out, stats) = run(7, &order, |_| 3, 205);
        let played = received_values(&out);
        assert_eq!(played.len(), 180);
        assert_eq!(concealed_within(&out), 20, "{stats:?}");
        // Output stays in real time: from the first received frame, one frame per pop.
        let first = out
            .iter()
            .position(|(k, _)| *k != FrameKind::Silence)
            .unwrap();
        assert!(
            out[first..first + 200]
                .iter()
                .all(|(k, _)| *k != FrameKind::Silence)
        );
        // The concealed frame is the previous one at half gain.
        let i = out
            .iter()
            .position(|(k, _)| *k == FrameKind::Concealed)
            .unwrap();
        assert_eq!(out[i].1, out[i - 1].1 >> 1);
    }

    #[test]
    fn duplicates_and_late_frames_are_dropped() {
        let mut jb = JitterBuffer::new(N, 8000, 1, 5);
        jb.push(0, 0, frame(0));
        jb.push(0, 0, frame(0));
        assert_eq!(jb.stats().duplicates, 1);
        assert_eq!(jb.pop().0, FrameKind::Received);
        jb.push(40, 2 * N, frame(2));
        assert_eq!(jb.pop().0, FrameKind::Concealed, "frame 1 missing");
        jb.push(45, N, frame(1));
        assert_eq!(jb.stats().late, 1);
        assert_eq!(jb.pop(), (FrameKind::Received, frame(2)));
    }

    #[test]
    fn timestamps_wrap() {
        let order: Vec<u32> = (0..50).collect();
        let (out, stats) = run(u32::MAX - 10 * N, &order, |_| 2, 60);
        assert_eq!(received_values(&out).len(), 50);
        assert_eq!(concealed_within(&out) as u64 + stats.late, 0, "{stats:?}");
    }

    #[test]
    fn the_delay_grows_with_jitter_and_shrinks_after() {
        // Bursty arrivals: every frame late by 0-80 ms.
        let jittery: Vec<u32> = (0..300).collect();
        let (_, stats) = run(0, &jittery, |i| ((i * 37) % 5) as u64 * 20, 320);
        assert!(stats.jitter > 100, "{stats:?}");
        assert!(stats.target_frames > 2, "the delay grew: {stats:?}");
        // A calm network after a spike: trimmed back down.
        let mut jb = JitterBuffer::new(N, 8000, 2, 10);
        for i in 0..8u32 {
            jb.push(0, i * N, frame(i));
        }
        let mut t = 0;
        for i in 8..200u32 {
            t += 20;
            jb.push(t, i * N, frame(i));
            jb.pop();
        }
        assert!(jb.depth() <= 5, "depth {} after calm", jb.depth());
        assert!(jb.stats().trimmed > 0);
        // After a jittery start the target comes back down once the jitter estimate decays.
        let mut jb = JitterBuffer::new(N, 8000, 2, 10);
        let mut t = 0u64;
        for i in 0..600u32 {
            t += 20;
            let wobble = if i < 100 { (i as u64 * 37) % 5 * 20 } else { 0 };
            jb.push(t + wobble, i * N, frame(i));
            jb.pop();
        }
        assert_eq!(jb.stats().target_frames, 2, "{:?}", jb.stats());
    }

    #[test]
    fn silence_before_anything_arrives() {
        let mut jb = JitterBuffer::new(N, 8000, 2, 5);
        assert_eq!(jb.pop().0, FrameKind::Silence);
        jb.push(0, 0, frame(0));
        assert_eq!(jb.pop().0, FrameKind::Silence, "prefilling to 2 frames");
        jb.push(20, N, frame(1));
        assert_eq!(jb.pop(), (FrameKind::Received, frame(0)));
    }

    #[test]
    fn a_restart_plays_a_new_stream_whatever_its_timestamps() {
        let mut jb = JitterBuffer::new(N, 8000, 2, 5);
        for i in 0..20u32 {
            jb.push(i as u64 * 20, 1_000_000 + i * N, frame(i));
            jb.pop();
        }
        // A new stream whose timestamps are behind the old one's: without
        // a restart every frame of it is late.
        jb.restart();
        let mut played = Vec::new();
        for i in 0..20u32 {
            jb.push(400 + i as u64 * 20, 5 + i * N, frame(500 + i));
            if let (FrameKind::Received, pcm) = jb.pop() {
                played.push(pcm[0]);
            }
        }
        assert_eq!(played.len(), 19, "{:?}", jb.stats());
        assert_eq!(played[0], frame(500)[0]);
        assert_eq!(jb.stats().received, 40, "the counters carry on");
    }
}
