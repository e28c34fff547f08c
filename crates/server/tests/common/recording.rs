//! A call's stored recording as a client gets it: wait for AVAILABLE, ask
//! `GET /calls/{id}/recording` for the URL, download it without
//! credentials, and decode it with symphonia (an AAC decoder other than
//! the encoder's own) and, as a second opinion, ffprobe.

use std::io::Cursor;
use std::time::Duration;

use serde_json::Value;
use switchyard_domain::id::CallId;
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::{TestServer, eventually};

/// A downloaded, decoded recording.
pub struct Downloaded {
    /// The answer of `GET /calls/{id}/recording`.
    pub info: Value,
    pub bytes: Vec<u8>,
    pub content_type: String,
    pub sample_rate: u32,
    /// One vector per channel (left = customer), 16-bit.
    pub channels: Vec<Vec<i16>>,
    /// The track's media duration: what was coded, encoder priming and the
    /// last frame's padding included. symphonia does not apply MP4 edit
    /// lists, so the presented duration is ffprobe's (or a browser's) to tell.
    pub media_seconds: f64,
}

/// Waits (up to `timeout`) for the call's recording to be AVAILABLE.
pub async fn wait_available(srv: &TestServer, id: CallId, timeout: Duration) -> Value {
    eventually(timeout, || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        match c["recording_status"].as_str() {
            Some("AVAILABLE") => Some(c),
            Some("FAILED") => panic!("recording FAILED: {c}"),
            _ => None,
        }
    })
    .await
}

/// Downloads and decodes `channel` of a call's recording once AVAILABLE.
pub async fn download(srv: &TestServer, id: CallId, channel: &str) -> Downloaded {
    wait_available(srv, id, Duration::from_secs(30)).await;
    let r = srv
        .get(&format!("/calls/{id}/recording?channel={channel}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let url = r.body["url"].as_str().expect("url").to_owned();
    let got = reqwest::get(&url).await.expect("download");
    assert_eq!(got.status(), 200, "GET {url}");
    let content_type = got
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = got.bytes().await.expect("body").to_vec();
    let (sample_rate, channels, media_seconds) = decode(&bytes);
    Downloaded {
        info: r.body,
        bytes,
        content_type,
        sample_rate,
        channels,
        media_seconds,
    }
}

/// Decodes an `.m4a` with symphonia: rate, channels, media duration.
pub fn decode(bytes: &[u8]) -> (u32, Vec<Vec<i16>>, f64) {
    let mss = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension("m4a");
    let mut format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .unwrap_or_else(|e| panic!("symphonia reads no MP4 here ({e})"));
    let track = format
        .default_track(TrackType::Audio)
        .expect("an audio track");
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .expect("audio parameters")
        .clone();
    let rate = params.sample_rate.expect("sample rate");
    let media_seconds = match (track.num_frames, track.time_base) {
        (Some(n), Some(tb)) => n as f64 * tb.numer.get() as f64 / tb.denom.get() as f64,
        _ => panic!("the container states no duration"),
    };
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .expect("an AAC decoder");
    let mut interleaved: Vec<f32> = Vec::new();
    let mut channels = 0usize;
    while let Some(packet) = format.next_packet().expect("packet") {
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).expect("decodes");
        channels = buf.spec().channels().count();
        let mut part = vec![0f32; buf.samples_interleaved()];
        buf.copy_to_slice_interleaved(&mut part);
        interleaved.extend(part);
    }
    assert!(channels > 0, "decoded nothing");
    let mut out = vec![Vec::with_capacity(interleaved.len() / channels); channels];
    for frame in interleaved.chunks(channels) {
        for (c, s) in frame.iter().enumerate() {
            out[c].push((s.clamp(-1.0, 1.0) * 32767.0) as i16);
        }
    }
    (rate, out, media_seconds)
}

/// ffprobe's reading of an `.m4a`: (codec, sample rate, channels, seconds),
/// or `None` when ffprobe is not installed (and not required).
pub fn ffprobe(bytes: &[u8]) -> Option<(String, u32, u32, f64)> {
    if !super::sipp::tool_available("ffprobe", "-version") {
        return None;
    }
    let dir = super::TempDir::new();
    let file = dir.0.join("r.m4a");
    std::fs::write(&file, bytes).expect("write");
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_streams",
            "-show_format",
        ])
        .arg(&file)
        .output()
        .expect("ffprobe runs");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let s = &v["streams"][0];
    Some((
        s["codec_name"].as_str().unwrap_or_default().to_owned(),
        s["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        s["channels"].as_u64().unwrap_or(0) as u32,
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
    ))
}
