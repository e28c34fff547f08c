//! The live recording of a call: a stereo 16-bit WAV, far end (the
//! customer) left, our side right, one frame of each per media tick so the
//! channels stay aligned on the call's clock. A side with nothing to say in
//! a tick is written as silence. The header is brought up to date at every
//! [`StereoRecorder::checkpoint`], so a crash leaves a playable file up to
//! the last checkpoint; the recordings work turns the WAV into audio/mp4.

use std::io::{Seek, Write};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum RecorderError {
    #[error("a frame must have {expected} samples, got {got}")]
    FrameSize { expected: usize, got: usize },
    #[error(transparent)]
    Wav(#[from] hound::Error),
}

pub struct StereoRecorder<W: Write + Seek> {
    writer: hound::WavWriter<W>,
    frame_samples: usize,
    ticks: u64,
}

impl<W: Write + Seek> StereoRecorder<W> {
    /// A recorder of `frame_samples`-sample frames at `sample_rate`.
    pub fn new(sink: W, sample_rate: u32, frame_samples: usize) -> Result<Self, RecorderError> {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        Ok(Self {
            writer: hound::WavWriter::new(sink, spec)?,
            frame_samples,
            ticks: 0,
        })
    }

    /// Writes one tick: the far end's frame (left) and ours (right).
    pub fn tick(&mut self, far: Option<&[i16]>, near: Option<&[i16]>) -> Result<(), RecorderError> {
        for side in [far, near].into_iter().flatten() {
            if side.len() != self.frame_samples {
                return Err(RecorderError::FrameSize {
                    expected: self.frame_samples,
                    got: side.len(),
                });
            }
        }
        // The tick's samples go to the sink in one write: hound's 16-bit
        // writer fills a buffer it keeps between ticks, where `write_sample`
        // makes a call into the sink per sample (half the cost of a tick).
        // It asserts that exactly the reserved count is written, which the
        // sizes checked above ensure.
        let mut tick = self.writer.get_i16_writer(2 * self.frame_samples as u32);
        for i in 0..self.frame_samples {
            tick.write_sample(far.map_or(0, |f| f[i]));
            tick.write_sample(near.map_or(0, |n| n[i]));
        }
        tick.flush()?;
        self.ticks += 1;
        Ok(())
    }

    /// Makes the file valid up to here (header sizes updated).
    pub fn checkpoint(&mut self) -> Result<(), RecorderError> {
        self.writer.flush()?;
        Ok(())
    }

    /// Samples per channel written so far.
    pub fn samples_per_channel(&self) -> u64 {
        self.ticks * self.frame_samples as u64
    }

    /// Completes the file.
    pub fn finish(self) -> Result<u64, RecorderError> {
        let samples = self.samples_per_channel();
        self.writer.finalize()?;
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn tone(n: usize, phase: usize) -> Vec<i16> {
        (0..n)
            .map(|i| (((i + phase) as f32 / 9.0).sin() * 9000.0) as i16)
            .collect()
    }

    #[test]
    fn channels_are_aligned_and_silence_fills_gaps() {
        let bytes = {
            let mut out = Cursor::new(Vec::new());
            let mut rec2 = StereoRecorder::new(&mut out, 8000, 160).unwrap();
            for t in 0..50 {
                let far = tone(160, t * 160);
                let near = (t >= 25).then(|| vec![1000i16; 160]);
                rec2.tick(Some(&far), near.as_deref()).unwrap();
            }
            assert_eq!(rec2.finish().unwrap(), 8000);
            out.into_inner()
        };
        let mut reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        assert_eq!(reader.duration(), 8000, "one second");
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
        let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(left, tone(8000, 0));
        assert!(right[..4000].iter().all(|s| *s == 0) && right[4000..].iter().all(|s| *s == 1000));
    }

    #[test]
    fn a_checkpointed_file_is_playable_before_it_is_finished() {
        let mut out = Cursor::new(Vec::new());
        {
            let mut rec = StereoRecorder::new(&mut out, 8000, 160).unwrap();
            for _ in 0..10 {
                rec.tick(None, Some(&[7; 160])).unwrap();
            }
            rec.checkpoint().unwrap();
            // The process dies here: no finish().
            std::mem::forget(rec);
        }
        let reader = hound::WavReader::new(Cursor::new(out.into_inner())).unwrap();
        assert_eq!(reader.duration(), 1600);
    }

    #[test]
    fn wrong_frame_sizes_are_refused() {
        let mut rec = StereoRecorder::new(Cursor::new(Vec::new()), 8000, 160).unwrap();
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
