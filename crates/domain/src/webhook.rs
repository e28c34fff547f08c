//! Webhooks as the API shows them (envoy-api.md §3): endpoints, delivery
//! attempts and the per-endpoint status of a message.
//!
//! A *message* is one event as delivered: its ID (`msg_…`) is the
//! `webhook-id` header, the same for every endpoint and every retry. Each
//! (message, endpoint) pair is delivered by one or more *attempts* (`atmp_…`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::EventType;
use crate::call::string_enum;
use crate::id::{AttemptId, EndpointId, MessageId, OrganizationId};
use crate::timefmt::rfc3339_ms;

/// The prefix of signing secrets; the rest is the base64 of the HMAC key.
pub const SECRET_PREFIX: &str = "whsec_";

/// How long the secret replaced by a rotation keeps signing beside the new one.
pub const ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;

string_enum! {
    /// ACTIVE: delivered to. PAUSED: the user paused it; messages accumulate
    /// and are delivered on resume. DISABLED: the platform stopped it after
    /// it failed continuously; only a PATCH back to ACTIVE resumes it.
    EndpointStatus {
        Active => "ACTIVE",
        Paused => "PAUSED",
        Disabled => "DISABLED",
    }
}

string_enum! {
    /// PENDING: due at `next_attempt_at`. SENDING: a worker claimed it (compare-and-set
    /// from PENDING) and is posting it. SUCCEEDED: 2xx. FAILED: no 2xx; another attempt
    /// follows. DEAD: no 2xx and it was the last attempt.
    AttemptStatus {
        Pending => "PENDING",
        Sending => "SENDING",
        Succeeded => "SUCCEEDED",
        Failed => "FAILED",
        Dead => "DEAD",
    }
}

impl AttemptStatus {
    /// Whether the attempt is over.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            AttemptStatus::Succeeded | AttemptStatus::Failed | AttemptStatus::Dead
        )
    }
}

/// A webhook endpoint (`ep_…`). The signing secret is not part of it: it is
/// shown once, by create and rotate-secret ([`WebhookEndpointWithSecret`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpoint {
    #[schema(value_type = String, pattern = r"^ep_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: EndpointId,
    #[schema(value_type = String, pattern = r"^org_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub organization_id: OrganizationId,
    pub url: String,
    pub description: Option<String>,
    /// The event types delivered to this endpoint (no wildcard).
    pub event_types: Vec<EventType>,
    /// Sent with every delivery.
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub headers: BTreeMap<String, String>,
    pub status: EndpointStatus,
    /// Why the platform disabled the endpoint (status DISABLED).
    pub disabled_reason: Option<String>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    /// Until when the secret replaced by the last rotation still signs deliveries
    /// (beside the new one); `null` when only one secret signs.
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub previous_secret_expires_at: Option<i64>,
}

/// The endpoint with its signing secret: the answer of create and rotate-secret only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: the HMAC key (base64 after the prefix). Shown only now.
    pub signing_secret: String,
}

/// One delivery attempt of a message to an endpoint (`atmp_…`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookAttempt {
    #[schema(value_type = String, pattern = r"^atmp_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: AttemptId,
    /// The `webhook-id` header of the delivery.
    #[schema(value_type = String, pattern = r"^msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub message_id: MessageId,
    #[schema(value_type = String, pattern = r"^ep_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub endpoint_id: EndpointId,
    /// 1 for the first attempt of the (message, endpoint) pair.
    pub attempt: i64,
    /// The attempt after which the delivery is DEAD (a replay starts a new series).
    pub max_attempts: i64,
    pub status: AttemptStatus,
    /// PENDING/SENDING: when it is (was) due. FAILED: when the next attempt is due.
    /// SUCCEEDED/DEAD: when it was due.
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub next_attempt_at: i64,
    /// The receiver's HTTP status; 0 when there was no response (not sent yet,
    /// connection failure, timeout, refused destination).
    pub response_status_code: i64,
    /// The first bytes of the response body (UTF-8, lossy); empty when none.
    pub response_body_excerpt: String,
    /// Why the attempt failed; empty when it did not.
    pub error_message: String,
    /// From the start of the request to the end of the response body; 0 until sent.
    pub duration_ms: i64,
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<i64>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    /// The body posted: `{id, type, timestamp, data}`.
    #[schema(value_type = Object)]
    pub payload: Value,
}

/// A message as delivered to one endpoint: the answer of replay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WebhookMessageStatus {
    #[schema(value_type = String, pattern = r"^msg_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: MessageId,
    #[schema(value_type = String, pattern = r"^ep_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub endpoint_id: EndpointId,
    /// The status of the latest attempt.
    pub latest_status: AttemptStatus,
    pub attempt_count: i64,
    /// The HTTP status of the latest answered attempt; `null` if none was answered.
    pub last_response_status_code: Option<i64>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[schema(value_type = Object)]
    pub payload: Value,
}
