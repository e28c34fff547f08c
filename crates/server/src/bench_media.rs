//! `switchyard bench sip media`: what one RTP packet costs Switchyard
//! (relay and record) next to rtpengine (a userspace relay), in CPU
//! seconds per million packets, under the same traffic from the same
//! generator in the same run.
//!
//! The generator runs in this process; each target is a child process, so
//! its CPU time (from /proc) holds none of the generator's work:
//!
//! - **rtpengine** (`--table=-1`: no kernel forwarding) is set up per call
//!   over its ng control protocol (`offer`, then `answer`); each call has two
//!   legs, A and B, and each leg streams to rtpengine, which relays A's
//!   stream to B and B's to A.
//! - **Switchyard** runs as `switchyard serve` with one number; each call is
//!   an inbound INVITE from the small UAC below. Switchyard answers, records
//!   both directions to a stereo WAV, takes our stream through its jitter
//!   buffer and sends its own every 20 ms, with RTCP.
//!
//! Every leg sends G.711 μ-law, 160 bytes every 20 ms, paced in real time,
//! and counts what comes back (sequence numbers show any loss; Switchyard's
//! RTCP reports tell what it lost of ours). Both targets carry their calls
//! at once; once all are up, each target's CPU time over one window is
//! divided by the packets it received and sent in that window, as counted
//! here. Measuring both in the same window gives both the same load from
//! the rest of the machine, which on a shared machine moves from one
//! minute to the next.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Response, SipMessage};
use switchyard_media::rtcp::{self, ReceptionStats, RtcpPacket};
use switchyard_media::rtp::{self, RtpError, RtpSender};
use switchyard_telephony::sdp::{self, SessionDescription};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::bench_sip::{NUMBER, Peer, SipBenchArgs, cpu_seconds, free_udp_port};

/// One packet every 20 ms, 160 μ-law bytes (8 kHz).
const FRAME: Duration = Duration::from_millis(20);
const FRAME_SAMPLES: usize = 160;
const PCMU: u8 = 0;
/// Each target's RTP ports, and where the generator's port pairs for it
/// start (apart from each other: both run at once).
const RTPENGINE_PORTS: (u16, u16) = (10000, 19999);
const SWITCHYARD_PORTS: (u16, u16) = (20000, 29999);
const RTPENGINE_GENERATOR_PORTS: u16 = 40000;
const SWITCHYARD_GENERATOR_PORTS: u16 = 50000;
/// More loss than this (of the packets expected, either target) fails the run.
const MAX_LOSS_PERCENT: f64 = 0.1;
/// Time for the calls to settle once all are up, before the window.
const SETTLE: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Bencode (BEP 3), for rtpengine's ng protocol.
//
// Written here: the maintained crate (bendy) enforces canonical bencode and
// refuses rtpengine's replies, whose dictionary keys are not sorted
// (`d3:sdp…6:result2:oke`); the protocol needs only these few lines.

/// A bencoded value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bencode {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Bencode>),
    /// In the order the keys came (rtpengine does not sort them).
    Dict(Vec<(Vec<u8>, Bencode)>),
}

/// Nesting deeper than this is refused (the decoder recurses).
const BENCODE_MAX_DEPTH: usize = 64;

impl Bencode {
    fn text(s: &str) -> Self {
        Bencode::Bytes(s.as_bytes().to_vec())
    }

    fn dict(pairs: &[(&str, Bencode)]) -> Self {
        Bencode::Dict(
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
                .collect(),
        )
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Bencode::Int(i) => out.extend_from_slice(format!("i{i}e").as_bytes()),
            Bencode::Bytes(b) => {
                out.extend_from_slice(format!("{}:", b.len()).as_bytes());
                out.extend_from_slice(b);
            }
            Bencode::List(items) => {
                out.push(b'l');
                items.iter().for_each(|i| i.encode(out));
                out.push(b'e');
            }
            Bencode::Dict(pairs) => {
                out.push(b'd');
                for (k, v) in pairs {
                    Bencode::Bytes(k.clone()).encode(out);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Decodes one value that must span all of `input`.
    fn decode(input: &[u8]) -> anyhow::Result<Bencode> {
        let mut at = 0;
        let value = decode_at(input, &mut at, 0)?;
        if at != input.len() {
            anyhow::bail!("bencode: {} bytes after the value", input.len() - at);
        }
        Ok(value)
    }

    fn get(&self, key: &str) -> Option<&Bencode> {
        match self {
            Bencode::Dict(pairs) => pairs
                .iter()
                .find(|(k, _)| k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Bencode::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }
}

fn decode_at(input: &[u8], at: &mut usize, depth: usize) -> anyhow::Result<Bencode> {
    if depth > BENCODE_MAX_DEPTH {
        anyhow::bail!("bencode: nested deeper than {BENCODE_MAX_DEPTH}");
    }
    let Some(&first) = input.get(*at) else {
        anyhow::bail!("bencode: ends where a value should start");
    };
    match first {
        b'i' => {
            let rest = &input[*at + 1..];
            let end = rest
                .iter()
                .position(|&b| b == b'e')
                .ok_or_else(|| anyhow::anyhow!("bencode: unterminated integer"))?;
            let digits = std::str::from_utf8(&rest[..end])?;
            let value = digits
                .parse::<i64>()
                .map_err(|_| anyhow::anyhow!("bencode: bad integer {digits:?}"))?;
            *at += end + 2;
            Ok(Bencode::Int(value))
        }
        b'l' | b'd' => {
            *at += 1;
            let mut items = Vec::new();
            let mut pairs = Vec::new();
            loop {
                match input.get(*at) {
                    None => anyhow::bail!("bencode: unterminated list or dictionary"),
                    Some(b'e') => {
                        *at += 1;
                        break;
                    }
                    Some(_) if first == b'l' => items.push(decode_at(input, at, depth + 1)?),
                    Some(_) => {
                        let Bencode::Bytes(key) = decode_at(input, at, depth + 1)? else {
                            anyhow::bail!("bencode: a dictionary key that is not a string");
                        };
                        pairs.push((key, decode_at(input, at, depth + 1)?));
                    }
                }
            }
            Ok(if first == b'l' {
                Bencode::List(items)
            } else {
                Bencode::Dict(pairs)
            })
        }
        b'0'..=b'9' => {
            let rest = &input[*at..];
            let colon = rest
                .iter()
                .position(|&b| b == b':')
                .ok_or_else(|| anyhow::anyhow!("bencode: string length without ':'"))?;
            let len: usize = std::str::from_utf8(&rest[..colon])?
                .parse()
                .map_err(|_| anyhow::anyhow!("bencode: bad string length"))?;
            let start = *at + colon + 1;
            let end = start
                .checked_add(len)
                .filter(|&e| e <= input.len())
                .ok_or_else(|| anyhow::anyhow!("bencode: string runs past the end"))?;
            *at = end;
            Ok(Bencode::Bytes(input[start..end].to_vec()))
        }
        other => anyhow::bail!("bencode: unexpected byte {other:#04x}"),
    }
}

/// rtpengine's ng control protocol over UDP: `cookie SP bencoded-dict`,
/// answered with the same cookie. A request is sent again if no answer
/// comes (rtpengine answers a repeated cookie from its cache).
struct NgClient {
    socket: UdpSocket,
    server: SocketAddr,
    next_cookie: u64,
}

impl NgClient {
    async fn new(server: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            socket: UdpSocket::bind("127.0.0.1:0").await?,
            server,
            next_cookie: 1,
        })
    }

    /// Sends `command` and returns the reply; a reply whose `result` is not
    /// `ok` (or `pong`) is an error with rtpengine's reason.
    async fn request(&mut self, command: &Bencode, attempts: u32) -> anyhow::Result<Bencode> {
        let cookie = format!("sy{}", self.next_cookie);
        self.next_cookie += 1;
        let mut message = format!("{cookie} ").into_bytes();
        command.encode(&mut message);
        let mut buf = vec![0u8; 65536];
        for _ in 0..attempts {
            self.socket.send_to(&message, self.server).await?;
            let deadline = Instant::now() + Duration::from_secs(1);
            while let Ok(got) = tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await
            {
                let reply = &buf[..got?];
                // Replies to earlier (timed-out) cookies are skipped.
                let Some(body) = reply.strip_prefix(format!("{cookie} ").as_bytes()) else {
                    continue;
                };
                let reply = Bencode::decode(body)?;
                return match reply.get("result").and_then(Bencode::as_str) {
                    Some("ok" | "pong") => Ok(reply),
                    other => anyhow::bail!(
                        "rtpengine: result {:?}: {}",
                        other.unwrap_or("none"),
                        reply
                            .get("error-reason")
                            .and_then(Bencode::as_str)
                            .unwrap_or("no reason given")
                    ),
                };
            }
        }
        anyhow::bail!("rtpengine did not answer on {}", self.server)
    }
}

// ---------------------------------------------------------------------------
// SDP

/// The generator's SDP for one leg: PCMU only, 20 ms, at `port` on loopback.
fn generator_sdp(session: usize, port: u16) -> String {
    format!(
        "v=0\r\no=bench {session} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {PCMU}\r\na=rtpmap:{PCMU} PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    )
}

/// Where a target asks for our RTP, from its SDP (rtpengine's rewritten
/// offer or answer, Switchyard's answer), through the engine's own SDP
/// parser and negotiation; it must have kept PCMU.
fn media_address(sdp_text: &str) -> anyhow::Result<SocketAddr> {
    let described = SessionDescription::parse(sdp_text)?;
    let agreed = sdp::negotiate(&described)?;
    if agreed.codec_pt != PCMU {
        anyhow::bail!("the SDP chose payload type {} over PCMU", agreed.codec_pt);
    }
    Ok(agreed.remote)
}

// ---------------------------------------------------------------------------
// The traffic generator

/// Packets sent to the target and received from it, all calls together.
#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    received: AtomicU64,
}

/// Binds an RTP socket on an even port and RTCP on the next one, from
/// `next` upwards (ports other processes hold are skipped).
fn bind_pair(next: &mut u16) -> anyhow::Result<(StdUdpSocket, StdUdpSocket)> {
    while *next < u16::MAX - 2 {
        let port = *next;
        *next += 2;
        let Ok(rtp) = StdUdpSocket::bind(("127.0.0.1", port)) else {
            continue;
        };
        let Ok(rtcp) = StdUdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        rtp.set_nonblocking(true)?;
        rtcp.set_nonblocking(true)?;
        return Ok((rtp, rtcp));
    }
    anyhow::bail!("no free port pair for the generator")
}

/// One stream the generator sends, and the target's stream back to the
/// same socket.
struct Leg {
    rtp: UdpSocket,
    rtcp: UdpSocket,
    /// Where this leg sends: the target's port for it.
    to: SocketAddr,
    sender: RtpSender,
    sent: u64,
    /// Datagrams the socket refused to send.
    not_sent: u64,
    back: ReceptionStats,
    /// From the target's last RTCP report on our stream: packets it lost.
    reported_lost: Option<i64>,
}

/// What one leg saw, once its stream stopped.
#[derive(Debug, Default, Clone, Copy)]
struct LegTotals {
    sent: u64,
    not_sent: u64,
    received: u64,
    expected: u64,
    lost: i64,
    reported_lost: Option<i64>,
}

impl Leg {
    fn new((rtp, rtcp): (StdUdpSocket, StdUdpSocket), to: SocketAddr) -> anyhow::Result<Self> {
        Ok(Self {
            rtp: UdpSocket::from_std(rtp)?,
            rtcp: UdpSocket::from_std(rtcp)?,
            to,
            sender: RtpSender::new(rand::random(), rand::random(), rand::random()),
            sent: 0,
            not_sent: 0,
            back: ReceptionStats::new(),
            reported_lost: None,
        })
    }

    /// Reads what has arrived on the RTP socket; returns the RTP packets.
    fn drain_rtp(&mut self, buf: &mut [u8], arrival_units: i64) -> u64 {
        let mut packets = 0;
        while let Ok((n, _)) = self.rtp.try_recv_from(buf) {
            match rtp::parse(&buf[..n]) {
                Ok(p) => {
                    self.back
                        .record(p.ssrc, p.sequence, p.timestamp, arrival_units);
                    packets += 1;
                }
                Err(RtpError::Rtcp) => self.take_rtcp(&buf[..n]),
                Err(RtpError::Malformed(_)) => {}
            }
        }
        packets
    }

    fn drain_rtcp(&mut self, buf: &mut [u8]) {
        while let Ok((n, _)) = self.rtcp.try_recv_from(buf) {
            let datagram = buf[..n].to_vec();
            self.take_rtcp(&datagram);
        }
    }

    /// Keeps what the target's report says it lost of our stream.
    fn take_rtcp(&mut self, datagram: &[u8]) {
        let ours = self.sender.ssrc();
        for packet in rtcp::parse(datagram).unwrap_or_default() {
            let blocks = match packet {
                RtcpPacket::SenderReport { reports, .. }
                | RtcpPacket::ReceiverReport { reports, .. } => reports,
                RtcpPacket::Bye { .. } => continue,
            };
            for b in blocks.iter().filter(|b| b.ssrc == ours) {
                self.reported_lost = Some(b.cumulative_lost as i64);
            }
        }
    }

    fn totals(&self) -> LegTotals {
        LegTotals {
            sent: self.sent,
            not_sent: self.not_sent,
            received: self.back.received(),
            expected: self.back.expected(),
            lost: self.back.lost(),
            reported_lost: self.reported_lost,
        }
    }
}

/// One call's legs, streaming on a 20 ms clock whose phase is the call's own.
struct Streamer {
    tone: Arc<[u8]>,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    /// The generator's epoch: arrival times are measured from it.
    epoch: Instant,
}

impl Streamer {
    /// Sends a packet on every leg each tick, then reads what came back
    /// since the last one (the socket holds it meanwhile: one wake-up per
    /// call per tick, not one per packet, keeps the generator light).
    async fn run(mut self, mut legs: Vec<Leg>, first_tick: Instant) -> Vec<LegTotals> {
        let mut ticker = tokio::time::interval_at(first_tick, FRAME);
        // A late generator catches up: the targets see real time on average.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
        let mut buf = vec![0u8; 2048];
        let mut ticks: u64 = 0;
        let frames_in_tone = (self.tone.len() / FRAME_SAMPLES) as u64;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let at = (ticks % frames_in_tone) as usize * FRAME_SAMPLES;
                    let payload = &self.tone[at..at + FRAME_SAMPLES];
                    for leg in legs.iter_mut() {
                        let packet = leg.sender.audio(PCMU, ticks == 0, payload, FRAME_SAMPLES as u32);
                        // Awaited, not tried: a socket whose writability the
                        // reactor has not yet seen (just made, on a busy
                        // machine) would refuse a try at once.
                        if leg.rtp.send_to(&packet, leg.to).await.is_ok() {
                            leg.sent += 1;
                            self.counters.sent.fetch_add(1, Ordering::Relaxed);
                        } else {
                            leg.not_sent += 1;
                        }
                    }
                    let arrival = self.arrival_units();
                    for leg in legs.iter_mut() {
                        let got = leg.drain_rtp(&mut buf, arrival);
                        self.counters.received.fetch_add(got, Ordering::Relaxed);
                        if ticks.is_multiple_of(50) {
                            leg.drain_rtcp(&mut buf);
                        }
                    }
                    ticks += 1;
                }
                _ = self.stop.changed() => break,
            }
        }
        // The last packets are still on their way back.
        tokio::time::sleep(FRAME * 3).await;
        let arrival = self.arrival_units();
        legs.iter_mut()
            .map(|leg| {
                leg.drain_rtp(&mut buf, arrival);
                leg.drain_rtcp(&mut buf);
                leg.totals()
            })
            .collect()
    }

    /// Now on an 8 kHz clock (RTP timestamp units).
    fn arrival_units(&self) -> i64 {
        (self.epoch.elapsed().as_micros() as i64) * 8 / 1000
    }
}

/// All calls' streams.
struct Generator {
    tone: Arc<[u8]>,
    counters: Arc<Counters>,
    stop_tx: watch::Sender<bool>,
    epoch: Instant,
    calls: usize,
    tasks: Vec<JoinHandle<Vec<LegTotals>>>,
    next_port: u16,
}

impl Generator {
    fn new(calls: usize, first_port: u16) -> Self {
        // One second of a 440 Hz tone, μ-law, looped by every leg.
        let tone: Vec<u8> = (0..8000)
            .map(|i| {
                let s = (f64::sin(i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0) * 8000.0)
                    as i16;
                switchyard_media::g711::ulaw_encode(s)
            })
            .collect();
        Self {
            tone: tone.into(),
            counters: Arc::new(Counters::default()),
            stop_tx: watch::channel(false).0,
            epoch: Instant::now(),
            calls,
            tasks: Vec::new(),
            next_port: first_port,
        }
    }

    fn bind_pair(&mut self) -> anyhow::Result<(StdUdpSocket, StdUdpSocket)> {
        bind_pair(&mut self.next_port)
    }

    /// Starts call `index`'s legs. Calls tick at evenly spread phases of
    /// the 20 ms frame, as independent endpoints would, not all at once.
    fn start(&mut self, index: usize, legs: Vec<Leg>) {
        let phase = FRAME * index as u32 / self.calls.max(1) as u32;
        let since = Instant::now().saturating_duration_since(self.epoch + phase);
        let frames = since.as_micros().div_ceil(FRAME.as_micros()) as u32;
        let first_tick = self.epoch + phase + FRAME * frames;
        let streamer = Streamer {
            tone: self.tone.clone(),
            counters: self.counters.clone(),
            stop: self.stop_tx.subscribe(),
            epoch: self.epoch,
        };
        self.tasks
            .push(tokio::spawn(streamer.run(legs, first_tick)));
    }

    /// Stops every stream and returns every leg's totals.
    async fn stop(self) -> anyhow::Result<Vec<LegTotals>> {
        let _ = self.stop_tx.send(true);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await?);
        }
        Ok(all)
    }
}

// ---------------------------------------------------------------------------
// Measuring

/// Busy jiffies of the whole machine, all cores (first line of /proc/stat).
fn machine_busy_jiffies() -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().unwrap_or_default();
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    // user nice system idle iowait irq softirq steal (guest time is in user).
    Ok(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// A target's CPU time and the packets to and from it, at one moment.
#[derive(Debug, Clone, Copy)]
struct Reading {
    cpu: f64,
    to_target: u64,
    from_target: u64,
}

fn read(pid: u32, counters: &Counters) -> anyhow::Result<Reading> {
    Ok(Reading {
        cpu: cpu_seconds(&pid.to_string())?,
        to_target: counters.sent.load(Ordering::Relaxed),
        from_target: counters.received.load(Ordering::Relaxed),
    })
}

/// One target over the window with all calls up.
#[derive(Debug, Clone, Copy)]
struct Window {
    seconds: f64,
    target_cpu: f64,
    /// Packets the generator sent to the target, and got from it.
    to_target: u64,
    from_target: u64,
}

impl Window {
    fn between(a: Reading, b: Reading, seconds: f64) -> Self {
        Self {
            seconds,
            target_cpu: b.cpu - a.cpu,
            to_target: b.to_target - a.to_target,
            from_target: b.from_target - a.from_target,
        }
    }

    fn packets(&self) -> u64 {
        self.to_target + self.from_target
    }

    fn cpu_per_million(&self) -> f64 {
        self.target_cpu * 1e6 / self.packets().max(1) as f64
    }
}

/// The whole machine over the window: CPU seconds of every process, and
/// of this one (the generator and the UAC).
#[derive(Debug, Clone, Copy)]
struct MachineWindow {
    seconds: f64,
    all_cpu: f64,
    generator_cpu: f64,
}

/// Both targets over the same window.
async fn measure(
    rtpengine: (u32, &Counters),
    switchyard: (u32, &Counters),
    window: Duration,
) -> anyhow::Result<(Window, Window, MachineWindow)> {
    let busy0 = machine_busy_jiffies()?;
    let generator0 = cpu_seconds("self")?;
    let r0 = read(rtpengine.0, rtpengine.1)?;
    let s0 = read(switchyard.0, switchyard.1)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let r1 = read(rtpengine.0, rtpengine.1)?;
    let s1 = read(switchyard.0, switchyard.1)?;
    let generator1 = cpu_seconds("self")?;
    let busy1 = machine_busy_jiffies()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok((
        Window::between(r0, r1, seconds),
        Window::between(s0, s1, seconds),
        MachineWindow {
            seconds,
            // USER_HZ is 100 on Linux.
            all_cpu: (busy1 - busy0) as f64 / 100.0,
            generator_cpu: generator1 - generator0,
        },
    ))
}

/// What one target did: its window and the whole run's loss.
struct TargetResult {
    name: String,
    calls: usize,
    legs_per_call: usize,
    window: Window,
    legs: Vec<LegTotals>,
}

impl TargetResult {
    /// Packets lost either way, of those expected: gaps in what came back,
    /// plus what the target reported losing of ours (Switchyard's RTCP).
    fn loss(&self) -> (i64, u64) {
        let lost = self
            .legs
            .iter()
            .map(|l| l.lost.max(0) + l.reported_lost.unwrap_or(0).max(0))
            .sum();
        let expected = self
            .legs
            .iter()
            .map(|l| l.expected + if l.reported_lost.is_some() { l.sent } else { 0 })
            .sum();
        (lost, expected)
    }

    fn loss_percent(&self) -> f64 {
        let (lost, expected) = self.loss();
        100.0 * lost as f64 / expected.max(1) as f64
    }
}

// ---------------------------------------------------------------------------
// rtpengine

fn rtpengine_version(binary: &str) -> String {
    Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.trim().trim_start_matches("Version:").trim().to_owned()
        })
        .unwrap_or_default()
}

/// rtpengine with its calls up and streaming.
struct RtpengineRun {
    process: Peer,
    log: std::path::PathBuf,
    ng: NgClient,
    generator: Generator,
    calls: usize,
    name: String,
}

impl RtpengineRun {
    async fn start(args: &SipBenchArgs, dir: &Path) -> anyhow::Result<Self> {
        let calls = args.rtpengine_calls.unwrap_or(args.calls) as usize;
        let ng_port = free_udp_port()?;
        let log = dir.join("rtpengine.log");
        let child = Command::new(&args.rtpengine)
            .args([
                // Nothing from /etc/rtpengine: this command line is all of it.
                "--config-file=none",
                "--interface=127.0.0.1",
                &format!("--listen-ng=127.0.0.1:{ng_port}"),
                "--foreground",
                "--log-stderr",
                // Warnings and worse, as the Switchyard side runs at `error`.
                "--log-level=4",
                // Userspace forwarding only (no kernel module).
                "--table=-1",
                &format!("--port-min={}", RTPENGINE_PORTS.0),
                &format!("--port-max={}", RTPENGINE_PORTS.1),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: {e} (scripts/install-test-deps.sh installs rtpengine-daemon)",
                    args.rtpengine
                )
            })?;
        let mut rtpengine = Peer(child);
        let said = || std::fs::read_to_string(&log).unwrap_or_default();

        let mut ng = NgClient::new(SocketAddr::from(([127, 0, 0, 1], ng_port))).await?;
        let ping = Bencode::dict(&[("command", Bencode::text("ping"))]);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = rtpengine.0.try_wait()? {
                anyhow::bail!("rtpengine exited ({status}): {}", said().trim());
            }
            if ng.request(&ping, 1).await.is_ok() {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("rtpengine never answered ping: {}", said().trim());
            }
        }

        let mut generator = Generator::new(calls, RTPENGINE_GENERATOR_PORTS);
        for i in 0..calls {
            let a = generator.bind_pair()?;
            let b = generator.bind_pair()?;
            let call_id = format!("bench-{i}");
            let (from_tag, to_tag) = (format!("a{i}"), format!("b{i}"));
            let a_port = a.0.local_addr()?.port();
            let b_port = b.0.local_addr()?.port();
            // The offer carries A's address; rtpengine rewrites it to the port
            // that B must send to. The answer carries B's; rewritten, A's.
            let offer = Bencode::dict(&[
                ("command", Bencode::text("offer")),
                ("call-id", Bencode::text(&call_id)),
                ("from-tag", Bencode::text(&from_tag)),
                ("sdp", Bencode::text(&generator_sdp(2 * i, a_port))),
            ]);
            let to_engine_for_b = ng_sdp_address(&ng.request(&offer, 3).await?)?;
            let answer = Bencode::dict(&[
                ("command", Bencode::text("answer")),
                ("call-id", Bencode::text(&call_id)),
                ("from-tag", Bencode::text(&from_tag)),
                ("to-tag", Bencode::text(&to_tag)),
                ("sdp", Bencode::text(&generator_sdp(2 * i + 1, b_port))),
            ]);
            let to_engine_for_a = ng_sdp_address(&ng.request(&answer, 3).await?)?;
            generator.start(
                i,
                vec![Leg::new(a, to_engine_for_a)?, Leg::new(b, to_engine_for_b)?],
            );
        }
        Ok(Self {
            process: rtpengine,
            log,
            ng,
            generator,
            calls,
            name: format!(
                "rtpengine {} (userspace relay)",
                rtpengine_version(&args.rtpengine)
            ),
        })
    }

    fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// Stops the streams, deletes the calls and stops rtpengine.
    async fn finish(self, window: Window) -> anyhow::Result<TargetResult> {
        let Self {
            mut process,
            log,
            mut ng,
            generator,
            calls,
            name,
        } = self;
        let legs = generator.stop().await?;
        for i in 0..calls {
            let delete = Bencode::dict(&[
                ("command", Bencode::text("delete")),
                ("call-id", Bencode::text(&format!("bench-{i}"))),
                ("from-tag", Bencode::text(&format!("a{i}"))),
            ]);
            if let Err(e) = ng.request(&delete, 3).await {
                tracing::warn!(error = %e, call = i, "rtpengine delete failed");
            }
        }
        if let Some(status) = process.0.try_wait()? {
            anyhow::bail!(
                "rtpengine exited during the run ({status}): {}",
                std::fs::read_to_string(&log).unwrap_or_default().trim()
            );
        }
        drop(process);
        Ok(TargetResult {
            name,
            calls,
            legs_per_call: 2,
            window,
            legs,
        })
    }
}

/// The RTP address in an ng reply's `sdp`.
fn ng_sdp_address(reply: &Bencode) -> anyhow::Result<SocketAddr> {
    let sdp = reply
        .get("sdp")
        .and_then(Bencode::as_str)
        .ok_or_else(|| anyhow::anyhow!("rtpengine's reply has no sdp"))?;
    media_address(sdp)
}

// ---------------------------------------------------------------------------
// A small SIP UAC (UDP) for the Switchyard side: INVITE with the
// generator's SDP, ACK, later BYE. Messages are written by hand; responses
// are read with rsipstack's parser.

#[derive(Default)]
struct UacState {
    /// Responses for each call's open transaction, by Call-ID.
    waiting: HashMap<String, mpsc::UnboundedSender<Response>>,
    /// The ACK sent for each answered call, sent again if the 200 repeats.
    acks: HashMap<String, Vec<u8>>,
    /// Requests Switchyard sent us (a BYE would end a call early).
    requests: u64,
}

struct SipUac {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    server: SocketAddr,
    state: Arc<Mutex<UacState>>,
    reader: JoinHandle<()>,
    /// Makes this run's Call-IDs unique.
    run: String,
}

/// One answered call.
struct SipCall {
    call_id: String,
    from_tag: String,
    /// The To header of the 200, with Switchyard's tag.
    to: String,
    /// Where in-dialog requests go (the 200's Contact).
    target: String,
    /// Where Switchyard wants our RTP.
    media: SocketAddr,
    responses: mpsc::UnboundedReceiver<Response>,
}

impl SipUac {
    async fn new(server: SocketAddr) -> anyhow::Result<Self> {
        let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
        let local = socket.local_addr()?;
        let state = Arc::new(Mutex::new(UacState::default()));
        let reader = tokio::spawn(Self::read(socket.clone(), state.clone()));
        Ok(Self {
            socket,
            local,
            server,
            state,
            reader,
            run: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    async fn read(socket: Arc<UdpSocket>, state: Arc<Mutex<UacState>>) {
        let mut buf = vec![0u8; 65536];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            match rsipstack::sip::parser::parse_message(&buf[..n]) {
                Ok(SipMessage::Response(r)) => {
                    let Ok(call_id) = r.call_id_header().map(|h| h.value().to_owned()) else {
                        continue;
                    };
                    let is_invite = r.cseq_header().is_ok_and(|c| c.value().ends_with("INVITE"));
                    let (ack, waiting) = {
                        let s = state.lock().unwrap_or_else(|p| p.into_inner());
                        let ack = if is_invite && r.status_code.code() / 100 == 2 {
                            s.acks.get(&call_id).cloned()
                        } else {
                            None
                        };
                        (ack, s.waiting.get(&call_id).cloned())
                    };
                    if let Some(ack) = ack {
                        // Our ACK was lost: the 200 is repeated until one arrives.
                        let _ = socket.send_to(&ack, from).await;
                    } else if let Some(tx) = waiting {
                        let _ = tx.send(r);
                    }
                }
                Ok(SipMessage::Request(req)) => {
                    state.lock().unwrap_or_else(|p| p.into_inner()).requests += 1;
                    let header = |h: Result<String, _>| h.unwrap_or_default();
                    let ok = format!(
                        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
                        header(req.via_header().map(|h| h.value().to_owned())),
                        header(req.from_header().map(|h| h.value().to_owned())),
                        header(req.to_header().map(|h| h.value().to_owned())),
                        header(req.call_id_header().map(|h| h.value().to_owned())),
                        header(req.cseq_header().map(|h| h.value().to_owned())),
                    );
                    let _ = socket.send_to(ok.as_bytes(), from).await;
                }
                Err(_) => {}
            }
        }
    }

    /// Sends `request` (again on RFC 3261's timer A until a response comes)
    /// and returns the final response to it.
    async fn transact(
        &self,
        request: &[u8],
        method: &str,
        responses: &mut mpsc::UnboundedReceiver<Response>,
    ) -> anyhow::Result<Response> {
        let deadline = Instant::now() + Duration::from_secs(32);
        let mut resend = Duration::from_millis(500);
        let mut provisional = false;
        self.socket.send_to(request, self.server).await?;
        loop {
            match tokio::time::timeout(resend, responses.recv()).await {
                Ok(Some(r)) => {
                    if !r.cseq_header().is_ok_and(|c| c.value().ends_with(method)) {
                        continue;
                    }
                    if r.status_code.code() < 200 {
                        provisional = true;
                        continue;
                    }
                    return Ok(r);
                }
                Ok(None) => anyhow::bail!("the SIP reader stopped"),
                Err(_) => {
                    if Instant::now() > deadline {
                        anyhow::bail!("{method}: no final response from {}", self.server);
                    }
                    if !provisional {
                        self.socket.send_to(request, self.server).await?;
                        resend = (resend * 2).min(Duration::from_secs(4));
                    }
                }
            }
        }
    }

    fn headers(&self, call_id: &str, from_tag: &str, branch: &str) -> String {
        format!(
            "Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:+14155550100@{ip}>;tag={from_tag}\r\n\
             Call-ID: {call_id}\r\n",
            local = self.local,
            ip = self.local.ip(),
        )
    }

    async fn call(&self, index: usize, offer: &str) -> anyhow::Result<SipCall> {
        let call_id = format!("{}-{index}@bench", self.run);
        let from_tag = format!("f{index}");
        let (tx, mut responses) = mpsc::unbounded_channel();
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiting
            .insert(call_id.clone(), tx);
        let uri = format!("sip:{NUMBER}@{}", self.server);
        let invite = format!(
            "INVITE {uri} SIP/2.0\r\n{}To: <{uri}>\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:bench@{}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{offer}",
            self.headers(&call_id, &from_tag, &format!("{call_id}-1")),
            self.local,
            offer.len()
        );
        let answer = self
            .transact(invite.as_bytes(), "INVITE", &mut responses)
            .await?;
        let code = answer.status_code.code();
        if code / 100 != 2 {
            anyhow::bail!("call {index}: INVITE answered {code}");
        }
        let to = answer.to_header()?.value().to_owned();
        let target = answer
            .contact_header()
            .ok()
            .and_then(|c| c.typed().ok())
            .map(|c| c.uri.to_string())
            .unwrap_or(uri);
        let media = media_address(std::str::from_utf8(&answer.body)?)?;
        let ack = format!(
            "ACK {target} SIP/2.0\r\n{}To: {to}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            self.headers(&call_id, &from_tag, &format!("{call_id}-ack")),
        )
        .into_bytes();
        self.socket.send_to(&ack, self.server).await?;
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .acks
            .insert(call_id.clone(), ack);
        Ok(SipCall {
            call_id,
            from_tag,
            to,
            target,
            media,
            responses,
        })
    }

    async fn hang_up(&self, mut call: SipCall) -> anyhow::Result<()> {
        let bye = format!(
            "BYE {} SIP/2.0\r\n{}To: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            call.target,
            self.headers(
                &call.call_id,
                &call.from_tag,
                &format!("{}-bye", call.call_id)
            ),
            call.to
        );
        let response = self
            .transact(bye.as_bytes(), "BYE", &mut call.responses)
            .await?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.waiting.remove(&call.call_id);
        state.acks.remove(&call.call_id);
        match response.status_code.code() {
            200..=299 => Ok(()),
            code => anyhow::bail!("BYE answered {code}"),
        }
    }

    fn requests_received(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .requests
    }
}

impl Drop for SipUac {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

// ---------------------------------------------------------------------------
// Switchyard

/// A TOML string (basic string escapes).
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `switchyard serve` with its calls up and streaming.
struct SwitchyardRun {
    server: Peer,
    uac: SipUac,
    dialogs: Vec<SipCall>,
    generator: Generator,
    data: std::path::PathBuf,
    calls: usize,
}

impl SwitchyardRun {
    async fn start(args: &SipBenchArgs, dir: &Path) -> anyhow::Result<Self> {
        let calls = args.calls as usize;
        let sip_port = free_udp_port()?;
        let data = dir.join("switchyard");
        std::fs::create_dir_all(&data)?;
        let config_file = dir.join("switchyard.toml");
        let db = format!("sqlite://{}", data.join("switchyard.db").display());
        std::fs::write(
            &config_file,
            format!(
                "database_url = {}\nhttp_addr = \"127.0.0.1:0\"\ndata_dir = {}\n\
             sip_addr = \"127.0.0.1:{sip_port}\"\n\
             rtp_port_min = {}\nrtp_port_max = {}\n\
             max_live_calls = {}\nscheduler_interval_ms = 3600000\n\
             # The live recording is measured; encoding it afterwards is\n\
             # `bench recordings`' figure, and would remove the WAVs counted here.\n\
             recording_workers = 0\n\n\
             [[sip_trunks]]\nname = \"bench\"\nhost = \"127.0.0.1\"\nnumbers = [\"{NUMBER}\"]\n",
                toml_string(&db),
                toml_string(&data.display().to_string()),
                SWITCHYARD_PORTS.0,
                SWITCHYARD_PORTS.1,
                calls + 100,
            ),
        )?;
        let mut command = Command::new(std::env::current_exe()?);
        command.arg("--config").arg(&config_file).arg("serve");
        // The file is the whole configuration: none of our SWITCHYARD_* settings.
        for (key, _) in std::env::vars_os() {
            if key
                .to_str()
                .is_some_and(|k| k.starts_with("SWITCHYARD_") && k != "SWITCHYARD_LOG")
            {
                command.env_remove(&key);
            }
        }
        if std::env::var_os("SWITCHYARD_LOG").is_none() {
            command.env("SWITCHYARD_LOG", "error");
        }
        let log = dir.join("switchyard.log");
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout from switchyard serve"))?;
        let server = Peer(child);
        let said = || std::fs::read_to_string(&log).unwrap_or_default();
        // Ready once it says where it listens; what it prints after is read and dropped.
        let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if line.starts_with("Switchyard listening") {
                    let _ = ready_tx.send(());
                }
            }
        });
        if tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .ok()
            .flatten()
            .is_none()
        {
            anyhow::bail!("switchyard serve did not start: {}", said().trim());
        }

        let uac = SipUac::new(SocketAddr::from(([127, 0, 0, 1], sip_port))).await?;
        let mut generator = Generator::new(calls, SWITCHYARD_GENERATOR_PORTS);
        let mut dialogs = Vec::with_capacity(calls);
        for i in 0..calls {
            let pair = generator.bind_pair()?;
            let port = pair.0.local_addr()?.port();
            let call = uac
                .call(i, &generator_sdp(i, port))
                .await
                .map_err(|e| anyhow::anyhow!("{e}: {}", said().trim()))?;
            generator.start(i, vec![Leg::new(pair, call.media)?]);
            dialogs.push(call);
        }
        Ok(Self {
            server,
            uac,
            dialogs,
            generator,
            data,
            calls,
        })
    }

    fn pid(&self) -> u32 {
        self.server.0.id()
    }

    /// Stops the streams, hangs up, stops the server cleanly and counts the
    /// recordings it closed.
    async fn finish(self, window: Window) -> anyhow::Result<TargetResult> {
        let Self {
            server,
            uac,
            dialogs,
            generator,
            data,
            calls,
        } = self;
        let pid = server.0.id();
        let legs = generator.stop().await?;
        let ended_early = uac.requests_received();
        let mut bye_failures = 0;
        for call in dialogs {
            if let Err(e) = uac.hang_up(call).await {
                tracing::warn!(error = %e, "BYE failed");
                bye_failures += 1;
            }
        }
        // A clean stop closes every recording; then they are counted.
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let mut server = server;
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.0.try_wait()?.is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (recordings, bytes) = std::fs::read_dir(data.join("recordings"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
                    .fold((0usize, 0u64), |(n, b), e| {
                        (n + 1, b + e.metadata().map(|m| m.len()).unwrap_or(0))
                    })
            })
            .unwrap_or((0, 0));
        drop(server);
        if ended_early > 0 {
            anyhow::bail!("Switchyard sent {ended_early} requests (calls ended early?)");
        }
        if bye_failures > 0 {
            anyhow::bail!("{bye_failures} BYEs failed");
        }
        if recordings < calls {
            anyhow::bail!("{recordings} recordings for {calls} calls");
        }
        Ok(TargetResult {
            name: format!(
                "Switchyard (relay + record; {recordings} WAVs, {:.0} MB)",
                bytes as f64 / 1e6
            ),
            calls,
            legs_per_call: 1,
            window,
            legs,
        })
    }
}

// ---------------------------------------------------------------------------

pub async fn media(args: &SipBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let rtpengine = RtpengineRun::start(args, dir).await?;
    let switchyard = SwitchyardRun::start(args, dir).await?;
    tokio::time::sleep(SETTLE).await;
    let (rtpengine_window, switchyard_window, machine) = measure(
        (rtpengine.pid(), &rtpengine.generator.counters),
        (switchyard.pid(), &switchyard.generator.counters),
        Duration::from_secs(args.window),
    )
    .await?;
    let rtpengine = rtpengine.finish(rtpengine_window).await?;
    let switchyard = switchyard.finish(switchyard_window).await?;
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;

    println!(
        "RTP media cost per packet: G.711 μ-law, 20 ms packets, each stream both ways; both targets at once, {:.0} s window with all calls up",
        machine.seconds
    );
    println!(
        "| target | calls | streams each way | packets to / from target | packets/s | lost (whole run) | CPU s | CPU of one core | CPU s per million packets |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for t in [&rtpengine, &switchyard] {
        let w = &t.window;
        let (lost, _) = t.loss();
        println!(
            "| {} | {} | {} | {} / {} | {:.0} | {lost} ({:.3}%) | {:.2} | {:.0}% | {:.2} |",
            t.name,
            t.calls,
            t.calls * t.legs_per_call,
            w.to_target,
            w.from_target,
            w.packets() as f64 / w.seconds,
            t.loss_percent(),
            w.target_cpu,
            100.0 * w.target_cpu / w.seconds,
            w.cpu_per_million(),
        );
    }
    let ratio = switchyard.window.cpu_per_million() / rtpengine.window.cpu_per_million().max(1e-9);
    println!(
        "Switchyard ÷ rtpengine, CPU per packet: {ratio:.2}× (goal ≤ 1.0×: {})",
        if ratio <= 1.0 { "met" } else { "not met" }
    );
    let share = |cpu: f64| 100.0 * cpu / machine.seconds / cores;
    println!(
        "Machine during the window: {:.0}% of {cores} cores busy (rtpengine {:.0}%, Switchyard {:.0}%, generator {:.0}%, everything else {:.0}%)",
        share(machine.all_cpu),
        share(rtpengine.window.target_cpu),
        share(switchyard.window.target_cpu),
        share(machine.generator_cpu),
        share(
            (machine.all_cpu
                - rtpengine.window.target_cpu
                - switchyard.window.target_cpu
                - machine.generator_cpu)
                .max(0.0)
        ),
    );
    let mut failed = Vec::new();
    for t in [&rtpengine, &switchyard] {
        let not_sent: u64 = t.legs.iter().map(|l| l.not_sent).sum();
        let silent = t.legs.iter().filter(|l| l.received == 0).count();
        if t.loss_percent() > MAX_LOSS_PERCENT {
            failed.push(format!(
                "{}: {:.3}% lost (more than {MAX_LOSS_PERCENT}%)",
                t.name,
                t.loss_percent()
            ));
        }
        if silent > 0 {
            failed.push(format!("{}: {silent} streams never came back", t.name));
        }
        if not_sent > 0 {
            failed.push(format!(
                "{}: the generator could not send {not_sent} packets",
                t.name
            ));
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("; "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rtpengine 10.5's reply to an `offer`, as it came on the wire here.
    const OFFER_REPLY: &[u8] = b"d3:sdp148:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\na=rtcp:30001\r\na=ptime:20\r\n6:result2:oke";

    #[test]
    fn bencode_round_trips_and_reads_unsorted_dictionaries() {
        let command = Bencode::dict(&[
            ("command", Bencode::text("offer")),
            ("call-id", Bencode::text("c1")),
            ("flags", Bencode::List(vec![Bencode::text("trust-address")])),
            ("n", Bencode::Int(-42)),
        ]);
        let mut wire = Vec::new();
        command.encode(&mut wire);
        assert_eq!(
            wire,
            b"d7:command5:offer7:call-id2:c15:flagsl13:trust-addresse1:ni-42ee"
        );
        assert_eq!(Bencode::decode(&wire).unwrap(), command);

        let reply = Bencode::decode(OFFER_REPLY).unwrap();
        assert_eq!(reply.get("result").and_then(Bencode::as_str), Some("ok"));
        assert_eq!(
            ng_sdp_address(&reply).unwrap(),
            "127.0.0.1:30000".parse().unwrap()
        );
        assert_eq!(
            Bencode::decode(b"d4:spamd3:bari0eee").unwrap().get("spam"),
            Some(&Bencode::dict(&[("bar", Bencode::Int(0))]))
        );
    }

    #[test]
    fn bencode_refuses_broken_input_without_panicking() {
        for bad in [
            &b""[..],
            b"i12",
            b"ie",
            b"i1x2e",
            b"5:abc",
            b"99999999999999999999:x",
            b"18446744073709551615:x",
            b"l",
            b"d3:fooe",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
            b"4:spam trailing",
        ] {
            assert!(
                Bencode::decode(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = [vec![b'l'; 100], vec![b'e'; 100]].concat();
        assert!(Bencode::decode(&deep).is_err());
        let fine = [vec![b'l'; 10], vec![b'e'; 10]].concat();
        assert!(Bencode::decode(&fine).is_ok());
    }

    #[test]
    fn media_address_is_read_from_the_targets_sdp() {
        // Switchyard's answer: PCMU at its RTP port.
        let answer = "v=0\r\no=switchyard 42 1 IN IP4 127.0.0.1\r\ns=switchyard\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                      m=audio 20002 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n";
        assert_eq!(
            media_address(answer).unwrap(),
            "127.0.0.1:20002".parse().unwrap()
        );
        // Our own offer reads back as itself.
        assert_eq!(
            media_address(&generator_sdp(3, 40010)).unwrap(),
            "127.0.0.1:40010".parse().unwrap()
        );
        // A target that kept only PCMA, or sent no media, is refused.
        let alaw = answer
            .replace("RTP/AVP 0", "RTP/AVP 8")
            .replace("0 PCMU", "8 PCMA");
        assert!(media_address(&alaw).is_err());
        assert!(media_address("v=0\r\ns=-\r\n").is_err());
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string("/srv/a b"), "\"/srv/a b\"");
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }

    #[test]
    fn rtcp_reports_on_our_stream_are_kept() {
        let socket_pair = || {
            let mut next = SWITCHYARD_GENERATOR_PORTS + 4000;
            bind_pair(&mut next).unwrap()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut leg = Leg::new(socket_pair(), "127.0.0.1:9".parse().unwrap()).unwrap();
            let ours = leg.sender.ssrc();
            let block = |ssrc, lost| rtcp::ReportBlock {
                ssrc,
                fraction_lost: 0,
                cumulative_lost: lost,
                extended_highest_seq: 0,
                jitter: 0,
                last_sr: 0,
                delay_since_last_sr: 0,
            };
            leg.take_rtcp(&rtcp::sender_report(
                5,
                0,
                0,
                0,
                0,
                &[block(ours.wrapping_add(1), 9)],
            ));
            assert_eq!(leg.reported_lost, None);
            leg.take_rtcp(&rtcp::receiver_report(5, &[block(ours, 3)]));
            assert_eq!(leg.reported_lost, Some(3));
            leg.take_rtcp(b"garbage");
            assert_eq!(leg.reported_lost, Some(3));
        });
    }
}
