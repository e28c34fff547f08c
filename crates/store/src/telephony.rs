//! SIP trunks and phone numbers: what an organization can call through.

use sqlx::{AssertSqlSafe, FromRow};
use switchyard_domain::id::{OrganizationId, PhoneNumberId, SipTrunkId};
use switchyard_domain::model::{PhoneNumber, SipTrunk};
use switchyard_domain::timefmt;

use crate::orgs::LOCK_ORGANIZATION;
use crate::sealed::trunk_row;
use crate::{
    Backend, Result, Store, StoreError, conflict_on_unique, on_pool, on_writer, parse_json,
    parse_uuid, write_tx,
};

const TRUNK_COLUMNS: &str = "id, organization_id, name, host, port, transport, username, password, realm, \
                             from_domain, max_concurrent_calls, inbound_allow, created_at, updated_at";
const NUMBER_COLUMNS: &str = "id, organization_id, number, sip_trunk_id, is_default_outbound, inbound_agent, created_at, updated_at";

#[derive(FromRow)]
struct TrunkRow {
    id: String,
    organization_id: String,
    name: String,
    host: String,
    port: i64,
    transport: String,
    username: Option<String>,
    password: Option<String>,
    realm: Option<String>,
    from_domain: Option<String>,
    max_concurrent_calls: Option<i64>,
    inbound_allow: String,
    created_at: i64,
    updated_at: i64,
}

impl TrunkRow {
    /// The trunk and its password as stored (sealed): callers that need the
    /// password itself open it ([`Store::open_trunk_password`]).
    fn into_model(self) -> Result<(SipTrunk, Option<String>)> {
        Ok((
            SipTrunk {
                id: SipTrunkId::from_uuid(parse_uuid(&self.id)?),
                organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
                name: self.name,
                host: self.host,
                port: self.port,
                transport: self.transport,
                username: self.username,
                has_password: self.password.is_some(),
                realm: self.realm,
                from_domain: self.from_domain,
                max_concurrent_calls: self.max_concurrent_calls,
                inbound_allow: serde_json::from_str(&self.inbound_allow)
                    .map_err(|e| StoreError::Corrupt(format!("sip_trunks.inbound_allow: {e}")))?,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            self.password,
        ))
    }
}

#[derive(FromRow)]
struct NumberRow {
    id: String,
    organization_id: String,
    number: String,
    sip_trunk_id: String,
    is_default_outbound: bool,
    inbound_agent: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl NumberRow {
    fn into_model(self) -> Result<PhoneNumber> {
        Ok(PhoneNumber {
            id: PhoneNumberId::from_uuid(parse_uuid(&self.id)?),
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            number: self.number,
            sip_trunk_id: SipTrunkId::from_uuid(parse_uuid(&self.sip_trunk_id)?),
            is_default_outbound: self.is_default_outbound,
            inbound_agent: parse_json(self.inbound_agent.as_deref())?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, Clone)]
pub struct NewSipTrunk {
    pub name: String,
    pub host: String,
    pub port: i64,
    pub transport: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub realm: Option<String>,
    pub from_domain: Option<String>,
    pub max_concurrent_calls: Option<i64>,
    /// CIDRs, as the service checked them.
    pub inbound_allow: Vec<String>,
}

/// A partial update; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct SipTrunkPatch {
    pub name: Option<String>,
    pub host: Option<String>,
    pub port: Option<i64>,
    pub transport: Option<String>,
    pub username: Option<Option<String>>,
    pub password: Option<Option<String>>,
    pub realm: Option<Option<String>>,
    pub from_domain: Option<Option<String>>,
    pub max_concurrent_calls: Option<Option<i64>>,
    pub inbound_allow: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct NewPhoneNumber {
    pub number: String,
    pub sip_trunk_id: SipTrunkId,
    pub is_default_outbound: bool,
    pub inbound_agent: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Default)]
pub struct PhoneNumberPatch {
    pub sip_trunk_id: Option<SipTrunkId>,
    pub is_default_outbound: Option<bool>,
    pub inbound_agent: Option<Option<serde_json::Value>>,
}

/// A list of strings as the JSON text a column holds.
fn json_list(items: &[String]) -> Result<String> {
    serde_json::to_string(items).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// How an outbound call leaves: the caller ID and the trunk behind it.
#[derive(Debug, Clone)]
pub struct TrunkRoute {
    pub from_number: String,
    pub trunk: SipTrunk,
}

impl Store {
    pub async fn create_sip_trunk(
        &self,
        org: OrganizationId,
        new: NewSipTrunk,
    ) -> Result<SipTrunk> {
        let now = timefmt::now_ms();
        let id = SipTrunkId::new();
        let password =
            self.seal_opt_secret(&trunk_row(&id.uuid().to_string()), new.password.as_deref())?;
        let sql = format!(
            "INSERT INTO sip_trunks ({TRUNK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let inbound_allow = json_list(&new.inbound_allow)?;
        on_writer!(self, |pool| {
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id.uuid().to_string())
                .bind(org.uuid().to_string())
                .bind(&new.name)
                .bind(&new.host)
                .bind(new.port)
                .bind(&new.transport)
                .bind(&new.username)
                .bind(&password)
                .bind(&new.realm)
                .bind(&new.from_domain)
                .bind(new.max_concurrent_calls)
                .bind(&inbound_allow)
                .bind(now)
                .bind(now)
                .execute(pool)
                .await
                .map_err(|e| conflict_on_unique(e, "a SIP trunk with this name"))?;
        });
        self.get_sip_trunk(org, id).await
    }

    pub async fn get_sip_trunk(&self, org: OrganizationId, id: SipTrunkId) -> Result<SipTrunk> {
        Ok(self.get_sip_trunk_with_secret(org, id).await?.0)
    }

    /// The trunk and its password, for the SIP engine's digest auth.
    pub async fn get_sip_trunk_with_secret(
        &self,
        org: OrganizationId,
        id: SipTrunkId,
    ) -> Result<(SipTrunk, Option<String>)> {
        let (trunk, stored) = self.org_trunk_row(org, id).await?.into_model()?;
        let password = self.open_trunk_password(&trunk, stored.as_deref())?;
        Ok((trunk, password))
    }

    async fn org_trunk_row(&self, org: OrganizationId, id: SipTrunkId) -> Result<TrunkRow> {
        let sql = format!(
            "SELECT {TRUNK_COLUMNS} FROM sip_trunks WHERE organization_id = $1 AND id = $2"
        );
        let row: Option<TrunkRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)
    }

    /// A trunk's password, opened from what the row holds.
    fn open_trunk_password(
        &self,
        trunk: &SipTrunk,
        stored: Option<&str>,
    ) -> Result<Option<String>> {
        self.open_opt_secret(&trunk_row(&trunk.id.uuid().to_string()), stored)
    }

    pub async fn find_sip_trunk_by_name(
        &self,
        org: OrganizationId,
        name: &str,
    ) -> Result<Option<SipTrunk>> {
        let sql = format!(
            "SELECT {TRUNK_COLUMNS} FROM sip_trunks WHERE organization_id = $1 AND name = $2"
        );
        let row: Option<TrunkRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        row.map(|r| r.into_model().map(|(t, _)| t)).transpose()
    }

    pub async fn list_sip_trunks(&self, org: OrganizationId) -> Result<Vec<SipTrunk>> {
        let sql = format!(
            "SELECT {TRUNK_COLUMNS} FROM sip_trunks WHERE organization_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<TrunkRow> =
            on_pool!(self, |pool| sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .fetch_all(pool)
                .await?);
        rows.into_iter()
            .map(|r| r.into_model().map(|(t, _)| t))
            .collect()
    }

    /// Every organization's trunks, for the SIP engine's inbound trust.
    pub async fn sip_trunks_for_engine(&self) -> Result<Vec<SipTrunk>> {
        let sql = format!("SELECT {TRUNK_COLUMNS} FROM sip_trunks ORDER BY created_at, id");
        let rows: Vec<TrunkRow> =
            on_pool!(self, |pool| sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .fetch_all(pool)
                .await?);
        rows.into_iter()
            .map(|r| r.into_model().map(|(t, _)| t))
            .collect()
    }

    pub async fn update_sip_trunk(
        &self,
        org: OrganizationId,
        id: SipTrunkId,
        patch: SipTrunkPatch,
    ) -> Result<SipTrunk> {
        // The stored (sealed) password stays as it is unless the patch sets one.
        let (current, stored_password) = self.org_trunk_row(org, id).await?.into_model()?;
        let password = match patch.password {
            Some(new) => {
                self.seal_opt_secret(&trunk_row(&id.uuid().to_string()), new.as_deref())?
            }
            None => stored_password,
        };
        let sql = "UPDATE sip_trunks SET name = $1, host = $2, port = $3, transport = $4, username = $5, password = $6, \
                   realm = $7, from_domain = $8, max_concurrent_calls = $9, inbound_allow = $10, updated_at = $11 \
                   WHERE organization_id = $12 AND id = $13";
        let inbound_allow = json_list(&patch.inbound_allow.unwrap_or(current.inbound_allow))?;
        on_writer!(self, |pool| {
            sqlx::query(AssertSqlSafe(sql))
                .bind(patch.name.unwrap_or(current.name))
                .bind(patch.host.unwrap_or(current.host))
                .bind(patch.port.unwrap_or(current.port))
                .bind(patch.transport.unwrap_or(current.transport))
                .bind(patch.username.unwrap_or(current.username))
                .bind(password)
                .bind(patch.realm.unwrap_or(current.realm))
                .bind(patch.from_domain.unwrap_or(current.from_domain))
                .bind(
                    patch
                        .max_concurrent_calls
                        .unwrap_or(current.max_concurrent_calls),
                )
                .bind(&inbound_allow)
                .bind(timefmt::now_ms())
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .execute(pool)
                .await
                .map_err(|e| conflict_on_unique(e, "a SIP trunk with this name"))?;
        });
        self.get_sip_trunk(org, id).await
    }

    /// Deletes a trunk that no phone number uses.
    pub async fn delete_sip_trunk(&self, org: OrganizationId, id: SipTrunkId) -> Result<()> {
        let id_text = id.uuid().to_string();
        let org_text = org.uuid().to_string();
        write_tx!(self, |tx| {
            // Existence first, scoped to the organization: another's trunk is "not found".
            let exists: Option<String> = sqlx::query_scalar(
                "SELECT id FROM sip_trunks WHERE organization_id = $1 AND id = $2",
            )
            .bind(&org_text)
            .bind(&id_text)
            .fetch_optional(&mut *tx)
            .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            let in_use: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM phone_numbers WHERE sip_trunk_id = $1")
                    .bind(&id_text)
                    .fetch_one(&mut *tx)
                    .await?;
            if in_use > 0 {
                return Err(StoreError::Conflict(
                    "phone numbers still use this SIP trunk".into(),
                ));
            }
            sqlx::query("DELETE FROM sip_trunks WHERE organization_id = $1 AND id = $2")
                .bind(&org_text)
                .bind(&id_text)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Adds a number; making it the default outbound clears the old default.
    pub async fn create_phone_number(
        &self,
        org: OrganizationId,
        new: NewPhoneNumber,
    ) -> Result<PhoneNumber> {
        let now = timefmt::now_ms();
        let id = PhoneNumberId::new();
        let org_text = org.uuid().to_string();
        let sql = format!(
            "INSERT INTO phone_numbers ({NUMBER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        );
        let postgres = self.backend() == Backend::Postgres;
        write_tx!(self, |tx| {
            // Without the lock, two concurrent transactions each clear the
            // defaults they can see and both insert a default.
            if postgres && new.is_default_outbound {
                sqlx::query(LOCK_ORGANIZATION)
                    .bind(&org_text)
                    .execute(&mut *tx)
                    .await?;
            }
            if new.is_default_outbound {
                sqlx::query(
                    "UPDATE phone_numbers SET is_default_outbound = $1 WHERE organization_id = $2",
                )
                .bind(false)
                .bind(&org_text)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(AssertSqlSafe(sql.as_str()))
                .bind(id.uuid().to_string())
                .bind(&org_text)
                .bind(&new.number)
                .bind(new.sip_trunk_id.uuid().to_string())
                .bind(new.is_default_outbound)
                .bind(new.inbound_agent.as_ref().map(|a| a.to_string()))
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_on_unique(e, "this phone number"))?;
            tx.commit().await?;
        });
        self.get_phone_number(org, id).await
    }

    pub async fn get_phone_number(
        &self,
        org: OrganizationId,
        id: PhoneNumberId,
    ) -> Result<PhoneNumber> {
        let sql = format!(
            "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE organization_id = $1 AND id = $2"
        );
        let row: Option<NumberRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    pub async fn list_phone_numbers(&self, org: OrganizationId) -> Result<Vec<PhoneNumber>> {
        let sql = format!(
            "SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE organization_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<NumberRow> =
            on_pool!(self, |pool| sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .fetch_all(pool)
                .await?);
        rows.into_iter().map(NumberRow::into_model).collect()
    }

    pub async fn update_phone_number(
        &self,
        org: OrganizationId,
        id: PhoneNumberId,
        patch: PhoneNumberPatch,
    ) -> Result<PhoneNumber> {
        let current = self.get_phone_number(org, id).await?;
        let org_text = org.uuid().to_string();
        let is_default = patch
            .is_default_outbound
            .unwrap_or(current.is_default_outbound);
        let inbound_agent = patch.inbound_agent.unwrap_or(current.inbound_agent);
        let postgres = self.backend() == Backend::Postgres;
        let id_text = id.uuid().to_string();
        write_tx!(self, |tx| {
            // `current` may be stale: clear the others whenever this one is
            // to be the default, not only when it was not the default before.
            if is_default {
                if postgres {
                    sqlx::query(LOCK_ORGANIZATION)
                        .bind(&org_text)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query(
                    "UPDATE phone_numbers SET is_default_outbound = $1 WHERE organization_id = $2 AND id <> $3",
                )
                .bind(false)
                .bind(&org_text)
                .bind(&id_text)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query(
                "UPDATE phone_numbers SET sip_trunk_id = $1, is_default_outbound = $2, inbound_agent = $3, updated_at = $4 \
                 WHERE organization_id = $5 AND id = $6",
            )
            .bind(patch.sip_trunk_id.unwrap_or(current.sip_trunk_id).uuid().to_string())
            .bind(is_default)
            .bind(inbound_agent.as_ref().map(|a| a.to_string()))
            .bind(timefmt::now_ms())
            .bind(&org_text)
            .bind(&id_text)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        self.get_phone_number(org, id).await
    }

    pub async fn delete_phone_number(&self, org: OrganizationId, id: PhoneNumberId) -> Result<()> {
        let done = on_writer!(self, |pool| {
            sqlx::query("DELETE FROM phone_numbers WHERE organization_id = $1 AND id = $2")
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .execute(pool)
                .await?
                .rows_affected()
        });
        if done == 0 {
            Err(StoreError::NotFound)
        } else {
            Ok(())
        }
    }

    /// The route for an outbound call: the given caller ID if the
    /// organization owns it, else the default outbound number.
    /// `Ok(None)` means the organization has nothing to call through.
    pub async fn outbound_route(
        &self,
        org: OrganizationId,
        from_number: Option<&str>,
    ) -> Result<Option<TrunkRoute>> {
        #[derive(FromRow)]
        struct Row {
            number: String,
            #[sqlx(flatten)]
            trunk: TrunkRow,
        }
        let columns = TRUNK_COLUMNS
            .split(", ")
            .map(|c| format!("t.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let row: Option<Row> = match from_number {
            Some(number) => {
                let sql = format!(
                    "SELECT p.number, {columns} FROM phone_numbers p JOIN sip_trunks t ON t.id = p.sip_trunk_id \
                     WHERE p.organization_id = $1 AND p.number = $2"
                );
                on_pool!(self, |pool| {
                    sqlx::query_as(AssertSqlSafe(sql.as_str()))
                        .bind(org.uuid().to_string())
                        .bind(number)
                        .fetch_optional(pool)
                        .await?
                })
            }
            None => {
                let sql = format!(
                    "SELECT p.number, {columns} FROM phone_numbers p JOIN sip_trunks t ON t.id = p.sip_trunk_id \
                     WHERE p.organization_id = $1 ORDER BY p.is_default_outbound DESC, p.created_at LIMIT 1"
                );
                on_pool!(self, |pool| sqlx::query_as(AssertSqlSafe(sql.as_str()))
                    .bind(org.uuid().to_string())
                    .fetch_optional(pool)
                    .await?)
            }
        };
        row.map(|r| {
            Ok(TrunkRoute {
                from_number: r.number,
                trunk: r.trunk.into_model()?.0,
            })
        })
        .transpose()
    }
}

/// Where an inbound INVITE lands: the number dialled, its organization and
/// the trunk it belongs to.
#[derive(Debug, Clone)]
pub struct InboundRoute {
    pub number: PhoneNumber,
    pub trunk: SipTrunk,
}

impl Store {
    /// The phone number `number` (E.164) and its trunk, in any organization
    /// (numbers are unique across organizations).
    pub async fn inbound_route(&self, number: &str) -> Result<Option<InboundRoute>> {
        let number_sql = format!("SELECT {NUMBER_COLUMNS} FROM phone_numbers WHERE number = $1");
        let found: Option<NumberRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(number_sql.as_str()))
                .bind(number)
                .fetch_optional(pool)
                .await?
        });
        let Some(row) = found else {
            return Ok(None);
        };
        let number = row.into_model()?;
        let (trunk, _) = self.trunk_row(number.sip_trunk_id).await?.into_model()?;
        Ok(Some(InboundRoute { number, trunk }))
    }

    /// A trunk with its password, by id alone: for the engine, which acts
    /// for every organization.
    pub async fn sip_trunk_for_engine(&self, id: SipTrunkId) -> Result<(SipTrunk, Option<String>)> {
        let (trunk, stored) = self.trunk_row(id).await?.into_model()?;
        let password = self.open_trunk_password(&trunk, stored.as_deref())?;
        Ok((trunk, password))
    }

    async fn trunk_row(&self, id: SipTrunkId) -> Result<TrunkRow> {
        let sql = format!("SELECT {TRUNK_COLUMNS} FROM sip_trunks WHERE id = $1");
        let row: Option<TrunkRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)
    }
}
