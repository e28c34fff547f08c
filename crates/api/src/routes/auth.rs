use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::{Extension, Json};
use serde::Deserialize;
use switchyard_service::auth::LoginResponse;
use switchyard_service::{Error, ErrorCode};
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
///
/// Failed logins are limited per account and client address: past the
/// limit the answer is 429 `rate_limit_exceeded` with `Retry-After`, and
/// the wait doubles with each further failure (see the README).
#[utoipa::path(post, path = "/auth/login", tag = "Auth", request_body = LoginRequest,
    responses((status = 200, description = "OK", body = LoginResponse), ErrorResponses))]
pub async fn login(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let address = connect.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0.ip());
    let LoginRequest { email, password } = body.value;
    let ticket = match state.limits.login.begin(&email, address) {
        Ok(t) => t,
        Err(refusal) => {
            metrics::counter!("switchyard_login_refused_total", "scope" => refusal.scope)
                .increment(1);
            tracing::debug!(account = ?crate::login_limit::account_key(&email), %address,
                scope = refusal.scope, "login refused: too many failures");
            let mut e = Error::new(
                ErrorCode::RateLimitExceeded,
                format!(
                    "Too many failed logins. Retry after {} seconds.",
                    refusal.retry_after_secs
                ),
            );
            e.retry_after = Some(refusal.retry_after_secs);
            return Err(e.into());
        }
    };
    match state.services.auth.login(&email, &password).await {
        Ok(token) => {
            ticket.succeeded();
            Ok(Json(token))
        }
        Err(e) if e.code == ErrorCode::NotAuthenticated => {
            let account = ticket.account().to_owned();
            let outcome = ticket.failed();
            metrics::counter!("switchyard_login_failures_total").increment(1);
            // Debug formatting: the account is whatever the client typed.
            tracing::warn!(
                account = ?account,
                %address,
                failures = outcome.failures,
                locked_for_seconds = outcome.locked_for.map(|d| d.as_secs_f64()),
                "login failed"
            );
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}
