//! `switchyard bench webhooks`: webhook deliveries per second and the
//! latency from a state change to its receipt, against a receiver in this
//! process on loopback, with 1, 10 and 100 endpoints. The floor is the same
//! receiver hit by a plain reqwest POST loop (same body, same concurrency,
//! same client settings but no signing, no database), measured in the same
//! run; figures are also given as ratios to it.
//!
//! Throughput: calls (one `call.created` each) are written to the outbox
//! with delivery stopped, then a delivery worker starts and the time until
//! the receiver has every delivery is measured (fan-out, claims, signing,
//! POSTs and result writes included). Latency: with the worker running,
//! calls are created at a steady rate; each delivery's latency is its
//! receipt time minus its event's time (the envelope's `timestamp`, taken
//! in the transaction of the change); the time each change took to commit
//! (SQLite's writer queue included) is given beside it.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use switchyard_domain::id::OrganizationId;
use switchyard_domain::{CallDirection, CallStatus, EventType, timefmt};
use switchyard_store::{NewCall, NewWebhookEndpoint, Store};
use switchyard_webhooks::{DeliveryWorker, SystemClock, WorkerConfig};
use tokio::sync::watch;

use crate::app::RunningServer;
use crate::config::Config;

#[derive(Debug, Clone, clap::Args)]
pub struct WebhookBenchArgs {
    /// Endpoint counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    pub endpoints: Vec<usize>,
    /// Deliveries per throughput scenario (events = this ÷ endpoints).
    #[arg(long, default_value_t = 20_000)]
    pub deliveries: usize,
    /// Deliveries per second offered in the latency scenarios (events/s = this ÷ endpoints).
    #[arg(long, default_value_t = 1_000)]
    pub latency_rate: usize,
    /// Seconds per latency scenario.
    #[arg(long, default_value_t = 10)]
    pub latency_seconds: u64,
    /// `postgres://…` to measure PostgreSQL (a scratch database: rows are added to it);
    /// default: a new SQLite file in a temporary directory.
    #[arg(long)]
    pub database_url: Option<String>,
}

/// What the receiver saw.
#[derive(Default)]
struct Receipts {
    count: AtomicU64,
    measuring: AtomicBool,
    latencies_ms: std::sync::Mutex<Vec<i64>>,
}

/// The envelope's `timestamp`, in milliseconds.
fn event_time(body: &[u8]) -> Option<i64> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    timefmt::parse_datetime(v.get("timestamp")?.as_str()?)
}

async fn receive(State(receipts): State<Arc<Receipts>>, body: Bytes) -> StatusCode {
    let now = timefmt::now_ms();
    if receipts.measuring.load(Ordering::Relaxed)
        && let Some(at) = event_time(&body)
        && let Ok(mut l) = receipts.latencies_ms.lock()
    {
        l.push(now - at);
    }
    receipts.count.fetch_add(1, Ordering::Relaxed);
    StatusCode::OK
}

async fn start_receiver(receipts: Arc<Receipts>) -> anyhow::Result<SocketAddr> {
    let app = axum::Router::new()
        .route("/hook/{n}", axum::routing::post(receive))
        .with_state(receipts);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct Floor {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// The floor: `requests` plain POSTs of `body` with `concurrency` in flight.
async fn floor(
    url: &str,
    body: &str,
    requests: usize,
    concurrency: usize,
) -> anyhow::Result<Floor> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .tcp_nodelay(true)
        .build()?;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next, url, body) = (
            client.clone(),
            next.clone(),
            url.to_owned(),
            body.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while (next.fetch_add(1, Ordering::Relaxed) as usize) < requests {
                let t = Instant::now();
                let r = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await?;
                let _ = r.bytes().await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::with_capacity(requests);
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_by(f64::total_cmp);
    Ok(Floor {
        per_second: requests as f64 / elapsed,
        p50_ms: percentile(&all, 50.0),
        p99_ms: percentile(&all, 99.0),
    })
}

fn new_call(org: OrganizationId, i: usize) -> NewCall {
    NewCall {
        organization_id: org,
        status: CallStatus::Queued,
        call_time: timefmt::now_ms(),
        call_direction: CallDirection::Outbound,
        to_number: Some(format!("+1415{:07}", i % 10_000_000)),
        from_number: Some("+15550009999".into()),
        call_type: Some("CHECK_CALL".into()),
        load_id: None,
        created_by_id: None,
        metadata: None,
        agent: None,
        record: true,
        ring_timeout_seconds: 30,
        max_duration_seconds: 1800,
        sip_trunk_id: None,
        claimed_by: None,
    }
}

/// An organization with `n` endpoints at the receiver.
async fn organization_with_endpoints(
    store: &Store,
    receiver: SocketAddr,
    n: usize,
) -> anyhow::Result<OrganizationId> {
    let org = store
        .create_organization(&format!("bench-{n}-{}", uuid::Uuid::new_v4().simple()))
        .await?;
    for i in 0..n {
        store
            .create_webhook_endpoint(
                org.id,
                NewWebhookEndpoint {
                    url: format!("http://{receiver}/hook/{i}"),
                    description: None,
                    event_types: vec![EventType::CallCreated],
                    headers: Default::default(),
                    signing_secret: switchyard_service::webhooks::generate_secret(),
                },
            )
            .await?;
    }
    Ok(org.id)
}

/// Inserts `count` calls (and their events) from a few tasks at once.
async fn insert_calls(store: &Store, org: OrganizationId, count: usize) -> anyhow::Result<()> {
    const WRITERS: usize = 4;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..count).step_by(WRITERS) {
                store.insert_call(new_call(org, i), None).await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

async fn wait_for_count(receipts: &Receipts, target: u64, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while receipts.count.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            anyhow::bail!(
                "only {} of {target} deliveries arrived within {limit:?}",
                receipts.count.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

fn worker_config(config: &Config, store: &Store) -> WorkerConfig {
    WorkerConfig {
        worker_id: format!("bench-{}", uuid::Uuid::new_v4().simple()),
        poll_interval: Duration::from_millis(config.webhook_poll_interval_ms.max(1)),
        concurrency: config.webhook_concurrency.max(1),
        timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
        disable_after: Duration::from_secs(config.webhook_disable_after_seconds),
        sole_owner: store.backend() == switchyard_store::Backend::Sqlite,
    }
}

struct Row {
    endpoints: usize,
    deliveries: usize,
    per_second: f64,
    latency_events: usize,
    p50_ms: f64,
    p99_ms: f64,
    /// p99 of the time the change took to commit.
    write_p99_ms: f64,
}

pub async fn run_webhooks(base: &Config, args: WebhookBenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-bench-webhooks-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let config = Config {
        database_url: args
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("bench.db").display())),
        http_addr: "127.0.0.1:0".into(),
        data_dir: dir.clone(),
        jwt_secret: None,
        sip_trunks: Vec::new(),
        sip_enabled: false,
        scheduler_interval_ms: 3_600_000,
        // The bench runs its own worker, started when the backlog is written.
        webhook_delivery_enabled: false,
        webhook_allow_destinations: vec!["127.0.0.0/8".into()],
        ..base.clone()
    };
    let server = RunningServer::start(&config).await?;
    let result = measure(&config, &args, &server.store).await;
    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn measure(config: &Config, args: &WebhookBenchArgs, store: &Store) -> anyhow::Result<()> {
    let receipts = Arc::new(Receipts::default());
    let receiver = start_receiver(receipts.clone()).await?;
    let policy = Arc::new(config.webhook_destinations()?);
    let mut rows = Vec::new();
    let mut sample_body = String::new();
    for &endpoints in &args.endpoints {
        let endpoints = endpoints.max(1);
        let events = (args.deliveries / endpoints).max(1);
        let deliveries = events * endpoints;
        let org = organization_with_endpoints(store, receiver, endpoints).await?;
        eprintln!("{endpoints} endpoint(s): writing {events} events with delivery stopped…");
        insert_calls(store, org, events).await?;
        if sample_body.is_empty()
            && let Some(e) = store.events_after(0, None, 1).await?.first()
        {
            sample_body = serde_json::json!({"id": e.id, "type": e.event_type.as_str(), "timestamp": timefmt::format_ms(e.created_at), "data": e.data}).to_string();
        }
        let before = receipts.count.load(Ordering::Relaxed);
        let (stop, stopped) = watch::channel(false);
        let worker = DeliveryWorker::new(
            store.clone(),
            worker_config(config, store),
            policy.clone(),
            Arc::new(SystemClock),
        )?;
        let started = Instant::now();
        let running = tokio::spawn(worker.run(stopped));
        wait_for_count(
            &receipts,
            before + deliveries as u64,
            Duration::from_secs(600),
        )
        .await?;
        let per_second = deliveries as f64 / started.elapsed().as_secs_f64();
        eprintln!(
            "  {deliveries} deliveries in {:.2} s: {per_second:.0}/s",
            started.elapsed().as_secs_f64()
        );

        // Latency at a steady rate, the same worker running.
        let events_per_second = (args.latency_rate / endpoints).max(1);
        let total_events = events_per_second * args.latency_seconds as usize;
        eprintln!(
            "  latency: {events_per_second} events/s for {} s…",
            args.latency_seconds
        );
        if let Ok(mut l) = receipts.latencies_ms.lock() {
            l.clear();
        }
        receipts.measuring.store(true, Ordering::Relaxed);
        let before = receipts.count.load(Ordering::Relaxed);
        let tick = Duration::from_secs_f64(1.0 / events_per_second as f64);
        let mut pace = tokio::time::interval(tick);
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        // How long each change took to commit (the writer's queue included):
        // the part of a delivery's latency spent before it could be sent.
        let writes_ms = Arc::new(std::sync::Mutex::new(Vec::with_capacity(total_events)));
        for i in 0..total_events {
            pace.tick().await;
            let store = store.clone();
            let writes_ms = writes_ms.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let written = store.insert_call(new_call(org, i), None).await;
                if let Ok(mut w) = writes_ms.lock() {
                    w.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                written
            });
        }
        wait_for_count(
            &receipts,
            before + (total_events * endpoints) as u64,
            Duration::from_secs(120),
        )
        .await?;
        receipts.measuring.store(false, Ordering::Relaxed);
        let mut latencies: Vec<f64> = receipts
            .latencies_ms
            .lock()
            .map(|l| l.iter().map(|&ms| ms as f64).collect())
            .unwrap_or_default();
        latencies.sort_by(f64::total_cmp);
        let mut writes: Vec<f64> = writes_ms.lock().map(|w| w.clone()).unwrap_or_default();
        writes.sort_by(f64::total_cmp);
        let _ = stop.send(true);
        let _ = running.await;
        rows.push(Row {
            endpoints,
            deliveries,
            per_second,
            latency_events: total_events,
            p50_ms: percentile(&latencies, 50.0),
            p99_ms: percentile(&latencies, 99.0),
            write_p99_ms: percentile(&writes, 99.0),
        });
    }

    eprintln!("floor: a plain POST loop to the same receiver…");
    let floor = floor(
        &format!("http://{receiver}/hook/floor"),
        &sample_body,
        args.deliveries,
        config.webhook_concurrency.max(1),
    )
    .await?;

    let mut table = String::new();
    writeln!(
        table,
        "Back-end: {:?}; webhook_concurrency {}, webhook_poll_interval_ms {}; receiver in-process on loopback.\n",
        store.backend(),
        config.webhook_concurrency,
        config.webhook_poll_interval_ms
    )?;
    writeln!(
        table,
        "Floor (plain reqwest POST loop, {} requests, {} in flight): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms.\n",
        args.deliveries, config.webhook_concurrency, floor.per_second, floor.p50_ms, floor.p99_ms
    )?;
    writeln!(
        table,
        "| endpoints | deliveries | deliveries/s | ÷ floor | latency events (rate) | p50 ms | p99 ms | p50 ÷ floor | p99 ÷ floor | write p99 ms |"
    )?;
    writeln!(table, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for r in &rows {
        writeln!(
            table,
            "| {} | {} | {:.0} | {:.2} | {} ({}/s) | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.endpoints,
            r.deliveries,
            r.per_second,
            r.per_second / floor.per_second,
            r.latency_events,
            (args.latency_rate / r.endpoints).max(1),
            r.p50_ms,
            r.p99_ms,
            r.p50_ms / floor.p50_ms,
            r.p99_ms / floor.p99_ms,
            r.write_p99_ms
        )?;
    }
    println!("{table}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_time_and_percentiles() {
        let body = br#"{"id":"evt_x","type":"call.created","timestamp":"2024-01-15T09:30:00.123Z","data":{}}"#;
        assert_eq!(event_time(body), Some(1_705_311_000_123));
        assert_eq!(event_time(b"nope"), None);
        let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&sorted, 50.0), 51.0);
        assert_eq!(percentile(&sorted, 99.0), 99.0);
        assert!(percentile(&[], 50.0).is_nan());
    }
}
