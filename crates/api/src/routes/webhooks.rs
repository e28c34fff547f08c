use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use switchyard_domain::id::kind;
use switchyard_domain::webhook::{
    WebhookAttempt, WebhookEndpoint, WebhookEndpointWithSecret, WebhookMessageStatus,
};
use switchyard_service::pagination::Paginated;
use switchyard_service::webhooks::{
    CreateWebhookEndpointRequest, ReplayMessageRequest, UpdateWebhookEndpointRequest,
    WebhookEventType,
};
use utoipa::IntoParams;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{ApiJson, Auth, PathId, QueryParams};
use crate::openapi::ErrorResponses;

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageQuery {
    /// 1-based, default 1.
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AttemptsQuery {
    /// 1-based, default 1.
    page: Option<i64>,
    /// Default 20, at most 100.
    page_size: Option<i64>,
    /// One attempt status or several, comma-separated: PENDING, SENDING, SUCCEEDED, FAILED, DEAD.
    #[param(
        pattern = r"^((PENDING|SENDING|SUCCEEDED|FAILED|DEAD)(,(PENDING|SENDING|SUCCEEDED|FAILED|DEAD))*)?$"
    )]
    status: Option<String>,
}

/// Register an endpoint. The answer carries its `signing_secret`, shown only now.
#[utoipa::path(post, path = "/webhooks/endpoints", tag = "Webhooks", request_body = CreateWebhookEndpointRequest,
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "Created", body = WebhookEndpointWithSecret), ErrorResponses))]
pub async fn create_webhook_endpoint(
    State(state): State<AppState>,
    Auth(who): Auth,
    body: ApiJson<CreateWebhookEndpointRequest>,
) -> Result<(StatusCode, Json<WebhookEndpointWithSecret>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(
            state
                .services
                .create_webhook_endpoint(&who, body.value)
                .await?,
        ),
    ))
}

/// List endpoints, oldest first.
#[utoipa::path(get, path = "/webhooks/endpoints", tag = "Webhooks", params(PageQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Paginated<WebhookEndpoint>), ErrorResponses))]
pub async fn list_webhook_endpoints(
    State(state): State<AppState>,
    Auth(who): Auth,
    QueryParams(params): QueryParams,
) -> Result<Json<Paginated<WebhookEndpoint>>, ApiError> {
    Ok(Json(
        state.services.list_webhook_endpoints(&who, &params).await?,
    ))
}

/// Get an endpoint (without its secret).
#[utoipa::path(get, path = "/webhooks/endpoints/{endpoint_id}", tag = "Webhooks",
    params(("endpoint_id" = String, Path, description = "ep_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = WebhookEndpoint), ErrorResponses))]
pub async fn get_webhook_endpoint(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Endpoint>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    Ok(Json(state.services.get_webhook_endpoint(&who, id).await?))
}

/// Update an endpoint. `status` takes ACTIVE or PAUSED: a PAUSED endpoint
/// keeps its messages and gets them when it is ACTIVE again; ACTIVE also
/// re-enables an endpoint the platform DISABLED.
#[utoipa::path(patch, path = "/webhooks/endpoints/{endpoint_id}", tag = "Webhooks",
    request_body = UpdateWebhookEndpointRequest,
    params(("endpoint_id" = String, Path, description = "ep_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = WebhookEndpoint), ErrorResponses))]
pub async fn update_webhook_endpoint(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Endpoint>,
    body: ApiJson<UpdateWebhookEndpointRequest>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    Ok(Json(
        state
            .services
            .update_webhook_endpoint(&who, id, body.value)
            .await?,
    ))
}

/// Delete an endpoint and its delivery log.
#[utoipa::path(delete, path = "/webhooks/endpoints/{endpoint_id}", tag = "Webhooks",
    params(("endpoint_id" = String, Path, description = "ep_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Object, description = "`{}`"), ErrorResponses))]
pub async fn delete_webhook_endpoint(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Endpoint>,
) -> Result<Json<Value>, ApiError> {
    state.services.delete_webhook_endpoint(&who, id).await?;
    Ok(Json(json!({})))
}

/// Rotate the signing secret (body `{}` or none). The new secret is in the
/// answer, shown only now; for 24 hours every delivery is signed with both.
#[utoipa::path(post, path = "/webhooks/endpoints/{endpoint_id}/rotate-secret", tag = "Webhooks",
    params(("endpoint_id" = String, Path, description = "ep_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = WebhookEndpointWithSecret), ErrorResponses))]
pub async fn rotate_webhook_secret(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Endpoint>,
) -> Result<Json<WebhookEndpointWithSecret>, ApiError> {
    Ok(Json(state.services.rotate_webhook_secret(&who, id).await?))
}

/// List delivery attempts for an endpoint, newest first.
#[utoipa::path(get, path = "/webhooks/endpoints/{endpoint_id}/messages", tag = "Webhooks",
    params(("endpoint_id" = String, Path, description = "ep_… or a bare UUID"), AttemptsQuery),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Paginated<WebhookAttempt>), ErrorResponses))]
pub async fn list_endpoint_messages(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Endpoint>,
    QueryParams(params): QueryParams,
) -> Result<Json<Paginated<WebhookAttempt>>, ApiError> {
    Ok(Json(
        state
            .services
            .list_endpoint_attempts(&who, id, &params)
            .await?,
    ))
}

/// A message is one event as delivered (its ID is the `webhook-id` header);
/// this lists its attempts to every endpoint, oldest first.
#[utoipa::path(get, path = "/webhooks/messages/{message_id}/attempts", tag = "Webhooks",
    params(("message_id" = String, Path, description = "msg_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<WebhookAttempt>), ErrorResponses))]
pub async fn list_message_attempts(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Message>,
) -> Result<Json<Vec<WebhookAttempt>>, ApiError> {
    Ok(Json(state.services.list_message_attempts(&who, id).await?))
}

/// Deliver a message to an endpoint again: a fresh attempt, due now, with
/// the same `webhook-id` (receivers that de-duplicate on it see it once).
#[utoipa::path(post, path = "/webhooks/messages/{message_id}/replay", tag = "Webhooks",
    request_body = ReplayMessageRequest,
    params(("message_id" = String, Path, description = "msg_… or a bare UUID")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = WebhookMessageStatus), ErrorResponses))]
pub async fn replay_webhook_message(
    State(state): State<AppState>,
    Auth(who): Auth,
    PathId(id): PathId<kind::Message>,
    body: ApiJson<ReplayMessageRequest>,
) -> Result<Json<WebhookMessageStatus>, ApiError> {
    Ok(Json(
        state
            .services
            .replay_webhook_message(&who, id, body.value)
            .await?,
    ))
}

/// Every event type, with a JSON Schema of its `data`.
#[utoipa::path(get, path = "/webhooks/event-types", tag = "Webhooks",
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "OK", body = Vec<WebhookEventType>), ErrorResponses))]
pub async fn list_event_types(
    State(state): State<AppState>,
    Auth(who): Auth,
) -> Result<Json<Vec<WebhookEventType>>, ApiError> {
    Ok(Json(state.services.webhook_event_types(&who)))
}
