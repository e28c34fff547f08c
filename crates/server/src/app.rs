//! Wiring: store, services, scheduler, the webhook worker and the HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchyard_api::{AppState, Limits, RateLimitConfig};
use switchyard_recordings::{ObjectStorage, RecordingWorker};
use switchyard_service::recordings::{RecordingStorage, Recordings};
use switchyard_service::scheduler::Scheduler;
use switchyard_service::{AuthService, Services};
use switchyard_store::{Store, StoreOptions};
use switchyard_telephony::{Engine, EngineConfig};
use switchyard_webhooks::{Clock, DeliveryWorker, SystemClock, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bootstrap;
use crate::config::Config;

/// The process-wide Prometheus recorder (installed once, shared by every
/// server started in this process, as tests do).
fn prometheus() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| match PrometheusBuilder::new().install_recorder() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed");
                None
            }
        })
        .clone()
}

/// Opens the database and applies migrations. `as_server`: this process
/// serves the API and owns a SQLite file (one server per SQLite file; see
/// the store's call cache); tools beside it (admin, migrate) pass false.
pub async fn open_store(config: &Config, as_server: bool) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.database_max_connections,
        own_sqlite_file: as_server,
        secrets: Some(Arc::new(bootstrap::secrets_keys(config)?)),
        ..Default::default()
    };
    let store = Store::connect(&config.database_url, &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// Starts the SIP engine from the configuration.
async fn start_engine(
    config: &Config,
    store: &Store,
    recordings_waker: Arc<tokio::sync::Notify>,
) -> anyhow::Result<Engine> {
    let addrs = config.engine_addresses()?;
    let prompt = config
        .prompt_file
        .as_deref()
        .map(switchyard_telephony::media_loop::load_prompt)
        .transpose()?;
    let engine_config = EngineConfig {
        sip_bind: addrs.sip,
        advertised_ip: addrs.advertised,
        sip_domain: addrs.domain,
        rtp_bind_ip: addrs.rtp,
        rtp_port_first: config.rtp_port_min,
        rtp_port_last: config.rtp_port_max,
        max_calls: config.max_live_calls,
        prompt,
        recordings_dir: config.data_dir.join("recordings"),
        record_inbound: config.record_inbound_calls,
        no_media_timeout: Duration::from_secs(config.no_media_timeout_seconds.max(1)),
        worker_id: format!(
            "engine-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ),
        sole_owner: store.backend() == switchyard_store::Backend::Sqlite,
        heartbeat_interval: Duration::from_secs(5),
        recordings_waker: Some(recordings_waker),
        media_threads: config.media_threads,
        untrusted_inbound: config.untrusted_inbound()?,
    };
    Engine::start(engine_config, store.clone()).await
}

/// What a start can be given besides the configuration.
#[derive(Clone)]
pub struct StartOptions {
    /// The time the webhook worker schedules by (tests move it ahead).
    pub webhook_clock: Arc<dyn Clock>,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            webhook_clock: Arc::new(SystemClock),
        }
    }
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub services: Services,
    /// The SIP engine, unless `sip_enabled` is off.
    pub engine: Option<Engine>,
    /// What first-run bootstrap created, if this start created it.
    pub initial: Option<bootstrap::InitialCredentials>,
    shutdown: watch::Sender<bool>,
    recordings_stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Starts everything and binds `config.http_addr` (port 0 picks one).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        Self::start_with(config, StartOptions::default()).await
    }

    pub async fn start_with(config: &Config, options: StartOptions) -> anyhow::Result<Self> {
        crate::private_files::private_dir(&config.data_dir)?;
        let webhook_destinations = Arc::new(config.webhook_destinations()?);
        let store = open_store(config, true).await?;
        let resealed = store.reseal_secrets().await?;
        if resealed > 0 {
            tracing::info!(
                resealed,
                "stored secrets sealed with the current secrets_key"
            );
        }
        let secret = bootstrap::jwt_secret(config)?;
        let auth = Arc::new(AuthService::new(
            store.clone(),
            &secret,
            Duration::from_secs(config.token_ttl_seconds),
        ));
        let storage: Arc<dyn RecordingStorage> =
            Arc::new(ObjectStorage::open(&config.recording_storage()?)?);
        let recordings_dir = config.data_dir.join("recordings");
        let recording_worker = RecordingWorker::new(
            store.clone(),
            storage.clone(),
            switchyard_recordings::WorkerConfig {
                source_dir: recordings_dir,
                worker_id: format!(
                    "recordings-{}-{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                ),
                sole_owner: store.backend() == switchyard_store::Backend::Sqlite,
                concurrency: config.recording_workers,
                poll_interval: Duration::from_secs(2),
                lease: Duration::from_secs(600),
                retention_days: config.recording_retention_days,
                retention_sweep_interval: Duration::from_secs(
                    config.recording_retention_sweep_seconds.max(1),
                ),
                lost_after: Duration::from_secs(3600),
            },
        );
        let engine = if config.sip_enabled {
            Some(start_engine(config, &store, recording_worker.waker()).await?)
        } else {
            None
        };
        let services = Services {
            store: store.clone(),
            auth,
            telephony: engine
                .clone()
                .map(|e| Arc::new(e) as Arc<dyn switchyard_service::telephony::Telephony>),
            recordings: Arc::new(Recordings {
                storage,
                url_key: bootstrap::recording_url_secret(config)?,
                public_url: config.public_url.clone(),
                url_ttl: Duration::from_secs(config.recording_url_ttl_seconds),
                url_mode: config.recording_url_mode()?,
            }),
            webhook_destinations: webhook_destinations.clone(),
        };
        let initial = bootstrap::first_run(&services, config).await?;
        bootstrap::seed_trunks(&services, config).await?;

        let limits = Arc::new(Limits::with_login(
            RateLimitConfig {
                per_second: config.rate_limit_per_second,
                burst: config.rate_limit_burst,
            },
            RateLimitConfig {
                per_second: config.call_create_per_second,
                burst: config.call_create_burst,
            },
            config.login_limits()?,
        ));
        let state = AppState {
            services: services.clone(),
            limits: limits.clone(),
            metrics: prometheus(),
        };
        let router = switchyard_api::router(state);
        let listener = tokio::net::TcpListener::bind(&config.http_addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, shutdown_rx) = watch::channel(false);

        let mut tasks = Vec::new();
        let mut rx = shutdown_rx.clone();
        tasks.push(tokio::spawn(async move {
            let stop = async move {
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(e) = switchyard_api::serve(listener, router, stop).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        }));
        let scheduler = Scheduler {
            store: store.clone(),
            telephony: services.telephony.clone(),
            worker_id: format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple()),
            interval: Duration::from_millis(config.scheduler_interval_ms.max(10)),
            batch: config.scheduler_batch.clamp(1, 10_000),
        };
        tasks.push(tokio::spawn(scheduler.run(shutdown_rx.clone())));
        let recordings_stop = CancellationToken::new();
        tasks.push(tokio::spawn(recording_worker.run(recordings_stop.clone())));
        if config.webhook_delivery_enabled {
            let worker = DeliveryWorker::new(
                store.clone(),
                WorkerConfig {
                    worker_id: format!(
                        "webhooks-{}-{}",
                        std::process::id(),
                        uuid::Uuid::new_v4().simple()
                    ),
                    poll_interval: Duration::from_millis(config.webhook_poll_interval_ms.max(1)),
                    concurrency: config.webhook_concurrency.max(1),
                    timeout: Duration::from_millis(config.webhook_timeout_ms.max(1)),
                    disable_after: Duration::from_secs(config.webhook_disable_after_seconds),
                    sole_owner: store.backend() == switchyard_store::Backend::Sqlite,
                },
                webhook_destinations,
                options.webhook_clock.clone(),
            )?;
            tasks.push(tokio::spawn(worker.run(shutdown_rx.clone())));
        }
        let mut rx = shutdown_rx;
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = tick.tick() => limits.shrink(),
                    _ = rx.changed() => break,
                }
            }
        }));
        tracing::info!(%addr, database = ?store.backend(), "Switchyard is listening");
        Ok(Self {
            addr,
            store,
            services,
            engine,
            initial,
            shutdown,
            recordings_stop,
            tasks,
        })
    }

    /// Stops accepting requests, finishes in-flight ones and stops workers.
    pub async fn stop(self) {
        if let Some(engine) = &self.engine {
            engine.shutdown(Duration::from_secs(5)).await;
        }
        let _ = self.shutdown.send(true);
        // After the engine: calls it hung up have handed their recordings over.
        self.recordings_stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }
}
