//! API keys. Only hashes of the key are stored: an HMAC for lookup and an
//! argon2 hash to verify against.

use sqlx::{AssertSqlSafe, FromRow};
use switchyard_domain::id::{ApiKeyId, OrganizationId, UserId};
use switchyard_domain::model::ApiKey;
use switchyard_domain::timefmt;

use crate::{Result, Store, StoreError, conflict_on_unique, on_pool, on_writer, parse_uuid};

const COLUMNS: &str = "id, organization_id, name, description, secret_hash, key_prefix, is_active, \
                       expires_at, last_used_at, created_at, updated_at";

#[derive(FromRow)]
struct KeyRow {
    id: String,
    organization_id: String,
    name: String,
    description: Option<String>,
    secret_hash: String,
    key_prefix: String,
    is_active: bool,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl KeyRow {
    fn into_auth(self) -> Result<ApiKeyAuthRow> {
        Ok(ApiKeyAuthRow {
            secret_hash: self.secret_hash,
            key: ApiKey {
                id: ApiKeyId::from_uuid(parse_uuid(&self.id)?),
                name: self.name,
                organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
                is_active: self.is_active,
                created_at: self.created_at,
                updated_at: self.updated_at,
                description: self.description,
                expires_at: self.expires_at,
                last_used_at: self.last_used_at,
                key_prefix: self.key_prefix,
            },
        })
    }
}

/// A key with the hash to verify the presented secret against.
#[derive(Debug, Clone)]
pub struct ApiKeyAuthRow {
    pub key: ApiKey,
    pub secret_hash: String,
}

pub struct NewApiKey {
    pub organization_id: OrganizationId,
    pub name: String,
    pub description: Option<String>,
    pub expires_at: Option<i64>,
    pub lookup_hash: String,
    pub secret_hash: String,
    pub key_prefix: String,
    pub created_by_id: Option<UserId>,
}

impl Store {
    pub async fn insert_api_key(&self, new: NewApiKey) -> Result<ApiKey> {
        let now = timefmt::now_ms();
        let id = ApiKeyId::new();
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO api_keys (id, organization_id, name, description, lookup_hash, secret_hash, key_prefix, \
                 is_active, expires_at, last_used_at, created_by_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, $11, $12)",
            )
            .bind(id.uuid().to_string())
            .bind(new.organization_id.uuid().to_string())
            .bind(&new.name)
            .bind(&new.description)
            .bind(&new.lookup_hash)
            .bind(&new.secret_hash)
            .bind(&new.key_prefix)
            .bind(true)
            .bind(new.expires_at)
            .bind(new.created_by_id.map(|u| u.uuid().to_string()))
            .bind(now)
            .bind(now)
            .execute(pool)
            .await
            .map_err(|e| conflict_on_unique(e, "an API key with this value"))?;
        });
        Ok(ApiKey {
            id,
            name: new.name,
            organization_id: new.organization_id,
            is_active: true,
            created_at: now,
            updated_at: now,
            description: new.description,
            expires_at: new.expires_at,
            last_used_at: None,
            key_prefix: new.key_prefix,
        })
    }

    pub async fn list_api_keys(&self, org: OrganizationId) -> Result<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE organization_id = $1 ORDER BY created_at DESC, id"
        );
        let rows: Vec<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(|r| Ok(r.into_auth()?.key)).collect()
    }

    pub async fn get_api_key(&self, org: OrganizationId, id: ApiKeyId) -> Result<ApiKey> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE organization_id = $1 AND id = $2");
        let row: Option<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.ok_or(StoreError::NotFound)?.into_auth()?.key)
    }

    /// Soft delete: the key stays listed, inactive, and stops authenticating.
    pub async fn deactivate_api_key(&self, org: OrganizationId, id: ApiKeyId) -> Result<()> {
        let done = on_writer!(self, |pool| {
            sqlx::query("UPDATE api_keys SET is_active = $1, updated_at = $2 WHERE organization_id = $3 AND id = $4")
                .bind(false)
                .bind(timefmt::now_ms())
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

    pub async fn find_api_key_by_lookup(&self, lookup_hash: &str) -> Result<Option<ApiKeyAuthRow>> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE lookup_hash = $1");
        let row: Option<KeyRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(lookup_hash)
                .fetch_optional(pool)
                .await?
        });
        row.map(KeyRow::into_auth).transpose()
    }

    /// Records a use of the key, at most once per `min_interval_ms`.
    pub async fn touch_api_key(&self, id: ApiKeyId, now: i64, min_interval_ms: i64) -> Result<()> {
        on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE api_keys SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(id.uuid().to_string())
            .bind(now - min_interval_ms)
            .execute(pool)
            .await?;
        });
        Ok(())
    }
}
