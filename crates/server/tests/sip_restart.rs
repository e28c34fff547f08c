//! Restart safety: a server killed with calls live leaves them to the next
//! one, which fails them with `server_restart` and hangs up the answered
//! ones with BYE from their stored dialog; what they recorded is stored.

mod common;

use std::time::Duration;

use common::process::{Serve, serve_command, start};
use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{TempDir, eventually};
use serde_json::{Value, json};
use switchyard::app::RunningServer;

const JWT: &str = "test-secret-test-secret-test-secret-000";

/// Starts the server and reads its HTTP address and first-run API key.
fn spawn_server(dir: &TempDir, db_url: &str) -> (Serve, String, String) {
    let mut cmd = serve_command();
    cmd.env("SWITCHYARD_DATABASE_URL", db_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_SCHEDULER_INTERVAL_MS", "50")
        .env("SWITCHYARD_JWT_SECRET", JWT);
    let server = start(cmd);
    let key = server
        .api_key
        .clone()
        .expect("first run printed an API key");
    let base = server.base.clone();
    (server, base, key)
}

/// A server started on `db_url`, with a trunk to the SIPp answering on
/// `peer_port` and a call to it, once the call is IN_PROGRESS; returns the
/// server and the call's ID.
async fn answered_call(dir: &TempDir, db_url: &str, peer_port: u16) -> (Serve, String) {
    let (process, base, key) = spawn_server(dir, db_url);
    let http = reqwest::Client::new();
    let trunk = post(
        &http,
        &base,
        &key,
        "/sip-trunks",
        json!({"name": "sipp", "host": "127.0.0.1", "port": peer_port}),
    )
    .await;
    post(
        &http,
        &base,
        &key,
        "/phone-numbers",
        json!({"number": "+15550001000", "sip_trunk_id": trunk["id"]}),
    )
    .await;
    let call = post(
        &http,
        &base,
        &key,
        "/calls",
        json!({"to_number": "+14155552671"}),
    )
    .await;
    let id = call["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(20), || async {
        let c: Value = http
            .get(format!("{base}/calls/{id}"))
            .header("X-API-Key", &key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (c["status"] == "IN_PROGRESS").then_some(())
    })
    .await;
    (process, id)
}

async fn post(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{base}{path}"))
        .header("X-API-Key", key)
        .json(&body)
        .send()
        .await
        .expect("post");
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_left_live_by_a_killed_server_are_failed_and_hung_up() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new();
    let db_url = format!("sqlite://{}", dir.0.join("switchyard.db").display());
    let scenario = sc::doc(
        "answer",
        &[
            sc::recv_invite(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("answer", &scenario, Transport::Udp, 1);

    let (process, id) = answered_call(&dir, &db_url, peer.port).await;
    // Let the live recording reach a checkpoint (its audio is written and
    // its header brought up to date every 5 s), then kill.
    let wav = dir
        .0
        .join("recordings")
        .join(format!("{}.wav", id.trim_start_matches("call_")));
    eventually(Duration::from_secs(20), || async {
        let file = std::fs::File::open(&wav).ok()?;
        let header = switchyard_media::recorder::RecordingReader::new(file).ok()?;
        (header.frames >= 8000).then_some(())
    })
    .await;
    drop(process); // SIGKILL: no BYE, no final status.

    let mut config = common::base_config(&dir.0);
    config.database_url = db_url;
    config.jwt_secret = Some(JWT.into());
    config.sip_enabled = true;
    let server = RunningServer::start(&config).await.expect("restart");
    let call_id = switchyard_domain::id::CallId::parse(&id).unwrap();
    let failed = server.store.get_call_unscoped(call_id).await.expect("call");
    assert_eq!(
        failed.status.to_string(),
        "FAILED",
        "failed before the server serves"
    );
    assert_eq!(failed.failure_reason.as_deref(), Some("server_restart"));
    assert!(failed.call_end_time.is_some() && failed.duration_seconds.is_some());
    // The trunk hears the BYE the dead process never sent.
    let run = peer.finish(Duration::from_secs(20)).await;
    run.assert_success();
    assert_eq!(run.count_requests("BYE"), 1);
    // What was recorded before the kill is kept: stored once, playable.
    eventually(Duration::from_secs(30), || async {
        let c = server.store.get_call_unscoped(call_id).await.ok()?;
        (c.recording_status == Some(switchyard_domain::RecordingStatus::Available)).then_some(())
    })
    .await;
    let available = server
        .store
        .events_after(0, Some(&id), 1000)
        .await
        .expect("events")
        .into_iter()
        .filter(|e| e.event_type == switchyard_domain::EventType::CallRecordingAvailable)
        .count();
    assert_eq!(available, 1, "call.recording_available once");
    let rec = server
        .store
        .get_recording(call_id)
        .await
        .expect("recording");
    assert!(
        rec.duration_seconds.is_some_and(|d| d >= 1.0),
        "the salvaged recording lasts {:?} s",
        rec.duration_seconds
    );
    server.stop().await;
}

/// A call live for a few seconds, its server killed and left down for a
/// while, then restarted on the same database: the call's duration is the
/// time it was live, not that plus the downtime (13 s live was reported as
/// 25 s). The end is the dead process's last heartbeat, so it may be up to
/// one heartbeat interval (5 s) early, never late.
async fn duration_of_a_killed_call_excludes_the_downtime(dir: &TempDir, db_url: &str) {
    let scenario = sc::doc(
        "answer",
        &[
            sc::recv_invite(),
            sc::respond(200, "OK", "", true),
            sc::recv("ACK"),
            sc::recv("BYE"),
            sc::ok_in_dialog(),
        ]
        .concat(),
    );
    let peer = Sipp::uas("answer", &scenario, Transport::Udp, 1);
    let (process, id) = answered_call(dir, db_url, peer.port).await;
    // The call is live for a while (heartbeats go on meanwhile), then its
    // server dies and stays down for longer than it was live.
    tokio::time::sleep(Duration::from_secs(7)).await;
    drop(process);
    let killed_at = switchyard_domain::timefmt::now_ms();
    tokio::time::sleep(Duration::from_secs(10)).await;

    let mut config = common::base_config(&dir.0);
    config.database_url = db_url.to_owned();
    config.jwt_secret = Some(JWT.into());
    config.sip_enabled = true;
    let server = RunningServer::start(&config).await.expect("restart");
    let call_id = switchyard_domain::id::CallId::parse(&id).unwrap();
    // SQLite fails it at start; on PostgreSQL (shared by processes) the
    // sweep does once the dead process's heartbeat is 15 s old.
    let failed = eventually(Duration::from_secs(30), || async {
        let c = server.store.get_call_unscoped(call_id).await.ok()?;
        (c.status.to_string() == "FAILED").then_some(c)
    })
    .await;
    assert_eq!(failed.failure_reason.as_deref(), Some("server_restart"));
    let started = failed.call_start_time.expect("answered");
    let live_s = (killed_at - started) as f64 / 1000.0;
    let duration = failed.duration_seconds.expect("duration");
    let ended = failed.call_end_time.expect("end time");
    eprintln!("live {live_s:.1} s before the kill; duration {duration:.1} s");
    assert!(
        ended <= killed_at && duration <= live_s + 0.1,
        "duration {duration} s counts the downtime (live {live_s:.1} s)"
    );
    assert!(
        duration >= live_s - 6.0,
        "duration {duration} s for {live_s:.1} s live: ends too early"
    );
    assert!(
        (duration - (ended - started) as f64 / 1000.0).abs() < 0.01,
        "duration is end less start"
    );
    let run = peer.finish(Duration::from_secs(30)).await;
    run.assert_success();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_calls_duration_ends_when_its_server_died() {
    if !sipp_available() {
        return;
    }
    let dir = TempDir::new();
    let db_url = format!("sqlite://{}", dir.0.join("switchyard.db").display());
    duration_of_a_killed_call_excludes_the_downtime(&dir, &db_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_calls_duration_ends_when_its_server_died_on_postgres() {
    if !sipp_available() {
        return;
    }
    let Some(db) = common::PgDatabase::create().await else {
        return;
    };
    let dir = TempDir::new();
    duration_of_a_killed_call_excludes_the_downtime(&dir, &db.url).await;
}
