//! `switchyard bench sip`: the SIP engine under load from SIPp, on loopback.
//!
//! - `setup`: SIPp calls a number of the server at a fixed rate (INVITE →
//!   200 → ACK → BYE, our media set up and recorded for each) for a while;
//!   reports the calls that failed and the server's CPU time per call, next
//!   to a SIPp UAS answering the same load in the same run (the floor: a
//!   SIP endpoint that does nothing else).
//! - `concurrent`: SIPp places N calls that each stream μ-law both ways and
//!   stay up; once all are up, the server's CPU use over a window, then the
//!   media totals of all calls: late 20 ms ticks, lost and concealed frames.
//! - `media`: CPU time per RTP packet against rtpengine, both as child
//!   processes under the same generated traffic ([`crate::bench_media`]).
//! - `abuse`: RSS and the SIP stack's state under malformed SIP and TCP
//!   connection churn ([`crate::bench_abuse`]).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchyard_service::Principal;
use switchyard_service::trunks::{CreatePhoneNumberRequest, CreateSipTrunkRequest};
use switchyard_telephony::engine::MediaTotalsSnapshot;

use crate::app::RunningServer;
use crate::config::Config;

pub(crate) const NUMBER: &str = "+15550009999";

#[derive(Debug, Clone, clap::Args)]
pub struct SipBenchArgs {
    /// `setup` (call setup rate), `concurrent` (calls held with media) or
    /// `media` (CPU per RTP packet against rtpengine) or `abuse` (memory
    /// under malformed SIP and TCP connection churn).
    #[arg(value_parser = ["setup", "concurrent", "media", "abuse"])]
    pub mode: String,
    /// setup: new calls per second.
    #[arg(long, default_value_t = 100)]
    pub rate: u32,
    /// setup: seconds to sustain the rate.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// concurrent, media: calls held at once.
    #[arg(long, default_value_t = 200)]
    pub calls: u32,
    /// concurrent, media: seconds of the measuring window once all calls are up.
    #[arg(long, default_value_t = 20)]
    pub window: u64,
    /// Do not record the calls (to measure what recording costs).
    #[arg(long)]
    pub no_record: bool,
    /// media: calls through rtpengine (default: --calls). Each has two legs,
    /// so half of --calls gives rtpengine Switchyard's packet rate.
    #[arg(long)]
    pub rtpengine_calls: Option<u32>,
    /// media: the rtpengine binary to measure against.
    #[arg(long, default_value = "rtpengine")]
    pub rtpengine: String,
    /// abuse: bad or unwanted datagrams sent over UDP.
    #[arg(long, default_value_t = 100_000)]
    pub malformed: u64,
    /// abuse: TCP connections opened, sent one message and closed.
    #[arg(long, default_value_t = 20_000)]
    pub tcp_cycles: u64,
    /// abuse: add well-formed requests nobody wants (INVITEs to unknown
    /// numbers, BYE and CANCEL outside any dialog) to the mix.
    #[arg(long)]
    pub scans: bool,
    /// abuse: at the end, TCP connections opened and left open.
    #[arg(long, default_value_t = 0)]
    pub hold_open: u64,
}

/// CPU time (user + system) of a process, from /proc.
pub(crate) fn cpu_seconds(pid: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    Ok(stat_cpu_seconds(&stat))
}

/// User + system CPU seconds in a `/proc/.../stat` line.
fn stat_cpu_seconds(stat: &str) -> f64 {
    // Fields after the command name (which may hold spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Clock ticks; USER_HZ is 100 on Linux.
    (field(11) + field(12)) / 100.0
}

/// CPU seconds of this process's threads, summed by thread name with a
/// trailing number dropped (`media-0`, `media-1` → `media`), so a window's
/// CPU can be told apart: media threads, the recording writer, the tokio
/// workers, SQLite's.
fn thread_cpu_seconds() -> std::collections::BTreeMap<String, f64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return by_name;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("stat")),
        ) else {
            // The thread ended in between.
            continue;
        };
        let name = comm
            .trim()
            .trim_end_matches(|c: char| c.is_ascii_digit())
            .trim_end_matches('-')
            .to_string();
        *by_name.entry(name).or_insert(0.0) += stat_cpu_seconds(&stat);
    }
    by_name
}

/// A child process killed when dropped.
pub(crate) struct Peer(pub(crate) Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The final successful and failed call counts from SIPp's `-trace_stat` CSV.
fn sipp_counts(csv: &Path) -> anyhow::Result<(u64, u64)> {
    let text = std::fs::read_to_string(csv)?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(';').collect();
    let last: Vec<&str> = lines
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .split(';')
        .collect();
    let column = |name: &str| -> u64 {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok((column("SuccessfulCall(C)"), column("FailedCall(C)")))
}

pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs SIPp as a UAC with `args` until it exits (or `limit` passes).
fn run_uac(
    target: &str,
    dir: &Path,
    name: &str,
    args: &[String],
    limit: Duration,
) -> anyhow::Result<(u64, u64)> {
    let csv = dir.join(format!("{name}.csv"));
    let log = dir.join(format!("{name}.log"));
    let mut child = Command::new("sipp")
        .arg(target)
        .args([
            "-i",
            "127.0.0.1",
            "-mi",
            "127.0.0.1",
            "-nostdin",
            "-trace_stat",
            "-fd",
            "1",
        ])
        .arg("-stf")
        .arg(&csv)
        .args(["-p", &free_udp_port()?.to_string()])
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("sipp: {e} (scripts/install-test-deps.sh installs it)"))?;
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    sipp_counts(&csv).map_err(|e| {
        let said = std::fs::read_to_string(&log).unwrap_or_default();
        anyhow::anyhow!("sipp left no statistics ({e}): {}", said.trim())
    })
}

pub(crate) async fn start_server(
    base: &Config,
    dir: &Path,
    max_calls: usize,
    record: bool,
) -> anyhow::Result<RunningServer> {
    let config = Config {
        record_inbound_calls: record,
        database_url: format!("sqlite://{}", dir.join("bench.db").display()),
        http_addr: "127.0.0.1:0".into(),
        data_dir: dir.to_path_buf(),
        sip_enabled: true,
        sip_addr: "127.0.0.1:0".into(),
        // Ours below 30000, SIPp's media from 40000: no port is fought over.
        rtp_port_min: 10000,
        rtp_port_max: 29999,
        max_live_calls: max_calls,
        scheduler_interval_ms: 3_600_000,
        jwt_secret: None,
        sip_trunks: Vec::new(),
        ..base.clone()
    };
    let server = RunningServer::start(&config).await?;
    let services = &server.services;
    let org = services
        .store
        .list_organizations()
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no organization"))?;
    let system = Principal::system(org.id);
    let trunk = services
        .create_sip_trunk(
            &system,
            CreateSipTrunkRequest {
                name: "bench".into(),
                host: "127.0.0.1".into(),
                port: Some(5060),
                transport: None,
                username: None,
                password: None,
                realm: None,
                from_domain: None,
                max_concurrent_calls: None,
                inbound_allow: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    services
        .create_phone_number(
            &system,
            CreatePhoneNumberRequest {
                number: NUMBER.into(),
                sip_trunk_id: trunk.id.to_string(),
                is_default_outbound: Some(true),
                inbound_agent: None,
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(server)
}

pub async fn run_sip(base: &Config, args: SipBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-bench-sip-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = match args.mode.as_str() {
        "setup" => setup(base, &args, &dir).await,
        "media" => crate::bench_media::media(&args, &dir).await,
        "abuse" => crate::bench_abuse::abuse(base, &args, &dir).await,
        _ => concurrent(base, &args, &dir).await,
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn setup(base: &Config, args: &SipBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let total = (args.rate as u64 * args.duration).to_string();
    let uac_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "-sn",
            "uac",
            "-d",
            "0",
            "-s",
            NUMBER,
            "-r",
            &args.rate.to_string(),
            "-m",
            &total,
            "-l",
            "5000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let limit = Duration::from_secs(args.duration * 3 + 60);

    // The floor: a SIPp UAS answering the same load.
    let uas_port = free_udp_port()?;
    let uas = Peer(
        Command::new("sipp")
            .args([
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                &uas_port.to_string(),
                "-nostdin",
            ])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(500));
    let uas_pid = uas.0.id().to_string();
    let before = cpu_seconds(&uas_pid)?;
    let started = Instant::now();
    let (peer_ok, peer_failed) = run_uac(
        &format!("127.0.0.1:{uas_port}"),
        dir,
        "peer",
        &uac_args(&[]),
        limit,
    )?;
    let peer_wall = started.elapsed().as_secs_f64();
    let peer_cpu = cpu_seconds(&uas_pid)? - before;
    drop(uas);

    let server = start_server(base, dir, 100_000, !args.no_record).await?;
    let engine = server
        .engine
        .clone()
        .ok_or_else(|| anyhow::anyhow!("engine off"))?;
    let before = cpu_seconds("self")?;
    let started = Instant::now();
    let uac_args = uac_args(&[]);
    let dir_buf = dir.to_path_buf();
    let target = engine.sip_addr().to_string();
    let (ok, failed) = tokio::task::spawn_blocking(move || {
        run_uac(&target, &dir_buf, "switchyard", &uac_args, limit)
    })
    .await??;
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds("self")? - before;
    // Calls finish (recordings closed, statuses stored) before the totals are read.
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.live_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let totals = engine.media_totals();
    server.stop().await;

    println!(
        "SIP call setup, {} calls/s offered for {} s (INVITE → 200 → ACK → BYE)",
        args.rate, args.duration
    );
    println!("| | calls ok | calls failed | achieved calls/s | CPU s | CPU ms per call |");
    println!("|---|---|---|---|---|---|");
    let row = |name: &str, ok: u64, failed: u64, wall: f64, cpu: f64| {
        println!(
            "| {name} | {ok} | {failed} | {:.0} | {cpu:.2} | {:.3} |",
            ok as f64 / wall.max(0.001),
            cpu * 1000.0 / (ok.max(1) as f64)
        )
    };
    row(
        "SIPp UAS (floor)",
        peer_ok,
        peer_failed,
        peer_wall,
        peer_cpu,
    );
    row(
        "Switchyard (answers, media, recording)",
        ok,
        failed,
        wall,
        cpu,
    );
    println!(
        "Switchyard / SIPp CPU per call: {:.2}×; media set up for {} calls",
        (cpu / ok.max(1) as f64) / (peer_cpu.max(1e-9) / peer_ok.max(1) as f64),
        totals.calls
    );
    if failed > 0 {
        anyhow::bail!("{failed} calls failed");
    }
    Ok(())
}

/// A UAC that streams a μ-law file in a loop for `hold_ms`, then hangs up.
fn streaming_uac(audio: &Path, hold_ms: u64) -> String {
    format!(
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="bench-stream">
<send retrans="500"><![CDATA[

INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+14155550100@[local_ip]:[local_port]>;tag=[pid]B[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:bench@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=sipp 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [rtpstream_audio_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=ptime:20

]]></send>
<recv response="100" optional="true"/>
<recv response="180" optional="true"/>
<recv response="200" rtd="true" rrs="true"/>
<send><![CDATA[

ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

]]></send>
<nop><action><exec rtp_stream="{},-1,0"/></action></nop>
<pause milliseconds="{hold_ms}"/>
<nop><action><exec rtp_stream="pause"/></action></nop>
<send retrans="500"><![CDATA[

BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[last_From:]
[last_To:]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

]]></send>
<recv response="200"/>
</scenario>
"#,
        audio.display()
    )
}

async fn concurrent(base: &Config, args: &SipBenchArgs, dir: &Path) -> anyhow::Result<()> {
    // One second of a 440 Hz tone, μ-law, made here (no tool needed): SIPp loops it.
    let audio = dir.join("tone.ul");
    let tone: Vec<u8> = (0..8000)
        .map(|i| {
            let s =
                (f64::sin(i as f64 * 2.0 * std::f64::consts::PI * 440.0 / 8000.0) * 8000.0) as i16;
            switchyard_media::g711::ulaw_encode(s)
        })
        .collect();
    std::fs::write(&audio, tone)?;
    let ramp_rate = 50u32;
    let ramp_s = args.calls.div_ceil(ramp_rate) as u64;
    let hold_ms = (ramp_s + args.window + 10) * 1000;
    let scenario = dir.join("stream.xml");
    std::fs::write(&scenario, streaming_uac(&audio, hold_ms))?;

    let server = start_server(base, dir, args.calls as usize + 100, !args.no_record).await?;
    let engine = server
        .engine
        .clone()
        .ok_or_else(|| anyhow::anyhow!("engine off"))?;
    let target = engine.sip_addr().to_string();
    let sipp_args: Vec<String> = [
        "-sf",
        &scenario.display().to_string(),
        "-s",
        NUMBER,
        "-r",
        &ramp_rate.to_string(),
        "-m",
        &args.calls.to_string(),
        "-l",
        &args.calls.to_string(),
        "-mp",
        "40000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let dir_buf = dir.to_path_buf();
    let limit = Duration::from_secs(hold_ms / 1000 + ramp_s + 60);
    let uac = tokio::task::spawn_blocking(move || {
        run_uac(&target, &dir_buf, "stream", &sipp_args, limit)
    });

    // Wait for every call to be up, then measure CPU over the window.
    let up_deadline = Instant::now() + Duration::from_secs(ramp_s + 30);
    while engine.live_calls() < args.calls as usize && Instant::now() < up_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let up = engine.live_calls();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = cpu_seconds("self")?;
    let threads_before = thread_cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.window)).await;
    let cpu = cpu_seconds("self")? - before;
    let threads = thread_cpu_seconds();
    let wall = started.elapsed().as_secs_f64();
    let (ok, failed) = uac.await??;
    let deadline = Instant::now() + Duration::from_secs(30);
    while engine.live_calls() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t: MediaTotalsSnapshot = engine.media_totals();
    server.stop().await;

    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    let pct = |n: u64, d: u64| 100.0 * n as f64 / d.max(1) as f64;
    println!(
        "SIP concurrency: {} calls asked, {up} up at once, each streaming μ-law both ways, {}",
        args.calls,
        if args.no_record {
            "not recorded"
        } else {
            "recorded"
        }
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!("| calls completed / failed (SIPp) | {ok} / {failed} |");
    println!(
        "| server CPU over {:.0} s with all calls up | {:.1}% of one core ({:.1}% of {cores} cores) |",
        wall,
        100.0 * cpu / wall,
        100.0 * cpu / wall / cores
    );
    println!(
        "| server CPU per call | {:.3} ms per second of call |",
        1000.0 * cpu / wall / up.max(1) as f64
    );
    for (name, seconds) in &threads {
        let used = seconds - threads_before.get(name).copied().unwrap_or(0.0);
        // Under one clock tick (10 ms) is nothing measured.
        if used >= 0.01 {
            println!(
                "| … of which `{name}` threads | {:.3} ms per second of call |",
                1000.0 * used / wall / up.max(1) as f64
            );
        }
    }
    println!(
        "| 20 ms ticks run late | {} of {} ({:.3}%) |",
        t.late_ticks,
        t.ticks,
        pct(t.late_ticks, t.ticks)
    );
    println!(
        "| RTP packets received / lost | {} / {} ({:.3}%) |",
        t.packets_received,
        t.packets_lost,
        pct(t.packets_lost, t.packets_received + t.packets_lost)
    );
    println!(
        "| frames concealed / late | {} / {} ({:.3}% of ticks) |",
        t.frames_concealed,
        t.frames_late,
        pct(t.frames_concealed, t.ticks)
    );
    println!(
        "| RTP packets sent / not sent (socket full) | {} / {} |",
        t.packets_sent, t.send_drops
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_counts_from_sipps_statistics() {
        let dir = std::env::temp_dir().join(format!("sy-sipp-stat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let csv = dir.join("s.csv");
        std::fs::write(
            &csv,
            "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
             x;5;5;0;0;\nx;7;12;1;1;\n\n",
        )
        .unwrap();
        assert_eq!(sipp_counts(&csv).unwrap(), (12, 1));
        assert!(cpu_seconds("self").unwrap() >= 0.0);
        assert!(!thread_cpu_seconds().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
