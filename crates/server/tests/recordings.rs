//! Recordings people can play: the encoding worker, `GET
//! /calls/{id}/recording`, the signed media route (ranges, tags, expiry,
//! tampering), channels, deletion, retention and restarts, on SQLite and
//! PostgreSQL; the S3 path against a real S3 implementation (moto) and
//! playback in a real browser.
//!
//! A recorded call is made here without SIP: the call is moved through
//! its statuses in the store, as the engine would, and its live WAV is
//! written where the engine writes it (the SIP tests cover the real thing
//! end to end).

mod common;

use std::path::Path;
use std::time::Duration;

use common::recording::{decode, download, ffprobe, wait_available};
use common::{Backend, Cred, TestServer, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use switchyard_domain::id::CallId;
use switchyard_domain::{
    CallEvent, CallStatus, EventType, RecordingChannel, RecordingStatus, Role,
};
use switchyard_media::recorder::StereoRecorder;
use switchyard_store::{CallPatch, Store};

/// A tone on each side: 440 Hz for the customer, 1000 Hz for the agent.
fn tone(hz: f64, at: usize, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = (at + i) as f64 / 8000.0;
            (f64::sin(2.0 * std::f64::consts::PI * hz * t) * 8000.0) as i16
        })
        .collect()
}

/// Writes a live recording of `seconds` as the engine does.
fn write_live_wav(path: &Path, seconds: f64) {
    let file = std::fs::File::create(path).expect("wav");
    let mut rec = StereoRecorder::new(file, 8000, 160).expect("recorder");
    for f in 0..(seconds * 50.0) as usize {
        rec.tick(
            Some(&tone(440.0, f * 160, 160)),
            Some(&tone(1000.0, f * 160, 160)),
        )
        .expect("tick");
    }
    rec.finish().expect("finish");
}

/// A call answered and hung up, its recording PROCESSING and its WAV in place.
async fn recorded_call(srv: &TestServer, seconds: f64) -> CallId {
    if srv
        .get("/phone-numbers")
        .await
        .body
        .as_array()
        .is_none_or(|a| a.is_empty())
    {
        srv.with_route().await;
    }
    let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let id = CallId::parse(call["id"].as_str().expect("id")).expect("call id");
    let dir = srv.config.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).expect("recordings dir");
    hang_up_recorded(srv.store(), id, &dir, seconds).await;
    id
}

async fn hang_up_recorded(store: &Store, id: CallId, dir: &Path, seconds: f64) {
    hang_up_with(store, id, dir, seconds, None).await
}

/// As [`hang_up_recorded`], with `wav` (if given) as the live file's bytes.
async fn hang_up_with(store: &Store, id: CallId, dir: &Path, seconds: f64, wav: Option<&[u8]>) {
    store
        .transition_call(
            id,
            CallStatus::Queued,
            CallEvent::DialStarted,
            CallPatch::default(),
        )
        .await
        .expect("dialing");
    let start = switchyard_domain::timefmt::now_ms();
    store
        .transition_call(
            id,
            CallStatus::Dialing,
            CallEvent::Answered,
            CallPatch {
                call_start_time: Some(start),
                recording_status: Some(RecordingStatus::Recording),
                ..Default::default()
            },
        )
        .await
        .expect("answered");
    let path = dir.join(format!("{}.wav", id.uuid()));
    match wav {
        Some(bytes) => std::fs::write(&path, bytes).expect("wav"),
        None => write_live_wav(&path, seconds),
    }
    store
        .transition_call(
            id,
            CallStatus::InProgress,
            CallEvent::HungUp,
            CallPatch {
                call_end_time: Some(start + (seconds * 1000.0) as i64),
                duration_seconds: Some(seconds),
                recording_status: Some(RecordingStatus::Processing),
                ..Default::default()
            },
        )
        .await
        .expect("hung up");
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for i in 0..n {
        let (x, y) = (a[i] as f64, b[i] as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-9)
}

/// The best correlation of `reference` with `decoded` over a small lag
/// (the AAC decoder's priming).
fn aligned_correlation(reference: &[i16], decoded: &[i16]) -> f64 {
    (0..=2048)
        .map(|lag| correlation(reference, decoded.get(lag..).unwrap_or_default()))
        .fold(f64::MIN, f64::max)
}

/// How many events of `kind` the outbox holds for the call.
async fn events_of(store: &Store, id: CallId, kind: EventType) -> usize {
    store
        .events_after(0, Some(&id.to_string()), 10_000)
        .await
        .expect("events")
        .iter()
        .filter(|e| e.event_type == kind)
        .count()
}

fn with_query(url: &str, name: &str, value: &str) -> String {
    let (base, query) = url.split_once('?').expect("query");
    let pairs: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if k == name => format!("{k}={value}"),
            _ => kv.to_owned(),
        })
        .collect();
    format!("{base}?{}", pairs.join("&"))
}

both_backends! {
    async fn a_recording_becomes_available_once_and_plays_from_its_signed_url(srv: TestServer) {
        let id = recorded_call(srv, 3.0).await;
        let call = wait_available(srv, id, Duration::from_secs(30)).await;
        assert_eq!(call["recording_status"], "AVAILABLE");
        assert_eq!(
            events_of(srv.store(), id, EventType::CallRecordingAvailable).await,
            1,
            "call.recording_available written once"
        );
        let wav = srv.config.data_dir.join("recordings").join(format!("{}.wav", id.uuid()));
        assert!(!wav.exists(), "the live WAV is removed once stored");

        let r = srv.get(&format!("/calls/{id}/recording")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let info = &r.body;
        assert_eq!(info["call_id"], id.to_string());
        assert_eq!(info["content_type"], "audio/mp4");
        assert_eq!(info["recording_status"], "AVAILABLE");
        assert_eq!(info["duration_seconds"], 3.0);
        assert_eq!(info["recording_start_time"], call["call_start_time"]);
        let expires = switchyard_domain::timefmt::parse_datetime(info["expires_at"].as_str().unwrap())
            .expect("expires_at is RFC 3339");
        let in_ms = expires - switchyard_domain::timefmt::now_ms();
        assert!((3_500_000..=3_600_000).contains(&in_ms), "valid 1 h: {in_ms} ms");
        let url = info["url"].as_str().unwrap().to_owned();
        assert!(url.starts_with(&format!("{}/api/v1/recordings/{id}?", srv.base)), "{url}");

        // The whole file, without credentials.
        let http = reqwest::Client::new();
        let whole = http.get(&url).send().await.unwrap();
        assert_eq!(whole.status(), 200);
        let h = whole.headers().clone();
        let size = info["file_size_bytes"].as_u64().expect("size");
        assert_eq!(h["content-type"], "audio/mp4");
        assert_eq!(h["accept-ranges"], "bytes");
        assert_eq!(h["content-length"], size.to_string().as_str());
        let etag = h["etag"].to_str().unwrap().to_owned();
        assert!(etag.starts_with('"'), "{etag}");
        let bytes = whole.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, size);
        let (rate, channels, media_s) = decode(&bytes);
        assert_eq!((rate, channels.len()), (8000, 2));
        // Coded: 3 s, the encoder's priming and the last frame's padding.
        assert!((3.0..=3.0 + 2.0 * 1024.0 / 8000.0).contains(&media_s), "media {media_s} s");
        assert!(aligned_correlation(&tone(440.0, 0, 24_000), &channels[0]) > 0.98);
        assert!(aligned_correlation(&tone(1000.0, 0, 24_000), &channels[1]) > 0.98);
        if let Some((codec, rate, ch, seconds)) = ffprobe(&bytes) {
            assert_eq!((codec.as_str(), rate, ch), ("aac", 8000, 2));
            assert!((seconds - 3.0).abs() <= 0.05, "ffprobe {seconds} s");
        }

        // Ranges: a slice, a suffix, an open end; then conditions.
        let part = http.get(&url).header("Range", "bytes=10-109").send().await.unwrap();
        assert_eq!(part.status(), 206);
        assert_eq!(part.headers()["content-range"], format!("bytes 10-109/{size}").as_str());
        assert_eq!(part.headers()["content-length"], "100");
        assert_eq!(&part.bytes().await.unwrap()[..], &bytes[10..110]);
        let tail = http.get(&url).header("Range", "bytes=-16").send().await.unwrap();
        assert_eq!(tail.status(), 206);
        assert_eq!(&tail.bytes().await.unwrap()[..], &bytes[bytes.len() - 16..]);
        let open = http.get(&url).header("Range", "bytes=0-").send().await.unwrap();
        assert_eq!(open.status(), 206);
        assert_eq!(open.bytes().await.unwrap().len() as u64, size);
        let outside = http
            .get(&url)
            .header("Range", format!("bytes={size}-"))
            .send()
            .await
            .unwrap();
        assert_eq!(outside.status(), 416);
        assert_eq!(outside.headers()["content-range"], format!("bytes */{size}").as_str());
        let outside: Value = outside.json().await.unwrap();
        assert_eq!(outside["error"]["code"], "range_not_satisfiable");
        let cached = http.get(&url).header("If-None-Match", &etag).send().await.unwrap();
        assert_eq!(cached.status(), 304);
        let stale_if_range = http
            .get(&url)
            .header("Range", "bytes=0-9")
            .header("If-Range", "\"another\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale_if_range.status(), 200, "a changed file is sent whole");
        let head = http.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(head.headers()["content-length"], size.to_string().as_str());
        // The short path form serves it too.
        let short = url.replacen("/api/v1/recordings/", "/recordings/", 1);
        assert_eq!(http.get(&short).send().await.unwrap().status(), 200);
    }

    async fn altered_expired_or_foreign_links_are_refused(srv: TestServer) {
        let id = recorded_call(srv, 1.0).await;
        wait_available(srv, id, Duration::from_secs(30)).await;
        let url = srv.get(&format!("/calls/{id}/recording")).await.body["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let http = reqwest::Client::new();
        let refused = |url: String| {
            let http = http.clone();
            async move {
                let r = http.get(&url).send().await.unwrap();
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                (status, body)
            }
        };
        let sig = url.split("signature=").nth(1).unwrap().to_owned();
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        for altered in [
            with_query(&url, "signature", &flipped),
            with_query(&url, "channel", "agent"),
            with_query(&url, "expires", "4102444800"),
            url.replace(&format!("{}", id.uuid()), &uuid::Uuid::new_v4().to_string()),
            url.split('?').next().unwrap().to_owned(),
            with_query(&url, "expires", "soon"),
        ] {
            let (status, body) = refused(altered.clone()).await;
            assert_eq!(status, 403, "{altered}: {body}");
            assert_eq!(body["error"]["code"], "insufficient_permissions");
        }
        // A URL signed with the server's own key but already expired.
        let recordings = &srv.services().recordings;
        let past = switchyard_domain::timefmt::now_ms() / 1000 - 1;
        let expired = recordings.signed_url(&srv.base, id, RecordingChannel::Stereo, past);
        let (status, body) = refused(expired).await;
        assert_eq!(status, 403);
        assert!(body["error"]["message"].as_str().unwrap().contains("expired"), "{body}");

        // Another organization's call is not found, recording included.
        let other = srv.new_org("Other").await;
        let r = srv
            .call_as(&Cred::Key(other.key.clone()), Method::GET, &format!("/calls/{id}/recording"), None)
            .await;
        r.assert_error(404, "not_found");
        let r = srv
            .call_as(&Cred::Key(other.key), Method::DELETE, &format!("/calls/{id}/recording"), None)
            .await;
        r.assert_error(404, "not_found");

        // A call that never connected has none, and says why.
        let never = srv.create_call(json!({"to_number": "+14155550000"})).await;
        let r = srv.get(&format!("/calls/{}/recording", never["id"].as_str().unwrap())).await;
        r.assert_error(404, "not_found");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("recording_status: null"), "{}", r.text);
        // An unknown channel names its parameter.
        let r = srv.get(&format!("/calls/{id}/recording?channel=left")).await;
        assert_eq!(r.assert_error(422, "validation_error").as_deref(), Some("channel"));
        // No credentials: the API route needs them, unlike the media route.
        let r = srv.call_as(&Cred::None, Method::GET, &format!("/calls/{id}/recording"), None).await;
        r.assert_error(401, "not_authenticated");
    }

    async fn each_side_alone_is_a_mono_file(srv: TestServer) {
        let id = recorded_call(srv, 2.0).await;
        let customer = download(srv, id, "customer").await;
        let agent = download(srv, id, "agent").await;
        assert_eq!((customer.channels.len(), agent.channels.len()), (1, 1));
        assert!(aligned_correlation(&tone(440.0, 0, 16_000), &customer.channels[0]) > 0.98);
        assert!(aligned_correlation(&tone(1000.0, 0, 16_000), &agent.channels[0]) > 0.98);
        assert!(aligned_correlation(&tone(1000.0, 0, 16_000), &customer.channels[0]) < 0.2);
        assert_eq!(customer.info["file_size_bytes"].as_u64(), Some(customer.bytes.len() as u64));
        assert!(customer.bytes.len() < download(srv, id, "stereo").await.bytes.len());
    }

    async fn owners_and_admins_delete_recordings(srv: TestServer) {
        let id = recorded_call(srv, 1.0).await;
        wait_available(srv, id, Duration::from_secs(30)).await;
        let url = srv.get(&format!("/calls/{id}/recording")).await.body["url"]
            .as_str()
            .unwrap()
            .to_owned();
        let member = srv.user_with_role(Role::Member).await;
        let r = srv
            .call_as(&Cred::Bearer(member), Method::DELETE, &format!("/calls/{id}/recording"), None)
            .await;
        r.assert_error(403, "insufficient_permissions");
        let admin = srv.user_with_role(Role::Admin).await;
        let r = srv
            .call_as(&Cred::Bearer(admin), Method::DELETE, &format!("/calls/{id}/recording"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body, json!({"success": true, "call_id": id.to_string(), "recording_status": "DELETED"}));
        assert_eq!(srv.get(&format!("/calls/{id}")).await.body["recording_status"], "DELETED");
        let r = srv.get(&format!("/calls/{id}/recording")).await;
        r.assert_error(404, "not_found");
        assert!(r.text.contains("DELETED"), "{}", r.text);
        // The link handed out before is dead, and the files are gone.
        let gone = reqwest::get(&url).await.unwrap();
        assert_eq!(gone.status(), 404);
        let objects = srv.config.data_dir.join("objects").join("recordings");
        let left: Vec<_> = walk(&objects).into_iter().filter(|p| p.to_string_lossy().contains(&id.uuid().to_string())).collect();
        assert!(left.is_empty(), "objects left: {left:?}");
        // Again: still deleted, still fine.
        let r = srv.call(Method::DELETE, &format!("/calls/{id}/recording"), None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        // A call without a recording has nothing to delete.
        let never = srv.create_call(json!({"to_number": "+14155550000"})).await;
        srv.call(Method::DELETE, &format!("/calls/{}/recording", never["id"].as_str().unwrap()), None)
            .await
            .assert_error(404, "not_found");
    }

    async fn recordings_past_retention_are_deleted(srv: TestServer) {
        let kept = recorded_call(srv, 1.0).await;
        wait_available(srv, kept, Duration::from_secs(30)).await;
        let other = srv.new_org("Short retention").await;
        common::route_for(srv, &other.key, "+15550007777").await;
        let r = srv
            .call_as(&Cred::Key(other.key.clone()), Method::POST, "/calls", Some(json!({"to_number": "+14155552671"})))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let short = CallId::parse(r.body["id"].as_str().unwrap()).unwrap();
        hang_up_recorded(srv.store(), short, &srv.config.data_dir.join("recordings"), 1.0).await;
        srv.store().set_recording_retention(other.id, Some(0)).await.unwrap();
        eventually(Duration::from_secs(30), || async {
            let c = srv.store().get_call_unscoped(short).await.ok()?;
            (c.recording_status == Some(RecordingStatus::Deleted)).then_some(())
        })
        .await;
        assert_eq!(
            srv.get(&format!("/calls/{kept}")).await.body["recording_status"],
            "AVAILABLE",
            "the default retention (90 days) keeps the other organization's"
        );
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A server started, stopped and started again on the same data directory
/// and database, as a restart does.
async fn restart_mid_processing(backend: Backend) {
    let Some(first) = TestServer::start_with(backend, |c| {
        // This process dies before it encodes anything.
        c.recording_workers = 0;
        c.recording_retention_sweep_seconds = 3600;
    })
    .await
    else {
        return;
    };
    let waiting = recorded_call(&first, 2.0).await;
    let claimed = recorded_call(&first, 2.0).await;
    // One of them was claimed by a worker that then died mid-encoding.
    let due = first
        .store()
        .due_recordings(switchyard_domain::timefmt::now_ms(), 0, 10)
        .await
        .unwrap();
    let rec = due.iter().find(|d| d.call_id == claimed).expect("due");
    let now = switchyard_domain::timefmt::now_ms();
    assert!(
        first
            .store()
            .claim_recording(rec, "recordings-dead-worker", now, now, now + 3_600_000)
            .await
            .unwrap()
    );
    let mut config = first.config.clone();
    let mut first = first;
    let server = first.server.take().expect("running");
    server.stop().await;

    config.recording_workers = 2;
    let second = switchyard::app::RunningServer::start(&config)
        .await
        .expect("restart");
    for id in [waiting, claimed] {
        eventually(Duration::from_secs(60), || async {
            let c = second.store.get_call_unscoped(id).await.ok()?;
            (c.recording_status == Some(RecordingStatus::Available)).then_some(())
        })
        .await;
        assert_eq!(
            events_of(&second.store, id, EventType::CallRecordingAvailable).await,
            1,
            "AVAILABLE exactly once"
        );
        let rec = second.store.get_recording(id).await.unwrap();
        assert_eq!(rec.status, RecordingStatus::Available);
        assert_eq!(rec.duration_seconds, Some(2.0));
    }
    second.stop().await;
    drop(first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_processing_stores_each_recording_once_sqlite() {
    restart_mid_processing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_processing_stores_each_recording_once_postgres() {
    restart_mid_processing(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_still_processing_cannot_be_deleted_yet() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.recording_workers = 0).await
    else {
        return;
    };
    let id = recorded_call(&srv, 1.0).await;
    let r = srv
        .call(Method::DELETE, &format!("/calls/{id}/recording"), None)
        .await;
    r.assert_error(409, "invalid_state");
    let r = srv.get(&format!("/calls/{id}/recording")).await;
    r.assert_error(404, "not_found");
    assert!(r.text.contains("PROCESSING"), "{}", r.text);
    srv.stop().await;
}

/// A recording still PROCESSING is a 404 with the envelope, as before, and
/// says when to ask again; one that will never come (no recording, FAILED,
/// DELETED) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_still_processing_says_when_to_retry() {
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| c.recording_workers = 0).await
    else {
        return;
    };
    let id = recorded_call(&srv, 1.0).await;
    let r = srv.get(&format!("/calls/{id}/recording")).await;
    r.assert_error(404, "not_found");
    assert!(r.text.contains("PROCESSING"), "{}", r.text);
    let retry: u64 = r
        .header("retry-after")
        .unwrap_or_else(|| panic!("Retry-After on PROCESSING: {:?}", r.headers))
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    let never = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let r = srv
        .get(&format!(
            "/calls/{}/recording",
            never["id"].as_str().unwrap()
        ))
        .await;
    r.assert_error(404, "not_found");
    assert!(r.header("retry-after").is_none(), "{:?}", r.headers);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_recording_fails_with_its_reason_and_event() {
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    srv.with_route().await;
    let call = srv.create_call(json!({"to_number": "+14155552671"})).await;
    let id = CallId::parse(call["id"].as_str().unwrap()).unwrap();
    let dir = srv.config.data_dir.join("recordings");
    std::fs::create_dir_all(&dir).unwrap();
    hang_up_with(srv.store(), id, &dir, 1.0, Some(b"not a recording")).await;
    let c = eventually(Duration::from_secs(30), || async {
        let c = srv.get(&format!("/calls/{id}")).await.body;
        (c["recording_status"] != "PROCESSING").then_some(c)
    })
    .await;
    assert_eq!(c["recording_status"], "FAILED", "{c}");
    assert_eq!(
        events_of(srv.store(), id, EventType::CallRecordingFailed).await,
        1
    );
    let r = srv.get(&format!("/calls/{id}/recording")).await;
    r.assert_error(404, "not_found");
    assert!(
        r.text.contains("FAILED") && r.text.contains("encoding_failed"),
        "{}",
        r.text
    );
    assert!(
        dir.join(format!("{}.wav", id.uuid())).exists(),
        "a recording that failed keeps its source"
    );
    srv.stop().await;
}

/// Range requests the server has served, from its metrics.
async fn range_requests(srv: &TestServer) -> u64 {
    let text = reqwest::get(format!("{}/metrics", srv.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .filter(|l| {
            l.starts_with("switchyard_recording_requests_total") && l.contains("kind=\"range\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_plays_the_signed_url_with_its_duration_and_seeks() {
    let Some(browser) = common::browser::Browser::start().await else {
        return;
    };
    let Some(srv) = TestServer::start(Backend::Sqlite).await else {
        return;
    };
    let id = recorded_call(&srv, 6.0).await;
    wait_available(&srv, id, Duration::from_secs(30)).await;
    let url = srv.get(&format!("/calls/{id}/recording")).await.body["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = range_requests(&srv).await;
    // A page with an <audio> element playing the signed URL. (The page is
    // one of the server's own: Chromium keeps a data: page, a public
    // context, from loading media off 127.0.0.1, a private address.)
    browser.goto(&format!("{}/healthz", srv.base)).await;
    let played = browser
        .run_async(
            r#"
            const [src, done] = arguments;
            const audio = document.createElement('audio');
            audio.preload = 'auto';
            audio.onerror = () => done({error: String(audio.error && audio.error.code)});
            audio.onloadedmetadata = () => {
                const duration = audio.duration;
                audio.onseeked = () => done({duration, seekedTo: audio.currentTime,
                    canPlay: audio.canPlayType('audio/mp4; codecs="mp4a.40.2"')});
                audio.currentTime = duration * 0.75;
            };
            audio.src = src;
            document.body.appendChild(audio);
            "#,
            json!([url]),
            Duration::from_secs(30),
        )
        .await;
    drop(browser);
    assert!(
        played["error"].is_null(),
        "the browser could not play it: {played}"
    );
    let duration = played["duration"].as_f64().expect("duration");
    assert!(
        (duration - 6.0).abs() <= 0.05,
        "the browser says {duration} s: {played}"
    );
    let at = played["seekedTo"].as_f64().expect("seeked");
    assert!((at - 4.5).abs() < 0.2, "seeked to {at}: {played}");
    assert_eq!(played["canPlay"], "probably");
    let after = range_requests(&srv).await;
    assert!(
        after > before,
        "the browser fetched by ranges ({before} → {after})"
    );
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_live_in_s3_and_play_by_signed_and_presigned_urls() {
    let Some(moto) = common::s3::Moto::start() else {
        return;
    };
    moto.create_bucket("calls").await;
    let s3 = |c: &mut switchyard::config::Config, mode: &str| {
        c.recording_storage = "s3".into();
        c.s3_bucket = Some("calls".into());
        c.s3_prefix = "switchyard".into();
        c.s3_endpoint = Some(moto.endpoint.clone());
        c.s3_region = Some("us-east-1".into());
        c.s3_access_key_id = Some("test".into());
        c.s3_secret_access_key = Some("test".into());
        c.s3_allow_http = true;
        c.recording_url_mode = mode.into();
    };
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| s3(c, "signed")).await else {
        return;
    };
    let id = recorded_call(&srv, 2.0).await;
    let signed = download(&srv, id, "stereo").await;
    assert!(signed.info["url"].as_str().unwrap().starts_with(&srv.base));
    assert_eq!(signed.channels.len(), 2);
    assert!(aligned_correlation(&tone(440.0, 0, 16_000), &signed.channels[0]) > 0.98);
    // The object is in the bucket, under the prefix, byte for byte.
    let key = format!(
        "switchyard/recordings/{}/{}/stereo.m4a",
        srv.org.uuid(),
        id.uuid()
    );
    let md5 = {
        use md5::Digest;
        hex::encode(md5::Md5::digest(&signed.bytes))
    };
    assert_eq!(
        moto.object("calls", &key).await,
        Some((md5, signed.bytes.len() as u64)),
        "{key} in the bucket: {}",
        moto.list("calls").await
    );
    // Ranges come from S3 through the signed route.
    let url = signed.info["url"].as_str().unwrap();
    let part = reqwest::Client::new()
        .get(url)
        .header("Range", "bytes=4-11")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], &signed.bytes[4..12]);
    // Deleting removes every object.
    let r = srv
        .call(Method::DELETE, &format!("/calls/{id}/recording"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    for name in ["stereo", "customer", "agent"] {
        let key = format!(
            "switchyard/recordings/{}/{}/{name}.m4a",
            srv.org.uuid(),
            id.uuid()
        );
        assert_eq!(moto.object("calls", &key).await, None, "{key} deleted");
    }
    srv.stop().await;

    // Presigned: the URL is S3's own, and it plays.
    let Some(srv) = TestServer::start_with(Backend::Sqlite, |c| s3(c, "presigned")).await else {
        return;
    };
    let id = recorded_call(&srv, 1.0).await;
    let presigned = download(&srv, id, "customer").await;
    let url = presigned.info["url"].as_str().unwrap();
    assert!(url.starts_with(&moto.endpoint), "{url}");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert_eq!(presigned.channels.len(), 1);
    srv.stop().await;
}
