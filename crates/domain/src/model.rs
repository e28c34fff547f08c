//! The resources as the API shows them. The store builds them, the API
//! serialises them, and webhook payloads carry exactly the same JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::call::{AnsweredBy, CallDirection, CallStatus, RecordingStatus};
use crate::id::{ApiKeyId, CallId, LoadId, OrganizationId, PhoneNumberId, SipTrunkId, UserId};
use crate::role::Role;
use crate::timefmt::rfc3339_ms;

/// A call, with Envoy's 17 fields in Envoy's order, then Switchyard's additions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Call {
    #[schema(value_type = String, pattern = r"^call_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: CallId,
    pub status: CallStatus,
    /// When the call is to be placed (scheduled) or was placed / received.
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub call_time: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub call_direction: Option<CallDirection>,
    /// The customer's number: `to_number` for OUTBOUND, `from_number` for INBOUND.
    pub phone_number: Option<String>,
    pub to_number: Option<String>,
    pub from_number: Option<String>,
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub call_start_time: Option<i64>,
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub call_end_time: Option<i64>,
    pub call_type: Option<String>,
    #[schema(value_type = Option<String>, pattern = r"^load_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub load_id: Option<LoadId>,
    #[schema(value_type = String, pattern = r"^org_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub organization_id: OrganizationId,
    #[schema(value_type = Option<String>, pattern = r"^usr_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub created_by_id: Option<UserId>,
    pub recording_status: Option<RecordingStatus>,
    pub load_number: Option<String>,
    // Switchyard's additions.
    pub failure_reason: Option<String>,
    /// The final SIP response code, when there was one.
    pub sip_status: Option<i64>,
    pub answered_by: Option<AnsweredBy>,
    /// Answered time only, in seconds.
    pub duration_seconds: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
    pub record: bool,
    pub ring_timeout_seconds: i64,
    pub max_duration_seconds: i64,
    #[schema(value_type = Option<Object>)]
    pub agent: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Organization {
    #[schema(value_type = String)]
    pub id: OrganizationId,
    pub name: String,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct User {
    #[schema(value_type = String)]
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Membership {
    #[schema(value_type = String)]
    pub organization_id: OrganizationId,
    pub organization_name: String,
    pub role: Role,
}

/// An API key as listed; the key value itself is never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    #[schema(value_type = String, pattern = r"^key_[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub id: ApiKeyId,
    pub name: String,
    #[schema(value_type = String)]
    pub organization_id: OrganizationId,
    pub is_active: bool,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
    pub description: Option<String>,
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<i64>,
    #[serde(with = "rfc3339_ms::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<i64>,
    /// The first characters of the key, to tell keys apart.
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SipTrunk {
    #[schema(value_type = String)]
    pub id: SipTrunkId,
    #[schema(value_type = String)]
    pub organization_id: OrganizationId,
    pub name: String,
    pub host: String,
    pub port: i64,
    /// `udp` or `tcp`.
    pub transport: String,
    pub username: Option<String>,
    /// Whether a password is set; the password itself is write-only.
    pub has_password: bool,
    pub realm: Option<String>,
    pub from_domain: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    /// Networks (CIDRs) besides the host's own addresses that this trunk's
    /// INVITEs may come from.
    pub inbound_allow: Vec<String>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PhoneNumber {
    #[schema(value_type = String)]
    pub id: PhoneNumberId,
    #[schema(value_type = String)]
    pub organization_id: OrganizationId,
    pub number: String,
    #[schema(value_type = String)]
    pub sip_trunk_id: SipTrunkId,
    pub is_default_outbound: bool,
    #[schema(value_type = Option<Object>)]
    pub inbound_agent: Option<Value>,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: i64,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: i64,
}

/// One turn of a call's transcript.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TranscriptTurn {
    pub id: String,
    /// `agent`, `customer` or `participant`.
    pub role: String,
    pub content: String,
    #[serde(with = "rfc3339_ms")]
    #[schema(value_type = String, format = DateTime)]
    pub timestamp: i64,
    pub interrupted: bool,
    pub transcript_confidence: Option<f64>,
    #[schema(value_type = Vec<Object>)]
    pub tool_calls: Value,
    pub tool_call_id: Option<String>,
}
