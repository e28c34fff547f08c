//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi};

use crate::error::ErrorEnvelope;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard API",
        description = "A self-hostable, Envoy-compatible voice-AI calling API. Every path also answers without the /api/v1 prefix.",
        license(name = "Apache-2.0")
    ),
    servers((url = "/api/v1", description = "This server")),
    modifiers(&Security),
    components(schemas(ErrorEnvelope)),
    tags(
        (name = "Auth"), (name = "API Keys"), (name = "Loads"), (name = "Calls"),
        (name = "SIP Trunks"), (name = "Phone Numbers"), (name = "Webhooks")
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from POST /auth/login, or an API key (sy_live_…).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
    }
}

/// The errors any authenticated route can answer, each with the envelope.
/// Every response also carries `X-RateLimit-Limit`, `X-RateLimit-Remaining`
/// and `X-RateLimit-Reset`; a 429 carries `Retry-After`.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ErrorResponses {
    /// `invalid_id_format`: an ID of another resource's prefix.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// `not_authenticated`: missing, invalid, revoked or expired credentials.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// `insufficient_permissions`.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// `not_found`: no such resource in this organization.
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// `already_exists`, `conflict`, `invalid_state` or `call_not_live`.
    #[response(status = 409)]
    Conflict(ErrorEnvelope),
    /// `payload_too_large`: bodies are limited to 1 MiB.
    #[response(status = 413)]
    TooLarge(ErrorEnvelope),
    /// `validation_error`: the body is not JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
    /// `validation_error` (with `param`) or `no_route`.
    #[response(status = 422)]
    Unprocessable(ErrorEnvelope),
    /// `rate_limit_exceeded`; see `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(ErrorEnvelope),
    /// `internal_error`.
    #[response(status = 500)]
    Internal(ErrorEnvelope),
}

/// The document, built from every route of the router.
pub fn openapi() -> utoipa::openapi::OpenApi {
    crate::routes::api_router().into_openapi()
}
