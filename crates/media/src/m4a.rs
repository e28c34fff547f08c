//! Recordings people can play: the live stereo WAV (far end left, our side
//! right) turned into AAC-LC in an MP4 container (`audio/mp4`, `.m4a`) by
//! syom, in pure Rust. One pass over the WAV makes the stereo file and the
//! two one-sided ones (`?channel=customer|agent`), so the WAV is read once.
//!
//! Memory stays bounded by the compressed size: PCM goes through in chunks,
//! only the access units (≈ 3 KB/s per channel) are kept until the MP4 is
//! muxed, because an MP4's sample tables need every unit's size.

use std::io::Read;

use syom::{EncodeContainer, EncodeOptions, Encoder};

use crate::recorder::RecordingReader;

/// Bits per second per channel. Speech at 8 kHz (4 kHz of bandwidth) is
/// clear at 24 kbps per channel with AAC-LC, well under the 96 kbps cap.
pub const BITRATE_PER_CHANNEL: u32 = 24_000;

/// PCM samples per channel fed to the encoders at a time.
const CHUNK_SAMPLES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum M4aError {
    #[error("the recording cannot be read: {0}")]
    Read(#[from] std::io::Error),
    #[error("the recording is not stereo ({0} channels)")]
    Format(u16),
    #[error("the recording holds no audio")]
    Empty,
    #[error("the encoder's MP4 has an esds box of an unexpected shape")]
    Container,
    #[error("AAC encoding failed: {0}")]
    Aac(#[from] syom::AacError),
}

impl M4aError {
    /// Whether reading failed (worth a retry), not the recording itself.
    pub fn is_io(&self) -> bool {
        matches!(self, M4aError::Read(e) if e.kind() != std::io::ErrorKind::InvalidData)
    }
}

/// One `.m4a` file.
#[derive(Debug, Clone)]
pub struct M4a {
    pub bytes: Vec<u8>,
    pub channels: usize,
}

/// The three files of one recording.
#[derive(Debug, Clone)]
pub struct EncodedRecording {
    /// Far end (customer) left, our side (agent and joined humans) right.
    pub stereo: M4a,
    /// The far end alone, mono.
    pub customer: M4a,
    /// Our side alone, mono.
    pub agent: M4a,
    pub sample_rate: u32,
    /// Samples per channel, and the duration the files present.
    pub samples: u64,
    pub duration_seconds: f64,
}

/// An AAC-LC encoder that keeps its access units for the MP4 mux.
struct UnitEncoder {
    encoder: Encoder,
    units: Vec<Vec<u8>>,
    channels: usize,
}

impl UnitEncoder {
    fn new(sample_rate: u32, channels: usize) -> Result<Self, M4aError> {
        let opts = EncodeOptions::default()
            .with_container(EncodeContainer::Raw)
            .with_bitrate_bps(BITRATE_PER_CHANNEL * channels as u32);
        Ok(Self {
            encoder: Encoder::new(sample_rate, channels, &opts)?,
            units: Vec::new(),
            channels,
        })
    }

    fn feed(&mut self, planes: &[&[f32]]) -> Result<(), M4aError> {
        let units = &mut self.units;
        self.encoder.feed(planes, |frame| {
            units.push(frame.payload.to_vec());
            Ok(())
        })?;
        Ok(())
    }

    fn finish(mut self, sample_rate: u32) -> Result<M4a, M4aError> {
        let units = &mut self.units;
        let info = self.encoder.finish(|frame| {
            units.push(frame.payload.to_vec());
            Ok(())
        })?;
        let refs: Vec<&[u8]> = self.units.iter().map(Vec::as_slice).collect();
        let mut bytes = syom::mux_raw_lc_m4a(&refs, sample_rate, self.channels, info.samples)?;
        if !place_sl_config_beside_decoder_config(&mut bytes) {
            return Err(M4aError::Container);
        }
        Ok(M4a {
            bytes,
            channels: self.channels,
        })
    }
}

/// syom 0.9.0 writes the `esds` box's SLConfigDescriptor (tag 6) inside
/// the DecoderConfigDescriptor (tag 4): the latter's length counts it.
/// ISO/IEC 14496-1 puts it beside, in the ES_Descriptor (tag 3), and strict
/// demuxers (symphonia) refuse the file; lenient ones (ffmpeg, browsers)
/// play it. The bytes are in the right order; one length is not, and this
/// corrects it, after checking the box is exactly the shape syom writes.
/// Written by hand because it is one byte of one crate's output.
fn place_sl_config_beside_decoder_config(mp4: &mut [u8]) -> bool {
    let Some(at) = mp4.windows(4).rposition(|w| w == b"esds") else {
        return false;
    };
    // 'esds', version and flags (4), then ES_Descriptor: tag, length,
    // ES_ID (2), flags; then DecoderConfigDescriptor: tag, length.
    let es = at + 8;
    let dc = es + 5;
    let Some(&[es_tag, es_len, _, _, es_flags, dc_tag, dc_len]) = mp4.get(es..dc + 2) else {
        return false;
    };
    let (es_len, dc_len) = (es_len as usize, dc_len as usize);
    let sl = dc + 2 + dc_len - 3;
    let nested = es_tag == 0x03
        && es_flags == 0
        && dc_tag == 0x04
        && es_len == 3 + 2 + dc_len
        && mp4.get(sl..sl + 3) == Some(&[0x06, 0x01, 0x02]);
    if nested {
        mp4[dc + 1] -= 3;
    }
    // Already beside (a fixed syom): nothing to do.
    let beside = es_tag == 0x03
        && dc_tag == 0x04
        && es_len == 3 + 2 + dc_len + 3
        && mp4.get(dc + 2 + dc_len..dc + 2 + dc_len + 3) == Some(&[0x06, 0x01, 0x02]);
    nested || beside
}

fn to_f32(s: i16) -> f32 {
    f32::from(s) / 32768.0
}

/// Encodes a live recording (the stereo WAV [`crate::recorder::StereoRecorder`]
/// writes) into its three `.m4a` files. A recording whose header was last
/// checkpointed before a crash is read up to that checkpoint.
pub fn encode_recording<R: Read>(wav: R) -> Result<EncodedRecording, M4aError> {
    let mut reader = RecordingReader::new(wav)?;
    if reader.channels != 2 {
        return Err(M4aError::Format(reader.channels));
    }
    let rate = reader.sample_rate;
    let mut stereo = UnitEncoder::new(rate, 2)?;
    let mut customer = UnitEncoder::new(rate, 1)?;
    let mut agent = UnitEncoder::new(rate, 1)?;
    let mut interleaved = vec![0i16; 2 * CHUNK_SAMPLES];
    let mut left = Vec::with_capacity(CHUNK_SAMPLES);
    let mut right = Vec::with_capacity(CHUNK_SAMPLES);
    let mut samples = 0u64;
    loop {
        let n = reader.read_samples(&mut interleaved)?;
        if n < 2 {
            break;
        }
        left.clear();
        right.clear();
        for frame in interleaved[..n - n % 2].chunks_exact(2) {
            left.push(to_f32(frame[0]));
            right.push(to_f32(frame[1]));
        }
        samples += left.len() as u64;
        stereo.feed(&[&left, &right])?;
        customer.feed(&[&left])?;
        agent.feed(&[&right])?;
    }
    if samples == 0 {
        return Err(M4aError::Empty);
    }
    Ok(EncodedRecording {
        stereo: stereo.finish(rate)?,
        customer: customer.finish(rate)?,
        agent: agent.finish(rate)?,
        sample_rate: rate,
        samples,
        duration_seconds: samples as f64 / f64::from(rate),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::StereoRecorder;
    use std::io::Cursor;

    /// A stereo WAV: a 440 Hz tone on the left, 1000 Hz on the right.
    fn wav(seconds: f64) -> Vec<u8> {
        let mut rec = StereoRecorder::new(Vec::new(), 8000, 160).unwrap();
        let frames = (seconds * 50.0) as usize;
        for f in 0..frames {
            let tone = |hz: f64| -> Vec<i16> {
                (0..160)
                    .map(|i| {
                        let t = (f * 160 + i) as f64 / 8000.0;
                        (f64::sin(2.0 * std::f64::consts::PI * hz * t) * 8000.0) as i16
                    })
                    .collect()
            };
            rec.tick(Some(&tone(440.0)), Some(&tone(1000.0))).unwrap();
        }
        rec.into_sink().unwrap()
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let n = a.len().min(b.len());
        let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
        for i in 0..n {
            ab += f64::from(a[i]) * f64::from(b[i]);
            aa += f64::from(a[i]).powi(2);
            bb += f64::from(b[i]).powi(2);
        }
        ab / (aa.sqrt() * bb.sqrt()).max(1e-12)
    }

    #[test]
    fn stereo_and_one_sided_files_decode_to_the_recorded_audio() {
        let source = wav(3.0);
        let enc = encode_recording(Cursor::new(source.clone())).unwrap();
        assert_eq!(enc.samples, 24_000);
        assert!((enc.duration_seconds - 3.0).abs() < 1e-9);
        assert!(syom::sniff_is_isobmff(&enc.stereo.bytes));

        let mut reader = RecordingReader::new(&source[..]).unwrap();
        let mut samples = vec![0i16; 48_000];
        assert_eq!(reader.read_samples(&mut samples).unwrap(), 48_000);
        let pcm: Vec<f32> = samples.into_iter().map(to_f32).collect();
        let left: Vec<f32> = pcm.iter().step_by(2).copied().collect();
        let right: Vec<f32> = pcm.iter().skip(1).step_by(2).copied().collect();

        let stereo = syom::decode_with(&enc.stereo.bytes, &syom::DecodeOptions::audio()).unwrap();
        assert_eq!(stereo.sample_rate, 8000);
        assert_eq!(stereo.channels.len(), 2);
        // The container trims the encoder's priming: exactly the source length.
        assert_eq!(stereo.channels[0].len(), 24_000);
        assert!(correlation(&stereo.channels[0], &left) > 0.98);
        assert!(correlation(&stereo.channels[1], &right) > 0.98);
        // Each side stays on its own channel.
        assert!(correlation(&stereo.channels[0], &right).abs() < 0.1);

        for (file, want) in [(&enc.customer, &left), (&enc.agent, &right)] {
            let mono = syom::decode_with(&file.bytes, &syom::DecodeOptions::audio()).unwrap();
            assert_eq!(mono.channels.len(), 1);
            assert!(correlation(&mono.channels[0], want) > 0.98);
        }
        // ≈ 24 kbps per channel, and no more than the cap.
        let kbps = enc.stereo.bytes.len() as f64 * 8.0 / 3.0 / 1000.0;
        assert!(kbps < 2.0 * 96.0, "{kbps} kbps");
    }

    #[test]
    fn the_esds_box_has_its_sl_config_beside_the_decoder_config() {
        let enc = encode_recording(Cursor::new(wav(0.5))).unwrap();
        for file in [&enc.stereo, &enc.customer] {
            let b = &file.bytes;
            let at = b.windows(4).rposition(|w| w == b"esds").unwrap();
            let es = at + 8;
            assert_eq!(b[es], 0x03);
            let es_len = b[es + 1] as usize;
            assert_eq!(b[es + 5], 0x04);
            let dc_len = b[es + 6] as usize;
            // ES_ID + flags, the DecoderConfigDescriptor, then SLConfig.
            assert_eq!(es_len, 3 + 2 + dc_len + 3);
            let sl = es + 7 + dc_len;
            assert_eq!(&b[sl..sl + 3], &[0x06, 0x01, 0x02]);
            // What the DecoderConfigDescriptor holds ends with the ASC (tag 5).
            assert_eq!(b[es + 7 + 13], 0x05);
            assert_eq!(13 + 2 + b[es + 7 + 14] as usize, dc_len);
        }
        assert!(!place_sl_config_beside_decoder_config(
            &mut b"no boxes".to_vec()
        ));
    }

    #[test]
    fn what_is_not_a_recording_is_refused() {
        assert!(matches!(
            encode_recording(Cursor::new(b"RIFF\0\0".to_vec())),
            Err(M4aError::Read(_))
        ));
        assert!(matches!(
            encode_recording(Cursor::new(wav(0.0))),
            Err(M4aError::Empty)
        ));
        let mut mono = Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::new(&mut mono, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        assert!(matches!(
            encode_recording(Cursor::new(mono.into_inner())),
            Err(M4aError::Format(1))
        ));
    }
}
