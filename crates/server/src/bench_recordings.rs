//! `switchyard bench recordings`: how fast a call's live WAV becomes its
//! audio/mp4 files, and how big they are, next to ffmpeg's AAC encoder
//! (the peer) encoding the same WAV to a stereo AAC .m4a at the same
//! bitrate in the same run.
//!
//! The audio is speech from espeak-ng on both sides (different sentences
//! and voices), looped to the length asked for and written as the media
//! loop writes a live recording (stereo μ-law WAV), so the encoder sees
//! speech, pauses included, as on a call; with `--input` any stereo
//! recording (μ-law or 16-bit PCM WAV) instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard_media::m4a::{BITRATE_PER_CHANNEL, encode_recording};
use switchyard_media::recorder::{RecordingReader, StereoRecorder};
use switchyard_telephony::media_loop::CHECKPOINT_TICKS;

#[derive(Debug, Clone, clap::Args)]
pub struct RecordingBenchArgs {
    /// Minutes of call audio to encode.
    #[arg(long, default_value_t = 10)]
    pub minutes: u32,
    /// A stereo WAV (μ-law or 16-bit PCM) to encode instead of generated speech.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Times to repeat each encoder (the best run is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
    /// Live recordings written at once for the recorder's own cost.
    #[arg(long, default_value_t = 1000)]
    pub live_calls: usize,
    /// Seconds of each live recording.
    #[arg(long, default_value_t = 20)]
    pub live_seconds: usize,
}

fn cpu_seconds_self() -> anyhow::Result<f64> {
    crate::bench_sip::cpu_seconds("self")
}

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("{cmd:?}: {e} (scripts/install-test-deps.sh installs it)"))?;
    if !out.status.success() {
        anyhow::bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// 8 kHz mono speech from espeak-ng (resampled with sox).
fn speech(dir: &Path, name: &str, voice: &str, text: &str) -> anyhow::Result<Vec<i16>> {
    let raw = dir.join(format!("{name}-raw.wav"));
    let wav = dir.join(format!("{name}.wav"));
    run(Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&raw)
        .arg(text))?;
    run(Command::new("sox")
        .arg(&raw)
        .args(["-r", "8000", "-c", "1", "-b", "16"])
        .arg(&wav))?;
    Ok(hound::WavReader::open(&wav)?
        .into_samples::<i16>()
        .collect::<Result<_, _>>()?)
}

/// A stereo call of `minutes`: a driver on the left, the agent on the right.
fn call_audio(dir: &Path, minutes: u32) -> anyhow::Result<PathBuf> {
    let customer = speech(
        dir,
        "customer",
        "en-us",
        "Yeah this is Mike, I'm about forty miles out of Memphis, should be at the dock by three. \
         The reefer is holding at thirty four degrees. Do you need the seal number?",
    )?;
    let agent = speech(
        dir,
        "agent",
        "en-gb",
        "Thanks Mike. I'm checking on load four four seven for the Memphis delivery. \
         Please send the seal number and call us when you are unloaded.",
    )?;
    // Written the way the media loop writes a live recording.
    let path = dir.join("call.wav");
    let mut rec = StereoRecorder::new(std::fs::File::create(&path)?, 8000, FRAME)?;
    let total = minutes as usize * 60 * 8000;
    // They take turns: one speaks while the other is silent, then swap.
    let turn = customer.len() + agent.len();
    let mut left = vec![0i16; FRAME];
    let mut right = vec![0i16; FRAME];
    for start in (0..total).step_by(FRAME) {
        for i in 0..FRAME {
            let t = (start + i) % turn;
            (left[i], right[i]) = if t < customer.len() {
                (customer[t], 0)
            } else {
                (0, agent[t - customer.len()])
            };
        }
        rec.tick(Some(&left), Some(&right))?;
    }
    rec.finish()?;
    Ok(path)
}

/// Samples per 20 ms frame at 8 kHz.
const FRAME: usize = 160;

fn wav_seconds(path: &Path) -> anyhow::Result<f64> {
    let r = RecordingReader::new(std::fs::File::open(path)?)?;
    Ok(r.frames as f64 / f64::from(r.sample_rate))
}

/// ffmpeg's `-benchmark` line: user + system CPU seconds.
fn ffmpeg_cpu(output: &str) -> Option<f64> {
    let line = output
        .lines()
        .rev()
        .find(|l| l.starts_with("bench: utime="))?;
    let field = |name: &str| -> Option<f64> {
        let at = line.find(name)? + name.len();
        line[at..].split('s').next()?.parse().ok()
    };
    Some(field("utime=")? + field("stime=")?)
}

pub fn run_recordings(args: RecordingBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-bench-rec-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&args, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(args: &RecordingBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let input = match &args.input {
        Some(p) => p.clone(),
        None => call_audio(dir, args.minutes)?,
    };
    let seconds = wav_seconds(&input)?;
    let wav_bytes = std::fs::metadata(&input)?.len();
    let runs = args.runs.max(1);

    let mut ours = f64::MAX;
    let mut sizes = (0usize, 0usize, 0usize);
    for _ in 0..runs {
        let bytes = std::fs::read(&input)?;
        let before = cpu_seconds_self()?;
        let enc = encode_recording(std::io::Cursor::new(bytes))?;
        ours = ours.min(cpu_seconds_self()? - before);
        sizes = (
            enc.stereo.bytes.len(),
            enc.customer.bytes.len(),
            enc.agent.bytes.len(),
        );
    }

    let out = dir.join("ffmpeg.m4a");
    let mut peer = f64::MAX;
    for _ in 0..runs {
        let said = run(Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-hide_banner",
                "-nostats",
                "-benchmark",
                "-y",
                "-i",
            ])
            .arg(&input)
            .args([
                "-c:a",
                "aac",
                "-b:a",
                &(2 * BITRATE_PER_CHANNEL).to_string(),
            ])
            .arg(&out))?;
        peer = peer.min(
            ffmpeg_cpu(&said)
                .ok_or_else(|| anyhow::anyhow!("ffmpeg printed no -benchmark line: {said}"))?,
        );
    }
    let ffmpeg_bytes = std::fs::metadata(&out)?.len();

    let per_minute = |bytes: usize| bytes as f64 / (seconds / 60.0) / 1024.0;
    println!(
        "Recording encoding: {:.0} s of 8 kHz stereo call audio ({:.1} MiB of WAV), best of {runs} runs, one thread",
        seconds,
        wav_bytes as f64 / 1_048_576.0
    );
    println!("| encoder | files | CPU s | s of audio per CPU s | KiB per minute |");
    println!("|---|---|---:|---:|---:|");
    println!(
        "| Switchyard (syom AAC-LC, {} kbps per channel) | stereo + customer + agent | {ours:.2} | {:.0} | {:.0} + {:.0} + {:.0} |",
        BITRATE_PER_CHANNEL / 1000,
        seconds / ours.max(1e-9),
        per_minute(sizes.0),
        per_minute(sizes.1),
        per_minute(sizes.2)
    );
    println!(
        "| ffmpeg (native AAC, {} kbps stereo) | stereo | {peer:.2} | {:.0} | {:.0} |",
        2 * BITRATE_PER_CHANNEL / 1000,
        seconds / peer.max(1e-9),
        per_minute(ffmpeg_bytes as usize)
    );
    println!(
        "Switchyard's three files cost {:.2}× ffmpeg's one stereo file in CPU.",
        ours / peer.max(1e-9)
    );
    live_recording(args, dir)
}

/// What the media loop pays to record: `live_calls` recordings written as
/// the loop writes them (a tick of each every 20 ms of audio, a checkpoint
/// every [`CHECKPOINT_TICKS`]), to files in the data directory's file
/// system, as fast as the recorder goes. Reported per second of call.
fn live_recording(args: &RecordingBenchArgs, dir: &Path) -> anyhow::Result<()> {
    let live = dir.join("live");
    std::fs::create_dir_all(&live)?;
    let mut recorders = (0..args.live_calls)
        .map(|i| {
            let file = std::fs::File::create(live.join(format!("{i}.wav")))?;
            let mut rec = StereoRecorder::new(file, 8000, FRAME)?;
            rec.reserve_ticks(CHECKPOINT_TICKS as usize);
            Ok(rec)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Speech-like frames: a tone with a changing level on each side.
    let frames: Vec<Vec<i16>> = (0..50)
        .map(|f| {
            (0..FRAME)
                .map(|i| {
                    let t = (f * FRAME + i) as f64 / 8000.0;
                    (f64::sin(2.0 * std::f64::consts::PI * 300.0 * t) * 6000.0 * (f % 7) as f64
                        / 7.0) as i16
                })
                .collect()
        })
        .collect();
    let ticks = args.live_seconds * 50;
    let before = cpu_seconds_self()?;
    for t in 0..ticks {
        let far = &frames[t % frames.len()];
        let near = &frames[(t + 25) % frames.len()];
        for rec in recorders.iter_mut() {
            rec.tick(Some(far), Some(near))?;
            if (t as u64 + 1).is_multiple_of(CHECKPOINT_TICKS) {
                rec.checkpoint()?;
            }
        }
    }
    for rec in recorders {
        rec.finish()?;
    }
    let cpu = cpu_seconds_self()? - before;
    let call_seconds = (args.live_calls * args.live_seconds) as f64;
    println!(
        "Live recording: {} calls × {} s written as the media loop writes them: {:.2} CPU s, {:.4} ms per second of call",
        args.live_calls,
        args.live_seconds,
        cpu,
        1000.0 * cpu / call_seconds
    );
    // The same with 16-bit PCM through hound and a one-second buffer (the
    // recorder before μ-law), for comparison.
    let pcm = dir.join("live-pcm");
    std::fs::create_dir_all(&pcm)?;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writers = (0..args.live_calls)
        .map(|i| {
            let file = std::fs::File::create(pcm.join(format!("{i}.wav")))?;
            Ok(hound::WavWriter::new(
                std::io::BufWriter::with_capacity(32_000, file),
                spec,
            )?)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let before = cpu_seconds_self()?;
    for t in 0..ticks {
        let far = &frames[t % frames.len()];
        let near = &frames[(t + 25) % frames.len()];
        for w in writers.iter_mut() {
            let mut tick = w.get_i16_writer(2 * FRAME as u32);
            for i in 0..FRAME {
                tick.write_sample(far[i]);
                tick.write_sample(near[i]);
            }
            tick.flush()?;
            if t % 50 == 49 {
                w.flush()?;
            }
        }
    }
    for w in writers {
        w.finalize()?;
    }
    let cpu_pcm = cpu_seconds_self()? - before;
    println!(
        "Live recording as 16-bit PCM (hound, 1 s buffer): {:.2} CPU s, {:.4} ms per second of call",
        cpu_pcm,
        1000.0 * cpu_pcm / call_seconds
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ffmpegs_benchmark_line() {
        let out =
            "something\nbench: utime=1.234s stime=0.050s rtime=1.300s\nbench: maxrss=12345KiB\n";
        assert!((ffmpeg_cpu(out).unwrap() - 1.284).abs() < 1e-9);
        assert_eq!(ffmpeg_cpu("nothing"), None);
    }
}
