//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use switchyard_service::pagination::{MAX_PAGE, MAX_PAGE_SIZE};
use utoipa::openapi::RefOr;
use utoipa::openapi::path::ParameterIn;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
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
    /// `invalid_id_format`: an ID of another resource's prefix; `bad_request`:
    /// the request is not valid HTTP.
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
    /// `uri_too_long`: the URI is over 65534 bytes.
    #[response(status = 414)]
    UriTooLong(ErrorEnvelope),
    /// `validation_error`: the body is not JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
    /// `validation_error` (with `param`) or `no_route`.
    #[response(status = 422)]
    Unprocessable(ErrorEnvelope),
    /// `rate_limit_exceeded`; see `Retry-After`.
    #[response(status = 429)]
    TooManyRequests(ErrorEnvelope),
    /// `headers_too_large`: over 100 headers, or about 400 KiB of them.
    #[response(status = 431)]
    HeadersTooLarge(ErrorEnvelope),
    /// `internal_error`.
    #[response(status = 500)]
    Internal(ErrorEnvelope),
}

/// The document, built from every route of the router.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = crate::routes::api_router().into_openapi();
    exact(&mut doc);
    doc
}

/// The hex UUID the API accepts in an ID (`Id::parse`: the hyphenated form).
const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

/// The pattern of an ID with `prefix`: the prefixed form or a bare UUID.
pub fn id_pattern(prefix: &str) -> String {
    format!("^({prefix}_)?{UUID}$")
}

/// Makes the parameters as strict as the API is, so that no operation
/// refuses a request the document allows: every ID path parameter gets its
/// pattern, `page` and `page_size` their bounds. (The other query
/// parameters say theirs where they are declared.)
pub fn exact(doc: &mut utoipa::openapi::OpenApi) {
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ];
        for op in operations.into_iter().flatten() {
            for param in op.parameters.iter_mut().flatten() {
                let RefOr::T(param) = param else { continue };
                if let Some(schema) = param_schema(&param.parameter_in, &param.name) {
                    param.schema = Some(RefOr::T(schema));
                }
            }
        }
    }
}

fn param_schema(place: &ParameterIn, name: &str) -> Option<Schema> {
    let integer = |max: i64| {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(1))
            .maximum(Some(max))
            .build()
    };
    match (place, name) {
        (ParameterIn::Path, _) => {
            let (prefix, _) = crate::extract::PATH_PARAMS
                .iter()
                .find(|(_, param)| *param == name)?;
            Some(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(id_pattern(prefix)))
                    .build(),
            ))
        }
        (ParameterIn::Query, "page") => Some(Schema::Object(integer(MAX_PAGE))),
        (ParameterIn::Query, "page_size") => Some(Schema::Object(integer(MAX_PAGE_SIZE))),
        _ => None,
    }
}
