//! Two `switchyard serve` processes on one PostgreSQL database race to claim
//! 500 due scheduled calls: every call must be claimed exactly once.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::process::{Serve, serve_command, start};
use common::{PgDatabase, TempDir, eventually};
use switchyard_domain::{CallDirection, CallStatus, EventType, timefmt};
use switchyard_store::{CallFilter, NewCall, Page, Store, StoreOptions};

/// Starts `switchyard serve` and waits until it says it is listening.
fn spawn_server(db_url: &str, dir: &TempDir) -> Serve {
    let mut cmd = serve_command();
    cmd.env("SWITCHYARD_DATABASE_URL", db_url)
        .env("SWITCHYARD_DATA_DIR", &dir.0)
        .env("SWITCHYARD_SCHEDULER_INTERVAL_MS", "10")
        .env("SWITCHYARD_SCHEDULER_BATCH", "7")
        // The claim is what is tested; with no trunk the engine would only
        // fail the calls.
        .env("SWITCHYARD_SIP_ENABLED", "false")
        .env(
            "SWITCHYARD_JWT_SECRET",
            "test-secret-test-secret-test-secret-000",
        );
    start(cmd)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_claim_each_due_call_exactly_once() {
    let Some(db) = PgDatabase::create().await else {
        return;
    };
    let (dir_a, dir_b) = (TempDir::new(), TempDir::new());
    let a = spawn_server(&db.url, &dir_a);
    let b = spawn_server(&db.url, &dir_b);

    let store = Store::connect(&db.url, &StoreOptions::default())
        .await
        .expect("connect");
    let org = store
        .list_organizations()
        .await
        .expect("orgs")
        .into_iter()
        .next()
        .expect("first run made an org");
    // Written an hour ahead, then all 500 made due by one statement, so
    // they fall due at one moment however long writing them took.
    let due_at = timefmt::now_ms() + 3_600_000;
    for i in 0..500 {
        store
            .insert_call(
                NewCall {
                    organization_id: org.id,
                    status: CallStatus::Scheduled,
                    call_time: due_at,
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
            .expect("insert");
    }
    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    let made_due = sqlx::query("UPDATE calls SET call_time = $1 WHERE organization_id = $2")
        .bind(timefmt::now_ms())
        .bind(org.id.uuid().to_string())
        .execute(&pool)
        .await
        .expect("make them due")
        .rows_affected();
    assert_eq!(made_due, 500);
    pool.close().await;

    let queued = CallFilter {
        statuses: vec![CallStatus::Queued],
        ..Default::default()
    };
    eventually(Duration::from_secs(60), || async {
        let (_, n) = store
            .list_calls(
                org.id,
                &queued,
                Page {
                    limit: 1,
                    offset: 0,
                },
            )
            .await
            .expect("list");
        (n == 500).then_some(())
    })
    .await;

    // Exactly one SCHEDULED → QUEUED event per call.
    let events = store.events_after(0, None, 100_000).await.expect("events");
    let mut claims: HashMap<String, usize> = HashMap::new();
    for e in events
        .iter()
        .filter(|e| e.event_type == EventType::CallStatusChanged && e.data["status"] == "QUEUED")
    {
        *claims.entry(e.subject_id.clone()).or_default() += 1;
    }
    assert_eq!(claims.len(), 500, "every call claimed");
    let twice: Vec<_> = claims.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "calls claimed more than once: {twice:?}");

    let by_worker: Vec<(Option<String>, i64)> =
        sqlx::query_as("SELECT claimed_by, COUNT(*) FROM calls GROUP BY claimed_by")
            .fetch_all(&pg_pool(&db.url).await)
            .await
            .expect("by worker");
    eprintln!("claims per process: {by_worker:?}");
    assert!(
        by_worker.iter().all(|(w, _)| w.is_some()),
        "every call records its claimer"
    );

    drop((a, b));
    store.close().await;
}

async fn pg_pool(url: &str) -> sqlx::PgPool {
    sqlx::PgPool::connect(url).await.expect("pg pool")
}
