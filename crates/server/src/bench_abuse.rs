//! `switchyard bench sip abuse`: memory under SIP abuse. A server in this
//! process takes `--malformed` datagrams over UDP (random bytes, a cut-off
//! request, every kind RFC 3261 refuses: bad Content-Length, unknown or
//! miscased method, no Call-ID, no CSeq, SIP/3.0, an unknown `Require`, one
//! too large; stray responses; with `--scans` also INVITEs to unknown
//! numbers and BYE and CANCEL outside any dialog) and `--tcp-cycles` TCP
//! connections that each send one of them and close (half with a FIN, half
//! with a reset), in ten equal rounds as fast as they go. After each round:
//! the process's RSS and what the SIP stack holds (transactions, timers,
//! dialogs, connections, tasks); then, once the 32 s transaction timers
//! have run out, the same again, optionally `--hold-open` connections left
//! open, and RSS once glibc has handed its free pages back.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use switchyard_telephony::engine::SipState;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

use crate::bench_sip::SipBenchArgs;
use crate::config::Config;

const ROUNDS: u64 = 10;
/// Datagrams sent back to back before a pause of [`PAUSE`] (~10 000/s).
const BURST: u64 = 100;
const PAUSE: Duration = Duration::from_millis(10);
/// TCP connections open at once.
const TCP_PARALLEL: usize = 16;

/// Resident set size of this process, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Malformed requests and stray messages (none may leave state behind),
/// then, with `--scans`, well-formed requests nobody wants (each leaves a
/// finished transaction for 64·T1 = 32 s, as RFC 3261 §17.2 says).
const MALFORMED_KINDS: u64 = 12;
const SCAN_KINDS: u64 = 3;

/// Message `n` of the mix (`engine` is where it goes, `me` where from).
fn message(n: u64, scans: bool, engine: SocketAddr, me: SocketAddr, transport: &str) -> Vec<u8> {
    let via = format!("Via: SIP/2.0/{transport} {me};branch=z9hG4bK-ab{n};rport");
    let common = |method: &str, extra: &str| {
        format!(
            "{method} sip:+15550000000@{engine} SIP/2.0\r\n{via}\r\n\
             From: <sip:scan@{me}>;tag=ab{n}\r\nTo: <sip:+15550000000@{engine}>{extra}\r\n\
             Call-ID: abuse-{n}@bench\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        )
    };
    let kinds = MALFORMED_KINDS + if scans { SCAN_KINDS } else { 0 };
    let text = match n % kinds {
        0 => {
            // Random bytes of a random length (a fixed sequence).
            let mut x = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let len = 1 + (x % 1400) as usize;
            return (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
        }
        1 => format!("INVITE sip:+1555@{engine} SIP/2.0\r\n{via}\r\nFrom: <sip:a@b"),
        2 => common("OPTIONS", "") + "Content-Length: -5\r\n\r\n",
        3 => common("OPTIONS", "") + "Content-Length: 900\r\n\r\nv=0\r\n",
        4 => common("FROBNICATE", "") + "Content-Length: 0\r\n\r\n",
        5 => common("options", "") + "Content-Length: 0\r\n\r\n",
        6 => common("OPTIONS", "").replace(&format!("Call-ID: abuse-{n}@bench\r\n"), "") + "\r\n",
        7 => common("OPTIONS", "").replace("CSeq: 1 OPTIONS\r\n", "") + "\r\n",
        8 => common("OPTIONS", "").replace(" SIP/2.0\r\n", " SIP/3.0\r\n") + "\r\n",
        9 => common("OPTIONS", "") + "Require: x-nothing\r\n\r\n",
        // Too large for rsipstack's UDP buffer (over TCP, where it would be
        // a valid request, a NUL in a header instead).
        10 if transport == "UDP" => {
            common("OPTIONS", "") + &format!("X-Big: {}\r\n\r\n", "a".repeat(9000))
        }
        10 => common("OPTIONS", "") + "X-Nul: a\0b\r\n\r\n",
        11 => format!(
            "SIP/2.0 200 OK\r\n{via}\r\nFrom: <sip:a@b>;tag=x\r\nTo: <sip:c@d>;tag=y\r\n\
             Call-ID: stray-{n}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        ),
        // A scanner: a well-formed INVITE to a number nobody has (404).
        12 => common("INVITE", "") + "Content-Length: 0\r\n\r\n",
        // In a dialog that does not exist: waits for it 2 s, then 481.
        13 => common("BYE", ";tag=nodialog") + "Content-Length: 0\r\n\r\n",
        _ => common("CANCEL", "") + "Content-Length: 0\r\n\r\n",
    };
    text.into_bytes()
}

struct Row {
    label: String,
    rss: f64,
    state: SipState,
}

async fn udp_round(
    sockets: &[UdpSocket],
    engine: SocketAddr,
    scans: bool,
    first: u64,
    count: u64,
) -> anyhow::Result<()> {
    for n in first..first + count {
        let sock = &sockets[(n % sockets.len() as u64) as usize];
        let me = sock.local_addr()?;
        // A full receive buffer on the server drops datagrams: that is
        // part of the abuse, not an error.
        let _ = sock
            .send_to(&message(n, scans, engine, me, "UDP"), engine)
            .await;
        if (n + 1).is_multiple_of(BURST) {
            tokio::time::sleep(PAUSE).await;
        }
    }
    Ok(())
}

async fn tcp_cycle(engine: SocketAddr, scans: bool, n: u64) {
    let Ok(mut tcp) = TcpStream::connect(engine).await else {
        return;
    };
    let me = tcp.local_addr().unwrap_or(engine);
    let _ = tcp.write_all(&message(n, scans, engine, me, "TCP")).await;
    if n.is_multiple_of(2) {
        let _ = tcp.shutdown().await;
    } else {
        // A reset, not a FIN; and no TIME_WAIT on our side.
        let _ = tcp.set_zero_linger();
    }
}

async fn tcp_round(engine: SocketAddr, scans: bool, first: u64, count: u64) {
    let mut set = tokio::task::JoinSet::new();
    for n in first..first + count {
        if set.len() >= TCP_PARALLEL {
            set.join_next().await;
        }
        set.spawn(tcp_cycle(engine, scans, n));
    }
    while set.join_next().await.is_some() {}
}

pub(crate) async fn abuse(
    base: &Config,
    args: &SipBenchArgs,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let server = crate::bench_sip::start_server(base, dir, 1_000, false).await?;
    let engine = server
        .engine
        .clone()
        .ok_or_else(|| anyhow::anyhow!("engine off"))?;
    let target = engine.sip_addr();
    let mut sockets = Vec::new();
    for _ in 0..32 {
        sockets.push(UdpSocket::bind("127.0.0.1:0").await?);
    }
    let mut rows = vec![Row {
        label: "started".into(),
        rss: rss_mib(),
        state: engine.sip_state(),
    }];
    let started = Instant::now();
    let udp_each = args.malformed / ROUNDS;
    let tcp_each = args.tcp_cycles / ROUNDS;
    for round in 0..ROUNDS {
        let (udp, ()) = tokio::join!(
            udp_round(&sockets, target, args.scans, round * udp_each, udp_each),
            tcp_round(target, args.scans, round * tcp_each, tcp_each),
        );
        udp?;
        rows.push(Row {
            label: format!(
                "{} datagrams, {} TCP cycles",
                (round + 1) * udp_each,
                (round + 1) * tcp_each
            ),
            rss: rss_mib(),
            state: engine.sip_state(),
        });
    }
    let sending = started.elapsed().as_secs_f64();
    // Finished transactions are kept 64·T1 = 32 s; the requests to dialogs
    // that do not exist wait 2 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::time::sleep(Duration::from_secs(34)).await;
    while Instant::now() < deadline {
        let s = engine.sip_state();
        if s.transactions + s.finished_transactions + s.connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    rows.push(Row {
        label: "then idle, transaction timers run out".into(),
        rss: rss_mib(),
        state: engine.sip_state(),
    });
    if args.hold_open > 0 {
        hold_open(&engine, target, args.hold_open, &mut rows).await?;
    }
    give_back_free_memory(&engine, &mut rows);
    server.stop().await;

    println!(
        "SIP abuse: {} datagrams over UDP and {} TCP connect/send/close cycles in {ROUNDS} rounds, {sending:.1} s ({})",
        args.malformed,
        args.tcp_cycles,
        if args.scans {
            "malformed, stray and scanning requests"
        } else {
            "malformed requests and stray messages"
        }
    );
    println!(
        "| after | RSS MiB | transactions | finished | timers | dialogs | TCP connections | engine tasks |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let s = r.state;
        println!(
            "| {} | {:.1} | {} | {} | {} | {} | {} | {} |",
            r.label,
            r.rss,
            s.transactions,
            s.finished_transactions,
            s.timers,
            s.dialogs,
            s.connections,
            s.tasks
        );
    }
    let first = rows[1].rss;
    let last = rows[ROUNDS as usize].rss;
    println!(
        "RSS at the end of the traffic / after its first tenth: {:.3} ({:+.1} %)",
        last / first,
        (last / first - 1.0) * 100.0
    );
    Ok(())
}

/// `count` TCP connections that each send a well-formed OPTIONS and stay
/// open (as a peer that never closes): what one costs until the idle
/// timeout closes it.
async fn hold_open(
    engine: &switchyard_telephony::Engine,
    target: SocketAddr,
    count: u64,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for n in 0..count {
        if let Ok(mut tcp) = TcpStream::connect(target).await {
            let me = tcp.local_addr()?;
            let text = format!(
                "OPTIONS sip:ping@{target} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bK-ho{n}\r\n\
                 From: <sip:h@{me}>;tag=h{n}\r\nTo: <sip:ping@{target}>\r\nCall-ID: held-{n}@bench\r\n\
                 CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = tcp.write_all(text.as_bytes()).await;
            held.push(tcp);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.sip_state().connections < held.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows.push(Row {
        label: format!("{} TCP connections held open", held.len()),
        rss: rss_mib(),
        state: engine.sip_state(),
    });
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.sip_state().connections > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows.push(Row {
        label: "closed by the peer".into(),
        rss: rss_mib(),
        state: engine.sip_state(),
    });
    Ok(())
}

/// glibc keeps freed memory in its arenas, so RSS stays at its high-water
/// mark; handing the free pages back shows what is still in use.
fn give_back_free_memory(engine: &switchyard_telephony::Engine, rows: &mut Vec<Row>) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only returns free heap pages to the kernel;
        // it takes no pointers and is safe to call from any thread.
        unsafe {
            nix::libc::malloc_trim(0);
        }
        rows.push(Row {
            label: "free memory handed back (malloc_trim)".into(),
            rss: rss_mib(),
            state: engine.sip_state(),
        });
    }
}
