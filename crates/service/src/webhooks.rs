//! Webhook endpoints, their delivery log, replays and the event catalog
//! (OWNER/ADMIN or an API key; the catalog for any member). Delivery itself
//! is the `switchyard-webhooks` worker's.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use switchyard_domain::destination::{self, DestinationHost};
use switchyard_domain::id::{EndpointId, MessageId};
use switchyard_domain::model::Call;
use switchyard_domain::webhook::{
    AttemptStatus, EndpointStatus, ROTATION_GRACE_MS, SECRET_PREFIX, WebhookAttempt,
    WebhookEndpoint, WebhookEndpointWithSecret, WebhookMessageStatus,
};
use switchyard_domain::{EventType, Role, timefmt};
use switchyard_store::{NewWebhookEndpoint, Page, WebhookEndpointPatch};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use crate::error::{Error, Result};
use crate::pagination::{PageRequest, Paginated};
use crate::query::Params;
use crate::trunks::double_option;
use crate::{Principal, Services};

/// Attempts in one delivery series (the first and its retries); the
/// delivery worker's schedule has this many.
pub const SERIES_ATTEMPTS: i64 = 11;

/// Header names an endpoint may not set: the signature's, and those that
/// frame the request.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "expect",
];
const MAX_HEADERS: usize = 32;
const MAX_HEADER_NAME: usize = 256;
const MAX_HEADER_VALUE: usize = 4096;
const MAX_DESCRIPTION: usize = 1000;

/// How long a destination's name may take to resolve when it is saved.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhookEndpointRequest {
    /// An http(s) URL, 1–2083 characters. Private, loopback and link-local
    /// destinations are refused unless the server's allow-list permits them.
    pub url: String,
    /// The event types to deliver, at least one (no wildcard); see
    /// `GET /webhooks/event-types`.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// Sent with every delivery. Not allowed: `webhook-*`, `content-type`,
    /// `host` and the other headers that frame the request.
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateWebhookEndpointRequest {
    pub url: Option<String>,
    /// If given, at least one.
    pub event_types: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Replaces the headers; `null` clears them.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub headers: Option<Option<BTreeMap<String, String>>>,
    /// ACTIVE or PAUSED (DISABLED is set by the platform only). PAUSED
    /// keeps messages for the endpoint; they are delivered on ACTIVE.
    pub status: Option<String>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ReplayMessageRequest {
    /// The endpoint to deliver the message to again (`ep_…`).
    #[schema(value_type = String)]
    pub endpoint_id: String,
}

/// One entry of the event catalog.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct WebhookEventType {
    pub name: String,
    pub description: String,
    /// A JSON Schema (2020-12) of the event's `data`.
    #[schema(value_type = Object)]
    pub payload_schema: Value,
}

/// A fresh `whsec_` secret: 32 random bytes, base64.
pub fn generate_secret() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    format!("{SECRET_PREFIX}{}", data_encoding::BASE64.encode(&key))
}

fn event_types(param: &str, names: &[String]) -> Result<Vec<EventType>> {
    if names.is_empty() {
        return Err(Error::validation(
            param,
            "must list at least one event type (see GET /webhooks/event-types)",
        ));
    }
    let mut seen = BTreeSet::new();
    let mut types = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let name = name.trim();
        let parsed = EventType::parse(name).ok_or_else(|| {
            let hint = if name.contains('*') {
                "wildcards are not supported: list each event type"
            } else {
                "is not an event type"
            };
            Error::validation(
                format!("{param}[{i}]"),
                format!("{name:?} {hint}; one of: {}", EventType::allowed()),
            )
        })?;
        if seen.insert(parsed.as_str()) {
            types.push(parsed);
        }
    }
    Ok(types)
}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn headers(map: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if map.len() > MAX_HEADERS {
        return Err(Error::validation(
            "headers",
            format!("at most {MAX_HEADERS} headers"),
        ));
    }
    let mut lower_names = BTreeSet::new();
    let mut out = BTreeMap::new();
    for (name, value) in map {
        let param = format!("headers.{name}");
        let lower = name.to_ascii_lowercase();
        if name.is_empty() || name.len() > MAX_HEADER_NAME || !name.bytes().all(is_token_char) {
            return Err(Error::validation(param, "is not a valid HTTP header name"));
        }
        if lower.starts_with("webhook-")
            || lower.starts_with("proxy-")
            || RESERVED_HEADERS.contains(&lower.as_str())
        {
            return Err(Error::validation(
                param,
                "is reserved: webhook-*, proxy-* and the headers that frame the request are set by Switchyard",
            ));
        }
        if !lower_names.insert(lower) {
            return Err(Error::validation(
                param,
                "is given twice (header names ignore case)",
            ));
        }
        if value.len() > MAX_HEADER_VALUE
            || !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
        {
            return Err(Error::validation(
                param,
                format!("must be at most {MAX_HEADER_VALUE} printable ASCII characters"),
            ));
        }
        out.insert(name.clone(), value.trim().to_owned());
    }
    Ok(out)
}

fn description(value: Option<&str>) -> Result<Option<String>> {
    crate::validate::opt_free_text("description", value, MAX_DESCRIPTION)
}

fn user_status(value: &str) -> Result<EndpointStatus> {
    match EndpointStatus::parse(value.trim()) {
        Some(s @ (EndpointStatus::Active | EndpointStatus::Paused)) => Ok(s),
        Some(EndpointStatus::Disabled) => Err(Error::validation(
            "status",
            "DISABLED is set by the platform only; use PAUSED to stop deliveries",
        )),
        None => Err(Error::validation("status", "must be ACTIVE or PAUSED")),
    }
}

/// The JSON Schema of `T`, self-contained: the schemas it refers to are
/// copied under `$defs` and the references pointed there.
fn json_schema<T: ToSchema>() -> Value {
    fn point_refs_at_defs(value: &mut Value) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get_mut("$ref")
                    && let Some(name) = r.strip_prefix("#/components/schemas/")
                {
                    *r = format!("#/$defs/{name}");
                }
                map.values_mut().for_each(point_refs_at_defs);
            }
            Value::Array(items) => items.iter_mut().for_each(point_refs_at_defs),
            _ => {}
        }
    }
    let mut referenced: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut referenced);
    let mut schema = serde_json::to_value(T::schema()).unwrap_or_else(|_| json!({}));
    let mut defs = Map::new();
    for (name, s) in referenced {
        defs.insert(name, serde_json::to_value(s).unwrap_or_else(|_| json!({})));
    }
    if let Value::Object(map) = &mut schema {
        let mut head = Map::new();
        head.insert(
            "$schema".into(),
            json!("https://json-schema.org/draft/2020-12/schema"),
        );
        head.insert("title".into(), json!(T::name()));
        head.extend(std::mem::take(map));
        if !defs.is_empty() {
            head.insert("$defs".into(), Value::Object(defs));
        }
        *map = head;
    }
    point_refs_at_defs(&mut schema);
    schema
}

/// The `data` of the participant events: the participant as
/// `POST /calls/{call_id}/join` answers it, without its token and URL.
fn participant_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Participant",
        "type": "object",
        "required": ["participant_id", "call_id"],
        "properties": {
            "participant_id": {"type": "string", "pattern": "^prt_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
            "call_id": {"type": "string", "pattern": "^call_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
            "mode": {"type": "string", "enum": ["listen", "barge", "takeover"]},
            "via": {"type": "string", "enum": ["browser", "phone"]},
            "display_name": {"type": ["string", "null"]},
            "status": {"type": "string"}
        }
    })
}

/// Every event type, with what its `data` is.
pub fn webhook_event_types() -> Vec<WebhookEventType> {
    let call = json_schema::<Call>();
    EventType::ALL
        .iter()
        .map(|t| WebhookEventType {
            name: t.as_str().to_owned(),
            description: t.description().to_owned(),
            payload_schema: if t.data_is_call() {
                call.clone()
            } else {
                participant_schema()
            },
        })
        .collect()
}

impl Services {
    /// Checks a destination URL against the policy, resolving its name:
    /// every address must be permitted. Returns the URL as stored.
    async fn checked_destination(&self, url: &str) -> Result<String> {
        let parsed = destination::parse_url(url).map_err(|why| Error::validation("url", why))?;
        let refused = |why: String| Error::validation("url", format!("destination refused: {why}"));
        match &parsed.host {
            DestinationHost::Ip(ip) => self.webhook_destinations.check(*ip).map_err(refused)?,
            DestinationHost::Name(name) => {
                let lookup = tokio::net::lookup_host((name.as_str(), parsed.port));
                let addrs: Vec<_> = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => addrs.collect(),
                    _ => Vec::new(),
                };
                if addrs.is_empty() {
                    return Err(Error::validation(
                        "url",
                        format!("the host name {name} does not resolve"),
                    ));
                }
                for addr in addrs {
                    self.webhook_destinations
                        .check(addr.ip())
                        .map_err(|why| refused(format!("{name} resolves to {why}")))?;
                }
            }
        }
        Ok(parsed.url)
    }

    pub async fn create_webhook_endpoint(
        &self,
        who: &Principal,
        req: CreateWebhookEndpointRequest,
    ) -> Result<WebhookEndpointWithSecret> {
        who.require_role(Role::Admin)?;
        let event_types = event_types("event_types", &req.event_types)?;
        let headers = headers(&req.headers.unwrap_or_default())?;
        let description = description(req.description.as_deref())?;
        let url = self.checked_destination(&req.url).await?;
        let signing_secret = generate_secret();
        let endpoint = self
            .store
            .create_webhook_endpoint(
                who.organization_id,
                NewWebhookEndpoint {
                    url,
                    description,
                    event_types,
                    headers,
                    signing_secret: signing_secret.clone(),
                },
            )
            .await?;
        Ok(WebhookEndpointWithSecret {
            endpoint,
            signing_secret,
        })
    }

    pub async fn list_webhook_endpoints(
        &self,
        who: &Principal,
        params: &Params,
    ) -> Result<Paginated<WebhookEndpoint>> {
        who.require_role(Role::Admin)?;
        let page = PageRequest::from_params(params)?;
        let (data, total) = self
            .store
            .list_webhook_endpoints(
                who.organization_id,
                Page {
                    limit: page.page_size,
                    offset: page.offset(),
                },
            )
            .await?;
        Ok(Paginated {
            data,
            pagination: page.page_of(total),
        })
    }

    pub async fn get_webhook_endpoint(
        &self,
        who: &Principal,
        id: EndpointId,
    ) -> Result<WebhookEndpoint> {
        who.require_role(Role::Admin)?;
        self.store
            .get_webhook_endpoint(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Webhook endpoint"))
    }

    pub async fn update_webhook_endpoint(
        &self,
        who: &Principal,
        id: EndpointId,
        req: UpdateWebhookEndpointRequest,
    ) -> Result<WebhookEndpoint> {
        who.require_role(Role::Admin)?;
        // Another organization's endpoint is not found, before anything is checked.
        self.get_webhook_endpoint(who, id).await?;
        let event_types = req
            .event_types
            .as_deref()
            .map(|t| event_types("event_types", t))
            .transpose()?;
        let headers = req
            .headers
            .map(|h| headers(&h.unwrap_or_default()))
            .transpose()?;
        let description = req
            .description
            .map(|d| description(d.as_deref()))
            .transpose()?;
        let status = req.status.as_deref().map(user_status).transpose()?;
        let url = match req.url.as_deref() {
            Some(u) => Some(self.checked_destination(u).await?),
            None => None,
        };
        self.store
            .update_webhook_endpoint(
                who.organization_id,
                id,
                WebhookEndpointPatch {
                    url,
                    description,
                    event_types,
                    headers,
                    status,
                },
            )
            .await
            .map_err(|e| Error::from_store(e, "Webhook endpoint"))
    }

    pub async fn delete_webhook_endpoint(&self, who: &Principal, id: EndpointId) -> Result<()> {
        who.require_role(Role::Admin)?;
        self.store
            .delete_webhook_endpoint(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Webhook endpoint"))
    }

    /// A new secret signs from now on; the one it replaces keeps signing
    /// beside it for 24 hours (one that was already in its grace period
    /// stops now).
    pub async fn rotate_webhook_secret(
        &self,
        who: &Principal,
        id: EndpointId,
    ) -> Result<WebhookEndpointWithSecret> {
        who.require_role(Role::Admin)?;
        let signing_secret = generate_secret();
        let endpoint = self
            .store
            .rotate_webhook_secret(
                who.organization_id,
                id,
                &signing_secret,
                timefmt::now_ms(),
                ROTATION_GRACE_MS,
            )
            .await
            .map_err(|e| Error::from_store(e, "Webhook endpoint"))?;
        Ok(WebhookEndpointWithSecret {
            endpoint,
            signing_secret,
        })
    }

    /// The endpoint's attempts, newest first; `status` filters (one or
    /// several, comma-separated).
    pub async fn list_endpoint_attempts(
        &self,
        who: &Principal,
        id: EndpointId,
        params: &Params,
    ) -> Result<Paginated<WebhookAttempt>> {
        who.require_role(Role::Admin)?;
        let page = PageRequest::from_params(params)?;
        let statuses = params
            .list("status")
            .iter()
            .map(|s| {
                AttemptStatus::parse(s).ok_or_else(|| {
                    Error::validation(
                        "status",
                        format!("{s:?} is not one of {}", AttemptStatus::allowed()),
                    )
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.get_webhook_endpoint(who, id).await?;
        let (data, total) = self
            .store
            .list_endpoint_attempts(
                who.organization_id,
                id,
                &statuses,
                Page {
                    limit: page.page_size,
                    offset: page.offset(),
                },
            )
            .await?;
        Ok(Paginated {
            data,
            pagination: page.page_of(total),
        })
    }

    pub async fn list_message_attempts(
        &self,
        who: &Principal,
        id: MessageId,
    ) -> Result<Vec<WebhookAttempt>> {
        who.require_role(Role::Admin)?;
        self.store
            .list_message_attempts(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Webhook message"))
    }

    /// Sends the message to the endpoint again, as a fresh attempt due now
    /// (with the same `webhook-id`); if one is already pending, that one stands.
    pub async fn replay_webhook_message(
        &self,
        who: &Principal,
        id: MessageId,
        req: ReplayMessageRequest,
    ) -> Result<WebhookMessageStatus> {
        who.require_role(Role::Admin)?;
        let endpoint = EndpointId::parse(req.endpoint_id.trim())
            .map_err(|e| Error::bad_id("endpoint_id", e))?;
        self.store
            .get_webhook_endpoint(who.organization_id, endpoint)
            .await
            .map_err(|e| Error::from_store(e, "Webhook endpoint").with_param("endpoint_id"))?;
        self.store
            .replay_webhook_message(
                who.organization_id,
                id,
                endpoint,
                timefmt::now_ms(),
                SERIES_ATTEMPTS,
            )
            .await
            .map_err(|e| Error::from_store(e, "Webhook message"))
    }

    /// The event catalog (any member).
    pub fn webhook_event_types(&self, _who: &Principal) -> Vec<WebhookEventType> {
        webhook_event_types()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_types_are_explicit() {
        let ok = event_types(
            "event_types",
            &[
                "call.created".into(),
                "CALL.ENDED".into(),
                "call.created".into(),
            ],
        )
        .unwrap();
        assert_eq!(ok, vec![EventType::CallCreated, EventType::CallEnded]);
        let e = event_types("event_types", &["call.created".into(), "call.*".into()]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("event_types[1]"));
        assert!(e.message.contains("wildcard"), "{}", e.message);
        let e = event_types("event_types", &["shipment.created".into()]).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("event_types[0]"));
        assert_eq!(
            event_types("event_types", &[])
                .unwrap_err()
                .param
                .as_deref(),
            Some("event_types")
        );
    }

    #[test]
    fn reserved_and_malformed_headers_are_refused() {
        let one = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
        assert!(headers(&one("X-Tenant", "acme")).is_ok());
        assert!(headers(&one("Authorization", "Bearer abc")).is_ok());
        for reserved in [
            "webhook-id",
            "Webhook-Signature",
            "Content-Type",
            "host",
            "Transfer-Encoding",
            "Proxy-Authorization",
        ] {
            let e = headers(&one(reserved, "x")).unwrap_err();
            assert_eq!(e.param, Some(format!("headers.{reserved}")));
        }
        assert!(headers(&one("bad name", "x")).is_err());
        assert!(headers(&one("X-Ok", "line\r\nX-Injected: 1")).is_err());
        let twice = BTreeMap::from([
            ("X-A".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ]);
        assert!(headers(&twice).is_err());
    }

    #[test]
    fn secrets_are_whsec_and_32_bytes() {
        let s = generate_secret();
        let key = data_encoding::BASE64
            .decode(s.strip_prefix("whsec_").unwrap().as_bytes())
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_ne!(generate_secret(), s);
    }

    #[test]
    fn the_catalog_has_every_type_with_a_self_contained_schema() {
        let types = webhook_event_types();
        assert_eq!(types.len(), 8);
        let call = &types[0].payload_schema;
        assert_eq!(types[0].name, "call.created");
        assert_eq!(call["type"], "object");
        assert!(call["properties"]["status"].is_object());
        let text = call.to_string();
        assert!(!text.contains("#/components/"), "{text}");
        if text.contains("#/$defs/") {
            assert!(call["$defs"].is_object());
        }
    }
}
