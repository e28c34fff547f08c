//! Two `switchyard serve` processes on one PostgreSQL database deliver the
//! same outbox: every attempt is claimed by one of them, and every endpoint
//! receives every event exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{Serve, serve_command, start};
use common::webhooks::Receiver;
use common::{PgDatabase, TempDir, eventually};
use serde_json::json;
use switchyard_domain::{CallDirection, CallStatus, EventType};
use switchyard_store::{NewCall, NewWebhookEndpoint, SecretKeys, Store, StoreOptions};

const ENDPOINTS: usize = 10;
const CALLS: usize = 100;

const SECRETS_KEY: &str = "secrets-key-secrets-key-secrets-key-00";

fn spawn_server(db_url: &str, dir: &TempDir) -> Serve {
    let mut cmd = serve_command();
    cmd.env("SWITCHYARD_DATABASE_URL", db_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_SIP_ENABLED", "false")
        .env(
            "SWITCHYARD_JWT_SECRET",
            "test-secret-test-secret-test-secret-000",
        )
        // Every process of one database seals and opens secrets with one key.
        .env("SWITCHYARD_SECRETS_KEY", SECRETS_KEY)
        .env("SWITCHYARD_WEBHOOK_ALLOW_DESTINATIONS", "127.0.0.0/8")
        .env("SWITCHYARD_WEBHOOK_POLL_INTERVAL_MS", "10")
        // Few slots each, so that both processes have claims to race for.
        .env("SWITCHYARD_WEBHOOK_CONCURRENCY", "8");
    start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_send_each_attempt_once() {
    let Some(receiver) = Receiver::start() else {
        return;
    };
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let a = spawn_server(&db.url, &dir_a);
    let b = spawn_server(&db.url, &dir_b);
    let options = StoreOptions {
        secrets: Some(std::sync::Arc::new(SecretKeys::new(
            SECRETS_KEY.as_bytes(),
            &[],
        ))),
        ..Default::default()
    };
    let store = Store::connect(&db.url, &options).await.expect("connect");
    let org = store
        .list_organizations()
        .await
        .expect("orgs")
        .into_iter()
        .next()
        .expect("org");
    for i in 0..ENDPOINTS {
        let secret = switchyard_service::webhooks::generate_secret();
        store
            .create_webhook_endpoint(
                org.id,
                NewWebhookEndpoint {
                    url: receiver.url(&format!("ep{i}")),
                    description: None,
                    event_types: vec![EventType::CallCreated],
                    headers: Default::default(),
                    signing_secret: secret.clone(),
                },
            )
            .await
            .expect("endpoint");
        receiver
            .configure(&format!("ep{i}"), json!({"secrets": {"current": secret}}))
            .await;
    }
    for i in 0..CALLS {
        store
            .insert_call(
                NewCall {
                    organization_id: org.id,
                    status: CallStatus::Queued,
                    call_time: switchyard_domain::timefmt::now_ms(),
                    call_direction: CallDirection::Outbound,
                    to_number: Some(format!("+1415555{i:04}")),
                    from_number: Some("+15550001000".into()),
                    call_type: None,
                    load_id: None,
                    created_by_id: None,
                    metadata: None,
                    agent: None,
                    record: true,
                    ring_timeout_seconds: 30,
                    max_duration_seconds: 1800,
                    sip_trunk_id: None,
                    claimed_by: None,
                },
                None,
            )
            .await
            .expect("call");
    }
    for i in 0..ENDPOINTS {
        let name = format!("ep{i}");
        receiver
            .wait_for(&name, CALLS, Duration::from_secs(60))
            .await;
    }
    // Every attempt finished, and nothing more arrives.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let by_worker: Vec<(Option<String>, String, i64)> =
        eventually(Duration::from_secs(30), || async {
            let rows: Vec<(Option<String>, String, i64)> = sqlx::query_as(
            "SELECT claimed_by, status, COUNT(*) FROM webhook_attempts GROUP BY claimed_by, status",
        )
        .fetch_all(&pool)
        .await
        .ok()?;
            rows.iter()
                .all(|(_, s, _)| s == "SUCCEEDED")
                .then_some(rows)
        })
        .await;
    eprintln!("attempts per process: {by_worker:?}");
    let total: i64 = by_worker.iter().map(|(_, _, n)| n).sum();
    assert_eq!(
        total,
        (ENDPOINTS * CALLS) as i64,
        "one attempt per delivery: none retried"
    );
    let workers: HashMap<&str, i64> = by_worker
        .iter()
        .map(|(w, _, n)| (w.as_deref().unwrap_or_default(), *n))
        .collect();
    assert!(
        workers.keys().all(|w| w.starts_with("webhooks-")),
        "{workers:?}"
    );
    assert_eq!(workers.len(), 2, "both processes delivered: {workers:?}");
    for i in 0..ENDPOINTS {
        let s = receiver.summary(&format!("ep{i}")).await;
        assert_eq!(s["requests"], CALLS, "ep{i}: no attempt sent twice");
        assert_eq!(s["unique_ids"], CALLS, "ep{i}: every event once");
        let deliveries = s["deliveries"].as_array().unwrap();
        assert!(deliveries.iter().all(|d| d["verified"]["current"] == true));
    }
    drop((a, b));
    store.close().await;
}
