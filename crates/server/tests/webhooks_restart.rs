//! Crash safety of webhooks: a `switchyard serve` process SIGKILLed between
//! a change and its delivery (the events only in the outbox, or a delivery
//! in flight) leaves it to the next start, and each endpoint gets each
//! event exactly once (counted by `webhook-id`, as receivers de-duplicate).

mod common;

use std::time::Duration;

use common::process::{Serve, serve_command, start};
use common::webhooks::Receiver;
use common::{TempDir, eventually};
use serde_json::{Value, json};
use switchyard::app::RunningServer;

const JWT: &str = "test-secret-test-secret-test-secret-000";
const WAIT: Duration = Duration::from_secs(30);

/// Starts the server; returns it, its base URL and (on the first run) the API key.
fn spawn_server(dir: &TempDir, db_url: &str, deliver: bool) -> (Serve, String, Option<String>) {
    let mut cmd = serve_command();
    cmd.env("SWITCHYARD_DATABASE_URL", db_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_SIP_ENABLED", "false")
        .env("SWITCHYARD_JWT_SECRET", JWT)
        .env("SWITCHYARD_WEBHOOK_ALLOW_DESTINATIONS", "127.0.0.0/8")
        .env("SWITCHYARD_WEBHOOK_POLL_INTERVAL_MS", "20")
        .env("SWITCHYARD_WEBHOOK_DELIVERY_ENABLED", deliver.to_string());
    let server = start(cmd);
    let (base, key) = (server.base.clone(), server.api_key.clone());
    (server, base, key)
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
async fn events_outlive_a_killed_server_and_are_delivered_exactly_once() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let dir = TempDir::new();
    let db_url = format!("sqlite://{}", dir.0.join("switchyard.db").display());
    let http = reqwest::Client::new();

    // 1. A process that does not deliver: the changes stay in the outbox.
    let (process, base, key) = spawn_server(&dir, &db_url, false);
    let key = key.expect("first run prints an API key");
    let trunk = post(
        &http,
        &base,
        &key,
        "/sip-trunks",
        json!({"name": "t", "host": "127.0.0.1", "port": 5070}),
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
    for name in ["a", "b"] {
        let ep = post(
            &http,
            &base,
            &key,
            "/webhooks/endpoints",
            json!({
                "url": receiver.url(name),
                "event_types": ["call.created", "call.status_changed", "call.ended"]
            }),
        )
        .await;
        receiver
            .configure(name, json!({"secrets": {"current": ep["signing_secret"]}}))
            .await;
    }
    let call = post(
        &http,
        &base,
        &key,
        "/calls",
        json!({"to_number": "+14155552671"}),
    )
    .await;
    post(
        &http,
        &base,
        &key,
        &format!("/calls/{}/end", call["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    drop(process); // SIGKILL: three events written, none delivered.
    assert_eq!(receiver.summary("a").await["requests"], 0);

    // 2. A delivering process: each event once per endpoint.
    let (process, base, _) = spawn_server(&dir, &db_url, true);
    for name in ["a", "b"] {
        let got = receiver.wait_for(name, 3, WAIT).await;
        let types: Vec<&str> = got
            .iter()
            .map(|d| d["json"]["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            ["call.created", "call.status_changed", "call.ended"],
            "{name}"
        );
        assert!(got.iter().all(|d| d["verified"]["current"] == true));
    }

    // 3. Killed with a delivery in flight: endpoint a holds the request unanswered.
    receiver.configure("a", json!({"hold": true})).await;
    let second = post(
        &http,
        &base,
        &key,
        "/calls",
        json!({"to_number": "+14155552672"}),
    )
    .await;
    receiver.wait_for("a", 4, WAIT).await;
    receiver.wait_for("b", 4, WAIT).await;
    drop(process); // SIGKILL: a's attempt stays SENDING, its answer never read.
    receiver.release("a").await;

    // 4. The next start takes the interrupted attempt back and sends it again.
    let mut config = common::base_config(&dir.0);
    config.database_url = db_url;
    config.jwt_secret = Some(JWT.into());
    let server = RunningServer::start(&config).await.expect("restart");
    let again = receiver.wait_for("a", 5, WAIT).await;
    assert_eq!(
        again[3]["webhook_id"], again[4]["webhook_id"],
        "the same message, sent again"
    );
    assert_eq!(again[4]["json"]["data"]["id"], second["id"]);
    assert!(again[4]["verified"]["current"] == true);
    let base = format!("http://{}", server.addr);
    let endpoints: Value = http
        .get(format!("{base}/webhooks/endpoints"))
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let a_id = endpoints["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["url"] == receiver.url("a"))
        .expect("endpoint a")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let log = eventually(WAIT, || async {
        let page: Value = http
            .get(format!("{base}/webhooks/endpoints/{a_id}/messages"))
            .header("X-API-Key", &key)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let data = page["data"].as_array()?.clone();
        data.iter()
            .any(|a| a["status"] == "SUCCEEDED" && a["attempt"] == 2)
            .then_some(data)
    })
    .await;
    let interrupted = log
        .iter()
        .find(|a| a["attempt"] == 1 && a["payload"]["data"]["id"] == second["id"])
        .expect("first attempt");
    assert_eq!(interrupted["status"], "FAILED");
    assert!(
        interrupted["error_message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{interrupted}"
    );

    // Exactly once per endpoint, by webhook-id: a has 4 messages (one sent twice), b has 4.
    let a = receiver.summary("a").await;
    let b = receiver.summary("b").await;
    assert_eq!(
        (a["unique_ids"].clone(), a["requests"].clone()),
        (json!(4), json!(5))
    );
    assert_eq!(
        (b["unique_ids"].clone(), b["requests"].clone()),
        (json!(4), json!(4))
    );
    server.stop().await;
}
