//! One error envelope for every failure, axum's own rejections included.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use switchyard_service::{Error, ErrorCode};
use utoipa::ToSchema;

/// `{"error":{"code","message","param"}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Machine-readable: validation_error, not_authenticated, insufficient_permissions, not_found,
    /// method_not_allowed, already_exists, rate_limit_exceeded, internal_error, invalid_id_format,
    /// call_not_live, invalid_state, conflict, no_route, payload_too_large, range_not_satisfiable,
    /// and for requests that are not read at all: bad_request (400), uri_too_long (414),
    /// headers_too_large (431).
    pub code: String,
    pub message: String,
    /// The request parameter at fault, e.g. `stops[0].location.city`; always present, `null`
    /// when no single parameter is at fault.
    #[schema(required = true)]
    pub param: Option<String>,
}

/// A service error on its way out as an HTTP response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        if let Some(source) = &e.source {
            // The cause stays in the log (with the request's span and ID), never in the body.
            tracing::error!(error = %source, error_chain = ?source, "internal error");
        }
        let status =
            StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ErrorEnvelope {
            error: ErrorBody {
                code: e.code.as_str().to_owned(),
                message: e.message,
                param: e.param,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = e.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let Some(size) = e.range_size
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            response.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        response
    }
}

pub async fn route_not_found() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "No such route."))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError(Error::new(
        ErrorCode::MethodNotAllowed,
        "This route does not accept this HTTP method.",
    ))
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError(Error::new(
        ErrorCode::InternalError,
        "An internal error occurred.",
    ))
    .into_response()
}
