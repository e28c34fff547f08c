//! The delivery loop, one per server process:
//!
//! 1. fan out new outbox events into messages and first attempts (woken
//!    by any write this process commits, or by the poll for other
//!    processes' writes and for retries that come due);
//! 2. claim due attempts (PENDING → SENDING, compare-and-set), as many as
//!    there are free sending slots;
//! 3. send each in its own task, and hand the outcome to the recorder,
//!    which writes outcomes in batches (one transaction each) and wakes
//!    the loop, so that the next event of a call goes out as soon as the
//!    one before it is done;
//! 4. every few seconds, take back SENDING attempts whose worker is gone
//!    (lease expired; on SQLite, any claim not ours: one process owns the
//!    file) and schedule them again at once; and free held attempts that
//!    nothing holds any more (a race between a fan-out and the end of the
//!    delivery before it can leave one).
//!
//! Delivery is at least once: a process killed after the receiver answered
//! but before the result was written sends the message again, with the
//! same `webhook-id`, which is what receivers de-duplicate on.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::destination::DestinationPolicy;
use switchyard_store::{AttemptOutcome, AttemptResult, ClaimedAttempt, Store};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::backoff;
use crate::clock::Clock;
use crate::sender::{Delivery, SendOutcome, Sender};

/// Events fanned out per transaction.
const FAN_OUT_BATCH: i64 = 500;
/// Outcomes written per transaction, at most.
const RECORD_BATCH: usize = 512;
/// How long past the request's time limit a claim holds before another
/// worker may take it back.
const LEASE_MARGIN: Duration = Duration::from_secs(30);
/// How often interrupted attempts are looked for.
const RECOVERY_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Identifies this process's claims (`claimed_by`); unique per start.
    pub worker_id: String,
    /// How often the outbox and the due attempts are polled when idle.
    pub poll_interval: Duration,
    /// Deliveries in flight at once.
    pub concurrency: usize,
    /// The time limit of one delivery (Envoy: 15 s).
    pub timeout: Duration,
    /// An ACTIVE endpoint whose deliveries all failed for this long is DISABLED.
    pub disable_after: Duration,
    /// This process alone uses the database (SQLite), so a SENDING attempt
    /// claimed by anyone else was left by a dead process.
    pub sole_owner: bool,
}

pub struct DeliveryWorker {
    store: Store,
    config: WorkerConfig,
    sender: Sender,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl DeliveryWorker {
    pub fn new(
        store: Store,
        config: WorkerConfig,
        policy: Arc<DestinationPolicy>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let sender = Sender::new(policy, config.timeout)?;
        Ok(Self {
            store,
            config,
            sender,
            clock,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Makes the worker look for work now instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true, then lets deliveries in flight end
    /// (within the time limit) and records them.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let concurrency = this.config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        let (results, results_rx) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(this.clone().record(results_rx));
        let mut ticker =
            tokio::time::interval(this.config.poll_interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut next_recovery = Instant::now();
        // A write in this process (a call's event, most often) wakes the loop
        // at once; the poll is for other processes' writes and retries.
        let written = this.store.written();
        tracing::info!(worker = %this.config.worker_id, "webhook delivery worker started");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = this.wake.notified() => {}
                _ = written.notified() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() { break; }
                }
            }
            if *shutdown.borrow() {
                break;
            }
            if Instant::now() >= next_recovery {
                if let Err(e) = this.recover(&results).await {
                    tracing::warn!(error = %e, "looking for interrupted webhook attempts failed");
                }
                next_recovery = Instant::now() + RECOVERY_EVERY;
            }
            if let Err(e) = this.pass(&slots, &results).await {
                tracing::warn!(error = %e, "webhook delivery pass failed");
            }
        }
        let drained = tokio::time::timeout(
            this.config.timeout + Duration::from_secs(5),
            slots.acquire_many(u32::try_from(concurrency).unwrap_or(u32::MAX)),
        )
        .await;
        if drained.is_err() {
            tracing::warn!("webhook deliveries still in flight at shutdown; they will be retried");
        }
        drop(results);
        let _ = recorder.await;
    }

    /// Fans out what is new, then claims and starts due attempts while
    /// there are free slots and due attempts.
    async fn pass(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        results: &mpsc::UnboundedSender<AttemptOutcome>,
    ) -> anyhow::Result<()> {
        loop {
            let fanned = self
                .store
                .dispatch_webhook_events(self.clock.now_ms(), FAN_OUT_BATCH, backoff::MAX_ATTEMPTS)
                .await?;
            if fanned.attempts > 0 {
                metrics::counter!("switchyard_webhook_messages_fanned_out_total")
                    .increment(fanned.attempts as u64);
            }
            if (fanned.events as i64) < FAN_OUT_BATCH {
                break;
            }
        }
        loop {
            let free = slots.available_permits();
            if free == 0 {
                return Ok(());
            }
            let now = self.clock.now_ms();
            let lease_until = now + millis(self.config.timeout + LEASE_MARGIN);
            let claimed = self
                .store
                .claim_webhook_attempts(now, free as i64, &self.config.worker_id, lease_until)
                .await?;
            let count = claimed.len();
            for attempt in claimed {
                let slot = slots.clone().acquire_owned().await?;
                let this = self.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    let outcome = this.deliver(attempt).await;
                    let _ = results.send(outcome);
                    drop(slot);
                });
            }
            if count < free {
                return Ok(());
            }
        }
    }

    async fn deliver(&self, attempt: ClaimedAttempt) -> AttemptOutcome {
        let message_id = attempt.message_id.to_string();
        let sent = self
            .sender
            .send(Delivery {
                url: &attempt.url,
                headers: &attempt.headers,
                message_id: &message_id,
                body: &attempt.payload,
                secrets: &attempt.secrets,
            })
            .await;
        let result = match sent {
            SendOutcome::Delivered {
                status_code,
                body_excerpt,
                duration_ms,
            } => {
                metrics::counter!("switchyard_webhook_attempts_total", "result" => "succeeded")
                    .increment(1);
                AttemptResult::Delivered {
                    status_code: i64::from(status_code),
                    body_excerpt,
                    duration_ms,
                }
            }
            SendOutcome::Failed {
                status_code,
                body_excerpt,
                error_message,
                duration_ms,
            } => {
                let retry_at = backoff::next_attempt_at(
                    attempt.attempt,
                    attempt.max_attempts,
                    self.clock.now_ms(),
                    rand::random::<f64>(),
                );
                let result = if retry_at.is_some() { "failed" } else { "dead" };
                metrics::counter!("switchyard_webhook_attempts_total", "result" => result)
                    .increment(1);
                tracing::debug!(
                    attempt_id = %attempt.attempt_id, endpoint_id = %attempt.endpoint_id,
                    attempt = attempt.attempt, error = %error_message, "webhook attempt failed"
                );
                AttemptResult::Failed {
                    status_code: status_code.map(i64::from),
                    body_excerpt,
                    error_message,
                    duration_ms,
                    retry_at,
                    counts_against_endpoint: true,
                }
            }
        };
        AttemptOutcome {
            attempt_id: attempt.attempt_id,
            message_id: attempt.message_id,
            endpoint_id: attempt.endpoint_id,
            attempt: attempt.attempt,
            max_attempts: attempt.max_attempts,
            worker: self.config.worker_id.clone(),
            result,
        }
    }

    /// Writes outcomes in batches; wakes the loop after each.
    async fn record(self: Arc<Self>, mut outcomes: mpsc::UnboundedReceiver<AttemptOutcome>) {
        let disable_after = millis(self.config.disable_after);
        while let Some(first) = outcomes.recv().await {
            let mut batch = vec![first];
            while batch.len() < RECORD_BATCH {
                match outcomes.try_recv() {
                    Ok(o) => batch.push(o),
                    Err(_) => break,
                }
            }
            // A failed write is tried again a few times; after that the
            // attempts stay SENDING until their lease expires and are sent again.
            for retry in 0..3u32 {
                match self
                    .store
                    .record_webhook_outcomes(&batch, self.clock.now_ms(), disable_after)
                    .await
                {
                    Ok(summary) => {
                        for (endpoint_id, reason) in summary.disabled {
                            tracing::warn!(%endpoint_id, %reason, "webhook endpoint disabled");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry, "recording webhook attempts failed");
                        tokio::time::sleep(Duration::from_millis(200 << retry)).await;
                    }
                }
            }
            self.wake.notify_one();
        }
    }

    /// Schedules again, at once, SENDING attempts whose worker is gone, and
    /// frees held attempts a race left held.
    async fn recover(&self, results: &mpsc::UnboundedSender<AttemptOutcome>) -> anyhow::Result<()> {
        let now = self.clock.now_ms();
        let freed = self.store.release_stuck_webhook_attempts(now).await?;
        if freed > 0 {
            tracing::info!(freed, "held webhook attempts released");
        }
        let sole = self
            .config
            .sole_owner
            .then_some(self.config.worker_id.as_str());
        let interrupted = self
            .store
            .interrupted_webhook_attempts(now, sole, 1000)
            .await?;
        for i in interrupted {
            tracing::info!(attempt_id = %i.attempt_id, claimed_by = %i.claimed_by, "webhook attempt interrupted; sending again");
            let _ = results.send(AttemptOutcome {
                attempt_id: i.attempt_id,
                message_id: i.message_id,
                endpoint_id: i.endpoint_id,
                attempt: i.attempt,
                max_attempts: i.max_attempts,
                worker: i.claimed_by,
                result: AttemptResult::Failed {
                    status_code: None,
                    body_excerpt: String::new(),
                    error_message:
                        "interrupted: the process sending it stopped before it recorded the \
                                    result (the endpoint may have received it)"
                            .into(),
                    duration_ms: 0,
                    retry_at: (i.attempt < i.max_attempts).then_some(now),
                    counts_against_endpoint: false,
                },
            });
        }
        Ok(())
    }
}
