//! Call recordings: where to play one (`GET /calls/{id}/recording`), the
//! signed media route that URL points at, and deletion.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use switchyard_domain::id::kind;
use switchyard_service::calls::RecordingResponse;
use switchyard_service::recordings::{DeleteRecordingResponse, MediaConditions, MediaQuery};
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Auth, PathId, QueryParams, header as header_text};
use crate::openapi::ErrorResponses;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RecordingQuery {
    /// `stereo` (default: customer left, agent and joined humans right),
    /// `customer` or `agent` (that side alone, mono).
    #[param(pattern = r"^((stereo|customer|agent))?$")]
    pub channel: Option<String>,
}

/// Get call recording: a time-limited URL that plays the recording
/// (audio/mp4, AAC-LC) in a browser, with its duration and size. Without
/// an AVAILABLE recording the answer is 404 `not_found` naming the
/// `recording_status`; while it is PROCESSING, `Retry-After` says in how
/// many seconds to ask again.
#[utoipa::path(get, path = "/calls/{call_id}/recording", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… or a bare UUID"), RecordingQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = RecordingResponse), ErrorResponses))]
pub async fn call_recording(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Call>,
    QueryParams(params): QueryParams,
    headers: HeaderMap,
) -> Result<Json<RecordingResponse>, ApiError> {
    Ok(Json(
        state
            .services
            .call_recording(
                &who,
                id,
                params.get("channel"),
                header_text(&headers, "host"),
            )
            .await?,
    ))
}

/// Delete a call's recording (OWNER or ADMIN): its files are removed and
/// `recording_status` becomes DELETED. Idempotent.
#[utoipa::path(delete, path = "/calls/{call_id}/recording", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = DeleteRecordingResponse), ErrorResponses))]
pub async fn delete_recording(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Call>,
) -> Result<Json<DeleteRecordingResponse>, ApiError> {
    Ok(Json(state.services.delete_recording(&who, id).await?))
}

/// The recording itself, at the signed URL `GET /calls/{id}/recording`
/// hands out. Needs no credentials: the signature is the permission, and
/// an expired or altered URL is 403. Serves `Range` (206), `ETag` and
/// `If-None-Match` (304), `If-Range`; a range outside the file is 416.
#[utoipa::path(get, path = "/recordings/{call_id}", tag = "Calls",
    params(("call_id" = String, Path, description = "call_… as in the signed URL"), MediaQuery),
    responses(
        (status = 200, description = "The whole recording", content_type = "audio/mp4", body = Vec<u8>),
        (status = 206, description = "The requested byte range", content_type = "audio/mp4", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 403, description = "`insufficient_permissions`: the URL expired or was altered", body = crate::error::ErrorEnvelope),
        (status = 404, description = "`not_found`: the recording is gone", body = crate::error::ErrorEnvelope),
        (status = 416, description = "`range_not_satisfiable`", body = crate::error::ErrorEnvelope),
        (status = 422, description = "`validation_error`", body = crate::error::ErrorEnvelope),
        (status = 429, description = "`rate_limit_exceeded`", body = crate::error::ErrorEnvelope),
        (status = 414, description = "`uri_too_long`", body = crate::error::ErrorEnvelope),
        (status = 431, description = "`headers_too_large`", body = crate::error::ErrorEnvelope),
        (status = 500, description = "`internal_error`", body = crate::error::ErrorEnvelope),
    ))]
pub async fn recording_media(
    State(state): State<AppState>,
    Path(call_id): Path<String>,
    QueryParams(params): QueryParams,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = MediaQuery {
        channel: params.get("channel").map(str::to_owned),
        expires: params.get("expires").map(str::to_owned),
        signature: params.get("signature").map(str::to_owned),
    };
    let cond = MediaConditions {
        range: header_text(&headers, "range").map(str::to_owned),
        if_none_match: header_text(&headers, "if-none-match").map(str::to_owned),
        if_range: header_text(&headers, "if-range").map(str::to_owned),
    };
    let media = state
        .services
        .recording_media(&call_id, &query, &cond)
        .await?;
    let status = StatusCode::from_u16(media.status).unwrap_or(StatusCode::OK);
    let mut response = match media.body {
        Some(stream) => (status, Body::from_stream(stream)).into_response(),
        None => status.into_response(),
    };
    let h = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::ACCEPT_RANGES, "bytes".into());
    // The URL carries its own expiry; caches must not outlive it or share it.
    set(header::CACHE_CONTROL, "private, no-transform".into());
    if let Some(tag) = media.e_tag {
        set(header::ETAG, tag);
    }
    if media.status != 304 {
        set(header::CONTENT_TYPE, media.content_type.into());
        set(
            header::CONTENT_LENGTH,
            (media.range.end - media.range.start).to_string(),
        );
        set(
            header::CONTENT_DISPOSITION,
            format!("inline; filename=\"{}\"", media.file_name),
        );
    }
    if media.status == 206 {
        set(
            header::CONTENT_RANGE,
            format!(
                "bytes {}-{}/{}",
                media.range.start,
                media.range.end.saturating_sub(1),
                media.total_size
            ),
        );
    }
    Ok(response)
}
