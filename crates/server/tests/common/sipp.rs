//! SIPp as a real SIP peer: a trunk that answers, rejects or challenges our
//! INVITEs (UAS), or a caller that sends INVITEs to our numbers (UAC).
//! Scenarios are written per test into the peer's own directory, so that
//! they can carry absolute paths and per-test values.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::{TempDir, peers_required};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn api_name(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
    fn sipp_flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

/// Whether an external tool is installed; when it is not, the test skips,
/// or fails under `SWITCHYARD_REQUIRE_PEERS=1`.
pub fn tool_available(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            !peers_required(),
            "{tool} is required (SWITCHYARD_REQUIRE_PEERS=1) but not installed: run scripts/install-test-deps.sh"
        );
        eprintln!("SKIPPED: {tool} is not installed (scripts/install-test-deps.sh installs it)");
    }
    found
}

pub fn sipp_available() -> bool {
    tool_available("sipp", "-v")
}

/// A port free on loopback for both UDP and TCP (SIPp binds both for TCP).
pub fn free_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// An even port with the next three free on UDP (SIPp's media uses the
/// port and port+2, with RTCP beside each).
pub fn free_media_port() -> u16 {
    loop {
        let probe = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let base = probe.local_addr().expect("addr").port() & !1;
        drop(probe);
        if !(1024..=65000).contains(&base) {
            continue;
        }
        let held: Vec<_> = (0..4)
            .map_while(|i| UdpSocket::bind(("127.0.0.1", base + i)).ok())
            .collect();
        if held.len() == 4 {
            return base;
        }
    }
}

/// One SIPp process, killed when dropped.
pub struct Sipp {
    child: Option<Child>,
    pub port: u16,
    pub media_port: u16,
    pub dir: TempDir,
    name: &'static str,
}

/// What a finished SIPp run left.
#[derive(Debug)]
pub struct SippRun {
    pub status: ExitStatus,
    /// Every message SIPp sent and received (`-trace_msg`).
    pub messages: String,
    /// Lines the scenario logged (`<log>` actions).
    pub log: String,
    pub output: String,
}

impl SippRun {
    /// Whether the scenario ran to its end for every call.
    pub fn succeeded(&self) -> bool {
        self.status.success()
    }

    #[track_caller]
    pub fn assert_success(&self) {
        assert!(
            self.succeeded(),
            "sipp failed ({}):\n{}\n--- messages ---\n{}",
            self.status,
            self.output,
            self.messages
        );
    }

    /// SIP requests of `method` that SIPp received or sent.
    pub fn count_requests(&self, method: &str) -> usize {
        let start = format!("{method} sip:");
        self.messages
            .lines()
            .filter(|l| l.starts_with(&start))
            .count()
    }
}

impl Sipp {
    /// SIPp as a UAS (the trunk) running `scenario`, for `calls` calls.
    pub fn uas(name: &'static str, scenario: &str, transport: Transport, calls: u32) -> Sipp {
        let port = free_port();
        let mut sipp = Self::spawn(name, scenario, transport, port, None, calls, &[]);
        sipp.wait_listening(transport);
        sipp
    }

    /// SIPp as a UAC calling `service` at `target`.
    pub fn uac(
        name: &'static str,
        scenario: &str,
        transport: Transport,
        target: SocketAddr,
        service: &str,
        calls: u32,
        extra: &[&str],
    ) -> Sipp {
        Self::uac_from(
            "127.0.0.1",
            name,
            scenario,
            transport,
            target,
            service,
            calls,
            extra,
        )
    }

    /// [`Sipp::uac`] sending from `local_ip` (another loopback address
    /// such as 127.0.0.2 is another host as far as the server can tell).
    #[allow(clippy::too_many_arguments)]
    pub fn uac_from(
        local_ip: &str,
        name: &'static str,
        scenario: &str,
        transport: Transport,
        target: SocketAddr,
        service: &str,
        calls: u32,
        extra: &[&str],
    ) -> Sipp {
        let port = free_port();
        let mut args = vec!["-s", service, "-i", local_ip, "-mi", local_ip];
        args.extend_from_slice(extra);
        Self::spawn(name, scenario, transport, port, Some(target), calls, &args)
    }

    fn spawn(
        name: &'static str,
        scenario: &str,
        transport: Transport,
        port: u16,
        target: Option<SocketAddr>,
        calls: u32,
        extra: &[&str],
    ) -> Sipp {
        // The local address is 127.0.0.1 unless `extra` names another.
        let local = if extra.contains(&"-i") {
            &[][..]
        } else {
            &["-i", "127.0.0.1", "-mi", "127.0.0.1"][..]
        };
        let dir = TempDir::new();
        let media_port = free_media_port();
        let file = dir.0.join(format!("{name}.xml"));
        std::fs::write(&file, scenario).expect("write scenario");
        let mut cmd = Command::new("sipp");
        if let Some(t) = target {
            cmd.arg(t.to_string());
        }
        cmd.arg("-sf")
            .arg(&file)
            .args(["-t", transport.sipp_flag()])
            .args(local)
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", &calls.to_string()])
            .args(["-nostdin", "-trace_msg", "-trace_logs", "-trace_err"])
            .arg("-message_file")
            .arg(dir.0.join("messages.log"))
            .arg("-log_file")
            .arg(dir.0.join("scenario.log"))
            .arg("-error_file")
            .arg(dir.0.join("errors.log"))
            // Give up on a call after 60 s, and on the whole run after 90 s,
            // so that a broken engine fails the test instead of hanging it.
            .args(["-recv_timeout", "60000", "-timeout", "90s"])
            .args(extra)
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().expect("spawn sipp");
        Sipp {
            child: Some(child),
            port,
            media_port,
            dir,
            name,
        }
    }

    /// Waits until SIPp's SIP socket is bound (polling the kernel's socket
    /// tables; a probe connection would count as a call to SIPp).
    fn wait_listening(&mut self, transport: Transport) {
        let table = match transport {
            Transport::Udp => "/proc/net/udp",
            Transport::Tcp => "/proc/net/tcp",
        };
        let needle = format!(":{:04X} ", self.port);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let bound = std::fs::read_to_string(table)
                .map(|t| {
                    t.lines().skip(1).any(|l| {
                        let cols: Vec<_> = l.split_whitespace().collect();
                        cols.get(1)
                            .is_some_and(|local| format!("{local} ").ends_with(&needle))
                            && (transport == Transport::Udp || cols.get(3) == Some(&"0A"))
                    })
                })
                .unwrap_or(false);
            if bound {
                return;
            }
            if let Some(mut child) = self.child.take() {
                let Ok(Some(status)) = child.try_wait() else {
                    self.child = Some(child);
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                let run = self.collect(&mut child, Some(status));
                panic!(
                    "sipp {} exited ({status}) before binding:\n{}",
                    self.name, run.output
                );
            }
            assert!(
                Instant::now() < deadline,
                "sipp {} did not bind port {}",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.0.join(file)
    }

    /// Waits for SIPp to finish its calls (at most `timeout`).
    pub async fn finish(mut self, timeout: Duration) -> SippRun {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("sipp status") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                let run = self.collect(&mut child, None);
                panic!(
                    "sipp {} did not finish within {timeout:?}:\n{}\n--- messages ---\n{}",
                    self.name, run.output, run.messages
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        };
        self.collect(&mut child, Some(status))
    }

    fn collect(&self, child: &mut Child, status: Option<ExitStatus>) -> SippRun {
        use std::io::Read;
        let mut output = String::new();
        if let Some(mut o) = child.stdout.take() {
            let _ = o.read_to_string(&mut output);
        }
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut output);
        }
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        let errors = read(&self.path("errors.log"));
        if !errors.is_empty() {
            output.push_str("\n--- errors ---\n");
            output.push_str(&errors);
        }
        SippRun {
            status: status.unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                ExitStatus::from_raw(9)
            }),
            messages: read(&self.path("messages.log")),
            log: read(&self.path("scenario.log")),
            output,
        }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Scenario building blocks. SIPp fills the `[...]` keywords per message.
pub mod scenario {
    /// Wraps steps into a scenario document.
    pub fn doc(name: &str, steps: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<!DOCTYPE scenario SYSTEM \"sipp.dtd\">\n<scenario name=\"{name}\">\n{steps}\n</scenario>\n"
        )
    }

    /// The INVITE, keeping its CSeq number (a 487 sent after a CANCEL
    /// answers the INVITE, not the CANCEL). SIPp refuses variables that are
    /// set and never used, hence two forms.
    pub fn recv_invite() -> String {
        invite_capturing(false)
    }

    /// [`recv_invite`], also keeping the caller's Contact URI and From
    /// header for a BYE from this side ([`uas_bye`]).
    pub fn recv_invite_for_bye() -> String {
        invite_capturing(true)
    }

    fn invite_capturing(for_bye: bool) -> String {
        let mut s = String::from("<recv request=\"INVITE\" crlf=\"true\"><action>\n");
        s.push_str(
            "<ereg regexp=\"[0-9]+\" search_in=\"hdr\" header=\"CSeq:\" assign_to=\"inv_cseq\"/>\n",
        );
        if for_bye {
            s.push_str("<ereg regexp=\"sip:[^&gt;]*\" search_in=\"hdr\" header=\"Contact:\" assign_to=\"contact_uri\"/>\n");
            s.push_str("<ereg regexp=\"&lt;.*\" search_in=\"hdr\" header=\"From:\" assign_to=\"caller\"/>\n");
        }
        s.push_str("</action></recv>\n");
        s
    }

    /// A response to the INVITE received with [`recv_invite`], with `extra`
    /// headers and an optional SDP body.
    pub fn respond(code: u16, reason: &str, extra: &str, sdp: bool) -> String {
        let retrans = if (200..300).contains(&code) {
            " retrans=\"500\""
        } else {
            ""
        };
        let (ctype, body) = if sdp {
            ("Content-Type: application/sdp\n", SDP_BODY)
        } else {
            ("", "")
        };
        let tag = if code > 100 {
            ";tag=[pid]SY[call_number]"
        } else {
            ""
        };
        format!(
            "<send{retrans}><![CDATA[\n\nSIP/2.0 {code} {reason}\n[last_Via:]\n[last_From:]\n[last_To:]{tag}\n[last_Call-ID:]\nCSeq: [$inv_cseq] INVITE\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\n{extra}{ctype}Content-Length: [len]\n\n{body}]]></send>\n"
        )
    }

    /// 200 to an in-dialog request (BYE, CANCEL): no new tag.
    pub fn ok_in_dialog() -> String {
        "<send><![CDATA[\n\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\nContent-Length: 0\n\n]]></send>\n".into()
    }

    /// 200 with our SDP to an in-dialog re-INVITE (its To has a tag already).
    pub fn ok_in_dialog_with_sdp(extra: &str) -> String {
        format!(
            "<send retrans=\"500\"><![CDATA[\n\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n[last_CSeq:]\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\n{extra}Content-Type: application/sdp\nContent-Length: [len]\n\n{SDP_BODY}]]></send>\n"
        )
    }

    /// Our SDP: PCMU and telephone-event on SIPp's media port.
    pub const SDP_BODY: &str = "v=0\no=sipp 1 1 IN IP[local_ip_type] [local_ip]\ns=-\nc=IN IP[media_ip_type] [media_ip]\nt=0 0\nm=audio [media_port] RTP/AVP 0 101\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendrecv\n";

    pub fn recv(what: &str) -> String {
        format!("<recv request=\"{what}\" crlf=\"true\"/>\n")
    }

    pub fn recv_response(code: u16, optional: bool) -> String {
        let opt = if optional { " optional=\"true\"" } else { "" };
        format!("<recv response=\"{code}\"{opt}/>\n")
    }

    /// The caller receives the 200 to its INVITE, keeping the callee's
    /// Contact (and any Record-Route) as `[next_url]` for ACK and BYE.
    pub fn recv_answer() -> String {
        "<recv response=\"200\" rtd=\"true\" rrs=\"true\"/>\n".into()
    }

    pub fn pause(ms: u64) -> String {
        format!("<pause milliseconds=\"{ms}\"/>\n")
    }

    /// An INVITE from a caller (UAC) to `[service]`, with our SDP offer.
    pub fn uac_invite(caller: &str) -> String {
        uac_invite_with(caller, "")
    }

    /// [`uac_invite`] with extra header lines (each ending in `\n`).
    pub fn uac_invite_with(caller: &str, extra: &str) -> String {
        format!(
            "<send retrans=\"500\"><![CDATA[\n\nINVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: <sip:{caller}@[local_ip]:[local_port]>;tag=[pid]SY[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>\nCall-ID: [call_id]\nCSeq: 1 INVITE\nContact: <sip:{caller}@[local_ip]:[local_port];transport=[transport]>\nMax-Forwards: 70\n{extra}Content-Type: application/sdp\nContent-Length: [len]\n\n{SDP_BODY}]]></send>\n"
        )
    }

    /// The caller's ACK to a 2xx, or (with `branch_back`, the distance in
    /// scenario steps to the INVITE) to a final error inside the INVITE
    /// transaction.
    pub fn uac_ack(branch_back: Option<usize>) -> String {
        let branch = branch_back
            .map(|n| format!("[branch-{n}]"))
            .unwrap_or("[branch]".into());
        let (uri, cseq) = match branch_back {
            Some(_) => ("sip:[service]@[remote_ip]:[remote_port]", "1"),
            None => ("[next_url]", "1"),
        };
        format!(
            "<send><![CDATA[\n\nACK {uri} SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch={branch}\n[last_From:]\n[last_To:]\nCall-ID: [call_id]\nCSeq: {cseq} ACK\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n"
        )
    }

    /// The caller hangs up.
    pub fn uac_bye() -> String {
        "<send retrans=\"500\"><![CDATA[\n\nBYE [next_url] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n[last_From:]\n[last_To:]\nCall-ID: [call_id]\nCSeq: 2 BYE\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n".into()
    }

    /// The UAS sends BYE inside the dialog it answered.
    pub fn uas_bye() -> String {
        "<send retrans=\"500\"><![CDATA[\n\nBYE [$contact_uri] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\nFrom: <sip:trunk@[local_ip]:[local_port]>;tag=[pid]SY[call_number]\nTo: [$caller]\n[last_Call-ID:]\nCSeq: 1 BYE\nContact: <sip:[local_ip]:[local_port];transport=[transport]>\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n".into()
    }
}
