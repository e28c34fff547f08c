//! What the server leaves on disk: the data directory and everything in it
//! (database, WAL, secrets files, live recordings, stored recordings) is
//! for its user only, whatever the umask; trunk passwords and webhook
//! signing secrets are sealed in the database, and a key rotation re-seals
//! them.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::process::{self, Serve};
use common::sipp::{Sipp, Transport, scenario as sc, sipp_available};
use common::{TempDir, eventually};
use serde_json::{Value, json};
use switchyard::app::RunningServer;
use switchyard_store::SecretKeys;

const JWT: &str = "test-secret-test-secret-test-secret-000";
const TRUNK_PASSWORD: &str = "trunk-password-never-in-clear";

/// Starts the binary under umask 022 (as a shell usually has it), with its
/// data directory not yet there, and reads its address and API key.
fn spawn_under_umask_022(data: &Path) -> (Serve, String, String) {
    let mut cmd = process::serve_command_under_umask("022");
    cmd.env("SWITCHYARD_DATA_DIR", data)
        .env(
            "SWITCHYARD_DATABASE_URL",
            format!("sqlite://{}", data.join("switchyard.db").display()),
        )
        .env("SWITCHYARD_SCHEDULER_INTERVAL_MS", "50")
        .env("SWITCHYARD_JWT_SECRET", JWT)
        .env("SWITCHYARD_WEBHOOK_ALLOW_DESTINATIONS", "127.0.0.0/8");
    let server = process::start(cmd);
    let key = server.api_key.clone().unwrap_or_default();
    let base = server.base.clone();
    (server, base, key)
}

async fn send(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Value {
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

async fn get(http: &reqwest::Client, base: &str, key: &str, path: &str) -> Option<Value> {
    http.get(format!("{base}{path}"))
        .header("X-API-Key", key)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Every path under `dir`, `dir` included.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if out[i].is_dir() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&out[i])
                .expect("read dir")
                .map(|e| e.expect("entry").path())
                .collect();
            out.append(&mut children);
        }
        i += 1;
    }
    out
}

/// The texts in the database's secret columns, read as stored.
async fn stored_secrets(db: &Path) -> Vec<String> {
    use sqlx::Connection;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
        .await
        .expect("open the database");
    let mut out: Vec<String> =
        sqlx::query_scalar("SELECT password FROM sip_trunks WHERE password IS NOT NULL")
            .fetch_all(&mut conn)
            .await
            .expect("trunks");
    let webhooks: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT signing_secret, previous_signing_secret FROM webhook_endpoints")
            .fetch_all(&mut conn)
            .await
            .expect("endpoints");
    for (current, previous) in webhooks {
        out.push(current);
        out.extend(previous);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_data_directory_is_private_and_secrets_are_sealed() {
    if !sipp_available() {
        return;
    }
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
    let tmp = TempDir::new();
    let data = tmp.0.join("data");
    let (process, base, key) = spawn_under_umask_022(&data);
    let http = reqwest::Client::new();

    let trunk = send(
        &http,
        &base,
        &key,
        "/sip-trunks",
        json!({"name": "sipp", "host": "127.0.0.1", "port": peer.port,
               "username": "acct", "password": TRUNK_PASSWORD}),
    )
    .await;
    send(
        &http,
        &base,
        &key,
        "/phone-numbers",
        json!({"number": "+15550001000", "sip_trunk_id": trunk["id"]}),
    )
    .await;
    let endpoint = send(
        &http,
        &base,
        &key,
        "/webhooks/endpoints",
        json!({"url": "http://127.0.0.1:9/hook", "event_types": ["call.created"]}),
    )
    .await;
    let first_secret = endpoint["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    let rotated = send(
        &http,
        &base,
        &key,
        &format!(
            "/webhooks/endpoints/{}/rotate-secret",
            endpoint["id"].as_str().unwrap()
        ),
        json!({}),
    )
    .await;
    let second_secret = rotated["signing_secret"]
        .as_str()
        .expect("secret")
        .to_owned();

    // A recorded call: its live WAV, then its stored .m4a files.
    let call = send(
        &http,
        &base,
        &key,
        "/calls",
        json!({"to_number": "+14155552671"}),
    )
    .await;
    let id = call["id"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), || async {
        let c = get(&http, &base, &key, &format!("/calls/{id}")).await?;
        (c["status"] == "IN_PROGRESS").then_some(())
    })
    .await;
    let live_wav = data
        .join("recordings")
        .join(format!("{}.wav", id.trim_start_matches("call_")));
    assert!(live_wav.exists(), "the live recording is being written");
    let live_mode = std::fs::metadata(&live_wav).unwrap().permissions().mode() & 0o777;
    send(&http, &base, &key, &format!("/calls/{id}/end"), json!({})).await;
    eventually(Duration::from_secs(60), || async {
        let c = get(&http, &base, &key, &format!("/calls/{id}")).await?;
        (c["recording_status"] == "AVAILABLE").then_some(())
    })
    .await;
    peer.finish(Duration::from_secs(20)).await.assert_success();

    assert_eq!(live_mode, 0o600, "live recording {}", live_wav.display());
    let paths = walk(&data);
    assert!(
        paths
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "m4a")),
        "stored recordings are under the data directory: {paths:?}"
    );
    for p in &paths {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
    }
    assert!(
        paths.iter().any(|p| p.ends_with("secrets.key")),
        "the key of secrets at rest lives in the data directory"
    );

    let stored = stored_secrets(&data.join("switchyard.db")).await;
    assert_eq!(
        stored.len(),
        3,
        "a password, a signing secret and the one it replaced"
    );
    for s in &stored {
        assert!(s.starts_with("sy-sealed:v1:"), "sealed: {s}");
        for clear in [TRUNK_PASSWORD, &first_secret, &second_secret] {
            assert!(!s.contains(clear), "{clear} is stored in clear");
            let bare = clear.trim_start_matches("whsec_");
            assert!(!s.contains(bare), "{bare} is stored in clear");
        }
    }
    drop(process);
}

const KEY_A: &str = "rotation-key-a-rotation-key-a-rotation";
const KEY_B: &str = "rotation-key-b-rotation-key-b-rotation";

async fn start(dir: &Path, key: &str, previous: &[&str]) -> anyhow::Result<RunningServer> {
    let mut config = common::base_config(dir);
    config.jwt_secret = Some(JWT.into());
    config.secrets_key = Some(key.into());
    config.secrets_key_previous = previous.iter().map(|s| s.to_string()).collect();
    RunningServer::start(&config).await
}

/// The key id each stored secret carries.
async fn key_ids(dir: &Path) -> Vec<String> {
    stored_secrets(&dir.join("switchyard.db"))
        .await
        .iter()
        .map(|s| {
            s.strip_prefix("sy-sealed:v1:")
                .and_then(|r| r.split(':').next())
                .unwrap_or("plain")
                .to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_rotation_reseals_every_secret_and_a_missing_key_is_named() {
    let dir = TempDir::new();
    let id_a = SecretKeys::new(KEY_A.as_bytes(), &[])
        .current_id()
        .to_owned();
    let id_b = SecretKeys::new(KEY_B.as_bytes(), &[])
        .current_id()
        .to_owned();

    let server = start(&dir.0, KEY_A, &[]).await.expect("start with key A");
    let initial = server.initial.clone().expect("first run");
    let http = reqwest::Client::new();
    let base = format!("http://{}", server.addr);
    let trunk = send(
        &http,
        &base,
        &initial.api_key,
        "/sip-trunks",
        json!({"name": "t", "host": "127.0.0.1", "username": "u", "password": TRUNK_PASSWORD}),
    )
    .await;
    send(
        &http,
        &base,
        &initial.api_key,
        "/webhooks/endpoints",
        json!({"url": "http://127.0.0.1:9/hook", "event_types": ["call.created"]}),
    )
    .await;
    // A value from before sealing existed, as an older version left it.
    let trunk_id = switchyard_domain::id::SipTrunkId::parse(trunk["id"].as_str().unwrap()).unwrap();
    server.stop().await;
    {
        use sqlx::Connection;
        let db = dir.0.join("switchyard.db");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::query("UPDATE sip_trunks SET password = $1")
            .bind(TRUNK_PASSWORD)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    assert_eq!(
        key_ids(&dir.0).await,
        vec!["plain".to_owned(), id_a.clone()]
    );

    // Key A again: the plain value is sealed at start.
    let server = start(&dir.0, KEY_A, &[]).await.expect("restart with key A");
    assert_eq!(key_ids(&dir.0).await, vec![id_a.clone(), id_a.clone()]);
    server.stop().await;

    // Rotation: B seals, A still opens; the start reseals everything with B.
    let server = start(&dir.0, KEY_B, &[KEY_A]).await.expect("rotate to B");
    assert_eq!(key_ids(&dir.0).await, vec![id_b.clone(), id_b.clone()]);
    let (_, password) = server
        .store
        .sip_trunk_for_engine(trunk_id)
        .await
        .expect("trunk");
    assert_eq!(password.as_deref(), Some(TRUNK_PASSWORD));
    server.stop().await;

    // A is no longer needed.
    let server = start(&dir.0, KEY_B, &[]).await.expect("B alone");
    server.stop().await;

    // The wrong key is refused at start, naming the key it would need.
    let refused = start(&dir.0, KEY_A, &[])
        .await
        .err()
        .expect("key A can no longer open the secrets");
    let message = format!("{refused:#}");
    assert!(message.contains(&id_b), "{message}");
    assert!(message.contains("secrets_key"), "{message}");
}
