//! Recordings after the call: the encoding worker's queue and claims, the
//! stored objects, retention, deletion. `calls.recording_status` is what the
//! API shows; every change to it here is a compare-and-set on it, in one
//! transaction with the `recordings` row and the event it causes, so a
//! recording becomes AVAILABLE (and `call.recording_available` is written)
//! exactly once, whoever races for it.

use sqlx::FromRow;
use switchyard_domain::id::{CallId, OrganizationId};
use switchyard_domain::model::Call;
use switchyard_domain::{EventType, RecordingStatus};

use crate::calls::{call_after_update, call_event};
use crate::events::insert_event;
use crate::{Result, Store, StoreError, on_pool, on_writer, parse_uuid, write_tx};

/// A call whose recording waits to be encoded and stored.
#[derive(Debug, Clone)]
pub struct DueRecording {
    pub call_id: CallId,
    pub organization_id: OrganizationId,
    /// When the recording started (the answer).
    pub call_start_time: Option<i64>,
    pub call_end_time: Option<i64>,
    /// Claims so far (each try to encode and store it).
    pub attempts: i64,
}

/// A recording's stored state.
#[derive(Debug, Clone)]
pub struct StoredRecording {
    pub call_id: CallId,
    pub organization_id: OrganizationId,
    pub status: RecordingStatus,
    /// Where its objects are (`<prefix>stereo.m4a`, …).
    pub object_prefix: Option<String>,
    pub duration_seconds: Option<f64>,
    pub stereo_bytes: Option<i64>,
    pub customer_bytes: Option<i64>,
    pub agent_bytes: Option<i64>,
    pub recording_start_time: Option<i64>,
    pub failure_reason: Option<String>,
    pub attempts: i64,
    pub available_at: Option<i64>,
}

/// What the worker stored.
#[derive(Debug, Clone)]
pub struct CompletedRecording {
    pub object_prefix: String,
    pub duration_seconds: f64,
    pub stereo_bytes: i64,
    pub customer_bytes: i64,
    pub agent_bytes: i64,
    pub recording_start_time: Option<i64>,
}

#[derive(FromRow)]
struct RecordingRow {
    call_id: String,
    organization_id: String,
    status: String,
    object_prefix: Option<String>,
    duration_seconds: Option<f64>,
    stereo_bytes: Option<i64>,
    customer_bytes: Option<i64>,
    agent_bytes: Option<i64>,
    recording_start_time: Option<i64>,
    failure_reason: Option<String>,
    attempts: i64,
    available_at: Option<i64>,
}

macro_rules! select_recording {
    () => {
        "SELECT r.call_id, r.organization_id, r.status, r.object_prefix, r.duration_seconds, \
         r.stereo_bytes, r.customer_bytes, r.agent_bytes, r.recording_start_time, r.failure_reason, \
         r.attempts, r.available_at FROM recordings r"
    };
}

impl RecordingRow {
    fn into_model(self) -> Result<StoredRecording> {
        Ok(StoredRecording {
            call_id: CallId::from_uuid(parse_uuid(&self.call_id)?),
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            status: RecordingStatus::parse(&self.status)
                .ok_or_else(|| StoreError::Corrupt(format!("recording status {}", self.status)))?,
            object_prefix: self.object_prefix,
            duration_seconds: self.duration_seconds,
            stereo_bytes: self.stereo_bytes,
            customer_bytes: self.customer_bytes,
            agent_bytes: self.agent_bytes,
            recording_start_time: self.recording_start_time,
            failure_reason: self.failure_reason,
            attempts: self.attempts,
            available_at: self.available_at,
        })
    }
}

#[derive(FromRow)]
struct DueRow {
    id: String,
    organization_id: String,
    call_start_time: Option<i64>,
    call_end_time: Option<i64>,
    attempts: Option<i64>,
}

/// Moves `calls.recording_status` from one of `$from` to `$to` for
/// `$id_text` inside `$tx`, or returns early with `Stale`/`NotFound`.
/// Evaluates to the call as it is now.
macro_rules! move_recording_status {
    ($tx:ident, $id_text:expr, $from:expr, $to:expr, $now:expr) => {{
        let id_text: &str = $id_text;
        let to: RecordingStatus = $to;
        let from: &[RecordingStatus] = $from;
        debug_assert!(from.iter().all(|f| f.may_become(to)));
        let updated = sqlx::query(
            "UPDATE calls SET recording_status = $1, updated_at = $2 \
             WHERE id = $3 AND recording_status IN ($4, $5)",
        )
        .bind(to.as_str())
        .bind($now)
        .bind(id_text)
        .bind(from[0].as_str())
        .bind(from[from.len() - 1].as_str())
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        call_after_update!($tx, id_text, updated)
    }};
}

impl Store {
    /// Calls whose recording is PROCESSING and free to claim, oldest
    /// hang-up first: never claimed, given back and past its retry time, or
    /// claimed by a worker whose lease ran out or whose heartbeat (in
    /// `engine_workers`) is older than `stale_before`.
    pub async fn due_recordings(
        &self,
        now: i64,
        stale_before: i64,
        limit: i64,
    ) -> Result<Vec<DueRecording>> {
        let rows: Vec<DueRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT c.id, c.organization_id, c.call_start_time, c.call_end_time, r.attempts \
                 FROM calls c LEFT JOIN recordings r ON r.call_id = c.id \
                 WHERE c.recording_status = 'PROCESSING' AND (r.call_id IS NULL \
                 OR (r.claimed_by IS NULL AND (r.claim_expires_at IS NULL OR r.claim_expires_at < $1)) \
                 OR (r.claimed_by IS NOT NULL AND (r.claim_expires_at < $1 OR NOT EXISTS \
                     (SELECT 1 FROM engine_workers w WHERE w.worker_id = r.claimed_by AND w.heartbeat_at >= $2)))) \
                 ORDER BY c.call_end_time LIMIT $3",
            )
            .bind(now)
            .bind(stale_before)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(DueRecording {
                    call_id: CallId::from_uuid(parse_uuid(&r.id)?),
                    organization_id: OrganizationId::from_uuid(parse_uuid(&r.organization_id)?),
                    call_start_time: r.call_start_time,
                    call_end_time: r.call_end_time,
                    attempts: r.attempts.unwrap_or(0),
                })
            })
            .collect()
    }

    /// Claims a PROCESSING recording for `worker` until `lease_until`.
    /// False if another worker holds a live claim (as [`Self::due_recordings`]
    /// judges it) or it is no longer PROCESSING. Safe across processes: the
    /// claim is one conditional upsert of the row.
    pub async fn claim_recording(
        &self,
        due: &DueRecording,
        worker: &str,
        now: i64,
        stale_before: i64,
        lease_until: i64,
    ) -> Result<bool> {
        let id_text = due.call_id.uuid().to_string();
        let org_text = due.organization_id.uuid().to_string();
        let claimed = write_tx!(self, |tx| {
            let processing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM calls WHERE id = $1 AND recording_status = 'PROCESSING'",
            )
            .bind(&id_text)
            .fetch_optional(&mut *tx)
            .await?;
            if processing.is_none() {
                return Ok(false);
            }
            let claimed = sqlx::query(
                "INSERT INTO recordings (call_id, organization_id, status, claimed_by, claim_expires_at, \
                 attempts, created_at, updated_at) VALUES ($1, $2, 'PROCESSING', $3, $4, 1, $5, $5) \
                 ON CONFLICT (call_id) DO UPDATE SET claimed_by = excluded.claimed_by, \
                 claim_expires_at = excluded.claim_expires_at, attempts = recordings.attempts + 1, \
                 updated_at = excluded.updated_at \
                 WHERE recordings.status = 'PROCESSING' AND ( \
                 (recordings.claimed_by IS NULL AND (recordings.claim_expires_at IS NULL OR recordings.claim_expires_at < $5)) \
                 OR (recordings.claimed_by IS NOT NULL AND (recordings.claim_expires_at < $5 OR NOT EXISTS \
                     (SELECT 1 FROM engine_workers w WHERE w.worker_id = recordings.claimed_by AND w.heartbeat_at >= $6))))",
            )
            .bind(&id_text)
            .bind(&org_text)
            .bind(worker)
            .bind(lease_until)
            .bind(now)
            .bind(stale_before)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            tx.commit().await?;
            claimed
        });
        Ok(claimed)
    }

    /// Ends every claim not held by `worker`: for a process that alone uses
    /// the database (SQLite), at start, when any other claim is a dead one.
    pub async fn release_recording_claims_except(&self, worker: &str) -> Result<u64> {
        let n = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE recordings SET claimed_by = NULL, claim_expires_at = NULL \
                 WHERE status = 'PROCESSING' AND claimed_by IS NOT NULL AND claimed_by <> $1",
            )
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(n)
    }

    /// Gives a claimed recording back, to be tried again from `retry_at`.
    pub async fn retry_recording_later(
        &self,
        call: CallId,
        worker: &str,
        retry_at: i64,
        reason: &str,
    ) -> Result<()> {
        on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE recordings SET claimed_by = NULL, claim_expires_at = $1, failure_reason = $2 \
                 WHERE call_id = $3 AND claimed_by = $4",
            )
            .bind(retry_at)
            .bind(reason)
            .bind(call.uuid().to_string())
            .bind(worker)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// PROCESSING → AVAILABLE with what `worker` stored, and
    /// `call.recording_available`, in one transaction. [`StoreError::Stale`]
    /// if the recording moved or another worker holds the claim now.
    pub async fn complete_recording(
        &self,
        call: CallId,
        worker: &str,
        done: &CompletedRecording,
        now: i64,
    ) -> Result<Call> {
        let id_text = call.uuid().to_string();
        let call = write_tx!(self, |tx| {
            let call = move_recording_status!(
                tx,
                &id_text,
                &[RecordingStatus::Processing],
                RecordingStatus::Available,
                now
            );
            let ours = sqlx::query(
                "UPDATE recordings SET status = 'AVAILABLE', object_prefix = $1, duration_seconds = $2, \
                 stereo_bytes = $3, customer_bytes = $4, agent_bytes = $5, recording_start_time = $6, \
                 failure_reason = NULL, claimed_by = NULL, claim_expires_at = NULL, available_at = $7, \
                 updated_at = $7 WHERE call_id = $8 AND claimed_by = $9",
            )
            .bind(&done.object_prefix)
            .bind(done.duration_seconds)
            .bind(done.stereo_bytes)
            .bind(done.customer_bytes)
            .bind(done.agent_bytes)
            .bind(done.recording_start_time)
            .bind(now)
            .bind(&id_text)
            .bind(worker)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if ours == 0 {
                // Dropping the transaction rolls the status back.
                return Err(StoreError::Stale);
            }
            insert_event!(
                tx,
                &call_event(&call, EventType::CallRecordingAvailable, now)?
            );
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// PROCESSING (or RECORDING) → FAILED with `reason`, and
    /// `call.recording_failed`, in one transaction.
    pub async fn fail_recording(&self, call: CallId, reason: &str, now: i64) -> Result<Call> {
        let id_text = call.uuid().to_string();
        let call = write_tx!(self, |tx| {
            let call = move_recording_status!(
                tx,
                &id_text,
                &[RecordingStatus::Recording, RecordingStatus::Processing],
                RecordingStatus::Failed,
                now
            );
            sqlx::query(
                "INSERT INTO recordings (call_id, organization_id, status, failure_reason, attempts, \
                 created_at, updated_at) VALUES ($1, $2, 'FAILED', $3, 0, $4, $4) \
                 ON CONFLICT (call_id) DO UPDATE SET status = 'FAILED', failure_reason = excluded.failure_reason, \
                 claimed_by = NULL, claim_expires_at = NULL, updated_at = excluded.updated_at",
            )
            .bind(&id_text)
            .bind(call.organization_id.uuid().to_string())
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            insert_event!(tx, &call_event(&call, EventType::CallRecordingFailed, now)?);
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// AVAILABLE or FAILED → DELETED (after its objects are gone).
    pub async fn mark_recording_deleted(&self, call: CallId, now: i64) -> Result<Call> {
        let id_text = call.uuid().to_string();
        let call = write_tx!(self, |tx| {
            let call = move_recording_status!(
                tx,
                &id_text,
                &[RecordingStatus::Available, RecordingStatus::Failed],
                RecordingStatus::Deleted,
                now
            );
            sqlx::query(
                "UPDATE recordings SET status = 'DELETED', deleted_at = $1, updated_at = $1 WHERE call_id = $2",
            )
            .bind(now)
            .bind(&id_text)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// A call's recording row. Not scoped by organization: the media route
    /// is reached by a signed URL, whose signature names the call.
    pub async fn get_recording(&self, call: CallId) -> Result<StoredRecording> {
        let row: Option<RecordingRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_recording!(), " WHERE r.call_id = $1"))
                .bind(call.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    /// AVAILABLE recordings past their organization's retention (or
    /// `default_days`), oldest first.
    pub async fn expired_recordings(
        &self,
        now: i64,
        default_days: i64,
        limit: i64,
    ) -> Result<Vec<StoredRecording>> {
        let rows: Vec<RecordingRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(
                select_recording!(),
                " JOIN organizations o ON o.id = r.organization_id \
                 WHERE r.status = 'AVAILABLE' \
                 AND r.available_at < $1 - COALESCE(o.recording_retention_days, $2) * 86400000 \
                 ORDER BY r.available_at LIMIT $3"
            ))
            .bind(now)
            .bind(default_days)
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(RecordingRow::into_model).collect()
    }

    /// How many days `org` keeps recordings; `None`: the server's default.
    pub async fn set_recording_retention(
        &self,
        org: OrganizationId,
        days: Option<i64>,
    ) -> Result<()> {
        let n = on_writer!(self, |pool| {
            sqlx::query("UPDATE organizations SET recording_retention_days = $1 WHERE id = $2")
                .bind(days)
                .bind(org.uuid().to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The days `org` keeps recordings, if set.
    pub async fn recording_retention(&self, org: OrganizationId) -> Result<Option<i64>> {
        let days: Option<Option<i64>> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT recording_retention_days FROM organizations WHERE id = $1")
                .bind(org.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        days.ok_or(StoreError::NotFound)
    }
}
