//! ITU-T G.711 μ-law (PCMU) and A-law (PCMA) for 16-bit linear PCM.
//!
//! Written by hand: the algorithm is a few lines and fixed since 1972, and
//! the crates that offer it are unmaintained one-offs. Decoding goes through
//! 256-entry tables built at compile time; encoding is computed.

const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;

/// The code of every 16-bit sample, built once per law (64 KiB each): on
/// the media path (16 000 samples a second per recorded call, 8 000 per
/// sent stream) a lookup costs a third of computing the code.
pub fn ulaw_encode_table() -> &'static [u8; 65536] {
    static TABLE: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| encode_table(ulaw_encode))
}

pub fn alaw_encode_table() -> &'static [u8; 65536] {
    static TABLE: std::sync::OnceLock<Box<[u8; 65536]>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| encode_table(alaw_encode))
}

fn encode_table(encode: fn(i16) -> u8) -> Box<[u8; 65536]> {
    let mut t = Box::new([0u8; 65536]);
    for (i, code) in t.iter_mut().enumerate() {
        *code = encode(i as u16 as i16);
    }
    t
}

/// Encodes one sample to μ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut pcm = sample as i32;
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(ULAW_CLIP) + ULAW_BIAS;
    // The segment is the position of the highest set bit above bit 7.
    let exponent = (31 - (pcm as u32).leading_zeros()) as i32 - 7;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

const fn ulaw_decode_const(byte: u8) -> i16 {
    let u = !byte;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    if u & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one sample to A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = (sample as i32) >> 3;
    let mask: i32 = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    // Segment end points of the 13-bit magnitude.
    const SEG_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];
    let Some(seg) = SEG_END.iter().position(|&end| pcm <= end) else {
        return (0x7F ^ mask) as u8;
    };
    let shift = if seg < 2 { 1 } else { seg };
    let aval = ((seg as i32) << 4) | ((pcm >> shift) & 0x0F);
    (aval ^ mask) as u8
}

const fn alaw_decode_const(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = ((a & 0x0F) as i32) << 4;
    let seg = ((a & 0x70) >> 4) as i32;
    match seg {
        0 => t += 8,
        1 => t += 0x108,
        _ => {
            t += 0x108;
            t <<= seg - 1;
        }
    }
    if a & 0x80 != 0 { t as i16 } else { -t as i16 }
}

const fn ulaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_const(i as u8);
        i += 1;
    }
    t
}

const fn alaw_table() -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_const(i as u8);
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = ulaw_table();
static ALAW_TABLE: [i16; 256] = alaw_table();

pub fn ulaw_decode(byte: u8) -> i16 {
    ULAW_TABLE[byte as usize]
}

pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TABLE[byte as usize]
}

/// The two G.711 laws, by their RTP static payload types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// PCMU, payload type 0.
    Ulaw,
    /// PCMA, payload type 8.
    Alaw,
}

impl G711 {
    pub const fn payload_type(self) -> u8 {
        match self {
            G711::Ulaw => 0,
            G711::Alaw => 8,
        }
    }

    pub const fn from_payload_type(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(G711::Ulaw),
            8 => Some(G711::Alaw),
            _ => None,
        }
    }

    /// The encoding name in SDP (`a=rtpmap:0 PCMU/8000`).
    pub const fn name(self) -> &'static str {
        match self {
            G711::Ulaw => "PCMU",
            G711::Alaw => "PCMA",
        }
    }

    /// Appends the encoding of `pcm` to `out`.
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        let t = match self {
            G711::Ulaw => ulaw_encode_table(),
            G711::Alaw => alaw_encode_table(),
        };
        out.extend(pcm.iter().map(|&s| t[s as u16 as usize]));
    }

    /// Appends the decoding of `payload` to `out`.
    pub fn decode(self, payload: &[u8], out: &mut Vec<i16>) {
        let t = match self {
            G711::Ulaw => &ULAW_TABLE,
            G711::Alaw => &ALAW_TABLE,
        };
        out.extend(payload.iter().map(|&b| t[b as usize]));
    }

    /// The byte for digital silence.
    pub const fn silence(self) -> u8 {
        match self {
            G711::Ulaw => 0xFF,
            G711::Alaw => 0xD5,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_values() {
        // Values from the ITU reference implementation (and Sun's g711.c).
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32_256);
        assert_eq!(alaw_decode(0x2A), -32_256);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for b in 0..=255u8 {
            // μ-law has two zeros (0x7F is "negative zero"); both decode to 0.
            if b != 0x7F {
                assert_eq!(ulaw_encode(ulaw_decode(b)), b, "μ-law {b:#04x}");
            }
            assert_eq!(alaw_encode(alaw_decode(b)), b, "A-law {b:#04x}");
        }
    }

    #[test]
    fn quantisation_error_is_bounded_and_monotonic() {
        let mut last_u = i16::MIN;
        let mut last_a = i16::MIN;
        for s in i16::MIN..=i16::MAX {
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            // The step grows with the segment: at most 1/16 of the magnitude, plus the bias.
            let bound = (s as i32).abs() / 16 + 140;
            assert!(((u as i32) - (s as i32)).abs() <= bound, "μ-law {s} -> {u}");
            assert!(((a as i32) - (s as i32)).abs() <= bound, "A-law {s} -> {a}");
            assert!(u >= last_u && a >= last_a, "monotonic at {s}");
            last_u = u;
            last_a = a;
        }
    }

    #[test]
    fn frames() {
        let pcm: Vec<i16> = (0..160)
            .map(|i| ((i as f32 / 8.0).sin() * 8000.0) as i16)
            .collect();
        for law in [G711::Ulaw, G711::Alaw] {
            let mut bytes = Vec::new();
            law.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 160);
            let mut back = Vec::new();
            law.decode(&bytes, &mut back);
            assert_eq!(back.len(), 160);
            assert_eq!(G711::from_payload_type(law.payload_type()), Some(law));
        }
        assert_eq!(ulaw_decode(G711::Ulaw.silence()), 0);
        assert_eq!(alaw_decode(G711::Alaw.silence()).abs(), 8);
    }

    #[test]
    fn the_encode_tables_agree_with_the_codecs_for_every_sample() {
        let (u, a) = (ulaw_encode_table(), alaw_encode_table());
        for s in i16::MIN..=i16::MAX {
            assert_eq!(u[s as u16 as usize], ulaw_encode(s), "μ-law {s}");
            assert_eq!(a[s as u16 as usize], alaw_encode(s), "A-law {s}");
        }
    }
}
