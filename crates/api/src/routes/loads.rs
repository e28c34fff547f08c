use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::Value;
use switchyard_domain::id::kind;
use switchyard_domain::load::Load;
use switchyard_domain::model::Call;
use switchyard_service::loads::{LoadInput, LoadUpsertResponse};
use switchyard_service::pagination::Paginated;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, PathId, QueryParams};
use crate::openapi::ErrorResponses;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListLoadsQuery {
    /// 1-based, default 1.
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
    /// Substring of the load number.
    #[param(
        max_length = 100,
        pattern = r"^([^\u0000-\u001F\u007F-\u009F]*[^\u0020\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*)?$"
    )]
    search: Option<String>,
}

/// Create a load, or update the one with the same `load_number` (or `tms_load_id`).
#[utoipa::path(post, path = "/loads", tag = "Loads", request_body = LoadInput,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = LoadUpsertResponse, description = "Created"),
              (status = 200, body = LoadUpsertResponse, description = "Updated"), ErrorResponses))]
pub async fn upsert_load(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: ApiJson<Value>,
) -> Result<(StatusCode, Json<LoadUpsertResponse>), ApiError> {
    let out = state
        .services
        .upsert_load(&who, LoadInput::from_json(body.value)?)
        .await?;
    let status = if out.operation == "created" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

/// List loads, newest first.
#[utoipa::path(get, path = "/loads", tag = "Loads", params(ListLoadsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Paginated<Load>), ErrorResponses))]
pub async fn list_loads(
    State(state): State<AppState>,
    Auth(who): Auth,
    QueryParams(params): QueryParams,
) -> Result<Json<Paginated<Load>>, ApiError> {
    Ok(Json(state.services.list_loads(&who, &params).await?))
}

/// Get a load.
#[utoipa::path(get, path = "/loads/{load_id}", tag = "Loads",
    params(("load_id" = String, Path, description = "load_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Load), ErrorResponses))]
pub async fn get_load(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Load>,
) -> Result<Json<Load>, ApiError> {
    Ok(Json(state.services.get_load(&who, id).await?))
}

/// Update a load: fields present replace the stored ones; `null` clears an optional field.
#[utoipa::path(patch, path = "/loads/{load_id}", tag = "Loads", request_body = Object,
    params(("load_id" = String, Path, description = "load_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Load), ErrorResponses))]
pub async fn patch_load(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Load>,
    body: ApiJson<Value>,
) -> Result<Json<Load>, ApiError> {
    Ok(Json(state.services.patch_load(&who, id, body.value).await?))
}

/// The calls of a load, newest first (a plain array).
#[utoipa::path(get, path = "/loads/{load_id}/calls", tag = "Loads",
    params(("load_id" = String, Path, description = "load_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<Call>), ErrorResponses))]
pub async fn load_calls(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Load>,
) -> Result<Json<Vec<Call>>, ApiError> {
    Ok(Json(state.services.list_calls_for_load(&who, id).await?))
}
