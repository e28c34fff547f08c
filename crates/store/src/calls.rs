//! Calls: creation (with idempotency), queries, state transitions as
//! compare-and-set, and the scheduler's claim of due calls.

use sqlx::{AssertSqlSafe, FromRow};
use switchyard_domain::id::{CallId, EventId, LoadId, OrganizationId, SipTrunkId, UserId};
use switchyard_domain::model::{Call, TranscriptTurn};
use switchyard_domain::{
    AnsweredBy, CallDirection, CallEvent, CallStatus, EventType, RecordingStatus, timefmt,
};

use crate::events::{NewEvent, insert_event};
use crate::loads::escape_like;
use crate::{
    Bind, Result, Store, StoreError, bind_all, on_pool, on_writer, parse_json, parse_uuid, write_tx,
};

macro_rules! select_call {
    () => {
        "SELECT c.id, c.organization_id, c.status, c.call_time, c.created_at, c.updated_at, \
     c.call_direction, c.to_number, c.from_number, c.call_start_time, c.call_end_time, c.call_type, c.load_id, \
     c.created_by_id, c.recording_status, l.load_number, c.failure_reason, c.sip_status, c.answered_by, \
     c.duration_seconds, c.metadata, c.agent, c.record, c.ring_timeout_seconds, c.max_duration_seconds \
     FROM calls c LEFT JOIN loads l ON l.id = c.load_id"
    };
}
const SELECT_CALL: &str = select_call!();
pub(crate) const SELECT_CALL_BY_ID: &str = concat!(select_call!(), " WHERE c.id = $1");

#[derive(FromRow)]
pub(crate) struct CallRow {
    id: String,
    organization_id: String,
    status: String,
    call_time: i64,
    created_at: i64,
    updated_at: i64,
    call_direction: Option<String>,
    to_number: Option<String>,
    from_number: Option<String>,
    call_start_time: Option<i64>,
    call_end_time: Option<i64>,
    call_type: Option<String>,
    load_id: Option<String>,
    created_by_id: Option<String>,
    recording_status: Option<String>,
    load_number: Option<String>,
    failure_reason: Option<String>,
    sip_status: Option<i64>,
    answered_by: Option<String>,
    duration_seconds: Option<f64>,
    metadata: Option<String>,
    agent: Option<String>,
    record: bool,
    ring_timeout_seconds: i64,
    max_duration_seconds: i64,
}

fn parse_enum<T>(text: &str, parse: fn(&str) -> Option<T>) -> Result<T> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("unexpected value {text:?}")))
}

impl CallRow {
    pub(crate) fn into_model(self) -> Result<Call> {
        let direction = self
            .call_direction
            .as_deref()
            .map(|d| parse_enum(d, CallDirection::parse))
            .transpose()?;
        let phone_number = match direction {
            Some(CallDirection::Inbound) => self.from_number.clone(),
            _ => self.to_number.clone(),
        };
        Ok(Call {
            id: CallId::from_uuid(parse_uuid(&self.id)?),
            status: parse_enum(&self.status, CallStatus::parse)?,
            call_time: self.call_time,
            created_at: self.created_at,
            updated_at: self.updated_at,
            call_direction: direction,
            phone_number,
            to_number: self.to_number,
            from_number: self.from_number,
            call_start_time: self.call_start_time,
            call_end_time: self.call_end_time,
            call_type: self.call_type,
            load_id: self
                .load_id
                .as_deref()
                .map(parse_uuid)
                .transpose()?
                .map(LoadId::from_uuid),
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            created_by_id: self
                .created_by_id
                .as_deref()
                .map(parse_uuid)
                .transpose()?
                .map(UserId::from_uuid),
            recording_status: self
                .recording_status
                .as_deref()
                .map(|s| parse_enum(s, RecordingStatus::parse))
                .transpose()?,
            load_number: self.load_number,
            failure_reason: self.failure_reason,
            sip_status: self.sip_status,
            answered_by: self
                .answered_by
                .as_deref()
                .map(|s| parse_enum(s, AnsweredBy::parse))
                .transpose()?,
            duration_seconds: self.duration_seconds,
            metadata: parse_json(self.metadata.as_deref())?,
            record: self.record,
            ring_timeout_seconds: self.ring_timeout_seconds,
            max_duration_seconds: self.max_duration_seconds,
            agent: parse_json(self.agent.as_deref())?,
        })
    }
}

/// A call to insert.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub organization_id: OrganizationId,
    pub status: CallStatus,
    pub call_time: i64,
    pub call_direction: CallDirection,
    pub to_number: Option<String>,
    pub from_number: Option<String>,
    pub call_type: Option<String>,
    pub load_id: Option<LoadId>,
    pub created_by_id: Option<UserId>,
    pub metadata: Option<serde_json::Value>,
    pub agent: Option<serde_json::Value>,
    pub record: bool,
    pub ring_timeout_seconds: i64,
    pub max_duration_seconds: i64,
    pub sip_trunk_id: Option<SipTrunkId>,
    /// The engine process holding the call (inbound calls start held).
    pub claimed_by: Option<String>,
}

/// Fields set alongside a status change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct CallPatch {
    pub call_start_time: Option<i64>,
    pub call_end_time: Option<i64>,
    pub failure_reason: Option<String>,
    pub sip_status: Option<i64>,
    pub duration_seconds: Option<f64>,
    pub recording_status: Option<RecordingStatus>,
    pub answered_by: Option<AnsweredBy>,
    /// The engine process that now holds the call's dialog.
    pub claimed_by: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallSort {
    CallTime,
    CreatedAt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    Asc,
    Desc,
}

/// What `GET /calls` filters on. Times are milliseconds, `[from, to)`.
#[derive(Debug, Clone)]
pub struct CallFilter {
    pub statuses: Vec<CallStatus>,
    pub call_time_from: Option<i64>,
    pub call_time_to: Option<i64>,
    pub search: Option<String>,
    pub direction: Option<CallDirection>,
    pub call_type: Option<String>,
    pub load_id: Option<LoadId>,
    pub sort: CallSort,
    pub order: SortOrder,
}

impl Default for CallFilter {
    fn default() -> Self {
        Self {
            statuses: Vec::new(),
            call_time_from: None,
            call_time_to: None,
            search: None,
            direction: None,
            call_type: None,
            load_id: None,
            sort: CallSort::CallTime,
            order: SortOrder::Desc,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub limit: i64,
    pub offset: i64,
}

/// A call the scheduler moved SCHEDULED → QUEUED.
#[derive(Debug, Clone)]
pub struct ClaimedCall {
    pub call: Call,
}

/// SQL text with numbered placeholders, built alongside its bind values.
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) binds: Vec<Bind>,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            binds: Vec::new(),
        }
    }
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }
    pub(crate) fn bind(&mut self, value: Bind) -> &mut Self {
        self.binds.push(value);
        self.text.push('$');
        self.text.push_str(&self.binds.len().to_string());
        self
    }
}

fn push_filter(sql: &mut Sql, org: OrganizationId, f: &CallFilter) {
    sql.push(" WHERE c.organization_id = ")
        .bind(Bind::Text(org.uuid().to_string()));
    if !f.statuses.is_empty() {
        sql.push(" AND c.status IN (");
        for (i, s) in f.statuses.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Bind::Text(s.as_str().to_owned()));
        }
        sql.push(")");
    }
    if let Some(from) = f.call_time_from {
        sql.push(" AND c.call_time >= ").bind(Bind::Int(from));
    }
    if let Some(to) = f.call_time_to {
        sql.push(" AND c.call_time < ").bind(Bind::Int(to));
    }
    if let Some(d) = f.direction {
        sql.push(" AND c.call_direction = ")
            .bind(Bind::Text(d.as_str().to_owned()));
    }
    if let Some(t) = &f.call_type {
        sql.push(" AND c.call_type = ").bind(Bind::Text(t.clone()));
    }
    if let Some(l) = f.load_id {
        sql.push(" AND c.load_id = ")
            .bind(Bind::Text(l.uuid().to_string()));
    }
    if let Some(search) = &f.search {
        let pattern = format!("%{}%", escape_like(&search.to_lowercase()));
        // One placeholder used four times keeps the bind list short.
        sql.push(" AND (LOWER(c.to_number) LIKE ")
            .bind(Bind::Text(pattern));
        let n = sql.binds.len();
        sql.push(&format!(
            " ESCAPE '\\' OR LOWER(c.from_number) LIKE ${n} ESCAPE '\\' OR LOWER(l.load_number) LIKE ${n} ESCAPE '\\' \
             OR c.id LIKE "
        ));
        // IDs are stored without their prefix.
        let id_part = search.to_lowercase();
        let id_part = id_part.strip_prefix("call_").unwrap_or(&id_part);
        sql.bind(Bind::Text(format!("%{}%", escape_like(id_part))))
            .push(" ESCAPE '\\')");
    }
}

pub(crate) fn call_event(call: &Call, event_type: EventType, at: i64) -> Result<NewEvent> {
    Ok(NewEvent {
        id: EventId::new(),
        organization_id: call.organization_id,
        event_type,
        subject_id: call.id.to_string(),
        data: serde_json::to_value(call).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: at,
    })
}

/// After a compare-and-set `UPDATE` of call `$id_text` in `$tx` that
/// touched `$updated` rows: the call as it is now, or an early return with
/// [`StoreError::Stale`] (it moved) or [`StoreError::NotFound`] (it is gone).
macro_rules! call_after_update {
    ($tx:ident, $id_text:expr, $updated:expr) => {{
        let id_text: &str = $id_text;
        if $updated == 0 {
            let exists: Option<String> = sqlx::query_scalar("SELECT id FROM calls WHERE id = $1")
                .bind(id_text)
                .fetch_optional(&mut *$tx)
                .await?;
            return Err(if exists.is_some() {
                $crate::StoreError::Stale
            } else {
                $crate::StoreError::NotFound
            });
        }
        let row: $crate::calls::CallRow = sqlx::query_as($crate::calls::SELECT_CALL_BY_ID)
            .bind(id_text)
            .fetch_one(&mut *$tx)
            .await?;
        row.into_model()?
    }};
}
pub(crate) use call_after_update;

/// The body of a status change inside an open write transaction `$tx`:
/// compare-and-set on the status, then `call.status_changed` (and
/// `call.ended` on a terminal status) in the same transaction. Evaluates to
/// the updated call; returns early with [`StoreError::Stale`] if the status
/// moved, [`StoreError::NotFound`] if the call is gone. A macro because the
/// two back-ends' transactions are different types.
macro_rules! apply_transition {
    ($tx:ident, $id_text:expr, $expected:expr, $next:expr, $patch:expr, $now:expr) => {{
        let id_text: &str = $id_text;
        let expected: CallStatus = $expected;
        let next: CallStatus = $next;
        let patch: &CallPatch = $patch;
        let now: i64 = $now;
        let updated = sqlx::query(
            "UPDATE calls SET status = $1, updated_at = $2, \
             call_start_time = COALESCE($3, call_start_time), call_end_time = COALESCE($4, call_end_time), \
             failure_reason = COALESCE($5, failure_reason), sip_status = COALESCE($6, sip_status), \
             duration_seconds = COALESCE($7, duration_seconds), recording_status = COALESCE($8, recording_status), \
             answered_by = COALESCE($9, answered_by), claimed_by = COALESCE($12, claimed_by), \
             claimed_at = CASE WHEN $12 IS NULL THEN claimed_at ELSE $2 END \
             WHERE id = $10 AND status = $11",
        )
        .bind(next.as_str())
        .bind(now)
        .bind(patch.call_start_time)
        .bind(patch.call_end_time)
        .bind(&patch.failure_reason)
        .bind(patch.sip_status)
        .bind(patch.duration_seconds)
        .bind(patch.recording_status.map(|r| r.as_str()))
        .bind(patch.answered_by.map(|a| a.as_str()))
        .bind(id_text)
        .bind(expected.as_str())
        .bind(&patch.claimed_by)
        .execute(&mut *$tx)
        .await?
        .rows_affected();
        let call = call_after_update!($tx, id_text, updated);
        // A repeated RINGING (180 then 183) changes nothing worth an event.
        if next != expected {
            insert_event!($tx, &call_event(&call, EventType::CallStatusChanged, now)?);
            if next.is_terminal() {
                insert_event!($tx, &call_event(&call, EventType::CallEnded, now)?);
            }
        }
        call
    }};
}

/// The idempotency record of an earlier create.
#[derive(Debug, Clone)]
pub struct IdempotencyRecord {
    pub request_hash: String,
    pub call_id: CallId,
}

impl Store {
    /// Inserts a call and its `call.created` event in one transaction. With
    /// `idempotency = Some((key, request_hash))` the key is recorded in the
    /// same transaction; a concurrent create with the same key gets
    /// [`StoreError::Conflict`] and should re-read the key.
    pub async fn insert_call(
        &self,
        new: NewCall,
        idempotency: Option<(&str, &str)>,
    ) -> Result<Call> {
        let now = timefmt::now_ms();
        let id = CallId::new();
        let id_text = id.uuid().to_string();
        let org_text = new.organization_id.uuid().to_string();
        let call = write_tx!(self, |tx| {
            if let Some((key, hash)) = idempotency {
                // An expired key may be reused for a new request.
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE organization_id = $1 AND idempotency_key = $2 AND created_at < $3",
                )
                .bind(&org_text)
                .bind(key)
                .bind(now - IDEMPOTENCY_TTL_MS)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO idempotency_keys (organization_id, idempotency_key, request_hash, call_id, created_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&org_text)
                .bind(key)
                .bind(hash)
                .bind(&id_text)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| crate::conflict_on_unique(e, "idempotency key"))?;
            }
            sqlx::query(
                "INSERT INTO calls (id, organization_id, status, call_time, created_at, updated_at, call_direction, \
                 to_number, from_number, call_type, load_id, created_by_id, metadata, agent, record, \
                 ring_timeout_seconds, max_duration_seconds, sip_trunk_id, claimed_by, claimed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)",
            )
            .bind(&id_text)
            .bind(&org_text)
            .bind(new.status.as_str())
            .bind(new.call_time)
            .bind(now)
            .bind(now)
            .bind(new.call_direction.as_str())
            .bind(&new.to_number)
            .bind(&new.from_number)
            .bind(&new.call_type)
            .bind(new.load_id.map(|l| l.uuid().to_string()))
            .bind(new.created_by_id.map(|u| u.uuid().to_string()))
            .bind(new.metadata.as_ref().map(|m| m.to_string()))
            .bind(new.agent.as_ref().map(|a| a.to_string()))
            .bind(new.record)
            .bind(new.ring_timeout_seconds)
            .bind(new.max_duration_seconds)
            .bind(new.sip_trunk_id.map(|t| t.uuid().to_string()))
            .bind(&new.claimed_by)
            .bind(new.claimed_by.as_ref().map(|_| now))
            .execute(&mut *tx)
            .await?;
            let row: CallRow = sqlx::query_as(SELECT_CALL_BY_ID)
                .bind(&id_text)
                .fetch_one(&mut *tx)
                .await?;
            let call = row.into_model()?;
            let event = call_event(&call, EventType::CallCreated, now)?;
            insert_event!(tx, &event);
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// Inserts many calls at once, without outbox events: for seeding a
    /// benchmark database, never for calls that will be dialed.
    pub async fn insert_calls_for_benchmark(&self, calls: &[NewCall]) -> Result<Vec<CallId>> {
        const COLUMNS: usize = 18;
        const ROWS_PER_STATEMENT: usize = 500;
        let now = timefmt::now_ms();
        let mut ids = Vec::with_capacity(calls.len());
        for chunk in calls.chunks(ROWS_PER_STATEMENT) {
            let mut sql = Sql::new(
                "INSERT INTO calls (id, organization_id, status, call_time, created_at, updated_at, call_direction, \
                 to_number, from_number, call_type, load_id, created_by_id, metadata, agent, record, \
                 ring_timeout_seconds, max_duration_seconds, sip_trunk_id) VALUES ",
            );
            for (i, new) in chunk.iter().enumerate() {
                let id = CallId::new();
                ids.push(id);
                sql.push(if i == 0 { "(" } else { ", (" });
                let values = [
                    Bind::Text(id.uuid().to_string()),
                    Bind::Text(new.organization_id.uuid().to_string()),
                    Bind::Text(new.status.as_str().to_owned()),
                    Bind::Int(new.call_time),
                    Bind::Int(now),
                    Bind::Int(now),
                    Bind::Text(new.call_direction.as_str().to_owned()),
                    Bind::OptText(new.to_number.clone()),
                    Bind::OptText(new.from_number.clone()),
                    Bind::OptText(new.call_type.clone()),
                    Bind::OptText(new.load_id.map(|l| l.uuid().to_string())),
                    Bind::OptText(new.created_by_id.map(|u| u.uuid().to_string())),
                    Bind::OptText(new.metadata.as_ref().map(|m| m.to_string())),
                    Bind::OptText(new.agent.as_ref().map(|a| a.to_string())),
                    Bind::Bool(new.record),
                    Bind::Int(new.ring_timeout_seconds),
                    Bind::Int(new.max_duration_seconds),
                    Bind::OptText(new.sip_trunk_id.map(|t| t.uuid().to_string())),
                ];
                debug_assert_eq!(values.len(), COLUMNS);
                for (j, v) in values.into_iter().enumerate() {
                    if j > 0 {
                        sql.push(", ");
                    }
                    sql.bind(v);
                }
                sql.push(")");
            }
            write_tx!(self, |tx| {
                bind_all!(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.binds)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            });
        }
        Ok(ids)
    }

    /// The call an unexpired idempotency key points at.
    pub async fn find_idempotency_key(
        &self,
        org: OrganizationId,
        key: &str,
    ) -> Result<Option<IdempotencyRecord>> {
        let row: Option<(String, String)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT request_hash, call_id FROM idempotency_keys \
                 WHERE organization_id = $1 AND idempotency_key = $2 AND created_at >= $3",
            )
            .bind(org.uuid().to_string())
            .bind(key)
            .bind(timefmt::now_ms() - IDEMPOTENCY_TTL_MS)
            .fetch_optional(pool)
            .await?
        });
        row.map(|(request_hash, call_id)| {
            Ok(IdempotencyRecord {
                request_hash,
                call_id: CallId::from_uuid(parse_uuid(&call_id)?),
            })
        })
        .transpose()
    }

    pub async fn get_call(&self, org: OrganizationId, id: CallId) -> Result<Call> {
        let call = self.get_call_unscoped(id).await?;
        // Another organization's call does not exist for this one.
        if call.organization_id != org {
            return Err(StoreError::NotFound);
        }
        Ok(call)
    }

    /// A call by ID in any organization (for the engine, never for the API).
    pub async fn get_call_unscoped(&self, id: CallId) -> Result<Call> {
        let generation = self.call_cache.as_ref().map(|c| c.generation());
        if let Some(cached) = self.call_cache.as_ref().and_then(|c| c.get(id.uuid())) {
            return Ok(cached);
        }
        let row: Option<CallRow> = on_pool!(self, |pool| {
            sqlx::query_as(SELECT_CALL_BY_ID)
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        let call = row.ok_or(StoreError::NotFound)?.into_model()?;
        if let (Some(cache), Some(generation)) = (&self.call_cache, generation) {
            cache.fill(generation, &call);
        }
        Ok(call)
    }

    /// One page of calls and the total matching the filter.
    pub async fn list_calls(
        &self,
        org: OrganizationId,
        filter: &CallFilter,
        page: Page,
    ) -> Result<(Vec<Call>, i64)> {
        let mut select = Sql::new(SELECT_CALL);
        push_filter(&mut select, org, filter);
        let column = match filter.sort {
            CallSort::CallTime => "c.call_time",
            CallSort::CreatedAt => "c.created_at",
        };
        let dir = match filter.order {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        };
        select.push(&format!(" ORDER BY {column} {dir}, c.id {dir} LIMIT "));
        select
            .bind(Bind::Int(page.limit))
            .push(" OFFSET ")
            .bind(Bind::Int(page.offset));

        let mut count = Sql::new("SELECT COUNT(*) FROM calls c");
        if filter.search.is_some() {
            count.push(" LEFT JOIN loads l ON l.id = c.load_id");
        }
        push_filter(&mut count, org, filter);

        let (rows, total): (Vec<CallRow>, i64) = on_pool!(self, |pool| {
            let rows = bind_all!(
                sqlx::query_as(AssertSqlSafe(select.text.as_str())),
                &select.binds
            )
            .fetch_all(pool)
            .await?;
            let total = bind_all!(
                sqlx::query_scalar(AssertSqlSafe(count.text.as_str())),
                &count.binds
            )
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok((
            rows.into_iter()
                .map(CallRow::into_model)
                .collect::<Result<_>>()?,
            total,
        ))
    }

    /// Every call of a load, newest first.
    pub async fn list_calls_for_load(
        &self,
        org: OrganizationId,
        load: LoadId,
    ) -> Result<Vec<Call>> {
        let sql = format!(
            "{SELECT_CALL} WHERE c.organization_id = $1 AND c.load_id = $2 ORDER BY c.created_at DESC, c.id DESC"
        );
        let rows: Vec<CallRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(load.uuid().to_string())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(CallRow::into_model).collect()
    }

    /// Applies `event` to the call if it is still `expected`: a
    /// compare-and-set, so two actors never both move the same call. Writes
    /// `call.status_changed` (and `call.ended` on reaching a terminal state)
    /// in the same transaction. Returns [`StoreError::Stale`] if the status
    /// moved meanwhile.
    pub async fn transition_call(
        &self,
        id: CallId,
        expected: CallStatus,
        event: CallEvent,
        patch: CallPatch,
    ) -> Result<Call> {
        let next = expected
            .apply(event)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = timefmt::now_ms();
        let id_text = id.uuid().to_string();
        let call = write_tx!(self, |tx| {
            let call = apply_transition!(tx, &id_text, expected, next, &patch, now);
            tx.commit().await?;
            call
        });
        Ok(call)
    }

    /// Moves up to `limit` due SCHEDULED calls to QUEUED and returns them.
    /// On PostgreSQL the rows are locked with `FOR UPDATE SKIP LOCKED`, so
    /// several server processes claim disjoint sets; on SQLite the write
    /// transaction is exclusive. Each claim writes `call.status_changed`.
    pub async fn claim_due_calls(
        &self,
        now: i64,
        limit: i64,
        claimer: &str,
    ) -> Result<Vec<ClaimedCall>> {
        let lock = match self.backend() {
            crate::Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        let claim = format!(
            "UPDATE calls SET status = 'QUEUED', updated_at = $1, claimed_by = $2, claimed_at = $1 \
             WHERE status = 'SCHEDULED' AND id IN (SELECT id FROM calls WHERE status = 'SCHEDULED' AND call_time <= $1 \
             ORDER BY call_time LIMIT $3{lock}) RETURNING id"
        );
        let claimed = write_tx!(self, |tx| {
            let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(claim.as_str()))
                .bind(now)
                .bind(claimer)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                let row: CallRow = sqlx::query_as(SELECT_CALL_BY_ID)
                    .bind(&id)
                    .fetch_one(&mut *tx)
                    .await?;
                let call = row.into_model()?;
                insert_event!(tx, &call_event(&call, EventType::CallStatusChanged, now)?);
                claimed.push(ClaimedCall { call });
            }
            tx.commit().await?;
            claimed
        });
        Ok(claimed)
    }

    /// The transcript of a call, in time order.
    pub async fn transcript(
        &self,
        org: OrganizationId,
        call: CallId,
    ) -> Result<Vec<TranscriptTurn>> {
        #[derive(FromRow)]
        struct Row {
            id: String,
            role: String,
            content: String,
            at: i64,
            interrupted: bool,
            transcript_confidence: Option<f64>,
            tool_calls: String,
            tool_call_id: Option<String>,
        }
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT t.id, t.role, t.content, t.at, t.interrupted, t.transcript_confidence, t.tool_calls, t.tool_call_id \
                 FROM transcript_turns t JOIN calls c ON c.id = t.call_id \
                 WHERE t.call_id = $1 AND c.organization_id = $2 ORDER BY t.at, t.id",
            )
            .bind(call.uuid().to_string())
            .bind(org.uuid().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(TranscriptTurn {
                    id: r.id,
                    role: r.role,
                    content: r.content,
                    timestamp: r.at,
                    interrupted: r.interrupted,
                    transcript_confidence: r.transcript_confidence,
                    tool_calls: parse_json(Some(&r.tool_calls))?.unwrap_or_default(),
                    tool_call_id: r.tool_call_id,
                })
            })
            .collect()
    }

    /// Number of calls of an organization (used by tests and benchmarks).
    pub async fn count_calls(&self, org: OrganizationId) -> Result<i64> {
        let n = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM calls WHERE organization_id = $1")
                .bind(org.uuid().to_string())
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }
}

/// Idempotency keys are honoured for 24 hours.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// What happened when the engine tried to take a QUEUED call.
#[derive(Debug, Clone)]
pub enum DialStart {
    /// The call is now DIALING and held by this worker.
    Started(Box<Call>),
    /// The trunk has `max_concurrent_calls` live calls: the call stays QUEUED.
    TrunkFull,
    /// Someone else moved the call (another worker, or an end request).
    Gone,
}

const LIVE_STATUSES: &str = "('DIALING', 'RINGING', 'IN_PROGRESS')";

/// The SIP engine's side of the calls table.
impl Store {
    /// QUEUED calls, oldest first, with their trunks: what the engine
    /// should dial.
    pub async fn queued_calls(&self, limit: i64) -> Result<Vec<(CallId, Option<SipTrunkId>)>> {
        let rows: Vec<(String, Option<String>)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, sip_trunk_id FROM calls WHERE status = 'QUEUED' ORDER BY call_time, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(id, trunk)| {
                Ok((
                    CallId::from_uuid(parse_uuid(&id)?),
                    trunk
                        .map(|t| parse_uuid(&t).map(SipTrunkId::from_uuid))
                        .transpose()?,
                ))
            })
            .collect()
    }

    /// Live calls on a trunk (DIALING, RINGING or IN_PROGRESS).
    pub async fn live_calls_on_trunk(&self, trunk: SipTrunkId) -> Result<i64> {
        let sql = format!(
            "SELECT COUNT(*) FROM calls WHERE sip_trunk_id = $1 AND status IN {LIVE_STATUSES}"
        );
        Ok(on_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.as_str()))
                .bind(trunk.uuid().to_string())
                .fetch_one(pool)
                .await?
        }))
    }

    /// QUEUED → DIALING for `worker`, unless the call's trunk already has
    /// `max_live` live calls. The count and the change are one transaction;
    /// on PostgreSQL the trunk row is locked so that processes dialing
    /// through one trunk at once never exceed its capacity.
    pub async fn start_dialing(
        &self,
        id: CallId,
        trunk: Option<SipTrunkId>,
        max_live: Option<i64>,
        worker: &str,
    ) -> Result<DialStart> {
        let now = timefmt::now_ms();
        let id_text = id.uuid().to_string();
        let count_sql = format!(
            "SELECT COUNT(*) FROM calls WHERE sip_trunk_id = $1 AND status IN {LIVE_STATUSES}"
        );
        let lock = self.backend() == crate::Backend::Postgres;
        let patch = CallPatch {
            claimed_by: Some(worker.to_owned()),
            ..Default::default()
        };
        let outcome = write_tx!(self, |tx| {
            if let (Some(trunk), Some(max)) = (trunk, max_live) {
                let trunk_text = trunk.uuid().to_string();
                if lock {
                    sqlx::query("SELECT id FROM sip_trunks WHERE id = $1 FOR UPDATE")
                        .bind(&trunk_text)
                        .fetch_optional(&mut *tx)
                        .await?;
                }
                let live: i64 = sqlx::query_scalar(AssertSqlSafe(count_sql.as_str()))
                    .bind(&trunk_text)
                    .fetch_one(&mut *tx)
                    .await?;
                if live >= max {
                    return Ok(DialStart::TrunkFull);
                }
            }
            let started: Result<Call> = async {
                Ok(apply_transition!(
                    tx,
                    &id_text,
                    CallStatus::Queued,
                    CallStatus::Dialing,
                    &patch,
                    now
                ))
            }
            .await;
            match started {
                Ok(call) => {
                    tx.commit().await?;
                    DialStart::Started(Box::new(call))
                }
                Err(StoreError::Stale | StoreError::NotFound) => DialStart::Gone,
                Err(e) => return Err(e),
            }
        });
        Ok(outcome)
    }

    /// Records that `worker` is alive (and registers it on the first call).
    pub async fn worker_heartbeat(&self, worker: &str) -> Result<()> {
        let now = timefmt::now_ms();
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO engine_workers (worker_id, started_at, heartbeat_at) VALUES ($1, $2, $2) \
                 ON CONFLICT (worker_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
            )
            .bind(worker)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A clean stop: the worker holds nothing any more.
    pub async fn worker_stopped(&self, worker: &str) -> Result<()> {
        on_writer!(self, |pool| {
            sqlx::query("DELETE FROM engine_workers WHERE worker_id = $1")
                .bind(worker)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// When the engine worker holding `call` last sent its heartbeat: the
    /// last time it was known alive. `None` if the call is held by no
    /// registered worker (or does not exist).
    pub async fn call_holder_heartbeat(&self, call: CallId) -> Result<Option<i64>> {
        let row: Option<(i64,)> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT w.heartbeat_at FROM calls c \
                 JOIN engine_workers w ON w.worker_id = c.claimed_by WHERE c.id = $1",
            )
            .bind(call.uuid().to_string())
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(at,)| at))
    }

    /// Live calls held by no live worker: their holder is not `me` and has
    /// not sent a heartbeat since `stale_before` (or never registered).
    pub async fn orphaned_live_calls(&self, me: &str, stale_before: i64) -> Result<Vec<Call>> {
        let sql = format!(
            "{SELECT_CALL} WHERE c.status IN {LIVE_STATUSES} AND (c.claimed_by IS NULL OR c.claimed_by <> $1) \
             AND NOT EXISTS (SELECT 1 FROM engine_workers w WHERE w.worker_id = c.claimed_by AND w.heartbeat_at >= $2) \
             ORDER BY c.created_at"
        );
        let rows: Vec<CallRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(me)
                .bind(stale_before)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(CallRow::into_model).collect()
    }
}

impl Store {
    /// Keeps an answered call's SIP dialog (the engine's JSON) while it is live.
    pub async fn save_call_dialog(&self, call: CallId, data: &serde_json::Value) -> Result<()> {
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO call_dialogs (call_id, data, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (call_id) DO UPDATE SET data = excluded.data",
            )
            .bind(call.uuid().to_string())
            .bind(data.to_string())
            .bind(timefmt::now_ms())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes and returns a call's stored dialog, if any.
    pub async fn take_call_dialog(&self, call: CallId) -> Result<Option<serde_json::Value>> {
        let row: Option<(String,)> = on_writer!(self, |pool| {
            sqlx::query_as("DELETE FROM call_dialogs WHERE call_id = $1 RETURNING data")
                .bind(call.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.map(|(data,)| {
            serde_json::from_str(&data)
                .map_err(|e| StoreError::Corrupt(format!("call dialog of {call}: {e}")))
        })
        .transpose()
    }
}
