//! `switchyard bench recordings`: how fast a call's live WAV becomes its
//! audio/mp4 files, and how big they are, next to ffmpeg's AAC encoder
//! (the peer) encoding the same WAV to a stereo AAC .m4a at the same
//! bitrate in the same run.
//!
//! The audio is speech from espeak-ng on both sides (different sentences
//! and voices), looped to the length asked for, so the encoder sees
//! speech, pauses included, as on a call; with `--input` any stereo 16-bit
//! WAV instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use switchyard_media::m4a::{BITRATE_PER_CHANNEL, encode_recording};

#[derive(Debug, Clone, clap::Args)]
pub struct RecordingBenchArgs {
    /// Minutes of call audio to encode.
    #[arg(long, default_value_t = 10)]
    pub minutes: u32,
    /// A stereo 16-bit WAV to encode instead of generated speech.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// Times to repeat each encoder (the best run is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: u32,
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
    let path = dir.join("call.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&path, spec)?;
    let total = minutes as usize * 60 * 8000;
    // They take turns: one speaks while the other is silent, then swap.
    let turn = customer.len() + agent.len();
    for i in 0..total {
        let t = i % turn;
        let (l, r) = if t < customer.len() {
            (customer[t], 0)
        } else {
            (0, agent[t - customer.len()])
        };
        w.write_sample(l)?;
        w.write_sample(r)?;
    }
    w.finalize()?;
    Ok(path)
}

fn wav_seconds(path: &Path) -> anyhow::Result<f64> {
    let r = hound::WavReader::open(path)?;
    Ok(r.duration() as f64 / f64::from(r.spec().sample_rate))
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
