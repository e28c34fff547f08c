//! The recordings worker: turns each PROCESSING recording's live WAV into
//! its `.m4a` files, stores them, marks the recording AVAILABLE (or
//! FAILED), and deletes recordings past their retention.
//!
//! It runs off the request and media paths: encoding is CPU work on
//! blocking threads, at most `concurrency` at a time. Each recording is
//! claimed with a lease before work starts, so two processes never both
//! finish one, and a recording whose process died (claim expired, or on
//! SQLite any claim but ours) is simply picked up again; completing is a
//! compare-and-set, so it becomes AVAILABLE exactly once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchyard_domain::id::CallId;
use switchyard_domain::{RecordingChannel, timefmt};
use switchyard_media::m4a::{EncodedRecording, encode_recording};
use switchyard_service::recordings::{
    RecordingStorage, delete_recording_objects, object_key, object_prefix,
};
use switchyard_store::{CompletedRecording, DueRecording, Store, StoreError};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Where the SIP engine writes live recordings (`<call uuid>.wav`).
    pub source_dir: PathBuf,
    /// This process, as written in claims.
    pub worker_id: String,
    /// Whether this process alone uses the database (SQLite): every claim
    /// but its own is a dead process's, and a missing WAV will never appear.
    pub sole_owner: bool,
    /// Recordings encoded at once; 0: this process encodes none.
    pub concurrency: usize,
    /// How often to look for work when not woken.
    pub poll_interval: Duration,
    /// How long a claim holds before another worker may take the recording.
    pub lease: Duration,
    /// Days recordings are kept where the organization sets none.
    pub retention_days: i64,
    pub retention_sweep_interval: Duration,
    /// With several processes: a PROCESSING recording whose WAV no process
    /// has picked up in this long is FAILED (`recording_lost`).
    pub lost_after: Duration,
}

/// After this many claims, a recording that could not be stored is FAILED.
const MAX_ATTEMPTS: i64 = 8;

/// How often the worker says it is alive, and after how long without a
/// word its claims are taken over.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
const HEARTBEAT_STALE: Duration = Duration::from_secs(20);

pub struct RecordingWorker {
    store: Store,
    storage: Arc<dyn RecordingStorage>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
}

/// Why one recording's processing stopped short.
enum ProcessError {
    /// The WAV cannot become a recording: FAILED.
    Unusable(String),
    /// Storage or database trouble: try again later.
    Transient(String),
}

impl RecordingWorker {
    pub fn new(store: Store, storage: Arc<dyn RecordingStorage>, cfg: WorkerConfig) -> Self {
        Self {
            store,
            storage,
            cfg,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the worker at once (the engine calls it when a call's
    /// recording becomes PROCESSING); without it the worker polls.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `stop` is cancelled, then lets encodings in flight finish
    /// (their claims would otherwise wait out the lease).
    pub async fn run(self, stop: CancellationToken) {
        let me = Arc::new(self);
        if me.cfg.sole_owner {
            match me
                .store
                .release_recording_claims_except(&me.cfg.worker_id)
                .await
            {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    recordings = n,
                    "picking up recordings left by a dead process"
                ),
                Err(e) => tracing::warn!(error = %e, "could not release old recording claims"),
            }
        }
        let permits = Arc::new(Semaphore::new(me.cfg.concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut next_sweep = tokio::time::Instant::now();
        let mut next_heartbeat = tokio::time::Instant::now();
        loop {
            while running.try_join_next().is_some() {}
            // Our claims are alive while this is fresh (see `due_recordings`).
            if me.cfg.concurrency > 0 && tokio::time::Instant::now() >= next_heartbeat {
                if let Err(e) = me.store.worker_heartbeat(&me.cfg.worker_id).await {
                    tracing::warn!(error = %e, "recordings worker heartbeat failed");
                }
                next_heartbeat = tokio::time::Instant::now() + HEARTBEAT_INTERVAL;
            }
            if me.cfg.concurrency > 0
                && let Err(e) = me.clone().start_due(&permits, &mut running).await
            {
                tracing::warn!(error = %e, "recordings: looking for work failed");
            }
            if tokio::time::Instant::now() >= next_sweep {
                if let Err(e) = me.sweep_retention().await {
                    tracing::warn!(error = %e, "recording retention sweep failed");
                }
                next_sweep = tokio::time::Instant::now() + me.cfg.retention_sweep_interval;
            }
            tokio::select! {
                _ = me.wake.notified() => {}
                _ = tokio::time::sleep(me.cfg.poll_interval) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = stop.cancelled() => break,
            }
        }
        if tokio::time::timeout(Duration::from_secs(30), async {
            while running.join_next().await.is_some() {}
        })
        .await
        .is_err()
        {
            tracing::warn!("recordings still encoding at shutdown; another start picks them up");
        }
        if me.cfg.concurrency > 0
            && let Err(e) = me.store.worker_stopped(&me.cfg.worker_id).await
        {
            tracing::warn!(error = %e, "could not unregister the recordings worker");
        }
    }

    /// Claims due recordings while permits last and starts each.
    async fn start_due(
        self: Arc<Self>,
        permits: &Arc<Semaphore>,
        running: &mut JoinSet<()>,
    ) -> anyhow::Result<()> {
        let free = permits.available_permits();
        if free == 0 {
            return Ok(());
        }
        let now = timefmt::now_ms();
        let stale_before = now - HEARTBEAT_STALE.as_millis() as i64;
        let due = self
            .store
            .due_recordings(now, stale_before, (free * 4) as i64)
            .await?;
        for rec in due {
            let source = self.source(rec.call_id);
            if !source.exists() {
                self.source_missing(&rec, now).await;
                continue;
            }
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let lease_until = now + self.cfg.lease.as_millis() as i64;
            if !self
                .store
                .claim_recording(&rec, &self.cfg.worker_id, now, stale_before, lease_until)
                .await?
            {
                continue;
            }
            let me = self.clone();
            running.spawn(async move {
                me.process(rec).await;
                drop(permit);
            });
        }
        Ok(())
    }

    fn source(&self, call: CallId) -> PathBuf {
        self.cfg.source_dir.join(format!("{}.wav", call.uuid()))
    }

    /// A PROCESSING recording whose WAV is not here: someone else's (with
    /// several processes), or lost.
    async fn source_missing(&self, rec: &DueRecording, now: i64) {
        let ended = rec.call_end_time.unwrap_or(now);
        let reason = if self.cfg.sole_owner {
            Some("recording_file_missing")
        } else if now - ended > self.cfg.lost_after.as_millis() as i64 {
            Some("recording_lost")
        } else {
            None
        };
        if let Some(reason) = reason {
            match self.store.fail_recording(rec.call_id, reason, now).await {
                Ok(_) => tracing::warn!(call_id = %rec.call_id, reason, "recording FAILED"),
                Err(StoreError::Stale | StoreError::NotFound) => {}
                Err(e) => {
                    tracing::warn!(call_id = %rec.call_id, error = %e, "could not fail a recording")
                }
            }
        }
    }

    async fn process(&self, rec: DueRecording) {
        let started = std::time::Instant::now();
        let call = rec.call_id;
        match self.encode_and_store(&rec).await {
            Ok((encoded, done)) => {
                match self
                    .store
                    .complete_recording(call, &self.cfg.worker_id, &done, timefmt::now_ms())
                    .await
                {
                    Ok(_) => {
                        metrics::counter!("switchyard_recordings_stored_total").increment(1);
                        metrics::histogram!("switchyard_recording_encode_seconds")
                            .record(started.elapsed().as_secs_f64());
                        tracing::info!(
                            call_id = %call,
                            seconds = encoded.duration_seconds,
                            bytes = done.stereo_bytes,
                            took_ms = started.elapsed().as_millis() as u64,
                            "recording AVAILABLE"
                        );
                        if let Err(e) = std::fs::remove_file(self.source(call)) {
                            tracing::warn!(call_id = %call, error = %e, "could not remove the live recording");
                        }
                    }
                    // Another worker finished it, or it was deleted: theirs stands.
                    Err(StoreError::Stale | StoreError::NotFound) => {}
                    Err(e) => self.later(&rec, &format!("database: {e}")).await,
                }
            }
            Err(ProcessError::Unusable(reason)) => {
                metrics::counter!("switchyard_recordings_failed_total").increment(1);
                match self
                    .store
                    .fail_recording(call, &reason, timefmt::now_ms())
                    .await
                {
                    Ok(_) => {
                        tracing::warn!(call_id = %call, %reason, "recording FAILED; its WAV is kept")
                    }
                    Err(StoreError::Stale | StoreError::NotFound) => {}
                    Err(e) => self.later(&rec, &format!("database: {e}")).await,
                }
            }
            Err(ProcessError::Transient(reason)) => self.later(&rec, &reason).await,
        }
    }

    /// Gives the claim back with a backoff, or FAILs after [`MAX_ATTEMPTS`].
    async fn later(&self, rec: &DueRecording, reason: &str) {
        let attempts = rec.attempts + 1;
        let now = timefmt::now_ms();
        if attempts >= MAX_ATTEMPTS {
            let reason = format!("storage_failed: {reason}");
            if let Err(e) = self.store.fail_recording(rec.call_id, &reason, now).await {
                tracing::warn!(call_id = %rec.call_id, error = %e, "could not fail a recording");
            }
            return;
        }
        // 10 s, 20 s, 40 s … capped at 10 min.
        let backoff_ms = (10_000i64 << (attempts - 1).clamp(0, 6)).min(600_000);
        tracing::warn!(call_id = %rec.call_id, reason, attempts, backoff_ms, "recording not stored; will retry");
        if let Err(e) = self
            .store
            .retry_recording_later(rec.call_id, &self.cfg.worker_id, now + backoff_ms, reason)
            .await
        {
            tracing::warn!(call_id = %rec.call_id, error = %e, "could not release a recording claim");
        }
    }

    async fn encode_and_store(
        &self,
        rec: &DueRecording,
    ) -> Result<(EncodedRecording, CompletedRecording), ProcessError> {
        let source = self.source(rec.call_id);
        let encoded = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&source)
                .map_err(|e| ProcessError::Transient(format!("opening the recording: {e}")))?;
            encode_recording(std::io::BufReader::new(file)).map_err(|e| {
                if e.is_io() {
                    ProcessError::Transient(format!("reading the recording: {e}"))
                } else {
                    ProcessError::Unusable(format!("encoding_failed: {e}"))
                }
            })
        })
        .await
        .map_err(|e| ProcessError::Transient(format!("encoder task: {e}")))??;
        let prefix = object_prefix(rec.organization_id, rec.call_id);
        let files = [
            (RecordingChannel::Stereo, &encoded.stereo),
            (RecordingChannel::Customer, &encoded.customer),
            (RecordingChannel::Agent, &encoded.agent),
        ];
        for (channel, file) in files {
            self.storage
                .put(
                    &object_key(&prefix, channel),
                    Bytes::from(file.bytes.clone()),
                )
                .await
                .map_err(|e| ProcessError::Transient(format!("storage: {e}")))?;
        }
        let done = CompletedRecording {
            object_prefix: prefix,
            duration_seconds: encoded.duration_seconds,
            stereo_bytes: encoded.stereo.bytes.len() as i64,
            customer_bytes: encoded.customer.bytes.len() as i64,
            agent_bytes: encoded.agent.bytes.len() as i64,
            recording_start_time: rec.call_start_time,
        };
        Ok((encoded, done))
    }

    /// Deletes recordings past their organization's retention.
    async fn sweep_retention(&self) -> anyhow::Result<()> {
        loop {
            let now = timefmt::now_ms();
            let expired = self
                .store
                .expired_recordings(now, self.cfg.retention_days, 100)
                .await?;
            if expired.is_empty() {
                return Ok(());
            }
            for rec in expired {
                delete_recording_objects(self.storage.as_ref(), rec.organization_id, rec.call_id)
                    .await?;
                match self.store.mark_recording_deleted(rec.call_id, now).await {
                    Ok(_) => {
                        tracing::info!(call_id = %rec.call_id, "recording past retention: DELETED")
                    }
                    Err(StoreError::Stale | StoreError::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}
