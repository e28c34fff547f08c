//! Both directions of audio with a real softphone: baresip answers our
//! call, plays one recording of speech into it and records what it hears.
//! Our recording's far-end channel must hold baresip's speech, and
//! baresip's recording must hold our prompt.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::sipp::{free_port, tool_available};
use common::{Backend, TempDir, TestServer, eventually};
use serde_json::json;
use switchyard_domain::id::CallId;

/// baresip, killed when dropped.
struct Baresip(Child);

impl Drop for Baresip {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Speech as 8 kHz 16-bit mono WAV.
fn speak(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let raw = dir.join(format!("{name}-raw.wav"));
    let wav = dir.join(format!("{name}.wav"));
    run(Command::new("espeak-ng").arg("-w").arg(&raw).arg(text));
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&wav));
    wav
}

fn read_mono(path: &Path, channel: usize) -> Vec<i16> {
    let reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let channels = reader.spec().channels as usize;
    let samples: Vec<i16> = reader
        .into_samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("samples");
    samples
        .chunks(channels)
        .map(|f| f[channel.min(channels - 1)])
        .collect()
}

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

/// The best correlation of `reference` within `recorded` over all lags
/// (found on a loud stretch, then measured over the whole reference, or
/// as much of it as was recorded).
fn best_alignment(reference: &[i16], recorded: &[i16]) -> f64 {
    let start = reference
        .iter()
        .position(|s| s.unsigned_abs() > 2000)
        .unwrap_or(0);
    let probe = &reference[start..(start + 2400).min(reference.len())];
    let mut best = (0usize, f64::MIN);
    for lag in start..recorded.len().saturating_sub(probe.len()) {
        let c = correlation(probe, recorded, lag);
        if c > best.1 {
            best = (lag, c);
        }
    }
    let lag = best.0 - start;
    correlation(reference, recorded, lag)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_flows_both_ways_with_baresip() {
    if !tool_available("baresip", "-h")
        || !tool_available("espeak-ng", "--version")
        || !tool_available("sox", "--version")
    {
        return;
    }
    let dir = TempDir::new();
    let theirs = speak(
        &dir.0,
        "theirs",
        "This is the carrier. The truck is loaded and leaves Chicago at noon, arriving Friday.",
    );
    let ours = speak(
        &dir.0,
        "ours",
        "Hello, this is Switchyard calling about load number four four seven.",
    );
    let their_speech = read_mono(&theirs, 0);
    let our_prompt = read_mono(&ours, 0);

    // baresip: auto-answer on loopback, play `theirs`, record to rec/.
    let sip_port = free_port();
    let rtp_first = common::sipp::free_media_port();
    let conf = dir.0.join("baresip");
    let rec = dir.0.join("rec");
    std::fs::create_dir_all(&conf).expect("conf dir");
    std::fs::create_dir_all(&rec).expect("rec dir");
    std::fs::write(
        conf.join("accounts"),
        format!(
            "<sip:carrier@127.0.0.1:{sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU/8000/1\n"
        ),
    )
    .expect("accounts");
    std::fs::write(
        conf.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nsip_trans_def udp\nnet_interface 127.0.0.1\n\
             audio_player aubridge,sink\naudio_alert aubridge,sink\naudio_source aufile,{}\n\
             audio_srate 8000\naudio_channels 1\nrtp_ports {rtp_first}-{}\nrtcp_mux no\njitter_buffer_delay 5-10\n\
             module_path /usr/lib/baresip/modules\nmodule g711.so\nmodule aufile.so\nmodule aubridge.so\n\
             module sndfile.so\nmodule account.so\nmodule menu.so\nsnd_path {}\n",
            theirs.display(),
            rtp_first + 3,
            rec.display()
        ),
    )
    .expect("config");
    let _baresip = Baresip(
        Command::new("baresip")
            .arg("-f")
            .arg(&conf)
            .args(["-t", "60"])
            .current_dir(&dir.0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn baresip"),
    );

    let prompt = ours.clone();
    let Some(srv) = TestServer::start_with(Backend::Sqlite, move |c| {
        c.sip_enabled = true;
        c.prompt_file = Some(prompt);
    })
    .await
    else {
        return;
    };
    let t = srv
        .post(
            "/sip-trunks",
            json!({"name": "softphone", "host": "127.0.0.1", "port": sip_port}),
        )
        .await;
    assert_eq!(t.status, 201, "{}", t.body);
    srv.post(
        "/phone-numbers",
        json!({"number": "+15550001000", "sip_trunk_id": t.body["id"]}),
    )
    .await;
    // baresip may take a moment to listen: the INVITE is retransmitted until it does.
    let call = srv
        .create_call(json!({"to_number": "sip:carrier@127.0.0.1"}))
        .await;
    let id = CallId::parse(call["id"].as_str().unwrap()).unwrap();
    // baresip hangs up when its file ends (aufile), after our prompt has played.
    let done = eventually(Duration::from_secs(40), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        ["COMPLETED", "FAILED", "NO_ANSWER", "BUSY"]
            .contains(&c["status"].as_str().unwrap_or_default())
            .then_some(c)
    })
    .await;
    assert_eq!(done["status"], "COMPLETED", "{done}");

    // Our recording: baresip's speech on the far-end channel.
    let far = common::recording::download(&srv, id, "stereo")
        .await
        .channels[0]
        .clone();
    let c_far = best_alignment(&their_speech, &far);
    // baresip's recording of what it heard: our prompt.
    let heard = eventually(Duration::from_secs(10), || async {
        std::fs::read_dir(&rec)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.to_string_lossy().ends_with("-dec.wav")
                    && std::fs::metadata(p).is_ok_and(|m| m.len() > 44)
            })
    })
    .await;
    let c_near = best_alignment(&our_prompt, &read_mono(&heard, 0));
    eprintln!("baresip → us: {c_far:.4}; us → baresip: {c_near:.4}");
    assert!(
        c_far >= 0.95,
        "our recording holds baresip's speech: {c_far:.4}"
    );
    assert!(c_near >= 0.95, "baresip heard our prompt: {c_near:.4}");
    srv.stop().await;
}
