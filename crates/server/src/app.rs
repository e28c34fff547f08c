//! Wiring: store, services, scheduler and the HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchyard_api::{AppState, Limits, RateLimitConfig};
use switchyard_service::scheduler::Scheduler;
use switchyard_service::{AuthService, Services};
use switchyard_store::{Store, StoreOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

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
        ..Default::default()
    };
    let store = Store::connect(&config.database_url, &options).await?;
    store.migrate().await?;
    Ok(store)
}

/// A server running in this process.
pub struct RunningServer {
    pub addr: SocketAddr,
    pub store: Store,
    pub services: Services,
    /// What first-run bootstrap created, if this start created it.
    pub initial: Option<bootstrap::InitialCredentials>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Starts everything and binds `config.http_addr` (port 0 picks one).
    pub async fn start(config: &Config) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&config.data_dir)?;
        let store = open_store(config, true).await?;
        let secret = bootstrap::jwt_secret(config)?;
        let auth = Arc::new(AuthService::new(
            store.clone(),
            &secret,
            Duration::from_secs(config.token_ttl_seconds),
        ));
        let services = Services {
            store: store.clone(),
            auth,
            telephony: None,
        };
        let initial = bootstrap::first_run(&services, config).await?;
        bootstrap::seed_trunks(&services, config).await?;

        let limits = Arc::new(Limits::new(
            RateLimitConfig {
                per_second: config.rate_limit_per_second,
                burst: config.rate_limit_burst,
            },
            RateLimitConfig {
                per_second: config.call_create_per_second,
                burst: config.call_create_burst,
            },
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
            let app = router.into_make_service_with_connect_info::<SocketAddr>();
            let stop = async move {
                while !*rx.borrow_and_update() {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
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
            initial,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting requests, finishes in-flight ones and stops workers.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }
}
