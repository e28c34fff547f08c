//! Extractors that fail with the envelope: JSON bodies, IDs in paths,
//! query strings and the authenticated principal.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard_domain::{Id, IdKind};
use switchyard_service::query::Params;
use switchyard_service::{Error, ErrorCode, Principal};

use crate::error::ApiError;

/// A JSON body deserialised into `T`, with the raw value kept alongside.
pub struct ApiJson<T> {
    pub value: T,
    pub raw: Value,
}

fn is_json(req: &Request) -> bool {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError(Error::new(
                ErrorCode::UnsupportedMediaType,
                "Expected a JSON body with Content-Type: application/json.",
            )));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError(Error::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "The request body is larger than {} bytes.",
                        crate::MAX_BODY_BYTES
                    ),
                ))
            } else {
                ApiError(Error::validation(
                    "body",
                    format!("Could not read the request body: {rejection}"),
                ))
            }
        })?;
        let raw: Value = switchyard_service::json::parse(&bytes).map_err(ApiError)?;
        let value = switchyard_service::validate::deserialize::<T>(&raw).map_err(ApiError)?;
        Ok(ApiJson { value, raw })
    }
}

/// Each ID prefix with the name Envoy gives its path parameter (the
/// OpenAPI document gives each the pattern of its IDs from here too).
pub(crate) const PATH_PARAMS: &[(&str, &str)] = &[
    ("call", "call_id"),
    ("load", "load_id"),
    ("key", "api_key_id"),
    ("trk", "sip_trunk_id"),
    ("pn", "phone_number_id"),
    ("ep", "endpoint_id"),
    ("msg", "message_id"),
];

/// The name Envoy gives a resource's path parameter.
fn path_param<K: IdKind>() -> &'static str {
    PATH_PARAMS
        .iter()
        .find(|(prefix, _)| *prefix == K::PREFIX)
        .map_or("id", |(_, name)| name)
}

/// A prefixed (or bare UUID) ID in the path.
pub struct PathId<K: IdKind>(pub Id<K>);

impl<S: Send + Sync, K: IdKind> FromRequestParts<S> for PathId<K> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(Error::validation(path_param::<K>(), e.body_text())))?;
        Id::<K>::parse(raw.trim())
            .map(PathId)
            .map_err(|e| ApiError(Error::bad_id(path_param::<K>(), e)))
    }
}

/// The query string as ordered pairs.
pub struct QueryParams(pub Params);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError(Error::validation("query", e.body_text())))?;
        // No query parameter is free text: every control character is refused.
        for (name, value) in &pairs {
            let refused = |param: &str, text: &str| {
                text.chars().find(|c| c.is_control()).map(|c| {
                    ApiError(Error::validation(
                        param,
                        switchyard_service::json::forbidden_char_message(c),
                    ))
                })
            };
            if let Some(e) = refused("query", name).or_else(|| refused(name, value)) {
                return Err(e);
            }
        }
        Ok(QueryParams(Params(pairs)))
    }
}

/// The caller, authenticated by the middleware.
pub struct Auth(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Auth)
            .ok_or_else(|| ApiError(Error::unauthenticated()))
    }
}

/// The `Idempotency-Key` header, if sent: at most once, and ASCII (a key
/// that could not be read must not be dropped, or a retry makes a second
/// call). The service checks its length.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        const NAME: &str = "Idempotency-Key";
        let mut values = parts.headers.get_all(NAME).iter();
        let Some(value) = values.next() else {
            return Ok(IdempotencyKey(None));
        };
        if values.next().is_some() {
            return Err(ApiError(Error::validation(NAME, "must be sent once")));
        }
        match value.to_str() {
            Ok(key) => Ok(IdempotencyKey(Some(key.to_owned()))),
            Err(_) => Err(ApiError(Error::validation(
                NAME,
                "must be 1 to 255 ASCII characters",
            ))),
        }
    }
}

/// An optional request header as text.
pub fn header<'a>(parts: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    parts.get(name).and_then(|v| v.to_str().ok())
}
