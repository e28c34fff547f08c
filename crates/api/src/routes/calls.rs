use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use switchyard_domain::id::kind;
use switchyard_domain::model::{Call, TranscriptTurn};
use switchyard_service::calls::{CreateCallRequest, EndCallResponse};
use switchyard_service::pagination::Paginated;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, IdempotencyKey, PathId, QueryParams};
use crate::middleware::{rate_limited, set_rate_headers};
use crate::openapi::ErrorResponses;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListCallsQuery {
    /// 1-based, default 1.
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
    /// One status or several, comma-separated (e.g. `QUEUED,DIALING`); case-insensitive.
    #[param(
        pattern = r"^((SCHEDULED|QUEUED|DIALING|RINGING|IN_PROGRESS|COMPLETED|NO_ANSWER|BUSY|FAILED|CANCELED)(,(SCHEDULED|QUEUED|DIALING|RINGING|IN_PROGRESS|COMPLETED|NO_ANSWER|BUSY|FAILED|CANCELED))*)?$"
    )]
    status: Option<String>,
    /// today, yesterday, last_7_days, last_30_days, this_month, last_month.
    #[param(pattern = r"^((today|yesterday|last_7_days|last_30_days|this_month|last_month))?$")]
    time_period: Option<String>,
    /// YYYY-MM-DD (or an RFC 3339 datetime), inclusive, on `call_time`.
    /// Not after `end_date`.
    #[param(pattern = r"^((19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    start_date: Option<String>,
    /// YYYY-MM-DD (or an RFC 3339 datetime), inclusive, on `call_time`.
    #[param(pattern = r"^((19[7-9][0-9]|20[0-9]{2})-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8]))?$")]
    end_date: Option<String>,
    /// Substring of the phone numbers, the load number or the call ID.
    #[param(
        max_length = 100,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    search: Option<String>,
    /// INBOUND or OUTBOUND.
    #[param(pattern = r"^((INBOUND|OUTBOUND))?$")]
    call_direction: Option<String>,
    #[param(
        max_length = 64,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    call_type: Option<String>,
    /// load_… or a bare UUID.
    #[param(
        pattern = r"^((load_)?[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})?$"
    )]
    load_id: Option<String>,
    /// call_time (default) or created_at.
    #[param(pattern = r"^((call_time|created_at))?$")]
    sort_by: Option<String>,
    /// asc or desc (default).
    #[param(pattern = r"^((asc|desc))?$")]
    sort_order: Option<String>,
}

/// Create a call: placed now, or SCHEDULED when `call_time` is in the future.
/// With `Idempotency-Key`, the same key and body within 24 h return the first call;
/// the same key with another body is 409 `conflict`.
#[utoipa::path(post, path = "/calls", tag = "Calls", request_body = CreateCallRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe (24 h): 1 to 255 ASCII characters, sent once.",
        pattern = r"^[!-~]([ -~]{0,253}[!-~])?$")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = Call), ErrorResponses))]
pub async fn create_call(
    State(state): State<AppState>,
    Auth(who): Auth,
    IdempotencyKey(key): IdempotencyKey,
    body: ApiJson<CreateCallRequest>,
) -> Result<Response, ApiError> {
    let decision = state
        .limits
        .call_creation
        .check(&who.organization_id.to_string());
    if !decision.allowed {
        return Ok(rate_limited(&decision));
    }
    let created = state
        .services
        .create_call(&who, body.value, &body.raw, key.as_deref())
        .await?;
    let mut response = (StatusCode::CREATED, Json(created.call)).into_response();
    set_rate_headers(response.headers_mut(), &decision);
    if created.replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// List calls with pagination, filters and search.
#[utoipa::path(get, path = "/calls", tag = "Calls", params(ListCallsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Paginated<Call>), ErrorResponses))]
pub async fn list_calls(
    State(state): State<AppState>,
    Auth(who): Auth,
    QueryParams(params): QueryParams,
) -> Result<Json<Paginated<Call>>, ApiError> {
    Ok(Json(state.services.list_calls(&who, &params).await?))
}

/// Get a call.
#[utoipa::path(get, path = "/calls/{call_id}", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Call), ErrorResponses))]
pub async fn get_call(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Call>,
) -> Result<Json<Call>, ApiError> {
    Ok(Json(state.services.get_call(&who, id).await?))
}

/// End a call: a scheduled or queued call is canceled, a ringing one is
/// cancelled (SIP CANCEL), a live one is hung up (BYE). Idempotent.
#[utoipa::path(post, path = "/calls/{call_id}/end", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = EndCallResponse), ErrorResponses))]
pub async fn end_call(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Call>,
) -> Result<Json<EndCallResponse>, ApiError> {
    Ok(Json(state.services.end_call(&who, id).await?))
}

/// The call's transcript, in time order.
#[utoipa::path(get, path = "/calls/{call_id}/transcript", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<TranscriptTurn>), ErrorResponses))]
pub async fn call_transcript(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Call>,
) -> Result<Json<Vec<TranscriptTurn>>, ApiError> {
    Ok(Json(state.services.call_transcript(&who, id).await?))
}
