//! Loads: identity columns plus the rest of the load as one JSON document.

use sqlx::{AssertSqlSafe, FromRow};
use switchyard_domain::id::{LoadId, OrganizationId};
use switchyard_domain::load::{Load, LoadDetails};
use switchyard_domain::timefmt;

use crate::orgs::LOCK_ORGANIZATION;
use crate::{
    Backend, Result, Store, StoreError, conflict_on_unique, on_pool, on_writer, parse_uuid,
    write_tx,
};

const COLUMNS: &str =
    "id, organization_id, load_number, tms_load_id, details, created_at, updated_at";

#[derive(FromRow)]
struct LoadRow {
    id: String,
    organization_id: String,
    load_number: String,
    tms_load_id: Option<String>,
    details: String,
    created_at: i64,
    updated_at: i64,
}

impl LoadRow {
    fn into_model(self) -> Result<Load> {
        Ok(Load {
            id: LoadId::from_uuid(parse_uuid(&self.id)?),
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            load_number: self.load_number,
            tms_load_id: self.tms_load_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
            details: serde_json::from_str(&self.details)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpsertOutcome {
    Created,
    Updated,
}

fn details_json(details: &LoadDetails) -> Result<String> {
    serde_json::to_string(details).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Creates the load, or replaces the one with the same `load_number`
    /// (or, failing that, the same `tms_load_id`) in the organization.
    pub async fn upsert_load(
        &self,
        org: OrganizationId,
        load_number: &str,
        tms_load_id: Option<&str>,
        details: &LoadDetails,
    ) -> Result<(Load, UpsertOutcome)> {
        let now = timefmt::now_ms();
        let details_text = details_json(details)?;
        let org_text = org.uuid().to_string();
        let postgres = self.backend() == Backend::Postgres;
        let (id, outcome) = write_tx!(self, |tx| {
            // Two concurrent upserts of a new load would both find nothing
            // and both insert (the second failing as a duplicate).
            if postgres {
                sqlx::query(LOCK_ORGANIZATION)
                    .bind(&org_text)
                    .execute(&mut *tx)
                    .await?;
            }
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT id FROM loads WHERE organization_id = $1 AND load_number = $2",
            )
            .bind(&org_text)
            .bind(load_number)
            .fetch_optional(&mut *tx)
            .await?;
            let existing = match (existing, tms_load_id) {
                (Some(id), _) => Some(id),
                (None, Some(tms)) => {
                    sqlx::query_scalar(
                        "SELECT id FROM loads WHERE organization_id = $1 AND tms_load_id = $2 ORDER BY created_at LIMIT 1",
                    )
                    .bind(&org_text)
                    .bind(tms)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                (None, None) => None,
            };
            let result = match existing {
                Some(id) => {
                    sqlx::query(
                        "UPDATE loads SET load_number = $1, tms_load_id = $2, details = $3, updated_at = $4 WHERE id = $5",
                    )
                    .bind(load_number)
                    .bind(tms_load_id)
                    .bind(&details_text)
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_on_unique(e, "a load with this load_number"))?;
                    (id, UpsertOutcome::Updated)
                }
                None => {
                    let id = LoadId::new().uuid().to_string();
                    sqlx::query(
                        "INSERT INTO loads (id, organization_id, load_number, tms_load_id, details, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind(&id)
                    .bind(&org_text)
                    .bind(load_number)
                    .bind(tms_load_id)
                    .bind(&details_text)
                    .bind(now)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_on_unique(e, "a load with this load_number"))?;
                    (id, UpsertOutcome::Created)
                }
            };
            tx.commit().await?;
            result
        });
        let load = self
            .get_load(org, LoadId::from_uuid(parse_uuid(&id)?))
            .await?;
        Ok((load, outcome))
    }

    pub async fn get_load(&self, org: OrganizationId, id: LoadId) -> Result<Load> {
        let sql = format!("SELECT {COLUMNS} FROM loads WHERE organization_id = $1 AND id = $2");
        let row: Option<LoadRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    pub async fn find_load_by_number(
        &self,
        org: OrganizationId,
        load_number: &str,
    ) -> Result<Option<Load>> {
        let sql =
            format!("SELECT {COLUMNS} FROM loads WHERE organization_id = $1 AND load_number = $2");
        let row: Option<LoadRow> = on_pool!(self, |pool| {
            sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(load_number)
                .fetch_optional(pool)
                .await?
        });
        row.map(LoadRow::into_model).transpose()
    }

    /// Newest first; `search` matches a substring of the load number.
    pub async fn list_loads(
        &self,
        org: OrganizationId,
        search: Option<&str>,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Load>, i64)> {
        let pattern = search
            .map(|s| format!("%{}%", escape_like(&s.to_lowercase())))
            .unwrap_or_else(|| "%".to_owned());
        let sql = format!(
            "SELECT {COLUMNS} FROM loads WHERE organization_id = $1 AND LOWER(load_number) LIKE $2 ESCAPE '\\' \
             ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
        );
        let (rows, total): (Vec<LoadRow>, i64) = on_pool!(self, |pool| {
            let rows = sqlx::query_as(AssertSqlSafe(sql.as_str()))
                .bind(org.uuid().to_string())
                .bind(&pattern)
                .bind(limit)
                .bind(offset)
                .fetch_all(pool)
                .await?;
            let total = sqlx::query_scalar(
                "SELECT COUNT(*) FROM loads WHERE organization_id = $1 AND LOWER(load_number) LIKE $2 ESCAPE '\\'",
            )
            .bind(org.uuid().to_string())
            .bind(&pattern)
            .fetch_one(pool)
            .await?;
            (rows, total)
        });
        Ok((
            rows.into_iter()
                .map(LoadRow::into_model)
                .collect::<Result<_>>()?,
            total,
        ))
    }

    /// Replaces a load's fields (the caller merged the patch).
    pub async fn update_load(&self, load: &Load) -> Result<Load> {
        let details_text = details_json(&load.details)?;
        let done = on_writer!(self, |pool| {
            sqlx::query(
                "UPDATE loads SET load_number = $1, tms_load_id = $2, details = $3, updated_at = $4 \
                 WHERE organization_id = $5 AND id = $6",
            )
            .bind(&load.load_number)
            .bind(&load.tms_load_id)
            .bind(&details_text)
            .bind(timefmt::now_ms())
            .bind(load.organization_id.uuid().to_string())
            .bind(load.id.uuid().to_string())
            .execute(pool)
            .await
            .map_err(|e| conflict_on_unique(e, "a load with this load_number"))?
            .rows_affected()
        });
        if done == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_load(load.organization_id, load.id).await
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
