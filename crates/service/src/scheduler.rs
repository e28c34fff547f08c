//! Moves due SCHEDULED calls to QUEUED and tells the engine. Safe to run in
//! several processes against one PostgreSQL: each due call is claimed once.

use std::sync::Arc;
use std::time::Duration;

use switchyard_domain::timefmt;
use switchyard_store::Store;
use tokio::sync::watch;

use crate::telephony::Telephony;

pub struct Scheduler {
    pub store: Store,
    pub telephony: Option<Arc<dyn Telephony>>,
    /// Identifies this process in `claimed_by`.
    pub worker_id: String,
    pub interval: Duration,
    pub batch: i64,
}

impl Scheduler {
    /// Claims every call due now, in batches. Returns how many were claimed.
    pub async fn tick(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let claimed = self
                .store
                .claim_due_calls(timefmt::now_ms(), self.batch, &self.worker_id)
                .await?;
            total += claimed.len();
            for c in &claimed {
                tracing::info!(call_id = %c.call.id, worker = %self.worker_id, "scheduled call is due; queued");
            }
            metrics::counter!("switchyard_calls_claimed_total").increment(claimed.len() as u64);
            if (claimed.len() as i64) < self.batch {
                break;
            }
        }
        if let Some(t) = &self.telephony {
            t.dispatch_queued().await?;
        }
        Ok(total)
    }

    /// Ticks every `interval` until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = %e, "scheduler tick failed");
                    }
                }
                _ = shutdown.changed() => {
                    if *shutdown.borrow() { break; }
                }
            }
        }
    }
}
