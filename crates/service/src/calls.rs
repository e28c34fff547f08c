//! The calls use cases: create (now or scheduled, idempotent), list, get,
//! end, recording and transcript.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use switchyard_domain::id::{CallId, LoadId};
use switchyard_domain::model::{Call, TranscriptTurn};
use switchyard_domain::{CallDirection, CallEvent, CallStatus, timefmt};
use switchyard_store::{CallFilter, CallPatch, CallSort, NewCall, Page, SortOrder, StoreError};
use time::{Date, Duration, Month, OffsetDateTime};
use utoipa::ToSchema;

use crate::error::{Error, ErrorCode, Result};
use crate::pagination::{PageRequest, Paginated};
use crate::query::Params;
use crate::telephony::EndOutcome;
use crate::{Principal, Services, validate};

/// How the AI agent behaves on this call; defaults come from the organization.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct AgentSettings {
    pub instructions: Option<String>,
    pub first_message: Option<String>,
    pub voice: Option<String>,
    pub language: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
}

/// The body of `POST /calls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateCallRequest {
    /// E.164 (`+14155552671`) or a SIP URI (`sip:user@host`). Alias: `phone_number`.
    #[serde(alias = "phone_number")]
    pub to_number: Option<String>,
    /// Caller ID: one of the organization's numbers; default: its default number.
    pub from_number: Option<String>,
    /// In the future: the call is SCHEDULED; absent or past: it is placed now.
    #[schema(format = DateTime)]
    pub call_time: Option<String>,
    /// A free label, e.g. `CHECK_CALL`, `CARRIER_OUTREACH`.
    pub call_type: Option<String>,
    #[schema(pattern = r"^(load_)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub load_id: Option<String>,
    pub load_number: Option<String>,
    pub agent: Option<AgentSettings>,
    /// Default true.
    pub record: Option<bool>,
    /// 5 to 120, default 30.
    pub ring_timeout_seconds: Option<i64>,
    /// 10 to 14400, default 1800.
    pub max_duration_seconds: Option<i64>,
    /// Any JSON object up to 16 KiB; echoed back.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// The answer to `POST /calls/{id}/end`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EndCallResponse {
    pub success: bool,
    pub message: String,
    #[schema(value_type = String)]
    pub call_id: CallId,
    /// The status when the request arrived.
    pub previous_status: Option<CallStatus>,
    /// The status now (an addition to Envoy's fields).
    pub status: CallStatus,
}

/// The answer to `GET /calls/{id}/recording`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordingResponse {
    #[schema(value_type = String)]
    pub call_id: CallId,
    pub url: String,
    /// `audio/mp4`.
    pub content_type: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub recording_status: String,
    pub duration_seconds: Option<f64>,
    pub file_size_bytes: Option<i64>,
    #[schema(format = DateTime)]
    pub recording_start_time: Option<String>,
}

/// Outcome of a create: the call and whether it replays an earlier request.
pub struct Created {
    pub call: Call,
    pub replayed: bool,
}

const IDEMPOTENCY_KEY_MAX: usize = 255;

/// A hash of the request body that ignores key order and whitespace.
fn request_hash(body: &Value) -> String {
    fn canonical(v: &Value) -> Value {
        match v {
            Value::Object(map) => {
                let sorted: BTreeMap<_, _> =
                    map.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    hex::encode(Sha256::digest(canonical(body).to_string().as_bytes()))
}

impl Services {
    /// `POST /calls`. `raw` is the body as sent (for the idempotency hash).
    pub async fn create_call(
        &self,
        who: &Principal,
        req: CreateCallRequest,
        raw: &Value,
        idempotency_key: Option<&str>,
    ) -> Result<Created> {
        let org = who.organization_id;
        let idempotency = match idempotency_key {
            Some(key) => {
                let key = key.trim();
                if key.is_empty() || key.len() > IDEMPOTENCY_KEY_MAX || !key.is_ascii() {
                    return Err(Error::validation(
                        "Idempotency-Key",
                        "must be 1 to 255 ASCII characters",
                    ));
                }
                Some((key.to_owned(), request_hash(raw)))
            }
            None => None,
        };
        if let Some((key, hash)) = &idempotency
            && let Some(replay) = self.replay_idempotent(who, key, hash).await?
        {
            return Ok(replay);
        }

        let to = validate::phone(
            "to_number",
            req.to_number
                .as_deref()
                .ok_or_else(|| Error::validation("to_number", "field required"))?,
        )?;
        let from = req
            .from_number
            .as_deref()
            .map(|f| validate::phone("from_number", f))
            .transpose()?;
        let now = timefmt::now_ms();
        let scheduled_for = req
            .call_time
            .as_deref()
            .map(|t| {
                timefmt::parse_datetime(t).ok_or_else(|| {
                    Error::validation(
                        "call_time",
                        "must be an RFC 3339 datetime, e.g. 2024-01-15T09:30:00Z",
                    )
                })
            })
            .transpose()?
            .filter(|t| *t > now);
        let call_type = validate::opt_text("call_type", req.call_type.as_deref(), 64)?;
        let ring_timeout = validate::int_range(
            "ring_timeout_seconds",
            req.ring_timeout_seconds.unwrap_or(30),
            5,
            120,
        )?;
        let max_duration = validate::int_range(
            "max_duration_seconds",
            req.max_duration_seconds.unwrap_or(1800),
            10,
            14_400,
        )?;
        if let Some(m) = &req.metadata {
            validate::metadata("metadata", m)?;
        }
        let agent = req.agent.as_ref().map(validate_agent).transpose()?;
        let load_id = self
            .resolve_load(who, req.load_id.as_deref(), req.load_number.as_deref())
            .await?;

        let route = self
            .store
            .outbound_route(org, from.as_ref().map(|f| f.to_string()).as_deref())
            .await?;
        let route = match (route, &from) {
            (Some(r), _) => r,
            (None, Some(_)) => {
                return Err(Error::validation(
                    "from_number",
                    "is not a phone number of this organization",
                ));
            }
            (None, None) => {
                return Err(Error::new(
                    ErrorCode::NoRoute,
                    format!("No SIP trunk of this organization can reach {to}: add a SIP trunk and a phone number first."),
                )
                .with_param("to_number"));
            }
        };

        let new = NewCall {
            organization_id: org,
            status: if scheduled_for.is_some() {
                CallStatus::Scheduled
            } else {
                CallStatus::Queued
            },
            call_time: scheduled_for.unwrap_or(now),
            call_direction: CallDirection::Outbound,
            // As rendered from the parsed parts, never the text as sent.
            to_number: Some(to.to_string()),
            from_number: Some(route.from_number),
            call_type,
            load_id,
            created_by_id: who.user_id(),
            metadata: req.metadata.clone(),
            agent,
            record: req.record.unwrap_or(true),
            ring_timeout_seconds: ring_timeout,
            max_duration_seconds: max_duration,
            sip_trunk_id: Some(route.trunk.id),
            claimed_by: None,
        };
        let inserted = self
            .store
            .insert_call(
                new,
                idempotency.as_ref().map(|(k, h)| (k.as_str(), h.as_str())),
            )
            .await;
        let call = match inserted {
            Ok(call) => call,
            // Another request with the same key won the race: answer as it did.
            Err(StoreError::Conflict(_)) if idempotency.is_some() => {
                let (key, hash) = idempotency.as_ref().expect("checked above");
                return self
                    .replay_idempotent(who, key, hash)
                    .await?
                    .ok_or_else(|| Error::internal(anyhow::anyhow!("idempotency key vanished")));
            }
            Err(e) => return Err(Error::from_store(e, "call")),
        };
        metrics::counter!("switchyard_calls_created_total").increment(1);
        if call.status == CallStatus::Queued
            && let Some(t) = &self.telephony
            && let Err(e) = t.dispatch_queued().await
        {
            tracing::warn!(error = %e, "dispatch after create failed; the scheduler will retry");
        }
        Ok(Created {
            call,
            replayed: false,
        })
    }

    async fn replay_idempotent(
        &self,
        who: &Principal,
        key: &str,
        hash: &str,
    ) -> Result<Option<Created>> {
        let Some(found) = self
            .store
            .find_idempotency_key(who.organization_id, key)
            .await?
        else {
            return Ok(None);
        };
        if found.request_hash != hash {
            return Err(Error::new(
                ErrorCode::Conflict,
                "This Idempotency-Key was already used with a different request body.",
            )
            .with_param("Idempotency-Key"));
        }
        let call = self
            .store
            .get_call(who.organization_id, found.call_id)
            .await?;
        Ok(Some(Created {
            call,
            replayed: true,
        }))
    }

    async fn resolve_load(
        &self,
        who: &Principal,
        load_id: Option<&str>,
        load_number: Option<&str>,
    ) -> Result<Option<LoadId>> {
        let by_id = match load_id {
            Some(text) => {
                let id = LoadId::parse(text.trim()).map_err(|e| Error::bad_id("load_id", e))?;
                let load = self
                    .store
                    .get_load(who.organization_id, id)
                    .await
                    .map_err(|e| Error::from_store(e, "Load").with_param("load_id"))?;
                Some(load)
            }
            None => None,
        };
        let by_number = match load_number.map(str::trim).filter(|n| !n.is_empty()) {
            Some(n) => Some(
                self.store
                    .find_load_by_number(who.organization_id, n)
                    .await?
                    .ok_or_else(|| Error::not_found("Load").with_param("load_number"))?,
            ),
            None => None,
        };
        match (by_id, by_number) {
            (Some(a), Some(b)) if a.id != b.id => {
                Err(Error::validation("load_number", "does not match load_id"))
            }
            (Some(a), _) => Ok(Some(a.id)),
            (None, Some(b)) => Ok(Some(b.id)),
            (None, None) => Ok(None),
        }
    }

    pub async fn get_call(&self, who: &Principal, id: CallId) -> Result<Call> {
        self.store
            .get_call(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Call"))
    }

    pub async fn list_calls(&self, who: &Principal, params: &Params) -> Result<Paginated<Call>> {
        let page = PageRequest::from_params(params)?;
        let filter = call_filter(params, OffsetDateTime::now_utc())?;
        let (data, total) = self
            .store
            .list_calls(
                who.organization_id,
                &filter,
                Page {
                    limit: page.page_size,
                    offset: page.offset(),
                },
            )
            .await?;
        Ok(Paginated {
            data,
            pagination: page.page_of(total),
        })
    }

    pub async fn list_calls_for_load(&self, who: &Principal, load: LoadId) -> Result<Vec<Call>> {
        self.store
            .get_load(who.organization_id, load)
            .await
            .map_err(|e| Error::from_store(e, "Load"))?;
        Ok(self
            .store
            .list_calls_for_load(who.organization_id, load)
            .await?)
    }

    /// `POST /calls/{id}/end`: cancels a call not yet answered, hangs up an
    /// answered one; a call that has ended is left as it is.
    pub async fn end_call(&self, who: &Principal, id: CallId) -> Result<EndCallResponse> {
        let first = self.get_call(who, id).await?;
        let previous = first.status;
        let mut call = first;
        // A few rounds: the scheduler or the engine may move the call meanwhile.
        for _ in 0..8 {
            if call.status.is_terminal() {
                let message = if call.status == previous {
                    format!("Call had already ended with status {}.", call.status)
                } else {
                    format!("Call ended with status {}.", call.status)
                };
                return Ok(EndCallResponse {
                    success: true,
                    message,
                    call_id: id,
                    previous_status: Some(previous),
                    status: call.status,
                });
            }
            if call.status.is_live()
                && let Some(t) = &self.telephony
            {
                match t.end(&call).await.map_err(Error::internal)? {
                    EndOutcome::Signalled => {
                        let now = self.get_call(who, id).await?;
                        return Ok(EndCallResponse {
                            success: true,
                            message: "Hang-up sent.".into(),
                            call_id: id,
                            previous_status: Some(previous),
                            status: now.status,
                        });
                    }
                    EndOutcome::NotHeld => {}
                }
            }
            // Nothing on the wire (not dialed yet, or no engine holds the dialog): record the end.
            let now = timefmt::now_ms();
            let (event, patch) = match call.status {
                CallStatus::InProgress => (
                    CallEvent::HungUp,
                    CallPatch {
                        call_end_time: Some(now),
                        duration_seconds: call
                            .call_start_time
                            .map(|s| (now - s).max(0) as f64 / 1000.0),
                        ..Default::default()
                    },
                ),
                _ => (
                    CallEvent::Canceled,
                    CallPatch {
                        call_end_time: Some(now),
                        ..Default::default()
                    },
                ),
            };
            match self
                .store
                .transition_call(id, call.status, event, patch)
                .await
            {
                Ok(done) => {
                    return Ok(EndCallResponse {
                        success: true,
                        message: format!("Call ended with status {}.", done.status),
                        call_id: id,
                        previous_status: Some(previous),
                        status: done.status,
                    });
                }
                Err(StoreError::Stale) => call = self.get_call(who, id).await?,
                Err(e) => return Err(Error::from_store(e, "Call")),
            }
        }
        Err(Error::new(
            ErrorCode::InvalidState,
            "The call kept changing state; retry.",
        ))
    }

    /// `GET /calls/{id}/recording`. Recordings become available with the
    /// recordings work; until then every call answers 404 with its status.
    pub async fn call_transcript(
        &self,
        who: &Principal,
        id: CallId,
    ) -> Result<Vec<TranscriptTurn>> {
        self.get_call(who, id).await?;
        Ok(self.store.transcript(who.organization_id, id).await?)
    }
}

fn validate_agent(agent: &AgentSettings) -> Result<Value> {
    validate::opt_free_text("agent.instructions", agent.instructions.as_deref(), 8000)?;
    validate::opt_free_text("agent.first_message", agent.first_message.as_deref(), 1000)?;
    validate::opt_text("agent.voice", agent.voice.as_deref(), 64)?;
    validate::opt_text("agent.language", agent.language.as_deref(), 16)?;
    let value = serde_json::to_value(agent).map_err(Error::internal)?;
    if value.to_string().len() > validate::METADATA_MAX_BYTES {
        return Err(Error::validation("agent", "must be at most 16 KiB"));
    }
    Ok(value)
}

/// Parses `GET /calls`'s query into a filter; `now` anchors `time_period`.
pub fn call_filter(params: &Params, now: OffsetDateTime) -> Result<CallFilter> {
    let mut filter = CallFilter::default();
    for s in params.list("status") {
        let status = CallStatus::parse(&s).ok_or_else(|| {
            Error::validation(
                "status",
                format!("unknown status {s:?}; allowed: {}", CallStatus::allowed()),
            )
        })?;
        filter.statuses.push(status);
    }
    let mut from: Option<i64> = None;
    let mut to: Option<i64> = None;
    if let Some(period) = params.get("time_period") {
        let (a, b) = time_period(period, now)?;
        from = Some(a);
        to = Some(b);
    }
    if let Some(start) = params.get("start_date") {
        let s = parse_bound(start, false).ok_or_else(|| {
            Error::validation("start_date", "must be YYYY-MM-DD or an RFC 3339 datetime")
        })?;
        from = Some(from.map_or(s, |f| f.max(s)));
    }
    if let Some(end) = params.get("end_date") {
        let e = parse_bound(end, true).ok_or_else(|| {
            Error::validation("end_date", "must be YYYY-MM-DD or an RFC 3339 datetime")
        })?;
        to = Some(to.map_or(e, |t| t.min(e)));
    }
    if let (Some(f), Some(t)) = (from, to)
        && params.get("start_date").is_some()
        && params.get("end_date").is_some()
        && f >= t
    {
        return Err(Error::validation(
            "end_date",
            "must not be before start_date",
        ));
    }
    filter.call_time_from = from;
    filter.call_time_to = to;
    if let Some(search) = params.get("search") {
        filter.search = Some(validate::text("search", search, 100)?);
    }
    if let Some(d) = params.get("call_direction") {
        filter.direction = Some(CallDirection::parse(d).ok_or_else(|| {
            Error::validation(
                "call_direction",
                format!("must be one of {}", CallDirection::allowed()),
            )
        })?);
    }
    if let Some(t) = params.get("call_type") {
        filter.call_type = Some(validate::text("call_type", t, 64)?);
    }
    if let Some(l) = params.get("load_id") {
        filter.load_id = Some(LoadId::parse(l.trim()).map_err(|e| Error::bad_id("load_id", e))?);
    }
    if let Some(s) = params.get("sort_by") {
        filter.sort = match s.to_ascii_lowercase().as_str() {
            "call_time" => CallSort::CallTime,
            "created_at" => CallSort::CreatedAt,
            _ => {
                return Err(Error::validation(
                    "sort_by",
                    "must be call_time or created_at",
                ));
            }
        };
    }
    if let Some(o) = params.get("sort_order") {
        filter.order = match o.to_ascii_lowercase().as_str() {
            "asc" => SortOrder::Asc,
            "desc" => SortOrder::Desc,
            _ => return Err(Error::validation("sort_order", "must be asc or desc")),
        };
    }
    Ok(filter)
}

/// A date is a whole UTC day; an end date includes its whole day. A
/// datetime is exact (an end datetime is inclusive).
fn parse_bound(text: &str, end: bool) -> Option<i64> {
    let text = text.trim();
    if let Some(date) = timefmt::parse_date(text) {
        let day = if end { date.next_day()? } else { date };
        return Some(timefmt::day_start_ms(day));
    }
    timefmt::parse_datetime(text).map(|t| if end { t + 1 } else { t })
}

pub const TIME_PERIODS: &[&str] = &[
    "today",
    "yesterday",
    "last_7_days",
    "last_30_days",
    "this_month",
    "last_month",
];

/// `[from, to)` in milliseconds for a named period, in UTC.
fn time_period(name: &str, now: OffsetDateTime) -> Result<(i64, i64)> {
    let today: Date = now.date();
    let day = |d: Date| timefmt::day_start_ms(d);
    let first_of_month = |d: Date| Date::from_calendar_date(d.year(), d.month(), 1).unwrap_or(d);
    let now_ms = timefmt::to_ms(now);
    let range = match name.to_ascii_lowercase().as_str() {
        "today" => (day(today), day(today) + 86_400_000),
        "yesterday" => (day(today) - 86_400_000, day(today)),
        "last_7_days" => (timefmt::to_ms(now - Duration::days(7)), now_ms + 1),
        "last_30_days" => (timefmt::to_ms(now - Duration::days(30)), now_ms + 1),
        "this_month" => {
            let first = first_of_month(today);
            let next = if first.month() == Month::December {
                Date::from_calendar_date(first.year() + 1, Month::January, 1)
            } else {
                Date::from_calendar_date(first.year(), first.month().next(), 1)
            }
            .unwrap_or(first);
            (day(first), day(next))
        }
        "last_month" => {
            let first = first_of_month(today);
            let prev = first.previous_day().map(first_of_month).unwrap_or(first);
            (day(prev), day(first))
        }
        _ => {
            return Err(Error::validation(
                "time_period",
                format!("must be one of {}", TIME_PERIODS.join(", ")),
            ));
        }
    };
    Ok(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn periods() {
        let now = datetime!(2026-03-15 12:00 UTC);
        let (a, b) = time_period("this_month", now).unwrap();
        assert_eq!(timefmt::format_ms(a), "2026-03-01T00:00:00Z");
        assert_eq!(timefmt::format_ms(b), "2026-04-01T00:00:00Z");
        let (a, b) = time_period("LAST_MONTH", now).unwrap();
        assert_eq!(timefmt::format_ms(a), "2026-02-01T00:00:00Z");
        assert_eq!(timefmt::format_ms(b), "2026-03-01T00:00:00Z");
        let (a, _) = time_period("last_month", datetime!(2026-01-10 0:00 UTC)).unwrap();
        assert_eq!(timefmt::format_ms(a), "2025-12-01T00:00:00Z");
        assert!(time_period("fortnight", now).is_err());
    }

    #[test]
    fn filters() {
        let now = datetime!(2026-03-15 12:00 UTC);
        let f = call_filter(
            &params(&[
                ("status", "queued,COMPLETED"),
                ("status", "busy"),
                ("start_date", "2026-01-01"),
                ("end_date", "2026-01-31"),
            ]),
            now,
        )
        .unwrap();
        assert_eq!(
            f.statuses,
            vec![CallStatus::Queued, CallStatus::Completed, CallStatus::Busy]
        );
        assert_eq!(
            timefmt::format_ms(f.call_time_to.unwrap()),
            "2026-02-01T00:00:00Z"
        );
        let e = call_filter(&params(&[("status", "LIVE")]), now).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("status"));
        let e = call_filter(
            &params(&[("load_id", "car_550e8400-e29b-41d4-a716-446655440000")]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidIdFormat);
        let e = call_filter(
            &params(&[("start_date", "2026-02-01"), ("end_date", "2026-01-01")]),
            now,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("end_date"));
    }

    #[test]
    fn hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":1,"y":2}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"y":2,"x":1},"a":1}"#).unwrap();
        assert_eq!(request_hash(&a), request_hash(&b));
    }
}
