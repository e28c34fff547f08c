//! Webhooks: endpoints, the fan-out of outbox events into messages and
//! attempts, and the delivery worker's claim and results.
//!
//! - **Fan-out** (`dispatch_webhook_events`) marks each event it handles
//!   (`events.webhooks_dispatched_at`) in the transaction that inserts its
//!   message, deliveries and first attempts, so an event is fanned out once
//!   whatever dies when. It marks rows, not a cursor: PostgreSQL commits
//!   `seq` values out of order, and a cursor would skip the late ones. One
//!   dispatcher runs at a time (a transaction-scoped advisory lock on
//!   PostgreSQL, the writer lock on SQLite), so it takes events in `seq`
//!   order, and so in commit order per subject.
//! - **Held attempts**: a PENDING attempt is `held` while its endpoint is
//!   not ACTIVE, or while the endpoint has an open delivery of the same
//!   subject (call) with an earlier event; so per endpoint a call's events
//!   go out in order. Finishing a delivery releases the subject's next one;
//!   making the endpoint ACTIVE releases the head of each subject. Held
//!   attempts are outside the due index, so a paused endpoint's backlog
//!   costs claims nothing.
//! - **Claim** (`claim_webhook_attempts`): PENDING → SENDING with a
//!   compare-and-set, rows locked `FOR UPDATE SKIP LOCKED` on PostgreSQL, so
//!   two workers never send the same attempt. It walks the due index only.
//! - **Results** (`record_webhook_outcomes`) apply only if the attempt is
//!   still SENDING under the same claim.

use std::collections::{BTreeMap, HashMap, HashSet};

use sqlx::{AssertSqlSafe, FromRow};
use switchyard_domain::EventType;
use switchyard_domain::id::{AttemptId, EndpointId, MessageId, OrganizationId};
use switchyard_domain::timefmt;
use switchyard_domain::webhook::{
    AttemptStatus, EndpointStatus, WebhookAttempt, WebhookEndpoint, WebhookMessageStatus,
};

use crate::calls::Sql;
use crate::sealed::endpoint_row;
use crate::{
    Backend, Bind, Page, Result, Store, StoreError, bind_all, on_pool, on_writer, parse_uuid,
    write_tx,
};

/// The advisory lock key of the fan-out on PostgreSQL ("whfanout" in ASCII).
const FAN_OUT_LOCK: i64 = 0x7768_6661_6e6f_7574;

/// Limits of one multi-row statement. Bind values: sqlx's cost per bound
/// value grows with the statement's count (one 30 000-value INSERT took
/// seconds on SQLite where thirty 1 000-value ones take milliseconds).
/// Bytes: sqlx 0.9 leaves Nagle's algorithm on (TCP_NODELAY unset), so a
/// PostgreSQL message that does not go out in one write waits ~40 ms for a
/// delayed ACK; statements of a few KiB go out in one.
const MAX_BINDS_PER_STATEMENT: usize = 1_000;
const MAX_BYTES_PER_STATEMENT: usize = 8 * 1024;

const ENDPOINT_COLUMNS: &str = "id, organization_id, url, description, event_types, headers, status, disabled_reason, \
     signing_secret, previous_signing_secret, previous_secret_expires_at, failing_since, created_at, updated_at";

const ATTEMPT_COLUMNS: &str = "a.id, a.message_id, a.endpoint_id, a.attempt, a.max_attempts, a.status, a.next_attempt_at, \
     a.response_status_code, a.response_body_excerpt, a.error_message, a.duration_ms, a.delivered_at, a.created_at, m.payload";

/// Due attempts a worker may send now: PENDING, not held, due. One table
/// and its partial index, so the plan cannot go wrong without statistics
/// (a join here made PostgreSQL walk every endpoint's attempts). Held
/// attempts (endpoint not ACTIVE, or an earlier event of the same subject
/// still open for the endpoint) are outside that index; the claim checks
/// the endpoint's status again.
const DUE_ATTEMPTS: &str = "SELECT id FROM webhook_attempts \
     WHERE status = 'PENDING' AND held = FALSE AND next_attempt_at <= $1 \
     ORDER BY next_attempt_at LIMIT $2";

/// Releases the next event of a subject for an endpoint (`$1` endpoint,
/// `$2` subject, `$3` now): the PENDING attempt of its open delivery with
/// the lowest event, if the endpoint is ACTIVE.
const RELEASE_NEXT: &str = "UPDATE webhook_attempts SET held = FALSE, updated_at = $3 \
     WHERE status = 'PENDING' AND held = TRUE AND endpoint_id = $1 \
     AND message_id = (SELECT d.message_id FROM webhook_deliveries d WHERE d.subject_id = $2 \
       AND d.endpoint_id = $1 AND d.status = 'PENDING' ORDER BY d.event_seq LIMIT 1) \
     AND EXISTS (SELECT 1 FROM webhook_endpoints e WHERE e.id = $1 AND e.status = 'ACTIVE')";

/// Holds every PENDING attempt of endpoint `$1` (`$2` now): it stopped being ACTIVE.
const HOLD_ENDPOINT: &str = "UPDATE webhook_attempts SET held = TRUE, updated_at = $2 \
     WHERE endpoint_id = $1 AND status = 'PENDING' AND held = FALSE";

/// Held attempts that need not be: an ACTIVE endpoint, and no earlier open
/// delivery of the subject. Races between a fan-out and a finishing
/// delivery of the same subject can leave one; the sweep frees it.
const STUCK_CONDITION: &str = "status = 'PENDING' AND held = TRUE \
     AND endpoint_id IN (SELECT id FROM webhook_endpoints WHERE status = 'ACTIVE') \
     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d JOIN webhook_deliveries p \
       ON p.subject_id = d.subject_id AND p.endpoint_id = d.endpoint_id AND p.status = 'PENDING' \
       AND p.event_seq < d.event_seq \
       WHERE d.message_id = webhook_attempts.message_id AND d.endpoint_id = webhook_attempts.endpoint_id)";

/// Releases, for endpoint `$1` (`$2` now) made ACTIVE, the PENDING attempt
/// at the head of each subject's open deliveries.
const RELEASE_ENDPOINT: &str = "UPDATE webhook_attempts SET held = FALSE, updated_at = $2 \
     WHERE endpoint_id = $1 AND status = 'PENDING' AND held = TRUE \
     AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d JOIN webhook_deliveries p \
       ON p.subject_id = d.subject_id AND p.endpoint_id = d.endpoint_id AND p.status = 'PENDING' \
       AND p.event_seq < d.event_seq \
       WHERE d.message_id = webhook_attempts.message_id AND d.endpoint_id = webhook_attempts.endpoint_id)";

#[derive(Debug, Clone)]
pub struct NewWebhookEndpoint {
    pub url: String,
    pub description: Option<String>,
    pub event_types: Vec<EventType>,
    pub headers: BTreeMap<String, String>,
    pub signing_secret: String,
}

/// A partial update; `description: Some(None)` clears it. A status set by
/// the user (ACTIVE or PAUSED) clears `disabled_reason` and the failure streak.
#[derive(Debug, Clone, Default)]
pub struct WebhookEndpointPatch {
    pub url: Option<String>,
    pub description: Option<Option<String>>,
    pub event_types: Option<Vec<EventType>>,
    pub headers: Option<BTreeMap<String, String>>,
    pub status: Option<EndpointStatus>,
}

/// What one fan-out pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchSummary {
    /// Events marked as fanned out (with or without subscribers).
    pub events: usize,
    /// Attempts created (one per subscribed endpoint of each event).
    pub attempts: usize,
}

/// An attempt claimed by a worker, with what it needs to send it.
#[derive(Debug, Clone)]
pub struct ClaimedAttempt {
    pub attempt_id: AttemptId,
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
    pub max_attempts: i64,
    /// The exact body to post.
    pub payload: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// Every secret that signs now: the current one first, then the one a
    /// rotation replaced while its grace period lasts.
    pub secrets: Vec<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered {
        status_code: i64,
        body_excerpt: String,
        duration_ms: i64,
    },
    /// No 2xx. `retry_at`: when the next attempt is due; `None`: it was the
    /// last, the delivery is DEAD.
    Failed {
        status_code: Option<i64>,
        body_excerpt: String,
        error_message: String,
        duration_ms: i64,
        retry_at: Option<i64>,
        /// Whether the failure is the endpoint's (towards auto-disable);
        /// an attempt interrupted by a crash is not.
        counts_against_endpoint: bool,
    },
}

/// The result of one claimed attempt, applied only if the claim still holds.
#[derive(Debug, Clone)]
pub struct AttemptOutcome {
    pub attempt_id: AttemptId,
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
    pub max_attempts: i64,
    /// The worker that claimed it (`claimed_by`).
    pub worker: String,
    pub result: AttemptResult,
}

/// What recording a batch of outcomes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordSummary {
    /// Outcomes applied (the others had lost their claim).
    pub applied: usize,
    /// Endpoints this batch disabled, with the reason.
    pub disabled: Vec<(EndpointId, String)>,
}

/// A SENDING attempt whose worker is gone.
#[derive(Debug, Clone)]
pub struct InterruptedAttempt {
    pub attempt_id: AttemptId,
    pub message_id: MessageId,
    pub endpoint_id: EndpointId,
    pub attempt: i64,
    pub max_attempts: i64,
    pub claimed_by: String,
}

#[derive(FromRow)]
struct EndpointRow {
    id: String,
    organization_id: String,
    url: String,
    description: Option<String>,
    event_types: String,
    headers: String,
    status: String,
    disabled_reason: Option<String>,
    previous_signing_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn parse_event_types(text: &str) -> Result<Vec<EventType>> {
    let names: Vec<String> = serde_json::from_str(text).map_err(corrupt)?;
    names
        .iter()
        .map(|n| EventType::parse(n).ok_or_else(|| corrupt(format!("event type {n}"))))
        .collect()
}

fn event_types_json(types: &[EventType]) -> String {
    serde_json::Value::from(types.iter().map(|t| t.as_str()).collect::<Vec<_>>()).to_string()
}

fn parse_headers(text: &str) -> Result<BTreeMap<String, String>> {
    serde_json::from_str(text).map_err(corrupt)
}

fn headers_json(headers: &BTreeMap<String, String>) -> Result<String> {
    serde_json::to_string(headers).map_err(corrupt)
}

impl EndpointRow {
    fn into_model(self) -> Result<WebhookEndpoint> {
        Ok(WebhookEndpoint {
            id: EndpointId::from_uuid(parse_uuid(&self.id)?),
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            url: self.url,
            description: self.description,
            event_types: parse_event_types(&self.event_types)?,
            headers: parse_headers(&self.headers)?,
            status: EndpointStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("endpoint status {}", self.status)))?,
            disabled_reason: self.disabled_reason,
            created_at: self.created_at,
            updated_at: self.updated_at,
            previous_secret_expires_at: self
                .previous_signing_secret
                .as_ref()
                .and(self.previous_secret_expires_at),
        })
    }
}

#[derive(FromRow)]
struct AttemptRow {
    id: String,
    message_id: String,
    endpoint_id: String,
    attempt: i64,
    max_attempts: i64,
    status: String,
    next_attempt_at: i64,
    response_status_code: Option<i64>,
    response_body_excerpt: Option<String>,
    error_message: Option<String>,
    duration_ms: Option<i64>,
    delivered_at: Option<i64>,
    created_at: i64,
    payload: String,
}

impl AttemptRow {
    fn into_model(self) -> Result<WebhookAttempt> {
        Ok(WebhookAttempt {
            id: AttemptId::from_uuid(parse_uuid(&self.id)?),
            message_id: MessageId::from_uuid(parse_uuid(&self.message_id)?),
            endpoint_id: EndpointId::from_uuid(parse_uuid(&self.endpoint_id)?),
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            status: AttemptStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("attempt status {}", self.status)))?,
            next_attempt_at: self.next_attempt_at,
            response_status_code: self.response_status_code.unwrap_or(0),
            response_body_excerpt: self.response_body_excerpt.unwrap_or_default(),
            error_message: self.error_message.unwrap_or_default(),
            duration_ms: self.duration_ms.unwrap_or(0),
            delivered_at: self.delivered_at,
            created_at: self.created_at,
            payload: serde_json::from_str(&self.payload).map_err(corrupt)?,
        })
    }
}

#[derive(FromRow)]
struct PendingEvent {
    seq: i64,
    id: String,
    organization_id: String,
    event_type: String,
    subject_id: String,
    data: String,
    created_at: i64,
}

#[derive(FromRow)]
struct SubscriberRow {
    id: String,
    organization_id: String,
    event_types: String,
    status: String,
    created_at: i64,
}

#[derive(FromRow)]
struct ClaimRow {
    id: String,
    message_id: String,
    endpoint_id: String,
    attempt: i64,
    max_attempts: i64,
    payload: String,
    url: String,
    headers: String,
    status: String,
    signing_secret: String,
    previous_signing_secret: Option<String>,
    previous_secret_expires_at: Option<i64>,
}

#[derive(FromRow)]
struct InterruptedRow {
    id: String,
    message_id: String,
    endpoint_id: String,
    attempt: i64,
    max_attempts: i64,
    claimed_by: Option<String>,
}

/// A JSON string literal.
fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// The body posted for an event: `{id, type, timestamp, data}`. `data` is
/// the stored JSON text, spliced in as is (it is the API's rendering).
fn envelope(event_id: &str, event_type: &str, created_at: i64, data: &str) -> String {
    format!(
        "{{\"id\":{},\"type\":{},\"timestamp\":{},\"data\":{}}}",
        json_string(event_id),
        json_string(event_type),
        json_string(&timefmt::format_ms(created_at)),
        data
    )
}

/// The bytes a bound value takes on the wire, about.
fn bind_size(value: &Bind) -> usize {
    4 + match value {
        Bind::Text(s) => s.len(),
        Bind::OptText(s) => s.as_ref().map_or(0, String::len),
        Bind::Int(_) => 8,
        Bind::Bool(_) => 1,
    }
}

/// `($n, $n+1, …), (…)` rows for a multi-row INSERT, in statements that
/// stay under [`MAX_BINDS_PER_STATEMENT`] and [`MAX_BYTES_PER_STATEMENT`]
/// (a row bigger than that alone gets a statement of its own).
fn insert_chunks(head: &str, rows: &[Vec<Bind>]) -> Vec<Sql> {
    let mut statements = Vec::new();
    let mut current: Option<(Sql, usize)> = None;
    for row in rows {
        let row_bytes: usize = row.iter().map(bind_size).sum();
        let full = current.as_ref().is_some_and(|(sql, bytes)| {
            sql.binds.len() + row.len() > MAX_BINDS_PER_STATEMENT
                || bytes + row_bytes > MAX_BYTES_PER_STATEMENT
        });
        if full {
            statements.extend(current.take().map(|(sql, _)| sql));
        }
        let (sql, bytes) = current.get_or_insert_with(|| (Sql::new(head), 0));
        sql.push(if sql.binds.is_empty() { "(" } else { ", (" });
        for (j, value) in row.iter().enumerate() {
            if j > 0 {
                sql.push(", ");
            }
            sql.bind(value.clone());
        }
        sql.push(")");
        *bytes += row_bytes;
    }
    statements.extend(current.map(|(sql, _)| sql));
    statements
}

/// ` IN ($a, $b, …)` over `values`.
fn push_in(sql: &mut Sql, values: impl IntoIterator<Item = Bind>) {
    sql.push(" IN (");
    for (i, v) in values.into_iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.bind(v);
    }
    sql.push(")");
}

fn text(s: impl Into<String>) -> Bind {
    Bind::Text(s.into())
}

impl Store {
    pub async fn create_webhook_endpoint(
        &self,
        org: OrganizationId,
        new: NewWebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        let now = timefmt::now_ms();
        let id = EndpointId::new();
        let headers = headers_json(&new.headers)?;
        let secret =
            self.seal_secret(&endpoint_row(&id.uuid().to_string()), &new.signing_secret)?;
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE', NULL, $7, NULL, NULL, NULL, $8, $8)"
        );
        on_writer!(self, |pool| {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id.uuid().to_string())
                .bind(org.uuid().to_string())
                .bind(&new.url)
                .bind(&new.description)
                .bind(event_types_json(&new.event_types))
                .bind(&headers)
                .bind(&secret)
                .bind(now)
                .execute(pool)
                .await?;
        });
        self.get_webhook_endpoint(org, id).await
    }

    pub async fn get_webhook_endpoint(
        &self,
        org: OrganizationId,
        id: EndpointId,
    ) -> Result<WebhookEndpoint> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1 AND id = $2"
        );
        let row: Option<EndpointRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    /// A page of the organization's endpoints, oldest first, and the total.
    pub async fn list_webhook_endpoints(
        &self,
        org: OrganizationId,
        page: Page,
    ) -> Result<(Vec<WebhookEndpoint>, i64)> {
        let sql = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1 \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        );
        let (rows, total): (Vec<EndpointRow>, i64) = on_pool!(self, |pool| {
            let rows = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(page.limit)
                .bind(page.offset)
                .fetch_all(pool)
                .await?;
            let total: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM webhook_endpoints WHERE organization_id = $1",
            )
            .bind(org.uuid().to_string())
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        let endpoints = rows
            .into_iter()
            .map(EndpointRow::into_model)
            .collect::<Result<_>>()?;
        Ok((endpoints, total))
    }

    pub async fn update_webhook_endpoint(
        &self,
        org: OrganizationId,
        id: EndpointId,
        patch: WebhookEndpointPatch,
    ) -> Result<WebhookEndpoint> {
        let now = timefmt::now_ms();
        let select = format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE organization_id = $1 AND id = $2"
        );
        write_tx!(self, |tx| {
            let row: Option<EndpointRow> = sqlx::query_as(AssertSqlSafe(select.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(&mut *tx)
                .await?;
            let row = row.ok_or(StoreError::NotFound)?;
            let url = patch.url.clone().unwrap_or(row.url);
            let description = patch.description.clone().unwrap_or(row.description);
            let event_types = match &patch.event_types {
                Some(t) => event_types_json(t),
                None => row.event_types,
            };
            let headers = match &patch.headers {
                Some(h) => headers_json(h)?,
                None => row.headers,
            };
            let changed_to = patch.status.filter(|s| s.as_str() != row.status);
            let (status, disabled_reason, failing_since) = match changed_to {
                Some(s) => (s.as_str().to_owned(), None, None),
                None => (row.status, row.disabled_reason, row.failing_since),
            };
            sqlx::query(
                "UPDATE webhook_endpoints SET url = $1, description = $2, event_types = $3, headers = $4, \
                 status = $5, disabled_reason = $6, failing_since = $7, updated_at = $8 WHERE id = $9",
            )
            .bind(&url)
            .bind(&description)
            .bind(&event_types)
            .bind(&headers)
            .bind(&status)
            .bind(&disabled_reason)
            .bind(failing_since)
            .bind(now)
            .bind(id.uuid().to_string())
            .execute(&mut *tx)
            .await?;
            if let Some(new_status) = changed_to {
                let sql = if new_status == EndpointStatus::Active {
                    RELEASE_ENDPOINT
                } else {
                    HOLD_ENDPOINT
                };
                sqlx::query(sql)
                    .bind(id.uuid().to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        self.get_webhook_endpoint(org, id).await
    }

    /// Deletes the endpoint with its deliveries and attempts.
    pub async fn delete_webhook_endpoint(&self, org: OrganizationId, id: EndpointId) -> Result<()> {
        let deleted = on_writer!(self, |pool| {
            sqlx::query("DELETE FROM webhook_endpoints WHERE organization_id = $1 AND id = $2")
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Makes `new_secret` the signing secret; the one it replaces keeps
    /// signing until `now + grace_ms`. A secret still in its grace period
    /// from an earlier rotation stops signing now.
    pub async fn rotate_webhook_secret(
        &self,
        org: OrganizationId,
        id: EndpointId,
        new_secret: &str,
        now: i64,
        grace_ms: i64,
    ) -> Result<WebhookEndpoint> {
        let sealed = self.seal_secret(&endpoint_row(&id.uuid().to_string()), new_secret)?;
        let updated = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE webhook_endpoints SET previous_signing_secret = signing_secret, signing_secret = $1, \
                 previous_secret_expires_at = $2, updated_at = $3 WHERE organization_id = $4 AND id = $5",
            )
            .bind(&sealed)
            .bind(now.saturating_add(grace_ms))
            .bind(now)
            .bind(org.uuid().to_string())
            .bind(id.uuid().to_string())
            .execute(pool)
            .await?
            .rows_affected()
        });
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_webhook_endpoint(org, id).await
    }

    /// A page of an endpoint's attempts, newest first, optionally with the
    /// given statuses, and the total.
    pub async fn list_endpoint_attempts(
        &self,
        org: OrganizationId,
        endpoint: EndpointId,
        statuses: &[AttemptStatus],
        page: Page,
    ) -> Result<(Vec<WebhookAttempt>, i64)> {
        let mut filter = Sql::new(" WHERE a.organization_id = ");
        filter
            .bind(text(org.uuid().to_string()))
            .push(" AND a.endpoint_id = ")
            .bind(text(endpoint.uuid().to_string()));
        if !statuses.is_empty() {
            filter.push(" AND a.status");
            push_in(&mut filter, statuses.iter().map(|s| text(s.as_str())));
        }
        let mut list = Sql::new(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id"
        ));
        list.push(&filter.text);
        list.binds.clone_from(&filter.binds);
        list.push(" ORDER BY a.created_at DESC, a.id DESC LIMIT ")
            .bind(Bind::Int(page.limit))
            .push(" OFFSET ")
            .bind(Bind::Int(page.offset));
        let count = format!("SELECT COUNT(*) FROM webhook_attempts a{}", filter.text);
        let (rows, total): (Vec<AttemptRow>, i64) = on_pool!(self, |pool| {
            let rows = bind_all!(
                sqlx::query_as(AssertSqlSafe(list.text.as_str())),
                &list.binds
            )
            .fetch_all(pool)
            .await?;
            let total = bind_all!(
                sqlx::query_scalar(AssertSqlSafe(count.as_str())),
                &filter.binds
            )
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        let attempts = rows
            .into_iter()
            .map(AttemptRow::into_model)
            .collect::<Result<_>>()?;
        Ok((attempts, total))
    }

    /// Every attempt of a message (to any endpoint), oldest first;
    /// [`StoreError::NotFound`] if the organization has no such message.
    pub async fn list_message_attempts(
        &self,
        org: OrganizationId,
        message: MessageId,
    ) -> Result<Vec<WebhookAttempt>> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id \
             WHERE a.organization_id = $1 AND a.message_id = $2 ORDER BY a.created_at, a.id"
        );
        let (exists, rows): (Option<String>, Vec<AttemptRow>) = on_pool!(self, |pool| {
            let exists = sqlx::query_scalar(
                "SELECT id FROM webhook_messages WHERE organization_id = $1 AND id = $2",
            )
            .bind(org.uuid().to_string())
            .bind(message.uuid().to_string())
            .fetch_optional(pool)
            .await?;
            let rows = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(message.uuid().to_string())
                .fetch_all(pool)
                .await?;
            (exists, rows)
        });
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        rows.into_iter().map(AttemptRow::into_model).collect()
    }

    /// Schedules a fresh attempt of `message` to `endpoint` (both of `org`),
    /// due at `now`, starting a new series of `series_attempts` attempts.
    /// If the pair already has an attempt pending, nothing is added: the
    /// receiver will get the message once more either way. A message never
    /// fanned out to the endpoint gets a delivery to it.
    pub async fn replay_webhook_message(
        &self,
        org: OrganizationId,
        message: MessageId,
        endpoint: EndpointId,
        now: i64,
        series_attempts: i64,
    ) -> Result<WebhookMessageStatus> {
        #[derive(FromRow)]
        struct MessageRow {
            event_seq: i64,
            subject_id: String,
            payload: String,
            created_at: i64,
        }
        #[derive(FromRow)]
        struct DeliveryRow {
            status: String,
            attempt_count: i64,
            last_response_status_code: Option<i64>,
        }
        let org_text = org.uuid().to_string();
        let message_text = message.uuid().to_string();
        let endpoint_text = endpoint.uuid().to_string();
        write_tx!(self, |tx| {
            let msg: Option<MessageRow> = sqlx::query_as(
                "SELECT event_seq, subject_id, payload, created_at FROM webhook_messages \
                 WHERE organization_id = $1 AND id = $2",
            )
            .bind(&org_text)
            .bind(&message_text)
            .fetch_optional(&mut *tx)
            .await?;
            let msg = msg.ok_or(StoreError::NotFound)?;
            let endpoint_status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM webhook_endpoints WHERE organization_id = $1 AND id = $2",
            )
            .bind(&org_text)
            .bind(&endpoint_text)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(endpoint_status) = endpoint_status else {
                return Err(StoreError::NotFound);
            };
            // Held while the endpoint is not ACTIVE or an earlier event of
            // the subject is still open for it. A replay does not hold back
            // later events (they may be on their way already).
            let earlier_open: Option<i64> = sqlx::query_scalar(
                "SELECT event_seq FROM webhook_deliveries WHERE subject_id = $1 AND endpoint_id = $2 \
                 AND status = 'PENDING' AND event_seq < $3 LIMIT 1",
            )
            .bind(&msg.subject_id)
            .bind(&endpoint_text)
            .bind(msg.event_seq)
            .fetch_optional(&mut *tx)
            .await?;
            let held = endpoint_status != EndpointStatus::Active.as_str() || earlier_open.is_some();
            let delivery: Option<DeliveryRow> = sqlx::query_as(
                "SELECT status, attempt_count, last_response_status_code FROM webhook_deliveries \
                 WHERE message_id = $1 AND endpoint_id = $2",
            )
            .bind(&message_text)
            .bind(&endpoint_text)
            .fetch_optional(&mut *tx)
            .await?;
            let (attempt_count, last_code, new_attempt) = match delivery {
                None => {
                    sqlx::query(
                        "INSERT INTO webhook_deliveries (message_id, endpoint_id, organization_id, subject_id, \
                         event_seq, status, attempt_count, series_start, last_response_status_code, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, 'PENDING', 1, 1, NULL, $6, $6)",
                    )
                    .bind(&message_text)
                    .bind(&endpoint_text)
                    .bind(&org_text)
                    .bind(&msg.subject_id)
                    .bind(msg.event_seq)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    (1, None, Some(1))
                }
                Some(d) if d.status == "PENDING" => {
                    (d.attempt_count, d.last_response_status_code, None)
                }
                Some(d) => {
                    let next = d.attempt_count + 1;
                    sqlx::query(
                        "UPDATE webhook_deliveries SET status = 'PENDING', attempt_count = $1, series_start = $1, \
                         updated_at = $2 WHERE message_id = $3 AND endpoint_id = $4",
                    )
                    .bind(next)
                    .bind(now)
                    .bind(&message_text)
                    .bind(&endpoint_text)
                    .execute(&mut *tx)
                    .await?;
                    (next, d.last_response_status_code, Some(next))
                }
            };
            if let Some(n) = new_attempt {
                sqlx::query(
                    "INSERT INTO webhook_attempts (id, message_id, endpoint_id, organization_id, attempt, max_attempts, \
                     status, held, next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8, $8, $8)",
                )
                .bind(AttemptId::new().uuid().to_string())
                .bind(&message_text)
                .bind(&endpoint_text)
                .bind(&org_text)
                .bind(n)
                .bind(n - 1 + series_attempts.max(1))
                .bind(held)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let latest: String = sqlx::query_scalar(
                "SELECT status FROM webhook_attempts WHERE message_id = $1 AND endpoint_id = $2 \
                 ORDER BY attempt DESC LIMIT 1",
            )
            .bind(&message_text)
            .bind(&endpoint_text)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(WebhookMessageStatus {
                id: message,
                endpoint_id: endpoint,
                latest_status: AttemptStatus::parse(&latest)
                    .ok_or_else(|| corrupt(format!("attempt status {latest}")))?,
                attempt_count,
                last_response_status_code: last_code,
                created_at: msg.created_at,
                payload: serde_json::from_str(&msg.payload).map_err(corrupt)?,
            })
        })
    }

    /// Fans out up to `limit` events not yet dispatched: for each, a message
    /// and, per subscribed endpoint (ACTIVE or PAUSED, same organization,
    /// created no later than the event), a delivery and its first attempt
    /// (due `now`, `max_attempts` in its series). Returns quickly, without
    /// writing, when there is nothing to do or another process is at it.
    pub async fn dispatch_webhook_events(
        &self,
        now: i64,
        limit: i64,
        max_attempts: i64,
    ) -> Result<DispatchSummary> {
        let backend = self.backend();
        // On SQLite, read first: an idle server must not write (every write
        // empties the call cache). PostgreSQL needs no probe: a transaction
        // that finds nothing writes nothing.
        if backend == Backend::Sqlite {
            let any: Option<i64> = on_pool!(self, |pool| {
                sqlx::query_scalar(
                    "SELECT seq FROM events WHERE webhooks_dispatched_at IS NULL ORDER BY seq LIMIT 1",
                )
                .fetch_optional(pool)
                .await?
            });
            if any.is_none() {
                return Ok(DispatchSummary::default());
            }
        }
        write_tx!(self, |tx| {
            if backend == Backend::Postgres {
                let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(FAN_OUT_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !locked {
                    return Ok(DispatchSummary::default());
                }
            }
            let events: Vec<PendingEvent> = sqlx::query_as(
                "SELECT seq, id, organization_id, event_type, subject_id, data, created_at FROM events \
                 WHERE webhooks_dispatched_at IS NULL ORDER BY seq LIMIT $1",
            )
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            if events.is_empty() {
                return Ok(DispatchSummary::default());
            }
            let orgs: HashSet<&str> = events.iter().map(|e| e.organization_id.as_str()).collect();
            let mut select = Sql::new(
                "SELECT id, organization_id, event_types, status, created_at FROM webhook_endpoints \
                 WHERE status IN ('ACTIVE', 'PAUSED') AND organization_id",
            );
            push_in(&mut select, orgs.iter().map(|o| text(*o)));
            select.push(" ORDER BY created_at, id");
            if backend == Backend::Postgres {
                // A concurrent PATCH of an endpoint's status waits for this
                // fan-out, then holds or releases what it inserted.
                select.push(" FOR SHARE");
            }
            let subscribers: Vec<SubscriberRow> = bind_all!(
                sqlx::query_as(AssertSqlSafe(select.text.as_str())),
                &select.binds
            )
            .fetch_all(&mut *tx)
            .await?;
            // Subjects with an open delivery to an endpoint: their new events wait.
            let mut open = Sql::new(
                "SELECT DISTINCT subject_id, endpoint_id FROM webhook_deliveries WHERE status = 'PENDING' AND subject_id",
            );
            let subjects: HashSet<&str> = events.iter().map(|e| e.subject_id.as_str()).collect();
            push_in(&mut open, subjects.iter().map(|s| text(*s)));
            let open_rows: Vec<(String, String)> = bind_all!(
                sqlx::query_as(AssertSqlSafe(open.text.as_str())),
                &open.binds
            )
            .fetch_all(&mut *tx)
            .await?;
            let mut open_chains: HashSet<(String, String)> = open_rows.into_iter().collect();
            let mut by_org: HashMap<&str, Vec<(&SubscriberRow, Vec<String>)>> = HashMap::new();
            for s in &subscribers {
                let types: Vec<String> = serde_json::from_str(&s.event_types).map_err(corrupt)?;
                by_org
                    .entry(s.organization_id.as_str())
                    .or_default()
                    .push((s, types));
            }
            let (mut messages, mut deliveries, mut attempts) = (Vec::new(), Vec::new(), Vec::new());
            for event in &events {
                let targets: Vec<&SubscriberRow> = by_org
                    .get(event.organization_id.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|(s, types)| {
                        s.created_at <= event.created_at && types.contains(&event.event_type)
                    })
                    .map(|(s, _)| *s)
                    .collect();
                if targets.is_empty() {
                    continue;
                }
                let event_id = format!("evt_{}", event.id);
                let message_id = MessageId::new().uuid().to_string();
                messages.push(vec![
                    text(message_id.clone()),
                    text(event.organization_id.clone()),
                    text(event.id.clone()),
                    Bind::Int(event.seq),
                    text(event.event_type.clone()),
                    text(event.subject_id.clone()),
                    text(envelope(
                        &event_id,
                        &event.event_type,
                        event.created_at,
                        &event.data,
                    )),
                    Bind::Int(now),
                ]);
                for target in targets {
                    let chain = (event.subject_id.clone(), target.id.clone());
                    let held = target.status != EndpointStatus::Active.as_str()
                        || !open_chains.insert(chain);
                    deliveries.push(vec![
                        text(message_id.clone()),
                        text(target.id.clone()),
                        text(event.organization_id.clone()),
                        text(event.subject_id.clone()),
                        Bind::Int(event.seq),
                        text("PENDING"),
                        Bind::Int(1),
                        Bind::Int(1),
                        Bind::Int(now),
                        Bind::Int(now),
                    ]);
                    attempts.push(vec![
                        text(AttemptId::new().uuid().to_string()),
                        text(message_id.clone()),
                        text(target.id.clone()),
                        text(event.organization_id.clone()),
                        Bind::Int(1),
                        Bind::Int(max_attempts),
                        text("PENDING"),
                        Bind::Bool(held),
                        Bind::Int(now),
                        Bind::Int(now),
                        Bind::Int(now),
                    ]);
                }
            }
            let statements = insert_chunks(
                "INSERT INTO webhook_messages (id, organization_id, event_id, event_seq, event_type, subject_id, \
                 payload, created_at) VALUES ",
                &messages,
            )
            .into_iter()
            .chain(insert_chunks(
                "INSERT INTO webhook_deliveries (message_id, endpoint_id, organization_id, subject_id, event_seq, \
                 status, attempt_count, series_start, created_at, updated_at) VALUES ",
                &deliveries,
            ))
            .chain(insert_chunks(
                "INSERT INTO webhook_attempts (id, message_id, endpoint_id, organization_id, attempt, max_attempts, \
                 status, held, next_attempt_at, created_at, updated_at) VALUES ",
                &attempts,
            ));
            for sql in statements {
                bind_all!(sqlx::query(AssertSqlSafe(sql.text.as_str())), &sql.binds)
                    .execute(&mut *tx)
                    .await?;
            }
            let mut mark = Sql::new("UPDATE events SET webhooks_dispatched_at = ");
            mark.bind(Bind::Int(now)).push(" WHERE seq");
            push_in(&mut mark, events.iter().map(|e| Bind::Int(e.seq)));
            bind_all!(sqlx::query(AssertSqlSafe(mark.text.as_str())), &mark.binds)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(DispatchSummary {
                events: events.len(),
                attempts: attempts.len(),
            })
        })
    }

    /// Claims up to `limit` due attempts for `worker` (PENDING → SENDING,
    /// compare-and-set), holding them until `lease_until`.
    pub async fn claim_webhook_attempts(
        &self,
        now: i64,
        limit: i64,
        worker: &str,
        lease_until: i64,
    ) -> Result<Vec<ClaimedAttempt>> {
        // Read first on SQLite, as in the fan-out: no write when nothing is due.
        if self.backend() == Backend::Sqlite {
            let due: Vec<String> = on_pool!(self, |pool| {
                sqlx::query_scalar(DUE_ATTEMPTS)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            });
            if due.is_empty() {
                return Ok(Vec::new());
            }
        }
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let claim = format!(
            "UPDATE webhook_attempts SET status = 'SENDING', claimed_by = $3, lease_expires_at = $4, updated_at = $1 \
             WHERE status = 'PENDING' AND held = FALSE AND id IN ({DUE_ATTEMPTS}{lock}) RETURNING id"
        );
        let rows: Vec<ClaimRow> = write_tx!(self, |tx| {
            let ids: Vec<String> = sqlx::query_scalar(AssertSqlSafe(claim.as_str()))
                .bind(now)
                .bind(limit)
                .bind(worker)
                .bind(lease_until)
                .fetch_all(&mut *tx)
                .await?;
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut details = Sql::new(
                "SELECT a.id, a.message_id, a.endpoint_id, a.attempt, a.max_attempts, m.payload, e.url, e.headers, \
                 e.status, e.signing_secret, e.previous_signing_secret, e.previous_secret_expires_at \
                 FROM webhook_attempts a JOIN webhook_messages m ON m.id = a.message_id \
                 JOIN webhook_endpoints e ON e.id = a.endpoint_id WHERE a.id",
            );
            push_in(&mut details, ids.into_iter().map(Bind::Text));
            let rows: Vec<ClaimRow> = bind_all!(
                sqlx::query_as(AssertSqlSafe(details.text.as_str())),
                &details.binds
            )
            .fetch_all(&mut *tx)
            .await?;
            // An endpoint that stopped being ACTIVE in a race with the
            // attempt's release: the attempt goes back, held.
            let (rows, inactive): (Vec<ClaimRow>, Vec<ClaimRow>) = rows
                .into_iter()
                .partition(|r| r.status == EndpointStatus::Active.as_str());
            if !inactive.is_empty() {
                let mut back = Sql::new(
                    "UPDATE webhook_attempts SET status = 'PENDING', held = TRUE, claimed_by = NULL, \
                     lease_expires_at = NULL WHERE id",
                );
                push_in(&mut back, inactive.into_iter().map(|r| Bind::Text(r.id)));
                bind_all!(sqlx::query(AssertSqlSafe(back.text.as_str())), &back.binds)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            rows
        });
        rows.into_iter()
            .map(|r| {
                let row = endpoint_row(&r.endpoint_id);
                let mut secrets = vec![self.open_secret(&row, &r.signing_secret)?];
                if let (Some(previous), Some(until)) =
                    (r.previous_signing_secret, r.previous_secret_expires_at)
                    && now < until
                {
                    secrets.push(self.open_secret(&row, &previous)?);
                }
                Ok(ClaimedAttempt {
                    attempt_id: AttemptId::from_uuid(parse_uuid(&r.id)?),
                    message_id: MessageId::from_uuid(parse_uuid(&r.message_id)?),
                    endpoint_id: EndpointId::from_uuid(parse_uuid(&r.endpoint_id)?),
                    attempt: r.attempt,
                    max_attempts: r.max_attempts,
                    payload: r.payload,
                    url: r.url,
                    headers: parse_headers(&r.headers)?,
                    secrets,
                })
            })
            .collect()
    }

    /// Records attempts' results in one transaction. An outcome whose attempt
    /// is no longer SENDING under the same worker is skipped (its claim was
    /// taken over). A failure schedules the next attempt (or makes the
    /// delivery DEAD); an endpoint ACTIVE and failing continuously for
    /// `disable_after_ms` is DISABLED.
    pub async fn record_webhook_outcomes(
        &self,
        outcomes: &[AttemptOutcome],
        now: i64,
        disable_after_ms: i64,
    ) -> Result<RecordSummary> {
        if outcomes.is_empty() {
            return Ok(RecordSummary::default());
        }
        write_tx!(self, |tx| {
            let mut summary = RecordSummary::default();
            for o in outcomes {
                let attempt_text = o.attempt_id.uuid().to_string();
                let message_text = o.message_id.uuid().to_string();
                let endpoint_text = o.endpoint_id.uuid().to_string();
                let (status, code, excerpt, error, duration, delivered_at, next_at) =
                    match &o.result {
                        AttemptResult::Delivered {
                            status_code,
                            body_excerpt,
                            duration_ms,
                        } => (
                            AttemptStatus::Succeeded,
                            Some(*status_code),
                            body_excerpt.as_str(),
                            None,
                            *duration_ms,
                            Some(now),
                            None,
                        ),
                        AttemptResult::Failed {
                            status_code,
                            body_excerpt,
                            error_message,
                            duration_ms,
                            retry_at,
                            ..
                        } => (
                            if retry_at.is_some() {
                                AttemptStatus::Failed
                            } else {
                                AttemptStatus::Dead
                            },
                            *status_code,
                            body_excerpt.as_str(),
                            Some(error_message.as_str()),
                            *duration_ms,
                            None,
                            *retry_at,
                        ),
                    };
                let updated = sqlx::query(
                    "UPDATE webhook_attempts SET status = $1, response_status_code = $2, response_body_excerpt = $3, \
                     error_message = $4, duration_ms = $5, delivered_at = $6, next_attempt_at = COALESCE($7, next_attempt_at), \
                     updated_at = $8, lease_expires_at = NULL \
                     WHERE id = $9 AND status = 'SENDING' AND claimed_by = $10",
                )
                .bind(status.as_str())
                .bind(code)
                .bind(excerpt)
                .bind(error)
                .bind(duration)
                .bind(delivered_at)
                .bind(next_at)
                .bind(now)
                .bind(&attempt_text)
                .bind(&o.worker)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if updated == 0 {
                    continue;
                }
                summary.applied += 1;
                let delivery_status = match status {
                    AttemptStatus::Succeeded => "SUCCEEDED",
                    AttemptStatus::Dead => "DEAD",
                    _ => "PENDING",
                };
                let added = i64::from(next_at.is_some());
                let subject: Option<String> = sqlx::query_scalar(
                    "UPDATE webhook_deliveries SET status = $1, attempt_count = attempt_count + $2, \
                     last_response_status_code = COALESCE($3, last_response_status_code), updated_at = $4 \
                     WHERE message_id = $5 AND endpoint_id = $6 RETURNING subject_id",
                )
                .bind(delivery_status)
                .bind(added)
                .bind(code)
                .bind(now)
                .bind(&message_text)
                .bind(&endpoint_text)
                .fetch_optional(&mut *tx)
                .await?;
                match (next_at, subject) {
                    // The retry: held if the endpoint stopped being ACTIVE meanwhile.
                    (Some(at), _) => {
                        sqlx::query(
                            "INSERT INTO webhook_attempts (id, message_id, endpoint_id, organization_id, attempt, \
                             max_attempts, status, held, next_attempt_at, created_at, updated_at) \
                             SELECT $1, $2, e.id, e.organization_id, $4, $5, 'PENDING', e.status <> 'ACTIVE', $6, $7, $7 \
                             FROM webhook_endpoints e WHERE e.id = $3",
                        )
                        .bind(AttemptId::new().uuid().to_string())
                        .bind(&message_text)
                        .bind(&endpoint_text)
                        .bind(o.attempt + 1)
                        .bind(o.max_attempts)
                        .bind(at)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    // The delivery is over: the subject's next event may go.
                    (None, Some(subject)) => {
                        sqlx::query(RELEASE_NEXT)
                            .bind(&endpoint_text)
                            .bind(&subject)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                    }
                    (None, None) => {}
                }
                match &o.result {
                    AttemptResult::Delivered { .. } => {
                        sqlx::query(
                            "UPDATE webhook_endpoints SET failing_since = NULL \
                             WHERE id = $1 AND failing_since IS NOT NULL",
                        )
                        .bind(&endpoint_text)
                        .execute(&mut *tx)
                        .await?;
                    }
                    AttemptResult::Failed {
                        counts_against_endpoint: true,
                        ..
                    } => {
                        let since: Option<Option<i64>> = sqlx::query_scalar(
                            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $1) \
                             WHERE id = $2 AND status = 'ACTIVE' RETURNING failing_since",
                        )
                        .bind(now)
                        .bind(&endpoint_text)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if let Some(Some(since)) = since
                            && now - since >= disable_after_ms
                        {
                            let reason = format!(
                                "Every delivery failed from {} to {}; re-enable with PATCH status ACTIVE.",
                                timefmt::format_ms(since),
                                timefmt::format_ms(now)
                            );
                            sqlx::query(
                                "UPDATE webhook_endpoints SET status = 'DISABLED', disabled_reason = $1, updated_at = $2 \
                                 WHERE id = $3 AND status = 'ACTIVE'",
                            )
                            .bind(&reason)
                            .bind(now)
                            .bind(&endpoint_text)
                            .execute(&mut *tx)
                            .await?;
                            sqlx::query(HOLD_ENDPOINT)
                                .bind(&endpoint_text)
                                .bind(now)
                                .execute(&mut *tx)
                                .await?;
                            summary.disabled.push((o.endpoint_id, reason));
                        }
                    }
                    AttemptResult::Failed { .. } => {}
                }
            }
            tx.commit().await?;
            Ok(summary)
        })
    }

    /// Frees held attempts that need not be held (see `STUCK_CONDITION`);
    /// returns how many. Reads first, so it writes only when it frees some.
    pub async fn release_stuck_webhook_attempts(&self, now: i64) -> Result<u64> {
        let probe = format!("SELECT id FROM webhook_attempts WHERE {STUCK_CONDITION} LIMIT 1");
        let any: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar(AssertSqlSafe(probe.as_str()))
                .fetch_optional(pool)
                .await?
        });
        if any.is_none() {
            return Ok(0);
        }
        let release = format!(
            "UPDATE webhook_attempts SET held = FALSE, updated_at = $1 WHERE {STUCK_CONDITION}"
        );
        Ok(on_writer!(self, |pool| {
            sqlx::query(AssertSqlSafe(release.as_str()))
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// SENDING attempts whose claim is over: the lease expired, or (when
    /// `sole_worker` names this process's worker on a database it alone
    /// uses) any other worker's claim.
    pub async fn interrupted_webhook_attempts(
        &self,
        now: i64,
        sole_worker: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InterruptedAttempt>> {
        const COLUMNS: &str = "SELECT id, message_id, endpoint_id, attempt, max_attempts, claimed_by FROM webhook_attempts";
        let rows: Vec<InterruptedRow> = on_pool!(self, |pool| {
            match sole_worker {
                Some(me) => {
                    let sql = format!(
                        "{COLUMNS} WHERE status = 'SENDING' AND (lease_expires_at < $1 OR claimed_by <> $2) LIMIT $3"
                    );
                    sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(now)
                        .bind(me)
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                }
                None => {
                    let sql = format!(
                        "{COLUMNS} WHERE status = 'SENDING' AND lease_expires_at < $1 LIMIT $2"
                    );
                    sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(now)
                        .bind(limit)
                        .fetch_all(pool)
                        .await?
                }
            }
        });
        rows.into_iter()
            .map(|r| {
                Ok(InterruptedAttempt {
                    attempt_id: AttemptId::from_uuid(parse_uuid(&r.id)?),
                    message_id: MessageId::from_uuid(parse_uuid(&r.message_id)?),
                    endpoint_id: EndpointId::from_uuid(parse_uuid(&r.endpoint_id)?),
                    attempt: r.attempt,
                    max_attempts: r.max_attempts,
                    claimed_by: r.claimed_by.unwrap_or_default(),
                })
            })
            .collect()
    }
}
