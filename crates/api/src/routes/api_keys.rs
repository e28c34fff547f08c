use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_domain::id::kind;
use switchyard_domain::model::ApiKey;
use switchyard_service::api_keys::{CreateApiKeyRequest, CreatedApiKey};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, PathId};
use crate::openapi::ErrorResponses;

/// Create an API key (bearer token required; OWNER or ADMIN). The key is shown only here.
#[utoipa::path(post, path = "/api-keys", tag = "API Keys", request_body = CreateApiKeyRequest,
    security(("bearer" = [])),
    responses((status = 201, description = "Created", body = CreatedApiKey), ErrorResponses))]
pub async fn create_api_key(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: ApiJson<CreateApiKeyRequest>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(state.services.create_api_key(&who, body.value).await?),
    ))
}

/// List the organization's API keys (without key values; bearer token required).
#[utoipa::path(get, path = "/api-keys", tag = "API Keys", security(("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<ApiKey>), ErrorResponses))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Vec<ApiKey>>, ApiError> {
    Ok(Json(state.services.list_api_keys(&who).await?))
}

/// Get an API key (bearer token required).
#[utoipa::path(get, path = "/api-keys/{api_key_id}", tag = "API Keys", security(("bearer" = [])),
    params(("api_key_id" = String, Path, description = "key_… or a bare UUID")),
    responses((status = 200, description = "OK", body = ApiKey), ErrorResponses))]
pub async fn get_api_key(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::ApiKey>,
) -> Result<Json<ApiKey>, ApiError> {
    Ok(Json(state.services.get_api_key(&who, id).await?))
}

/// Revoke an API key (soft delete: it stays listed, inactive). Bearer token required.
#[utoipa::path(delete, path = "/api-keys/{api_key_id}", tag = "API Keys", security(("bearer" = [])),
    params(("api_key_id" = String, Path, description = "key_… or a bare UUID")),
    responses((status = 200, body = Object, description = "`{}`"), ErrorResponses))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::ApiKey>,
) -> Result<Json<Value>, ApiError> {
    state.services.delete_api_key(&who, id).await?;
    Ok(Json(json!({})))
}
