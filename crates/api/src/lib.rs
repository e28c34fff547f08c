//! The HTTP API. Handlers are thin: parse, authorise, call a service, render.
//! Every route answers under `/api/v1/...` and under the short form.

mod error;
mod extract;
pub mod login_limit;
mod middleware;
mod openapi;
mod parse_errors;
mod query_names;
mod rate_limit;
mod routes;

pub use error::{ApiError, ErrorBody, ErrorEnvelope};
pub use login_limit::LoginLimitConfig;
pub use openapi::openapi;
pub use parse_errors::serve;
pub use rate_limit::{Limits, RateLimitConfig};

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use metrics_exporter_prometheus::PrometheusHandle;
use switchyard_service::Services;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_swagger_ui::SwaggerUi;

/// Request bodies above this are answered 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Shared by every handler.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub limits: Arc<Limits>,
    pub metrics: Option<PrometheusHandle>,
}

/// `GET /`: a browser opening the server lands on the API docs. The
/// redirect is temporary (307), so that a dashboard can take `/` later.
async fn root() -> axum::response::Redirect {
    axum::response::Redirect::temporary("/docs/")
}

/// The whole application: API routes in both forms, health, metrics, docs.
pub fn router(state: AppState) -> Router {
    let (api, mut doc) = routes::api_router().split_for_parts();
    openapi::exact(&mut doc);
    let api = api
        .layer(axum::middleware::from_fn_with_state(
            query_names::QueryNames::from_doc(&doc),
            query_names::refuse_unknown,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::authenticate,
        ));
    let request_id = axum::http::HeaderName::from_static("x-request-id");
    Router::new()
        .nest("/api/v1", api.clone())
        .merge(api)
        .merge(routes::health::router())
        .merge(SwaggerUi::new("/docs").url("/api/v1/openapi.json", doc))
        .route("/", axum::routing::get(root))
        .fallback(error::route_not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(middleware::record_metrics))
        .layer(CatchPanicLayer::custom(error::panic_response))
        .layer(TraceLayer::new_for_http().make_span_with(middleware::make_span))
        // Outside the request's span (its fields would repeat on the line),
        // inside the request ID's.
        .layer(axum::middleware::from_fn(middleware::access_log))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
        .with_state(state)
}
