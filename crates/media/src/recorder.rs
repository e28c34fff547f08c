//! The live recording of a call: a stereo WAV of G.711 μ-law, far end (the
//! customer) left, our side right, one frame of each per media tick so the
//! channels stay aligned on the call's clock. A side with nothing to say in
//! a tick is written as silence.
//!
//! μ-law because it is what the call carries: the far end arrives as G.711
//! and what we send leaves as G.711, so 8 bits a sample lose nothing the
//! call had (a PCMU call's audio is kept bit for bit), and the file is half
//! the size of 16-bit PCM. That half matters: the recording is the media
//! loop's only disk traffic, 16 KB/s per call.
//!
//! The tick's bytes gather in memory; every [`StereoRecorder::checkpoint`]
//! writes them and then the whole header (sizes brought up to date) with
//! two positioned writes, no seeks, so a crash leaves a playable file up to
//! the last checkpoint. Written by hand because hound, the WAV crate used
//! elsewhere, writes PCM only; the format is the fixed 58-byte header of a
//! non-PCM WAVE file (RIFF, `fmt ` with `cbSize`, `fact`, `data`).

use std::io::{self, Read};

use thiserror::Error;

use crate::g711::{ulaw_decode, ulaw_encode_table};

#[derive(Debug, Error)]
pub enum RecorderError {
    #[error("a frame must have {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Where a recording is written: positioned writes, so a checkpoint needs
/// no seeking (a file uses `pwrite`).
pub trait RecordingSink {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
}

#[cfg(unix)]
impl RecordingSink for std::fs::File {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, offset)
    }
}

impl RecordingSink for Vec<u8> {
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(io::Error::other)?;
        let end = start + buf.len();
        if self.len() < end {
            self.resize(end, 0);
        }
        self[start..end].copy_from_slice(buf);
        Ok(())
    }
}

const WAVE_FORMAT_MULAW: u16 = 7;
const CHANNELS: u16 = 2;
/// RIFF (12) + `fmt ` (8 + 18) + `fact` (8 + 4) + `data` (8).
pub const HEADER_LEN: usize = 58;

/// The header of a stereo μ-law WAV holding `frames` samples per channel.
fn header(sample_rate: u32, frames: u32) -> [u8; HEADER_LEN] {
    let data_len = frames.saturating_mul(u32::from(CHANNELS));
    let mut h = [0u8; HEADER_LEN];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        h[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"RIFF");
    put(&(HEADER_LEN as u32 - 8)
        .saturating_add(data_len)
        .to_le_bytes());
    put(b"WAVE");
    put(b"fmt ");
    put(&18u32.to_le_bytes());
    put(&WAVE_FORMAT_MULAW.to_le_bytes());
    put(&CHANNELS.to_le_bytes());
    put(&sample_rate.to_le_bytes());
    put(&(sample_rate * u32::from(CHANNELS)).to_le_bytes()); // bytes per second
    put(&CHANNELS.to_le_bytes()); // block align: one byte per channel
    put(&8u16.to_le_bytes()); // bits per sample
    put(&0u16.to_le_bytes()); // cbSize
    put(b"fact");
    put(&4u32.to_le_bytes());
    put(&frames.to_le_bytes());
    put(b"data");
    put(&data_len.to_le_bytes());
    h
}

pub struct StereoRecorder<S: RecordingSink> {
    sink: S,
    sample_rate: u32,
    frame_samples: usize,
    /// Interleaved μ-law bytes not yet written.
    pending: Vec<u8>,
    /// Bytes of audio already written after the header.
    written: u64,
    ticks: u64,
}

impl<S: RecordingSink> StereoRecorder<S> {
    /// A recorder of `frame_samples`-sample frames at `sample_rate`; the
    /// header (empty) is written at once.
    pub fn new(mut sink: S, sample_rate: u32, frame_samples: usize) -> Result<Self, RecorderError> {
        sink.write_all_at(&header(sample_rate, 0), 0)?;
        Ok(Self {
            sink,
            sample_rate,
            frame_samples,
            pending: Vec::with_capacity(sample_rate as usize * usize::from(CHANNELS)),
            written: 0,
            ticks: 0,
        })
    }

    /// Makes room for `ticks` ticks between checkpoints up front, so the
    /// buffer is allocated once at its size rather than grown by doubling
    /// (to up to twice what it needs, kept for the whole call).
    pub fn reserve_ticks(&mut self, ticks: usize) {
        let bytes = ticks * usize::from(CHANNELS) * self.frame_samples;
        self.pending
            .reserve_exact(bytes.saturating_sub(self.pending.len()));
    }

    /// Records one tick: the far end's frame (left) and ours (right).
    pub fn tick(&mut self, far: Option<&[i16]>, near: Option<&[i16]>) -> Result<(), RecorderError> {
        for side in [far, near].into_iter().flatten() {
            if side.len() != self.frame_samples {
                return Err(RecorderError::FrameSize {
                    expected: self.frame_samples,
                    got: side.len(),
                });
            }
        }
        const SILENCE: u8 = 0xFF; // μ-law's zero
        let table = ulaw_encode_table();
        let start = self.pending.len();
        self.pending.resize(start + 2 * self.frame_samples, SILENCE);
        let out = &mut self.pending[start..];
        if let Some(f) = far {
            for (o, s) in out.iter_mut().step_by(2).zip(f) {
                *o = table[*s as u16 as usize];
            }
        }
        if let Some(n) = near {
            for (o, s) in out.iter_mut().skip(1).step_by(2).zip(n) {
                *o = table[*s as u16 as usize];
            }
        }
        self.ticks += 1;
        Ok(())
    }

    /// Makes the file valid up to here: the audio since the last
    /// checkpoint, then the header with the sizes.
    pub fn checkpoint(&mut self) -> Result<(), RecorderError> {
        if !self.pending.is_empty() {
            self.sink
                .write_all_at(&self.pending, HEADER_LEN as u64 + self.written)?;
            self.written += self.pending.len() as u64;
            self.pending.clear();
        }
        let frames = u32::try_from(self.written / u64::from(CHANNELS)).unwrap_or(u32::MAX);
        self.sink
            .write_all_at(&header(self.sample_rate, frames), 0)?;
        Ok(())
    }

    /// Samples per channel recorded so far.
    pub fn samples_per_channel(&self) -> u64 {
        self.ticks * self.frame_samples as u64
    }

    /// Completes the file; returns the samples per channel.
    pub fn finish(mut self) -> Result<u64, RecorderError> {
        self.checkpoint()?;
        Ok(self.samples_per_channel())
    }

    /// Completes the file and hands back where it was written.
    pub fn into_sink(mut self) -> Result<S, RecorderError> {
        self.checkpoint()?;
        Ok(self.sink)
    }
}

/// A recording read back: 16-bit samples, interleaved (left, right).
pub struct RecordingReader<R: Read> {
    inner: R,
    pub sample_rate: u32,
    pub channels: u16,
    /// Samples per channel the header says were checkpointed.
    pub frames: u64,
    format: SampleFormat,
    /// Bytes of audio left to read.
    remaining: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SampleFormat {
    Mulaw,
    Pcm16,
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl<R: Read> RecordingReader<R> {
    /// Reads the header of a live recording: μ-law (what the recorder
    /// writes) or 16-bit PCM (recordings of earlier versions). Audio past
    /// the header's sizes (written after the last checkpoint) is ignored.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let mut riff = [0u8; 12];
        inner.read_exact(&mut riff)?;
        if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            return Err(invalid("not a RIFF/WAVE file"));
        }
        let mut fmt: Option<(u16, u16, u32, u16)> = None;
        loop {
            let mut chunk = [0u8; 8];
            inner.read_exact(&mut chunk)?;
            let len = u64::from(read_u32(&chunk, 4));
            match &chunk[0..4] {
                b"fmt " => {
                    if !(16..=64).contains(&len) {
                        return Err(invalid(format!("a fmt chunk of {len} bytes")));
                    }
                    let mut body = vec![0u8; len as usize];
                    inner.read_exact(&mut body)?;
                    fmt = Some((
                        read_u16(&body, 0),
                        read_u16(&body, 2),
                        read_u32(&body, 4),
                        read_u16(&body, 14),
                    ));
                }
                b"data" => {
                    let (tag, channels, sample_rate, bits) =
                        fmt.ok_or_else(|| invalid("data before fmt"))?;
                    let format = match (tag, bits) {
                        (WAVE_FORMAT_MULAW, 8) => SampleFormat::Mulaw,
                        (1, 16) => SampleFormat::Pcm16,
                        _ => {
                            return Err(invalid(format!(
                                "format {tag} with {bits} bits is not a recording"
                            )));
                        }
                    };
                    if channels == 0 || sample_rate == 0 {
                        return Err(invalid("no channels or no sample rate"));
                    }
                    let bytes_per_frame =
                        u64::from(channels) * if format == SampleFormat::Pcm16 { 2 } else { 1 };
                    return Ok(Self {
                        inner,
                        sample_rate,
                        channels,
                        frames: len / bytes_per_frame,
                        format,
                        remaining: len - len % bytes_per_frame,
                    });
                }
                _ => {
                    // `fact`, `LIST`, …: skipped (chunks are padded to even sizes).
                    io::copy(&mut (&mut inner).take(len + (len & 1)), &mut io::sink())?;
                }
            }
        }
    }

    /// Fills `out` with up to `out.len()` interleaved samples; returns how
    /// many (0 at the end). A file cut short ends early, as it is.
    pub fn read_samples(&mut self, out: &mut [i16]) -> io::Result<usize> {
        let width = if self.format == SampleFormat::Pcm16 {
            2
        } else {
            1
        };
        let want = (out.len() as u64).min(self.remaining / width) as usize;
        let mut bytes = vec![0u8; want * width as usize];
        let mut got = 0;
        while got < bytes.len() {
            match self.inner.read(&mut bytes[got..])? {
                0 => break,
                n => got += n,
            }
        }
        let samples = got / width as usize;
        for (i, s) in out.iter_mut().take(samples).enumerate() {
            *s = match self.format {
                SampleFormat::Mulaw => ulaw_decode(bytes[i]),
                SampleFormat::Pcm16 => i16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]),
            };
        }
        self.remaining = if got < bytes.len() {
            0
        } else {
            self.remaining - (samples as u64) * width
        };
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, phase: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (((i + phase) as f32 / 9.0).sin() * 9000.0) as i16)
            .collect()
    }

    fn read_all(bytes: &[u8]) -> (RecordingReader<&[u8]>, Vec<i16>) {
        let mut r = RecordingReader::new(bytes).unwrap();
        let mut all = Vec::new();
        let mut buf = vec![0i16; 1000];
        loop {
            let n = r.read_samples(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        (r, all)
    }

    #[test]
    fn channels_are_aligned_and_silence_fills_gaps() {
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        for t in 0..50 {
            let far = tone(160, t * 160);
            let near = (t >= 25).then(|| vec![1000i16; 160]);
            rec.tick(Some(&far), near.as_deref()).unwrap();
        }
        assert_eq!(rec.samples_per_channel(), 8000);
        rec.checkpoint().unwrap();
        let bytes = rec.sink.clone();
        assert_eq!(bytes.len(), HEADER_LEN + 16_000, "8 bits a sample");
        let (r, samples) = read_all(&bytes);
        assert_eq!((r.channels, r.sample_rate, r.frames), (2, 8000, 8000));
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        // μ-law keeps each sample to within its quantisation step.
        for (got, want) in left.iter().zip(tone(8000, 0)) {
            let step = (i32::from(want).abs() / 16).max(8);
            assert!(
                (i32::from(*got) - i32::from(want)).abs() <= step,
                "{got} vs {want}"
            );
        }
        assert!(right[..4000].iter().all(|s| *s == 0));
        assert!(right[4000..].iter().all(|s| (*s - 1000).abs() <= 32));
    }

    #[test]
    fn g711_audio_is_kept_bit_for_bit() {
        // What a PCMU call carries decodes to values μ-law encodes back exactly.
        let wire: Vec<i16> = (0..=255u8).map(ulaw_decode).collect();
        let mut frame = wire.clone();
        frame.resize(320, 0);
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 320).unwrap();
        rec.tick(Some(&frame), None).unwrap();
        rec.checkpoint().unwrap();
        let (_, samples) = read_all(&rec.sink.clone());
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        assert_eq!(&left[..256], &wire[..]);
    }

    #[test]
    fn a_checkpointed_file_is_playable_before_it_is_finished() {
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        for _ in 0..10 {
            rec.tick(None, Some(&[7; 160])).unwrap();
        }
        rec.checkpoint().unwrap();
        // More audio after the checkpoint: written only at the next one.
        rec.tick(None, Some(&[7; 160])).unwrap();
        let bytes = rec.sink.clone();
        // The process dies here: no finish().
        let (r, samples) = read_all(&bytes);
        assert_eq!(r.frames, 1600);
        assert_eq!(samples.len(), 3200);
        // A file cut inside its audio (a crash mid-write) reads what is there.
        let (_, cut) = read_all(&bytes[..HEADER_LEN + 1000]);
        assert_eq!(cut.len(), 1000);
    }

    #[test]
    fn the_buffer_reserved_for_a_checkpoint_interval_is_not_grown() {
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        rec.reserve_ticks(250);
        let reserved = rec.pending.capacity();
        assert!(reserved >= 250 * 2 * 160);
        for _ in 0..2 {
            for _ in 0..250 {
                rec.tick(Some(&[3; 160]), Some(&[7; 160])).unwrap();
            }
            rec.checkpoint().unwrap();
        }
        assert_eq!(rec.pending.capacity(), reserved);
        let (r, _) = read_all(&rec.sink);
        assert_eq!(r.frames, 500 * 160);
    }

    #[test]
    fn an_empty_recording_has_a_valid_header() {
        let rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        let bytes = rec.sink.clone();
        let (r, samples) = read_all(&bytes);
        assert_eq!((r.frames, samples.len()), (0, 0));
        assert_eq!(read_u32(&bytes, 4) as usize, HEADER_LEN - 8);
    }

    #[test]
    fn pcm16_recordings_of_earlier_versions_still_read() {
        let mut out = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
        for s in [1i16, -2, 300, -400] {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        let (r, samples) = read_all(out.get_ref());
        assert_eq!((r.frames, samples), (2, vec![1, -2, 300, -400]));
    }

    #[test]
    fn what_is_not_a_recording_is_refused() {
        assert!(RecordingReader::new(&b"RIFF\0\0\0\0AVI "[..]).is_err());
        assert!(RecordingReader::new(&b"RIF"[..]).is_err());
        let mut bad = header(8000, 0).to_vec();
        bad[20] = 3; // IEEE float
        assert!(RecordingReader::new(&bad[..]).is_err());
    }

    #[test]
    fn wrong_frame_sizes_are_refused() {
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        assert!(matches!(
            rec.tick(Some(&[0; 80]), None),
            Err(RecorderError::FrameSize {
                expected: 160,
                got: 80
            })
        ));
        assert_eq!(rec.samples_per_channel(), 0);
    }
}
