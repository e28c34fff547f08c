//! The loop that drives live legs' sans-IO media
//! ([`switchyard_media::session::LegMedia`]): a few threads (the media
//! reactor), each holding a share of the live legs and ticking every one of
//! them every 20 ms: read what waits on the leg's sockets, take a frame
//! out of the jitter buffer, send ours, tap the recorder, serve the media
//! bus.
//!
//! Why threads on a shared clock and not a tokio task per leg: a task per
//! leg woke twice every 20 ms (for the far end's packet and for its own
//! tick), and each wake-up went through the runtime's parking and waking;
//! that, not the media work, was most of a call's CPU. Here the sockets are
//! not registered with any poller (the kernel only queues the datagram and
//! stamps its arrival time), and a thread wakes four times per 20 ms (once
//! per 5 ms slot) for all of its legs. Legs are handed out to threads in
//! turn; a leg never moves.

use std::fs::File;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant, SystemTime};

use switchyard_media::dtmf::Digit;
use switchyard_media::recorder::StereoRecorder;
use switchyard_media::session::{FRAME_SAMPLES, LegMedia, LegParams, LegStats};
use tokio::sync::{mpsc, oneshot};

use crate::bus::BusPort;
use crate::ports::RtpSockets;
use crate::recording_writer::{QueuedFile, RecordingWriter};
use crate::rtp_socket::{BATCH, Datagram, RecvBatch, TimedSocket};
pub type WavRecorder = StereoRecorder<QueuedFile>;

/// Commands from the call's signalling task.
#[derive(Debug)]
pub enum MediaCommand {
    /// New SDP parameters (re-INVITE, UPDATE).
    Update(LegParams),
    SendDigits(Vec<Digit>),
    Stop,
}

/// Things the signalling task must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaNotice {
    /// No RTP from the far end for the configured time.
    NoMedia,
}

/// What the leg's media did, returned when it stops.
#[derive(Debug, Default)]
pub struct MediaOutcome {
    pub stats: LegStats,
    /// Seconds of audio in the recording, if there was one.
    pub recorded_seconds: Option<f64>,
    pub recording_error: Option<String>,
    /// Datagrams the socket refused to send (full buffer).
    pub send_drops: u64,
    /// 20 ms ticks run, and those that ran a frame or more behind time (the
    /// loop could not keep up).
    pub ticks: u64,
    pub late_ticks: u64,
}

/// The outbound audio until the agent speaks: a prompt once, then silence.
#[derive(Debug)]
pub struct Prompt {
    samples: Option<Arc<[i16]>>,
    at: usize,
}

impl Prompt {
    pub fn new(samples: Option<Arc<[i16]>>) -> Self {
        Self { samples, at: 0 }
    }

    fn next_frame(&mut self) -> Vec<i16> {
        let mut frame = vec![0i16; FRAME_SAMPLES];
        if let Some(s) = &self.samples
            && self.at < s.len()
        {
            let n = (s.len() - self.at).min(FRAME_SAMPLES);
            frame[..n].copy_from_slice(&s[self.at..self.at + n]);
            self.at += n;
        }
        frame
    }
}

pub struct MediaTask {
    pub sockets: RtpSockets,
    pub leg: LegMedia,
    pub recorder: Option<WavRecorder>,
    pub prompt: Prompt,
    pub bus: BusPort,
    pub no_media: Duration,
    pub notices: mpsc::UnboundedSender<MediaNotice>,
    pub commands: mpsc::UnboundedReceiver<MediaCommand>,
}

const TICK: Duration = Duration::from_millis(20);
/// RTCP reports every 5 s (RFC 3550's minimum interval).
const RTCP_EVERY_TICKS: u64 = 250;
/// RTCP that came in is read every 200 ms; its arrival time comes from the
/// kernel, so reading it late does not skew the round-trip time.
const RTCP_READ_EVERY_TICKS: u64 = 10;
/// The recording's audio is written, and its header made valid, every 5 s:
/// a crash loses 5 s at most, a call holds 80 KB of audio in memory, and
/// the writer makes two writes per call per 5 s. (Once a second, the
/// kernel's work for those small writes, page by page and an inode update
/// each, was three times what it is now: 0.032 against 0.011 ms of CPU per
/// second of call, measured with 1000 calls.)
pub const CHECKPOINT_TICKS: u64 = 250;
/// Datagrams read from one leg's RTP socket in one tick at most (2.5 times
/// the packets 10 ms packetisation sends in a second); a flood stays in the
/// socket, where the kernel drops what does not fit, and cannot starve the
/// other legs of the thread.
const MAX_RTP_READS_PER_TICK: usize = 64;
const MAX_RTCP_READS_PER_TICK: usize = 16;

/// The threads that run every live leg's media, and the one that writes
/// their recordings.
pub struct MediaReactor {
    shards: Vec<std_mpsc::Sender<RunningLeg>>,
    next: AtomicUsize,
    recordings: RecordingWriter,
}

impl MediaReactor {
    /// Starts `threads` media threads (at least one). They end when the
    /// reactor is dropped and the last of their legs has stopped.
    pub fn start(threads: usize) -> std::io::Result<Self> {
        let mut shards = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = std_mpsc::channel();
            std::thread::Builder::new()
                .name(format!("media-{i}"))
                .spawn(move || run_shard(rx))?;
            shards.push(tx);
        }
        Ok(Self {
            shards,
            next: AtomicUsize::new(0),
            recordings: RecordingWriter::start()?,
        })
    }

    /// Where a leg's recording is written: `file`, through the writer thread.
    pub fn recording_file(&self, file: File) -> std::io::Result<QueuedFile> {
        self.recordings.open(file)
    }

    /// Runs a leg's media until it is told to stop (or its command channel
    /// closes); the outcome comes back on the receiver once the recording
    /// (if any) is complete on disk.
    pub fn run(&self, mut task: MediaTask) -> oneshot::Receiver<MediaOutcome> {
        let (done, outcome) = oneshot::channel();
        if let Some(rec) = task.recorder.as_mut() {
            rec.reserve_ticks(CHECKPOINT_TICKS as usize);
        }
        let leg = RunningLeg {
            task,
            started: Instant::now(),
            outcome: MediaOutcome::default(),
            no_media_told: false,
            done,
        };
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        if self.shards[i].send(leg).is_err() {
            // The thread is gone (it cannot panic out of a leg, so this is
            // not expected); the caller sees the outcome channel close.
            tracing::error!(thread = i, "media thread is gone; the call has no media");
        }
        outcome
    }
}

/// The 20 ms frame is cut into four slots of 5 ms; each leg is ticked in
/// its own slot (the emptiest when it came), so a thread's work is spread
/// over the frame instead of coming all at once, and a leg is ticked at
/// the same point of every frame. Four, not twenty: each slot is a
/// wake-up of the thread, and a wake-up costs about what a leg's tick does.
const SLOT: Duration = Duration::from_millis(5);
const SLOTS: usize = 4;

/// One media thread: ticks its legs, each in its slot of the 20 ms frame.
fn run_shard(new_legs: std_mpsc::Receiver<RunningLeg>) {
    let mut slots: Vec<Vec<RunningLeg>> = (0..SLOTS).map(|_| Vec::new()).collect();
    let mut live = 0usize;
    let mut batch = RecvBatch::new();
    // When the slot `slot` is due.
    let mut due = Instant::now();
    let mut slot = 0usize;
    loop {
        if live == 0 {
            // Nothing to tick: sleep until a leg comes (or the reactor goes).
            match new_legs.recv() {
                Ok(leg) => {
                    slots[slot].push(leg);
                    live += 1;
                }
                Err(_) => return,
            }
            due = Instant::now();
        }
        while let Ok(leg) = new_legs.try_recv() {
            let emptiest = (0..SLOTS).min_by_key(|&i| slots[i].len()).unwrap_or(0);
            slots[emptiest].push(leg);
            live += 1;
        }
        if !slots[slot].is_empty() {
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            // After a stall (the machine was busy) the slots run back to
            // back until the clock is caught up: the far end and the
            // recording keep real time.
            let legs = &mut slots[slot];
            let mut i = 0;
            while i < legs.len() {
                match catch_unwind(AssertUnwindSafe(|| legs[i].tick(due, &mut batch))) {
                    Ok(Step::Running) => i += 1,
                    Ok(Step::Stopped) => {
                        legs.remove(i).finish();
                        live -= 1;
                    }
                    Err(_) => {
                        // The leg's outcome channel closes with it; the call
                        // ends with what it had.
                        tracing::error!("a call's media panicked; its media is stopped");
                        drop(legs.remove(i));
                        live -= 1;
                    }
                }
            }
        }
        slot = (slot + 1) % SLOTS;
        due += SLOT;
    }
}

enum Step {
    Running,
    Stopped,
}

struct RunningLeg {
    task: MediaTask,
    started: Instant,
    outcome: MediaOutcome,
    no_media_told: bool,
    done: oneshot::Sender<MediaOutcome>,
}

impl RunningLeg {
    /// One 20 ms tick, due at `due`.
    fn tick(&mut self, due: Instant, batch: &mut RecvBatch) -> Step {
        loop {
            match self.task.commands.try_recv() {
                Ok(MediaCommand::Update(p)) => self.task.leg.update(p),
                Ok(MediaCommand::SendDigits(d)) => self.task.leg.send_digits(&d),
                Ok(MediaCommand::Stop) => return Step::Stopped,
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return Step::Stopped,
            }
        }
        let ticks = self.outcome.ticks;
        self.outcome.ticks += 1;
        let now = Instant::now();
        if now.duration_since(due) >= TICK {
            self.outcome.late_ticks += 1;
        }
        // What has arrived goes into the jitter buffer before a frame is
        // taken out.
        let wall = SystemTime::now();
        let started = self.started;
        let at = |d: &Datagram| ms_since(started, arrival(now, wall, d.received_at));
        let (leg, sockets) = (&mut self.task.leg, &self.task.sockets);
        let latches = leg.latches();
        drain(&sockets.rtp, batch, MAX_RTP_READS_PER_TICK, |d, bytes| {
            leg.receive_rtp(at(&d), d.from, bytes)
        });
        if leg.latches() != latches {
            // The SDP address's first packet, or a new source that won the
            // latch by the strict-RTP rule (a far end behind NAT).
            tracing::info!(remote = %leg.remote_rtp(), sdp = %leg.params().remote, "far end's media latched");
        }
        if ticks.is_multiple_of(RTCP_READ_EVERY_TICKS) {
            drain(&sockets.rtcp, batch, MAX_RTCP_READS_PER_TICK, |d, bytes| {
                leg.receive_rtcp(at(&d), d.from, bytes)
            });
        }
        let now_ms = ms_since(self.started, due);
        let (_, far) = self.task.leg.pull_far_frame(now_ms);
        while let Some(d) = self.task.leg.next_digit() {
            let _ = self.task.bus.digits.send(d.as_char());
        }
        let near = match self.task.bus.near.try_recv() {
            Ok(frame) if frame.len() == FRAME_SAMPLES => frame,
            _ => self.task.prompt.next_frame(),
        };
        if let Some(packet) = self.task.leg.send_frame(&near)
            && self
                .task
                .sockets
                .rtp
                .send_to(&packet, self.task.leg.remote_rtp())
                .is_err()
        {
            self.outcome.send_drops += 1;
        }
        if let Some(rec) = self.task.recorder.as_mut() {
            let written = rec.tick(Some(&far), Some(&near)).and_then(|_| {
                if (ticks + 1).is_multiple_of(CHECKPOINT_TICKS) {
                    rec.checkpoint()
                } else {
                    Ok(())
                }
            });
            if let Err(e) = written {
                tracing::warn!(error = %e, "recording stopped");
                self.outcome.recording_error = Some(e.to_string());
                self.task.recorder = None;
            }
        }
        // Nobody listening is fine: the frame is simply not kept.
        let _ = self.task.bus.far.send(Arc::from(far));
        if !self.no_media_told
            && self.task.leg.silent_for(now_ms, 0) > self.task.no_media.as_millis() as u64
        {
            self.no_media_told = true;
            let _ = self.task.notices.send(MediaNotice::NoMedia);
        }
        if ticks > 0 && ticks.is_multiple_of(RTCP_EVERY_TICKS) {
            let report = self.task.leg.rtcp_report(now_ms);
            let _ = self
                .task
                .sockets
                .rtcp
                .send_to(&report, self.task.leg.remote_rtcp());
        }
        Step::Running
    }

    fn finish(mut self) {
        self.outcome.stats = self.task.leg.stats();
        let mut outcome = self.outcome;
        let done = self.done;
        let Some(rec) = self.task.recorder.take() else {
            // The call may have stopped waiting (it was cancelled).
            let _ = done.send(outcome);
            return;
        };
        let seconds = rec.samples_per_channel() as f64 / 8000.0;
        match rec.into_sink() {
            Ok(file) => file.close(move |error| {
                match error {
                    None => outcome.recorded_seconds = Some(seconds),
                    Some(e) => outcome.recording_error = Some(e),
                }
                let _ = done.send(outcome);
            }),
            Err(e) => {
                outcome.recording_error = Some(e.to_string());
                let _ = done.send(outcome);
            }
        }
    }
}

/// Milliseconds from `started` to `at` (0 for an earlier `at`).
fn ms_since(started: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(started).as_millis() as u64
}

/// Reads what waits on `socket`, a batch per system call, until it is
/// empty or about `max` datagrams were read, giving each to `deliver`. A
/// socket error is logged and read as nothing waiting (the next tick tries
/// again).
fn drain(
    socket: &TimedSocket,
    batch: &mut RecvBatch,
    max: usize,
    mut deliver: impl FnMut(Datagram, &[u8]),
) {
    let mut read = 0;
    while read < max {
        match socket.recv_batch(batch, &mut deliver) {
            Ok(n) if n == BATCH => read += n,
            Ok(_) => break,
            Err(e) => {
                tracing::debug!(error = %e, "media socket read failed");
                break;
            }
        }
    }
}

/// When a datagram arrived, on the monotonic clock: `now` less how long it
/// waited in the socket by the kernel's stamp (the wall clock's, read at
/// `wall`). Without a stamp, or with one that makes no sense (the wall
/// clock was stepped), it arrived now.
fn arrival(now: Instant, wall: SystemTime, received_at: Option<SystemTime>) -> Instant {
    match received_at.and_then(|t| wall.duration_since(t).ok()) {
        Some(waited) if waited < Duration::from_secs(1) => now.checked_sub(waited).unwrap_or(now),
        _ => now,
    }
}

/// Reads the prompt played to answered calls: a 16-bit PCM WAV at 8 kHz
/// (stereo is mixed down). Other formats are refused with the way to
/// convert them, rather than played at the wrong speed.
pub fn load_prompt(path: &std::path::Path) -> anyhow::Result<Arc<[i16]>> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| anyhow::anyhow!("prompt_file {}: {e}", path.display()))?;
    let spec = reader.spec();
    if spec.sample_rate != 8000
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
        || spec.channels == 0
        || spec.channels > 2
    {
        anyhow::bail!(
            "prompt_file {}: need 16-bit PCM at 8000 Hz, mono or stereo (got {} Hz, {} bit, {} channels); \
             convert it with: sox in.wav -r 8000 -c 1 -b 16 prompt.wav",
            path.display(),
            spec.sample_rate,
            spec.bits_per_sample,
            spec.channels
        );
    }
    let channels = spec.channels as usize;
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("prompt_file {}: {e}", path.display()))?;
    Ok(samples
        .chunks(channels)
        .map(|c| (c.iter().map(|&s| s as i32).sum::<i32>() / channels as i32) as i16)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_is_now_less_the_kernel_stamped_wait() {
        let now = Instant::now();
        let wall = SystemTime::now();
        let ms = Duration::from_millis;
        assert_eq!(arrival(now, wall, Some(wall - ms(15))), now - ms(15));
        // No stamp, a stamp from the future (the wall clock went back), or
        // one from long ago (it went forward): now.
        assert_eq!(arrival(now, wall, None), now);
        assert_eq!(arrival(now, wall, Some(wall + ms(30))), now);
        assert_eq!(arrival(now, wall, Some(wall - ms(5000))), now);
    }
}
