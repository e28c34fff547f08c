//! A lossy network between the engine and a SIPp trunk, on loopback: a
//! stateless SIP relay (UDP) that steers both ways of the RTP through
//! itself by rewriting the port in our SDP offer and in the trunk's answer,
//! and drops and reorders the RTP it carries toward the engine.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::UdpSocket;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// How the relay treats RTP toward the engine.
#[derive(Debug, Clone, Copy)]
pub struct Impairment {
    /// Percent of packets dropped.
    pub loss_percent: u64,
    /// Percent of packets held back and sent after the next one.
    pub reorder_percent: u64,
}

pub struct LossyRelay {
    /// Point the trunk here.
    pub sip_port: u16,
    pub dropped: Arc<AtomicU64>,
    pub reordered: Arc<AtomicU64>,
    pub forwarded: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where the RTP goes: learned from the SDP passing through.
#[derive(Default)]
struct MediaEnds {
    engine: Option<SocketAddr>,
    trunk: Option<SocketAddr>,
}

fn sdp_port(message: &str) -> Option<u16> {
    message
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Replaces the m=audio port and fixes Content-Length.
fn rewrite_sdp_port(message: &str, port: u16) -> String {
    let Some((head, body)) = message.split_once("\r\n\r\n") else {
        return message.to_owned();
    };
    let body: String = body
        .split("\r\n")
        .map(|l| match l.strip_prefix("m=audio ") {
            Some(rest) => {
                let tail = rest.split_once(' ').map(|(_, t)| t).unwrap_or_default();
                format!("m=audio {port} {tail}")
            }
            None => l.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let head: Vec<String> = head
        .split("\r\n")
        .map(|h| {
            if h.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {}", body.len())
            } else {
                h.to_owned()
            }
        })
        .collect();
    format!("{}\r\n\r\n{body}", head.join("\r\n"))
}

impl LossyRelay {
    pub async fn start(trunk_sip: SocketAddr, impairment: Impairment) -> LossyRelay {
        let sip = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind sip"));
        let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await.expect("bind rtp"));
        let sip_port = sip.local_addr().expect("addr").port();
        let rtp_port = rtp.local_addr().expect("addr").port();
        let ends = Arc::new(Mutex::new(MediaEnds::default()));
        let (dropped, reordered, forwarded) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );

        let sip_task = {
            let (sip, ends) = (sip.clone(), ends.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                // Our branch → the request's own Via lines and its sender:
                // SIPp's `[last_Via:]` echoes only the top Via, so the
                // engine's are put back from here.
                let mut pending: HashMap<String, (Vec<String>, SocketAddr)> = HashMap::new();
                let mut next_branch = 0u64;
                loop {
                    let Ok((len, from)) = sip.recv_from(&mut buf).await else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                    let lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
                    if text.starts_with("SIP/2.0 ") {
                        let Some(at) = lines.iter().position(|l| l.starts_with("Via:")) else {
                            continue;
                        };
                        let Some(branch) = lines[at]
                            .split("branch=")
                            .nth(1)
                            .map(|b| b.split(';').next().unwrap_or(b).trim().to_owned())
                        else {
                            continue;
                        };
                        let Some((vias, sender)) = pending.get(&branch).cloned() else {
                            // The engine's answer to a request from the trunk.
                            let _ = sip.send_to(text.as_bytes(), trunk_sip).await;
                            continue;
                        };
                        let mut out = lines.clone();
                        out.splice(at..at + 1, vias);
                        let mut out = out.join("\r\n");
                        if let Some(p) = sdp_port(&out) {
                            ends.lock().await.trunk = Some(SocketAddr::from(([127, 0, 0, 1], p)));
                            // The trunk's media is the relay's, as with a
                            // media relay on the path: the engine takes RTP
                            // from the address the SDP gives.
                            out = rewrite_sdp_port(&out, rtp_port);
                        }
                        let _ = sip.send_to(out.as_bytes(), sender).await;
                    } else if from == trunk_sip {
                        // A request from the trunk (SIPp sends in-dialog
                        // requests to where the call came from): on to the
                        // engine, whose answer goes straight back by Via.
                        if let Some((_, engine)) = pending.values().next() {
                            let _ = sip.send_to(text.as_bytes(), *engine).await;
                        }
                    } else {
                        let vias: Vec<String> = lines
                            .iter()
                            .filter(|l| l.starts_with("Via:"))
                            .cloned()
                            .collect();
                        // Retransmissions and CANCEL keep the branch of what they repeat.
                        let key = vias.first().cloned().unwrap_or_default();
                        let branch =
                            match pending.iter().find(|(_, (v, _))| v.first() == Some(&key)) {
                                Some((b, _)) => b.clone(),
                                None => {
                                    next_branch += 1;
                                    let b = format!("z9hG4bKrelay{next_branch}");
                                    pending.insert(b.clone(), (vias.clone(), from));
                                    b
                                }
                            };
                        let mut out: Vec<String> = lines
                            .into_iter()
                            .filter(|l| !l.starts_with("Via:"))
                            .collect();
                        out.insert(
                            1,
                            format!("Via: SIP/2.0/UDP 127.0.0.1:{sip_port};branch={branch}"),
                        );
                        let mut out = out.join("\r\n");
                        if let Some(p) = sdp_port(&out) {
                            ends.lock().await.engine = Some(SocketAddr::from(([127, 0, 0, 1], p)));
                            out = rewrite_sdp_port(&out, rtp_port);
                        }
                        let _ = sip.send_to(out.as_bytes(), trunk_sip).await;
                    }
                }
            })
        };

        let rtp_task = {
            let (rtp, ends) = (rtp.clone(), ends.clone());
            let (dropped, reordered, forwarded) =
                (dropped.clone(), reordered.clone(), forwarded.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 2048];
                let mut held: Option<Vec<u8>> = None;
                let mut seed: u64 = 0x1234_5678;
                let mut roll = move || {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % 100
                };
                loop {
                    let Ok((len, from)) = rtp.recv_from(&mut buf).await else {
                        return;
                    };
                    let (engine, trunk) = {
                        let e = ends.lock().await;
                        (e.engine, e.trunk)
                    };
                    if Some(from) == engine {
                        if let Some(t) = trunk {
                            let _ = rtp.send_to(&buf[..len], t).await;
                        }
                        continue;
                    }
                    let Some(engine) = engine else { continue };
                    if roll() < impairment.loss_percent {
                        dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if held.is_none() && roll() < impairment.reorder_percent {
                        reordered.fetch_add(1, Ordering::Relaxed);
                        held = Some(buf[..len].to_vec());
                        continue;
                    }
                    let _ = rtp.send_to(&buf[..len], engine).await;
                    forwarded.fetch_add(1, Ordering::Relaxed);
                    if let Some(late) = held.take() {
                        let _ = rtp.send_to(&late, engine).await;
                        forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        LossyRelay {
            sip_port,
            dropped,
            reordered,
            forwarded,
            tasks: vec![sip_task, rtp_task],
        }
    }
}
