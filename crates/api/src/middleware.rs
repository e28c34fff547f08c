//! Authentication with rate limiting, metrics and request spans.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use switchyard_service::{Error, ErrorCode};

use crate::AppState;
use crate::error::ApiError;
use crate::rate_limit::Decision;

/// The credential sent: `X-API-Key`, or `Authorization: Bearer …`.
fn credential(headers: &HeaderMap) -> Result<Option<&str>, Error> {
    if let Some(key) = headers.get("x-api-key") {
        let key = key.to_str().map_err(|_| Error::unauthenticated())?.trim();
        return if key.is_empty() {
            Err(Error::unauthenticated())
        } else {
            Ok(Some(key))
        };
    }
    let Some(auth) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let auth = auth.to_str().map_err(|_| Error::unauthenticated())?.trim();
    let (scheme, token) = auth.split_once(' ').ok_or_else(Error::unauthenticated)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(Error::unauthenticated());
    }
    Ok(Some(token.trim()))
}

pub fn set_rate_headers(headers: &mut HeaderMap, d: &Decision) {
    let mut put = |name: &'static str, value: u64| {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, v);
        }
    };
    put("x-ratelimit-limit", d.limit as u64);
    put("x-ratelimit-remaining", d.remaining as u64);
    put("x-ratelimit-reset", d.reset_secs);
    if !d.allowed {
        put("retry-after", d.retry_after_secs);
    }
}

pub fn rate_limited(d: &Decision) -> Response {
    let mut e = Error::new(
        ErrorCode::RateLimitExceeded,
        format!(
            "Rate limit exceeded. Retry after {} seconds.",
            d.retry_after_secs
        ),
    );
    e.retry_after = Some(d.retry_after_secs);
    let mut response = ApiError(e).into_response();
    set_rate_headers(response.headers_mut(), d);
    response
}

/// Resolves credentials (if any) to a principal for the handlers, then
/// applies the per-caller rate limit (per client address when anonymous or
/// when the credentials are refused, so that refusals are limited too and
/// carry the `X-RateLimit-*` headers like every other response).
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let outcome = match credential(headers) {
        Ok(Some(token)) => {
            let org = headers
                .get("x-organization-id")
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.trim().is_empty());
            state.services.auth.authenticate(token, org).await.map(Some)
        }
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    let rate_key = match &outcome {
        Ok(Some(p)) => p.rate_key(),
        Ok(None) | Err(_) => {
            let ip = req
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip().to_string());
            format!("ip:{}", ip.unwrap_or_default())
        }
    };
    let decision = state.limits.requests.check(&rate_key);
    if !decision.allowed {
        metrics::counter!("switchyard_rate_limited_total").increment(1);
        return rate_limited(&decision);
    }
    let principal = match outcome {
        Ok(p) => p,
        Err(e) => {
            let mut response = ApiError(e).into_response();
            set_rate_headers(response.headers_mut(), &decision);
            return response;
        }
    };
    if let Some(p) = principal {
        req.extensions_mut().insert(p);
    }
    let mut response = next.run(req).await;
    // A stricter limit inside the handler (call creation) has set its own.
    if !response.headers().contains_key("x-ratelimit-limit") {
        set_rate_headers(response.headers_mut(), &decision);
    }
    response
}

/// Counts requests and their latency per route and status.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("switchyard_http_requests_total", &labels).increment(1);
    metrics::histogram!("switchyard_http_request_duration_seconds", &labels[..2])
        .record(start.elapsed().as_secs_f64());
    response
}

/// The access log: one line per request (target `switchyard::access`, at
/// INFO): method, path (never the query, which may carry a signature or a
/// search), status, the time to the response's head, and the request ID.
pub async fn access_log(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let response = next.run(req).await;
    tracing::info!(
        target: "switchyard::access",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        duration_ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3,
        request_id = %request_id,
        "request"
    );
    response
}

/// The tracing span of a request, carrying its request ID.
pub fn make_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("request", method = %req.method(), uri = %req.uri().path(), request_id = %id)
}
