//! SIP trunks and phone numbers (OWNER/ADMIN, or an API key).

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use switchyard_domain::destination::{Cidr, CidrError};
use switchyard_domain::id::{PhoneNumberId, SipTrunkId};
use switchyard_domain::model::{PhoneNumber, SipTrunk};
use switchyard_domain::{Role, SipHost};
use switchyard_store::{NewPhoneNumber, NewSipTrunk, PhoneNumberPatch, SipTrunkPatch};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::{Principal, Services, validate};

/// Tells "absent" (`None`) from "null" (`Some(None)`) in a PATCH body.
pub(crate) fn double_option<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateSipTrunkRequest {
    pub name: String,
    /// Host name or IP address of the trunk's SIP server.
    pub host: String,
    /// Default 5060.
    pub port: Option<i64>,
    /// `udp` (default) or `tcp`.
    pub transport: Option<String>,
    pub username: Option<String>,
    /// Write-only: never returned.
    pub password: Option<String>,
    pub realm: Option<String>,
    pub from_domain: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    /// Networks (CIDRs such as `203.0.113.0/24`, or bare addresses) that
    /// this trunk's INVITEs may come from besides the addresses its `host`
    /// resolves to; for providers that send from many addresses. At most 100.
    #[schema(max_items = 100)]
    pub inbound_allow: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdateSipTrunkRequest {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub transport: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub username: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub password: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub realm: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub from_domain: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<i64>)]
    pub max_concurrent_calls: Option<Option<i64>>,
    /// Replaces the list; `null` or `[]` empties it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>, max_items = 100)]
    pub inbound_allow: Option<Option<Vec<String>>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatePhoneNumberRequest {
    /// E.164.
    pub number: String,
    #[schema(value_type = String)]
    pub sip_trunk_id: String,
    /// The organization's caller ID by default; the first number becomes the default.
    pub is_default_outbound: Option<bool>,
    /// Agent settings for calls to this number.
    #[schema(value_type = Option<Object>)]
    pub inbound_agent: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct UpdatePhoneNumberRequest {
    pub sip_trunk_id: Option<String>,
    pub is_default_outbound: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    pub inbound_agent: Option<Option<Value>>,
}

/// A host of a trunk (`host`, `from_domain`): a host name, an IPv4
/// address or an IPv6 address (with or without brackets), by the grammar
/// of RFC 3261; kept in the form it renders to (IPv6 without brackets),
/// since it is written into SIP URIs.
fn sip_host(param: &str, value: &str) -> Result<String> {
    let h = validate::text(param, value, 253)?;
    match SipHost::parse_field(&h) {
        Ok(SipHost::V6(ip)) => Ok(ip.to_string()),
        Ok(other) => Ok(other.to_string()),
        Err(_) => Err(Error::validation(
            param,
            "must be a host name or an IP address",
        )),
    }
}

fn host(value: &str) -> Result<String> {
    sip_host("host", value)
}

fn from_domain(value: Option<&str>) -> Result<Option<String>> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) => sip_host("from_domain", d).map(Some),
    }
}

/// A digest `username` or `realm`: written between quotes in
/// `Authorization`, so no quote, backslash or control character.
fn digest_text(param: &str, value: Option<&str>) -> Result<Option<String>> {
    let v = secret_text(param, value)?;
    if v.as_deref().is_some_and(|v| v.contains(['"', '\\'])) {
        return Err(Error::validation(
            param,
            "must not contain a double quote or a backslash",
        ));
    }
    Ok(v)
}

fn transport(value: &str) -> Result<String> {
    match value.to_ascii_lowercase().as_str() {
        t @ ("udp" | "tcp") => Ok(t.to_owned()),
        _ => Err(Error::validation("transport", "must be udp or tcp")),
    }
}

fn secret_text(param: &str, value: Option<&str>) -> Result<Option<String>> {
    match value {
        None | Some("") => Ok(None),
        Some(v) if v.len() > 256 || v.chars().any(char::is_control) => Err(Error::validation(
            param,
            "must be at most 256 printable characters",
        )),
        Some(v) => Ok(Some(v.to_owned())),
    }
}

fn max_calls(value: Option<i64>) -> Result<Option<i64>> {
    value
        .map(|n| validate::int_range("max_concurrent_calls", n, 1, 100_000))
        .transpose()
}

/// A well-formed number that cannot be added here: it is in use, by this
/// organization or any other (the answer does not say which).
pub fn number_unavailable() -> Error {
    Error::validation("number", "is not available (it may already be in use)")
}

/// Most networks one trunk may list in `inbound_allow`.
const MAX_INBOUND_ALLOW: usize = 100;

/// `inbound_allow`: each a CIDR or a bare address, kept in canonical form.
fn inbound_allow(value: Option<&[String]>) -> Result<Vec<String>> {
    let items = value.unwrap_or_default();
    if items.len() > MAX_INBOUND_ALLOW {
        return Err(Error::validation(
            "inbound_allow",
            format!("must list at most {MAX_INBOUND_ALLOW} networks"),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        let cidr: Cidr = validate::text("inbound_allow", item, 64)?
            .parse()
            .map_err(|e: CidrError| Error::validation("inbound_allow", e.to_string()))?;
        let text = cidr.to_string();
        if !out.contains(&text) {
            out.push(text);
        }
    }
    Ok(out)
}

impl Services {
    /// Tells the SIP engine, which trusts inbound INVITEs by trunk.
    fn trunks_changed(&self) {
        if let Some(t) = &self.telephony {
            t.trunks_changed();
        }
    }

    pub async fn create_sip_trunk(
        &self,
        who: &Principal,
        req: CreateSipTrunkRequest,
    ) -> Result<SipTrunk> {
        who.require_role(Role::Admin)?;
        let new = NewSipTrunk {
            name: validate::text("name", &req.name, 100)?,
            host: host(&req.host)?,
            port: validate::int_range("port", req.port.unwrap_or(5060), 1, 65_535)?,
            transport: transport(req.transport.as_deref().unwrap_or("udp"))?,
            username: digest_text("username", req.username.as_deref())?,
            password: secret_text("password", req.password.as_deref())?,
            realm: digest_text("realm", req.realm.as_deref())?,
            from_domain: from_domain(req.from_domain.as_deref())?,
            max_concurrent_calls: max_calls(req.max_concurrent_calls)?,
            inbound_allow: inbound_allow(req.inbound_allow.as_deref())?,
        };
        self.store
            .create_sip_trunk(who.organization_id, new)
            .await
            .map_err(|e| Error::from_store(e, "SIP trunk"))
            .inspect(|_| self.trunks_changed())
    }

    pub async fn list_sip_trunks(&self, who: &Principal) -> Result<Vec<SipTrunk>> {
        who.require_role(Role::Admin)?;
        Ok(self.store.list_sip_trunks(who.organization_id).await?)
    }

    pub async fn get_sip_trunk(&self, who: &Principal, id: SipTrunkId) -> Result<SipTrunk> {
        who.require_role(Role::Admin)?;
        self.store
            .get_sip_trunk(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "SIP trunk"))
    }

    pub async fn update_sip_trunk(
        &self,
        who: &Principal,
        id: SipTrunkId,
        req: UpdateSipTrunkRequest,
    ) -> Result<SipTrunk> {
        who.require_role(Role::Admin)?;
        let patch = SipTrunkPatch {
            name: req
                .name
                .as_deref()
                .map(|n| validate::text("name", n, 100))
                .transpose()?,
            host: req.host.as_deref().map(host).transpose()?,
            port: req
                .port
                .map(|p| validate::int_range("port", p, 1, 65_535))
                .transpose()?,
            transport: req.transport.as_deref().map(transport).transpose()?,
            username: req
                .username
                .map(|u| digest_text("username", u.as_deref()))
                .transpose()?,
            password: req
                .password
                .map(|p| secret_text("password", p.as_deref()))
                .transpose()?,
            realm: req
                .realm
                .map(|r| digest_text("realm", r.as_deref()))
                .transpose()?,
            from_domain: req
                .from_domain
                .map(|f| from_domain(f.as_deref()))
                .transpose()?,
            max_concurrent_calls: req.max_concurrent_calls.map(max_calls).transpose()?,
            inbound_allow: req
                .inbound_allow
                .map(|a| inbound_allow(a.as_deref()))
                .transpose()?,
        };
        self.store
            .update_sip_trunk(who.organization_id, id, patch)
            .await
            .map_err(|e| Error::from_store(e, "SIP trunk"))
            .inspect(|_| self.trunks_changed())
    }

    pub async fn delete_sip_trunk(&self, who: &Principal, id: SipTrunkId) -> Result<()> {
        who.require_role(Role::Admin)?;
        self.store
            .delete_sip_trunk(who.organization_id, id)
            .await
            .map_err(|e| match e {
                switchyard_store::StoreError::Conflict(msg) => {
                    Error::new(crate::ErrorCode::InvalidState, msg)
                }
                other => Error::from_store(other, "SIP trunk"),
            })
            .inspect(|_| self.trunks_changed())
    }

    pub async fn create_phone_number(
        &self,
        who: &Principal,
        req: CreatePhoneNumberRequest,
    ) -> Result<PhoneNumber> {
        who.require_role(Role::Admin)?;
        let number = validate::e164("number", &req.number)?;
        let trunk = SipTrunkId::parse(req.sip_trunk_id.trim())
            .map_err(|e| Error::bad_id("sip_trunk_id", e))?;
        self.store
            .get_sip_trunk(who.organization_id, trunk)
            .await
            .map_err(|e| Error::from_store(e, "SIP trunk").with_param("sip_trunk_id"))?;
        if let Some(agent) = &req.inbound_agent {
            validate::metadata("inbound_agent", agent)?;
        }
        let has_numbers = !self
            .store
            .list_phone_numbers(who.organization_id)
            .await?
            .is_empty();
        let new = NewPhoneNumber {
            number,
            sip_trunk_id: trunk,
            is_default_outbound: req.is_default_outbound.unwrap_or(!has_numbers),
            inbound_agent: req.inbound_agent,
        };
        self.store
            .create_phone_number(who.organization_id, new)
            .await
            .map_err(|e| match e {
                // Numbers are unique across organizations (inbound calls are
                // routed by number). Whoever holds it, this organization or
                // another, the answer is the same, so that it never confirms
                // that another tenant owns a number.
                switchyard_store::StoreError::Conflict(_) => number_unavailable(),
                other => Error::from_store(other, "Phone number").with_param("number"),
            })
    }

    pub async fn list_phone_numbers(&self, who: &Principal) -> Result<Vec<PhoneNumber>> {
        who.require_role(Role::Admin)?;
        Ok(self.store.list_phone_numbers(who.organization_id).await?)
    }

    pub async fn get_phone_number(
        &self,
        who: &Principal,
        id: PhoneNumberId,
    ) -> Result<PhoneNumber> {
        who.require_role(Role::Admin)?;
        self.store
            .get_phone_number(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Phone number"))
    }

    pub async fn update_phone_number(
        &self,
        who: &Principal,
        id: PhoneNumberId,
        req: UpdatePhoneNumberRequest,
    ) -> Result<PhoneNumber> {
        who.require_role(Role::Admin)?;
        let trunk = match req.sip_trunk_id.as_deref() {
            Some(t) => {
                let t =
                    SipTrunkId::parse(t.trim()).map_err(|e| Error::bad_id("sip_trunk_id", e))?;
                self.store
                    .get_sip_trunk(who.organization_id, t)
                    .await
                    .map_err(|e| Error::from_store(e, "SIP trunk").with_param("sip_trunk_id"))?;
                Some(t)
            }
            None => None,
        };
        if let Some(Some(agent)) = &req.inbound_agent {
            validate::metadata("inbound_agent", agent)?;
        }
        let patch = PhoneNumberPatch {
            sip_trunk_id: trunk,
            is_default_outbound: req.is_default_outbound,
            inbound_agent: req.inbound_agent,
        };
        self.store
            .update_phone_number(who.organization_id, id, patch)
            .await
            .map_err(|e| Error::from_store(e, "Phone number"))
    }

    pub async fn delete_phone_number(&self, who: &Principal, id: PhoneNumberId) -> Result<()> {
        who.require_role(Role::Admin)?;
        self.store
            .delete_phone_number(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "Phone number"))
    }
}
