//! The thin tokio loop that drives one leg's sans-IO media
//! ([`switchyard_media::session::LegMedia`]): it owns the RTP and RTCP
//! sockets and a 20 ms clock, feeds datagrams in, sends what comes out,
//! taps the recorder and serves the media bus.

use std::fs::File;
use std::sync::Arc;
use std::time::Duration;

use switchyard_media::dtmf::Digit;
use switchyard_media::recorder::StereoRecorder;
use switchyard_media::session::{FRAME_SAMPLES, LegMedia, LegParams, LegStats};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::bus::BusPort;
use crate::ports::RtpSockets;

pub type WavRecorder = StereoRecorder<File>;

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

/// RTCP reports every 5 s (RFC 3550's minimum interval).
const RTCP_INTERVAL: Duration = Duration::from_secs(5);
/// The recording's header is made valid once a second.
const CHECKPOINT_TICKS: u64 = 50;

impl MediaTask {
    pub fn spawn(self) -> JoinHandle<MediaOutcome> {
        tokio::spawn(self.run())
    }

    async fn run(mut self) -> MediaOutcome {
        let started = Instant::now();
        let now_ms = |at: Instant| at.duration_since(started).as_millis() as u64;
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        // Catch up after a stall: the far end and the recording keep real time.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut rtcp_timer = tokio::time::interval_at(started + RTCP_INTERVAL, RTCP_INTERVAL);
        let mut rtp_buf = vec![0u8; 2048];
        let mut rtcp_buf = vec![0u8; 2048];
        let mut outcome = MediaOutcome::default();
        let mut ticks: u64 = 0;
        let mut no_media_told = false;
        loop {
            tokio::select! {
                r = self.sockets.rtp.recv_from(&mut rtp_buf) => {
                    if let Ok((n, from)) = r {
                        self.leg.receive_rtp(now_ms(Instant::now()), from, &rtp_buf[..n]);
                    }
                }
                r = self.sockets.rtcp.recv_from(&mut rtcp_buf) => {
                    if let Ok((n, from)) = r {
                        self.leg.receive_rtcp(now_ms(Instant::now()), from, &rtcp_buf[..n]);
                    }
                }
                at = ticker.tick() => {
                    // What has arrived goes into the jitter buffer before a
                    // frame is taken out: after a stall the ticks fire back
                    // to back, and packets still queued in the socket would
                    // otherwise be concealed, then dropped as late.
                    while let Ok((n, from)) = self.sockets.rtp.try_recv_from(&mut rtp_buf) {
                        self.leg.receive_rtp(now_ms(Instant::now()), from, &rtp_buf[..n]);
                    }
                    let now = now_ms(at);
                    ticks += 1;
                    if Instant::now().duration_since(at) >= Duration::from_millis(20) {
                        outcome.late_ticks += 1;
                    }
                    let (_, far) = self.leg.pull_far_frame(now);
                    while let Some(d) = self.leg.next_digit() {
                        let _ = self.bus.digits.send(d.as_char());
                    }
                    let near = match self.bus.near.try_recv() {
                        Ok(frame) if frame.len() == FRAME_SAMPLES => frame,
                        _ => self.prompt.next_frame(),
                    };
                    if let Some(packet) = self.leg.send_frame(&near)
                        && self.sockets.rtp.try_send_to(&packet, self.leg.remote_rtp()).is_err()
                    {
                        outcome.send_drops += 1;
                    }
                    if let Some(rec) = self.recorder.as_mut() {
                        let written = rec.tick(Some(&far), Some(&near)).and_then(|_| {
                            if ticks.is_multiple_of(CHECKPOINT_TICKS) { rec.checkpoint() } else { Ok(()) }
                        });
                        if let Err(e) = written {
                            tracing::warn!(error = %e, "recording stopped");
                            outcome.recording_error = Some(e.to_string());
                            self.recorder = None;
                        }
                    }
                    // Nobody listening is fine: the frame is simply not kept.
                    let _ = self.bus.far.send(Arc::from(far));
                    if !no_media_told && self.leg.silent_for(now, 0) > self.no_media.as_millis() as u64 {
                        no_media_told = true;
                        let _ = self.notices.send(MediaNotice::NoMedia);
                    }
                }
                _ = rtcp_timer.tick() => {
                    let report = self.leg.rtcp_report(now_ms(Instant::now()));
                    let _ = self.sockets.rtcp.try_send_to(&report, self.leg.remote_rtcp());
                }
                cmd = self.commands.recv() => match cmd {
                    Some(MediaCommand::Update(p)) => self.leg.update(p),
                    Some(MediaCommand::SendDigits(d)) => self.leg.send_digits(&d),
                    Some(MediaCommand::Stop) | None => break,
                }
            }
        }
        outcome.stats = self.leg.stats();
        outcome.ticks = ticks;
        if let Some(rec) = self.recorder.take() {
            let samples = rec.samples_per_channel();
            match rec.finish() {
                Ok(_) => outcome.recorded_seconds = Some(samples as f64 / 8000.0),
                Err(e) => outcome.recording_error = Some(e.to_string()),
            }
        }
        outcome
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
