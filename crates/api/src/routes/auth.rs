use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use switchyard_service::auth::LoginResponse;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openapi::ErrorResponses;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

/// Log in with email and password; returns a bearer token (JWT).
#[utoipa::path(post, path = "/auth/login", tag = "Auth", request_body = LoginRequest,
    responses((status = 200, description = "OK", body = LoginResponse), ErrorResponses))]
pub async fn login(
    State(state): State<AppState>,
    body: ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    Ok(Json(
        state
            .services
            .auth
            .login(&body.value.email, &body.value.password)
            .await?,
    ))
}
