//! Media on a real call: SIPp answers and streams known speech (μ-law) and
//! an RFC 4733 digit; the recording's far-end channel must hold the same
//! audio and the digit must arrive once. The recording is checked as a
//! client gets it: audio/mp4 from its signed URL, decoded by symphonia.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::recording::{download, ffprobe};
use common::sipp::{Sipp, Transport, scenario as sc, sipp_available, tool_available};
use common::{Backend, TempDir, TestServer, eventually};
use serde_json::json;
use switchyard_domain::id::CallId;

const TO: &str = "+14155552671";
const FROM: &str = "+15550001000";

/// Known speech: espeak-ng's voice, resampled by sox to 8 kHz μ-law (what
/// SIPp streams) and decoded back by sox to 16-bit PCM (the reference).
struct Speech {
    _dir: TempDir,
    ulaw: PathBuf,
    reference: Vec<i16>,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn speech() -> Option<Speech> {
    if !tool_available("espeak-ng", "--version") || !tool_available("sox", "--version") {
        return None;
    }
    let dir = TempDir::new();
    let wav = dir.0.join("speech.wav");
    let ulaw = dir.0.join("speech.ul");
    let reference = dir.0.join("reference.wav");
    run(Command::new("espeak-ng").arg("-w").arg(&wav).arg(
        "Load four four seven is picked up in Dallas and delivers to Memphis tomorrow at eight.",
    ));
    run(Command::new("sox")
        .arg(&wav)
        .args(["-r", "8000", "-c", "1", "-t", "ul"])
        .arg(&ulaw));
    run(Command::new("sox")
        .args(["-t", "ul", "-r", "8000", "-c", "1"])
        .arg(&ulaw)
        .args(["-b", "16"])
        .arg(&reference));
    let reference = hound::WavReader::open(&reference)
        .expect("reference wav")
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()
        .expect("samples");
    Some(Speech {
        _dir: dir,
        ulaw,
        reference,
    })
}

/// Answers, streams `ulaw` once, then digit 1 (RFC 4733), then hangs up.
fn stream_then_digit_then_bye(ulaw: &Path, speech_ms: u64) -> String {
    sc::doc(
        "media",
        &[
            sc::recv_invite_for_bye(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            format!("<nop><action><exec rtp_stream=\"{},1,0\"/></action></nop>\n", ulaw.display()),
            sc::pause(speech_ms + 1000),
            "<nop><action><exec play_pcap_audio=\"/usr/share/sip-tester/dtmf_2833_1.pcap\"/></action></nop>\n".into(),
            sc::pause(1500),
            sc::uas_bye(),
            sc::recv_response(200, false),
        ]
        .concat(),
    )
}

/// Normalised cross-correlation of `a` with `b` shifted by `lag`.
fn correlation(a: &[i16], b: &[i16], lag: usize) -> f64 {
    let n = a.len().min(b.len().saturating_sub(lag));
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (x, y) = (a[i] as f64, b[i + lag] as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa.sqrt() * bb.sqrt())
    }
}

/// The lag of `reference` in `recorded` (found on a loud stretch of the
/// reference, then checked over all of it) and the correlation there.
fn align(reference: &[i16], recorded: &[i16]) -> (usize, f64) {
    let start = reference
        .iter()
        .position(|s| s.unsigned_abs() > 2000)
        .unwrap_or(0);
    let probe = &reference[start..(start + 2400).min(reference.len())];
    let max_lag = recorded.len().saturating_sub(reference.len());
    let mut best = (0usize, f64::MIN);
    for lag in start..=(start + max_lag) {
        let c = correlation(probe, recorded, lag);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let lag = best.0 - start;
    (lag, correlation(reference, recorded, lag))
}

/// Correlation per half second of speech, each piece aligned on its own
/// within ±60 ms of `lag` (an adaptive jitter buffer may shift what follows
/// by a frame or two); returns the median over the pieces with speech.
fn piecewise_correlation(reference: &[i16], recorded: &[i16], lag: usize) -> f64 {
    const PIECE: usize = 4000;
    const SLACK: usize = 480;
    let mut scores = Vec::new();
    for start in (0..reference.len().saturating_sub(PIECE)).step_by(PIECE) {
        let piece = &reference[start..start + PIECE];
        if piece.iter().map(|s| (*s as f64).powi(2)).sum::<f64>() / (PIECE as f64) < 1e5 {
            continue; // silence between words says nothing
        }
        let centre = start + lag;
        let best = (centre.saturating_sub(SLACK)..=centre + SLACK)
            .map(|at| correlation(piece, recorded, at))
            .fold(f64::MIN, f64::max);
        scores.push(best);
    }
    assert!(!scores.is_empty(), "the reference has speech");
    scores.sort_by(|a, b| a.total_cmp(b));
    scores[scores.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn far_end_audio_is_recorded_exactly_and_digits_arrive_once() {
    if !sipp_available() {
        return;
    }
    let Some(speech) = speech() else { return };
    let speech_ms = speech.reference.len() as u64 * 1000 / 8000;
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await else {
        return;
    };
    let peer = Sipp::uas(
        "media",
        &stream_then_digit_then_bye(&speech.ulaw, speech_ms),
        Transport::Udp,
        1,
    );
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    srv.post(
        "/phone-numbers",
        json!({"number": FROM, "sip_trunk_id": t.body["id"]}),
    )
    .await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = CallId::parse(call["id"].as_str().unwrap()).unwrap();

    // Listen to the call's digits from the moment it is answered.
    let engine = srv
        .server
        .as_ref()
        .and_then(|s| s.engine.clone())
        .expect("engine");
    let bus = eventually(Duration::from_secs(15), || async { engine.media_bus(id) }).await;
    let mut digits = bus.digits();
    let done = eventually(Duration::from_secs(speech_ms / 1000 + 20), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["status"] == "COMPLETED" || c["status"] == "FAILED").then_some(c)
    })
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    peer.finish(Duration::from_secs(10)).await.assert_success();
    let mut got = Vec::new();
    while let Ok(d) = digits.try_recv() {
        got.push(d);
    }
    assert_eq!(got, ['1'], "the digit arrives once");

    // The recording as a client plays it: audio/mp4 from its signed URL.
    let stored = download(&srv, id, "stereo").await;
    assert_eq!(stored.content_type, "audio/mp4");
    assert_eq!((stored.channels.len(), stored.sample_rate), (2, 8000));
    let far = stored.channels[0].clone();
    let (lag, whole) = align(&speech.reference, &far);
    let c = piecewise_correlation(&speech.reference, &far, lag);
    eprintln!(
        "far-end correlation {whole:.5} over the whole, {c:.5} per piece, at lag {lag} samples"
    );
    assert!(
        c >= 0.98,
        "far-end channel correlates {c:.4} with what SIPp sent (lag {lag} samples)"
    );
    // The recording lasts as long as the call was answered, and says so:
    // in the API, in its container (symphonia) and to ffprobe.
    let recorded_s = stored.info["duration_seconds"].as_f64().expect("duration");
    let answered_s = done["duration_seconds"].as_f64().expect("duration");
    assert!(
        (recorded_s - answered_s).abs() < 0.5,
        "recorded {recorded_s} s of a {answered_s} s call"
    );
    assert!(
        stored.media_seconds >= recorded_s && stored.media_seconds <= recorded_s + 0.26,
        "coded {} s for {recorded_s} s",
        stored.media_seconds
    );
    assert_eq!(
        stored.info["file_size_bytes"].as_u64(),
        Some(stored.bytes.len() as u64)
    );
    if let Some((codec, rate, channels, seconds)) = ffprobe(&stored.bytes) {
        assert_eq!((codec.as_str(), rate, channels), ("aac", 8000, 2));
        assert!(
            (seconds - recorded_s).abs() <= 0.05,
            "ffprobe says {seconds} s, API {recorded_s} s"
        );
    }
    // Each side alone, mono.
    let customer = download(&srv, id, "customer").await;
    assert_eq!(customer.channels.len(), 1);
    let c_alone = piecewise_correlation(&speech.reference, &customer.channels[0], lag);
    assert!(c_alone >= 0.98, "customer channel alone: {c_alone:.4}");
    let agent = download(&srv, id, "agent").await;
    assert_eq!(agent.channels.len(), 1);
    assert!(
        piecewise_correlation(&speech.reference, &agent.channels[0], lag) < 0.5,
        "the agent channel does not carry the customer"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_survives_loss_and_reordering_and_the_recording_keeps_time() {
    use common::relay::{Impairment, LossyRelay};
    use std::sync::atomic::Ordering;
    if !sipp_available() {
        return;
    }
    let Some(speech) = speech() else { return };
    let speech_ms = speech.reference.len() as u64 * 1000 / 8000;
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.sip_enabled = true).await else {
        return;
    };
    let peer = Sipp::uas(
        "media",
        &stream_then_digit_then_bye(&speech.ulaw, speech_ms),
        Transport::Udp,
        1,
    );
    let relay = LossyRelay::start(
        peer.addr(),
        Impairment {
            loss_percent: 10,
            reorder_percent: 10,
        },
    )
    .await;
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "lossy", "host": "127.0.0.1", "port": relay.sip_port}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    srv.post(
        "/phone-numbers",
        json!({"number": FROM, "sip_trunk_id": t.body["id"]}),
    )
    .await;
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = CallId::parse(call["id"].as_str().unwrap()).unwrap();
    let run = peer
        .finish(Duration::from_secs(speech_ms / 1000 + 20))
        .await;
    run.assert_success();
    let done = eventually(Duration::from_secs(speech_ms / 1000 + 20), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["status"] == "COMPLETED" || c["status"] == "FAILED").then_some(c)
    })
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let (dropped, reordered, forwarded) = (
        relay.dropped.load(Ordering::Relaxed),
        relay.reordered.load(Ordering::Relaxed),
        relay.forwarded.load(Ordering::Relaxed),
    );
    assert!(
        dropped > 10 && reordered > 10 && forwarded > 100,
        "impairment applied: {dropped} dropped, {reordered} reordered"
    );

    let stored = download(&srv, id, "stereo").await;
    let far = stored.channels[0].clone();
    let recorded_s = stored.info["duration_seconds"].as_f64().expect("duration");
    let answered_s = done["duration_seconds"].as_f64().expect("duration");
    assert!(
        (recorded_s - answered_s).abs() < 0.5,
        "recorded {recorded_s} s of a {answered_s} s call"
    );
    // Reordered packets are put back in place; lost ones are concealed, so
    // the speech is still there, in time, at its place.
    let (lag, whole) = align(&speech.reference, &far);
    let c = piecewise_correlation(&speech.reference, &far, lag);
    eprintln!(
        "with {dropped} lost and {reordered} reordered of {forwarded}: correlation {whole:.4} over the whole, {c:.4} per piece"
    );
    assert!(
        c >= 0.8,
        "far-end channel still carries the speech in time: {c:.4}"
    );
    srv.stop().await;
}

/// Answers, stays silent for `lead_ms` (a spoofer's head start), streams
/// `ulaw` once, then hangs up.
fn answer_wait_stream_bye(ulaw: &Path, lead_ms: u64, speech_ms: u64) -> String {
    sc::doc(
        "late_media",
        &[
            sc::recv_invite_for_bye(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::pause(lead_ms),
            format!(
                "<nop><action><exec rtp_stream=\"{},1,0\"/></action></nop>\n",
                ulaw.display()
            ),
            sc::pause(speech_ms + 1000),
            sc::uas_bye(),
            sc::recv_response(200, false),
        ]
        .concat(),
    )
}

/// The spoofer's tone: loud, and above where speech has its energy.
const SPOOF_HZ: f64 = 3300.0;

/// How much of each 50 ms of `pcm` (that is not silent) is the spoofer's
/// tone: its Goertzel power over the window's, near 1 for the tone alone.
fn tone_share(pcm: &[i16]) -> f64 {
    const N: usize = 400;
    let w = 2.0 * std::f64::consts::PI * SPOOF_HZ / 8000.0;
    pcm.chunks_exact(N)
        .filter_map(|c| {
            let energy: f64 = c.iter().map(|&s| (s as f64).powi(2)).sum();
            if energy / (N as f64) < 1e4 {
                return None; // quiet: says nothing either way
            }
            let (mut s1, mut s2) = (0f64, 0f64);
            for &x in c {
                let s0 = x as f64 + 2.0 * w.cos() * s1 - s2;
                s2 = s1;
                s1 = s0;
            }
            let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
            Some(2.0 * power / (N as f64 * energy))
        })
        .fold(0.0, f64::max)
}

/// A host other than the far end (127.0.0.2) streams a tone in sequence,
/// at the real packet rate, at the call's RTP port from before the call is
/// placed, and on while the far end speaks; the far end starts only 1.5 s
/// after answering. Latching to the first packet gave the spoofer the
/// call: the recording was its tone, and the customer was never heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rtp_sprayed_from_another_host_before_the_far_end_does_not_take_the_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use switchyard_media::g711::G711;
    use switchyard_media::rtp::RtpSender;
    if !sipp_available() {
        return;
    }
    let Some(speech) = speech() else { return };
    let speech_ms = speech.reference.len() as u64 * 1000 / 8000;
    const LEAD_MS: u64 = 1500;
    // One RTP pair in the range: the spoofer knows the call's port.
    let rtp_port = common::sipp::free_media_port();
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| {
        c.sip_enabled = true;
        c.rtp_port_min = rtp_port;
        c.rtp_port_max = rtp_port + 1;
    })
    .await
    else {
        return;
    };
    let peer = Sipp::uas(
        "late_media",
        &answer_wait_stream_bye(&speech.ulaw, LEAD_MS, speech_ms),
        Transport::Udp,
        1,
    );
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    srv.post(
        "/phone-numbers",
        json!({"number": FROM, "sip_trunk_id": t.body["id"]}),
    )
    .await;

    let spoofer = tokio::net::UdpSocket::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let spray = {
        let (stop, sent) = (stop.clone(), sent.clone());
        tokio::spawn(async move {
            let mut rtp = RtpSender::new(0x5bad_5bad, 1, 0);
            let mut ticker = tokio::time::interval(Duration::from_millis(20));
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                let pcm: Vec<i16> = (n..n + 160)
                    .map(|i| {
                        ((i as f64 * 2.0 * std::f64::consts::PI * SPOOF_HZ / 8000.0).sin()
                            * 16000.0) as i16
                    })
                    .collect();
                n += 160;
                let mut payload = Vec::new();
                G711::Ulaw.encode(&pcm, &mut payload);
                let packet = rtp.audio(0, n == 160, &payload, 160);
                if spoofer
                    .send_to(&packet, ("127.0.0.1", rtp_port))
                    .await
                    .is_ok()
                {
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let call = srv.create_call(json!({"to_number": TO})).await;
    let id = CallId::parse(call["id"].as_str().unwrap()).unwrap();
    eventually(Duration::from_secs(15), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["status"] == "IN_PROGRESS").then_some(())
    })
    .await;
    // Through the lead and the first half of the speech, then quiet (the
    // far end's own silence after its speech would let any source relearn).
    tokio::time::sleep(Duration::from_millis(LEAD_MS + speech_ms / 2)).await;
    stop.store(true, Ordering::Relaxed);
    spray.await.expect("spray");
    let sprayed = sent.load(Ordering::Relaxed);
    assert!(sprayed > 100, "the spoofer sent {sprayed} packets");

    let done = eventually(Duration::from_secs(speech_ms / 1000 + 20), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["status"] == "COMPLETED" || c["status"] == "FAILED").then_some(c)
    })
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let run = peer.finish(Duration::from_secs(10)).await;
    run.assert_success();
    assert!(
        run.messages.contains(&format!("m=audio {rtp_port} ")),
        "the spray was aimed at the call's RTP port"
    );

    let stored = download(&srv, id, "stereo").await;
    let far = stored.channels[0].clone();
    let share = tone_share(&far);
    assert!(
        share < 0.3,
        "the spoofer's tone is in the customer's channel (share {share:.2})"
    );
    let (lag, _) = align(&speech.reference, &far);
    let c = piecewise_correlation(&speech.reference, &far, lag);
    eprintln!("{sprayed} packets sprayed; far end correlation {c:.4}, tone share {share:.3}");
    assert!(
        c >= 0.98,
        "the customer's channel is the far end's speech: {c:.4}"
    );
    srv.stop().await;
}
