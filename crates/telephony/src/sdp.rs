//! SDP (RFC 8866) offer/answer (RFC 3264) for one G.711 audio stream with
//! RFC 4733 telephone-events, ptime 20.
//!
//! Written by us, as the issue asks: the subset a SIP trunk or PBX sends is
//! small, and owning it lets every refusal be a precise 488.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use switchyard_media::g711::G711;
use thiserror::Error;

/// SDP bodies larger than this are refused unread.
pub const MAX_SDP_BYTES: usize = 64 * 1024;
/// Our payload type for telephone-event when we make the offer.
pub const DEFAULT_DTMF_PT: u8 = 101;
pub const PTIME_MS: u32 = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// Whether we send audio in this direction.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The direction an answer takes to this offered one.
    pub fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }
}

/// `a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpMap {
    pub payload_type: u8,
    pub encoding: String,
    pub clock_rate: u32,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Media {
    pub kind: String,
    pub port: u16,
    pub proto: String,
    /// The format list as given (payload types for RTP).
    pub formats: Vec<String>,
    pub connection: Option<IpAddr>,
    pub rtpmaps: Vec<RtpMap>,
    pub ptime: Option<u32>,
    pub direction: Option<Direction>,
}

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    pub origin_session_id: String,
    pub connection: Option<IpAddr>,
    pub direction: Option<Direction>,
    pub media: Vec<Media>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SdpError {
    #[error("malformed SDP: {0}")]
    Malformed(String),
    /// Nothing in the offer that we can do: answer 488 Not Acceptable Here.
    #[error("not acceptable: {0}")]
    NotAcceptable(String),
}

fn malformed(msg: impl Into<String>) -> SdpError {
    SdpError::Malformed(msg.into())
}

fn parse_connection(value: &str) -> Result<IpAddr, SdpError> {
    // c=IN IP4 192.0.2.1   (a multicast TTL suffix "/127" is dropped)
    let mut parts = value.split_whitespace();
    let (net, family, addr) = (parts.next(), parts.next(), parts.next());
    if net != Some("IN") || !matches!(family, Some("IP4" | "IP6")) {
        return Err(malformed(format!("unsupported c= line {value:?}")));
    }
    let addr = addr.ok_or_else(|| malformed("c= without an address"))?;
    let addr = addr.split('/').next().unwrap_or(addr);
    addr.parse()
        .map_err(|_| malformed(format!("c= address {addr:?} is not an IP address")))
}

fn parse_direction(attr: &str) -> Option<Direction> {
    match attr {
        "sendrecv" => Some(Direction::SendRecv),
        "sendonly" => Some(Direction::SendOnly),
        "recvonly" => Some(Direction::RecvOnly),
        "inactive" => Some(Direction::Inactive),
        _ => None,
    }
}

impl SessionDescription {
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        if text.len() > MAX_SDP_BYTES {
            return Err(malformed("larger than 64 KiB"));
        }
        let mut sd = SessionDescription {
            origin_session_id: String::new(),
            connection: None,
            direction: None,
            media: Vec::new(),
        };
        let mut saw_version = false;
        for raw in text.lines() {
            let line = raw.trim_end_matches('\r');
            if line.is_empty() {
                continue;
            }
            let (kind, value) = line
                .split_once('=')
                .ok_or_else(|| malformed(format!("line without '=': {line:?}")))?;
            if kind.len() != 1 {
                return Err(malformed(format!("bad line type {kind:?}")));
            }
            match kind {
                "v" => {
                    if value != "0" {
                        return Err(malformed("v= must be 0"));
                    }
                    saw_version = true;
                }
                "o" => {
                    sd.origin_session_id = value
                        .split_whitespace()
                        .nth(1)
                        .unwrap_or_default()
                        .to_owned()
                }
                "c" => {
                    let addr = parse_connection(value)?;
                    match sd.media.last_mut() {
                        Some(m) => m.connection = Some(addr),
                        None => sd.connection = Some(addr),
                    }
                }
                "m" => {
                    let mut parts = value.split_whitespace();
                    let kind = parts
                        .next()
                        .ok_or_else(|| malformed("empty m= line"))?
                        .to_owned();
                    let port_text = parts.next().ok_or_else(|| malformed("m= without a port"))?;
                    // "port/count" is allowed; we use the first port.
                    let port = port_text
                        .split('/')
                        .next()
                        .and_then(|p| p.parse::<u16>().ok())
                        .ok_or_else(|| malformed(format!("bad m= port {port_text:?}")))?;
                    let proto = parts
                        .next()
                        .ok_or_else(|| malformed("m= without a protocol"))?
                        .to_owned();
                    let formats: Vec<String> = parts.map(str::to_owned).collect();
                    if formats.is_empty() {
                        return Err(malformed("m= without formats"));
                    }
                    sd.media.push(Media {
                        kind,
                        port,
                        proto,
                        formats,
                        connection: None,
                        rtpmaps: Vec::new(),
                        ptime: None,
                        direction: None,
                    });
                }
                "a" => {
                    let (name, arg) = match value.split_once(':') {
                        Some((n, a)) => (n, Some(a)),
                        None => (value, None),
                    };
                    if let Some(dir) = parse_direction(name) {
                        match sd.media.last_mut() {
                            Some(m) => m.direction = Some(dir),
                            None => sd.direction = Some(dir),
                        }
                        continue;
                    }
                    let Some(m) = sd.media.last_mut() else {
                        continue;
                    };
                    match (name, arg) {
                        ("rtpmap", Some(arg)) => {
                            let (pt, rest) = arg
                                .split_once(' ')
                                .ok_or_else(|| malformed(format!("bad rtpmap {arg:?}")))?;
                            let payload_type = pt
                                .trim()
                                .parse::<u8>()
                                .ok()
                                .filter(|p| *p < 128)
                                .ok_or_else(|| {
                                    malformed(format!("bad rtpmap payload type {pt:?}"))
                                })?;
                            let mut enc = rest.trim().split('/');
                            let encoding = enc.next().unwrap_or_default().to_owned();
                            let clock_rate =
                                enc.next().and_then(|r| r.parse().ok()).ok_or_else(|| {
                                    malformed(format!("bad rtpmap clock rate in {arg:?}"))
                                })?;
                            m.rtpmaps.push(RtpMap {
                                payload_type,
                                encoding,
                                clock_rate,
                            });
                        }
                        ("ptime", Some(arg)) => m.ptime = arg.trim().parse().ok(),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if !saw_version {
            return Err(malformed("no v= line"));
        }
        Ok(sd)
    }
}

impl Media {
    fn rtpmap(&self, pt: u8) -> Option<&RtpMap> {
        self.rtpmaps.iter().find(|m| m.payload_type == pt)
    }

    /// What a payload type of this section carries, static types included.
    fn g711(&self, pt: u8) -> Option<G711> {
        match self.rtpmap(pt) {
            Some(m) if m.clock_rate == 8000 => match m.encoding.to_ascii_uppercase().as_str() {
                "PCMU" => Some(G711::Ulaw),
                "PCMA" => Some(G711::Alaw),
                _ => None,
            },
            Some(_) => None,
            None => G711::from_payload_type(pt),
        }
    }

    fn is_rtp_audio(&self) -> bool {
        self.kind == "audio" && self.proto.eq_ignore_ascii_case("RTP/AVP")
    }
}

/// What both sides agreed on for the call's audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: G711,
    pub codec_pt: u8,
    /// Telephone-events at 8000 Hz, if the peer offered them.
    pub dtmf_pt: Option<u8>,
    /// Where to send RTP (symmetric RTP may correct it later).
    pub remote: SocketAddr,
    /// Our direction in this session.
    pub direction: Direction,
    pub ptime_ms: u32,
    /// The index of the audio section among the offer's `m=` lines.
    pub media_index: usize,
}

/// Chooses what to answer to `offer`: the first G.711 law in the offerer's
/// order of preference, and telephone-event if offered.
pub fn negotiate(offer: &SessionDescription) -> Result<Negotiated, SdpError> {
    let (index, media) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.is_rtp_audio() && m.port != 0)
        .ok_or_else(|| SdpError::NotAcceptable("no RTP/AVP audio stream offered".into()))?;
    let (codec_pt, codec) = media
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find_map(|pt| media.g711(pt).map(|c| (pt, c)))
        .ok_or_else(|| {
            SdpError::NotAcceptable(format!(
                "no common codec (offered {}); we support PCMU and PCMA",
                media.formats.join(" ")
            ))
        })?;
    let dtmf_pt = media
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|pt| {
            media.rtpmap(*pt).is_some_and(|m| {
                m.encoding.eq_ignore_ascii_case("telephone-event") && m.clock_rate == 8000
            })
        });
    let addr = media
        .connection
        .or(offer.connection)
        .ok_or_else(|| SdpError::Malformed("no c= line for the audio stream".into()))?;
    let offered_dir = media.direction.or(offer.direction).unwrap_or_default();
    // An unspecified address is the old (RFC 2543) way to put a call on hold.
    let offered_dir = if addr.is_unspecified() {
        Direction::Inactive
    } else {
        offered_dir
    };
    Ok(Negotiated {
        codec,
        codec_pt,
        dtmf_pt,
        remote: SocketAddr::new(addr, media.port),
        direction: offered_dir.answer(),
        ptime_ms: PTIME_MS,
        media_index: index,
    })
}

/// Our side of a session: where we receive RTP, and the `o=` identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMedia {
    /// The advertised (public) address and RTP port.
    pub address: SocketAddr,
    pub session_id: u64,
    /// Incremented on every new description of the same session.
    pub session_version: u64,
}

fn header(local: &LocalMedia, out: &mut String) {
    let family = if local.address.is_ipv4() {
        "IP4"
    } else {
        "IP6"
    };
    let ip = local.address.ip();
    let _ = write!(
        out,
        "v=0\r\no=switchyard {} {} IN {family} {ip}\r\ns=switchyard\r\nc=IN {family} {ip}\r\nt=0 0\r\n",
        local.session_id, local.session_version
    );
}

fn audio_lines(
    out: &mut String,
    port: u16,
    codecs: &[(u8, G711)],
    dtmf_pt: Option<u8>,
    direction: Direction,
) {
    let mut fmts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    if let Some(d) = dtmf_pt {
        fmts.push(d.to_string());
    }
    let _ = write!(out, "m=audio {port} RTP/AVP {}\r\n", fmts.join(" "));
    for (pt, c) in codecs {
        let _ = write!(out, "a=rtpmap:{pt} {}/8000\r\n", c.name());
    }
    if let Some(d) = dtmf_pt {
        let _ = write!(
            out,
            "a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-16\r\n"
        );
    }
    let _ = write!(out, "a=ptime:{PTIME_MS}\r\na={}\r\n", direction.attribute());
}

/// Our offer for an outbound call: PCMU, PCMA and telephone-event.
pub fn offer(local: &LocalMedia) -> String {
    let mut out = String::new();
    header(local, &mut out);
    audio_lines(
        &mut out,
        local.address.port(),
        &[(0, G711::Ulaw), (8, G711::Alaw)],
        Some(DEFAULT_DTMF_PT),
        Direction::SendRecv,
    );
    out
}

/// The answer to `offer` after [`negotiate`]: one `m=` line per offered
/// one, the unused ones rejected with port 0 (RFC 3264 §6).
pub fn answer(offer: &SessionDescription, agreed: &Negotiated, local: &LocalMedia) -> String {
    let mut out = String::new();
    header(local, &mut out);
    for (i, m) in offer.media.iter().enumerate() {
        if i == agreed.media_index {
            audio_lines(
                &mut out,
                local.address.port(),
                &[(agreed.codec_pt, agreed.codec)],
                agreed.dtmf_pt,
                agreed.direction,
            );
        } else {
            let first = m.formats.first().map(String::as_str).unwrap_or("0");
            let _ = write!(out, "m={} 0 {} {first}\r\n", m.kind, m.proto);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What sipp's uas/uac scenarios send.
    const SIPP: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    /// A browser-like offer with Opus first and a video section.
    const RICH: &str = "v=0\no=- 4611731400430051336 2 IN IP4 127.0.0.1\ns=-\nt=0 0\nm=audio 49170 RTP/AVP 111 8 0 101\nc=IN IP4 192.0.2.10\na=rtpmap:111 opus/48000/2\na=rtpmap:8 PCMA/8000\na=rtpmap:0 PCMU/8000\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-15\na=ptime:20\na=sendonly\nm=video 51372 RTP/AVP 96\na=rtpmap:96 VP8/90000\n";

    fn local() -> LocalMedia {
        LocalMedia {
            address: "203.0.113.5:30000".parse().unwrap(),
            session_id: 42,
            session_version: 1,
        }
    }

    #[test]
    fn answers_sipp_with_pcmu_and_no_dtmf() {
        let o = SessionDescription::parse(SIPP).unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (G711::Ulaw, 0, None));
        assert_eq!(n.remote, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
        let a = answer(&o, &n, &local());
        assert!(a.contains("m=audio 30000 RTP/AVP 0\r\n"), "{a}");
        assert!(
            a.contains("c=IN IP4 203.0.113.5\r\n")
                && a.contains("a=ptime:20")
                && a.contains("a=sendrecv")
        );
        // The answer parses, and agrees with itself.
        let back = negotiate(&SessionDescription::parse(&a).unwrap()).unwrap();
        assert_eq!(back.codec, G711::Ulaw);
    }

    #[test]
    fn follows_the_offerers_preference_and_mirrors_direction() {
        let o = SessionDescription::parse(RICH).unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!((n.codec, n.codec_pt, n.dtmf_pt), (G711::Alaw, 8, Some(101)));
        assert_eq!(
            n.remote,
            "192.0.2.10:49170".parse().unwrap(),
            "media-level c="
        );
        assert_eq!(
            n.direction,
            Direction::RecvOnly,
            "sendonly offered → recvonly answered"
        );
        let a = answer(&o, &n, &local());
        assert!(a.contains("m=audio 30000 RTP/AVP 8 101\r\n"), "{a}");
        assert!(a.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16"));
        assert!(
            a.contains("m=video 0 RTP/AVP 96\r\n"),
            "unused stream refused with port 0: {a}"
        );
        assert_eq!(a.matches("m=").count(), 2, "one m= line per offered one");
    }

    #[test]
    fn static_types_without_rtpmap_and_dynamic_g711() {
        let o = SessionDescription::parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 8\r\n")
            .unwrap();
        assert_eq!(negotiate(&o).unwrap().codec, G711::Alaw);
        let o = SessionDescription::parse(
            "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 97\r\na=rtpmap:97 pcmu/8000\r\n",
        )
        .unwrap();
        assert_eq!(negotiate(&o).unwrap().codec_pt, 97);
        // Telephone-event at another rate is not ours.
        let o = SessionDescription::parse("v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/48000\r\n").unwrap();
        assert_eq!(negotiate(&o).unwrap().dtmf_pt, None);
    }

    #[test]
    fn hold_and_ipv6() {
        let o = SessionDescription::parse("v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n")
            .unwrap();
        assert_eq!(negotiate(&o).unwrap().direction, Direction::Inactive);
        let o = SessionDescription::parse(
            "v=0\r\nc=IN IP6 2001:db8::1\r\nm=audio 4000 RTP/AVP 0\r\na=inactive\r\n",
        )
        .unwrap();
        let n = negotiate(&o).unwrap();
        assert_eq!(n.remote, "[2001:db8::1]:4000".parse().unwrap());
        assert_eq!(n.direction, Direction::Inactive);
    }

    #[test]
    fn refusals_are_not_acceptable_or_malformed() {
        let no_common = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/AVP 111 9\r\na=rtpmap:111 opus/48000/2\r\n";
        assert!(matches!(
            negotiate(&SessionDescription::parse(no_common).unwrap()),
            Err(SdpError::NotAcceptable(_))
        ));
        let srtp = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 4000 RTP/SAVP 0\r\n";
        assert!(matches!(
            negotiate(&SessionDescription::parse(srtp).unwrap()),
            Err(SdpError::NotAcceptable(_))
        ));
        let video_only = "v=0\r\nc=IN IP4 10.0.0.1\r\nm=video 4000 RTP/AVP 96\r\n";
        assert!(matches!(
            negotiate(&SessionDescription::parse(video_only).unwrap()),
            Err(SdpError::NotAcceptable(_))
        ));
        let no_c = "v=0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert!(matches!(
            negotiate(&SessionDescription::parse(no_c).unwrap()),
            Err(SdpError::Malformed(_))
        ));
        for bad in [
            "",
            "hello",
            "v=1\r\n",
            "v=0\r\nm=audio\r\n",
            "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
            "v=0\r\nc=IN IP4 nowhere\r\n",
            "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:300 PCMU/8000\r\n",
            "v=0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        ] {
            assert!(SessionDescription::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SessionDescription::parse(&"a".repeat(MAX_SDP_BYTES + 1)).is_err());
    }

    #[test]
    fn our_offer_round_trips() {
        let text = offer(&local());
        let sd = SessionDescription::parse(&text).unwrap();
        assert_eq!(sd.origin_session_id, "42");
        let n = negotiate(&sd).unwrap();
        assert_eq!(
            (n.codec, n.dtmf_pt, n.remote),
            (G711::Ulaw, Some(DEFAULT_DTMF_PT), local().address)
        );
        assert!(text.ends_with("\r\n") && !text.contains("\n\n"));
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_text_never_panics(text in "\\PC{0,400}") {
            if let Ok(sd) = SessionDescription::parse(&text) {
                let _ = negotiate(&sd);
            }
        }

        #[test]
        fn parsing_mutated_offers_never_panics(cut in 0usize..300, junk in "[a-z0-9=:/ \r\n]{0,40}") {
            let mut text = RICH.to_owned();
            let at = cut.min(text.len());
            text.insert_str(at, &junk);
            if let Ok(sd) = SessionDescription::parse(&text)
                && let Ok(n) = negotiate(&sd) {
                    let _ = answer(&sd, &n, &local());
                }
        }
    }
}
