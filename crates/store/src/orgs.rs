//! Organizations, users and memberships.

use sqlx::FromRow;
use switchyard_domain::id::{OrganizationId, UserId};
use switchyard_domain::model::{Membership, Organization, User};
use switchyard_domain::{Role, timefmt};

use crate::{Result, Store, StoreError, conflict_on_unique, on_pool, on_writer, parse_uuid};

/// PostgreSQL only: locks an organization's row until the transaction ends,
/// so that read-then-write transactions of one organization (load upserts,
/// the choice of its one default number) take turns, as SQLite writers
/// always do. `NO KEY UPDATE` does not block the key-share locks that
/// foreign keys take, so inserts elsewhere in the organization go on.
pub(crate) const LOCK_ORGANIZATION: &str =
    "SELECT id FROM organizations WHERE id = $1 FOR NO KEY UPDATE";

#[derive(FromRow)]
struct OrgRow {
    id: String,
    name: String,
    created_at: i64,
    updated_at: i64,
}

impl OrgRow {
    fn into_model(self) -> Result<Organization> {
        Ok(Organization {
            id: OrganizationId::from_uuid(parse_uuid(&self.id)?),
            name: self.name,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    email: String,
    name: Option<String>,
    password_hash: String,
    created_at: i64,
    updated_at: i64,
}

impl UserRow {
    fn into_auth(self) -> Result<UserAuthRow> {
        Ok(UserAuthRow {
            password_hash: self.password_hash,
            user: User {
                id: UserId::from_uuid(parse_uuid(&self.id)?),
                email: self.email,
                name: self.name,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
        })
    }
}

/// A user with the hash to check a password against.
pub struct UserAuthRow {
    pub user: User,
    pub password_hash: String,
}

pub struct NewUser {
    pub email: String,
    pub name: Option<String>,
    pub password_hash: String,
}

#[derive(FromRow)]
struct MembershipRow {
    organization_id: String,
    organization_name: String,
    role: String,
}

impl MembershipRow {
    fn into_model(self) -> Result<Membership> {
        Ok(Membership {
            organization_id: OrganizationId::from_uuid(parse_uuid(&self.organization_id)?),
            organization_name: self.organization_name,
            role: Role::parse(&self.role)
                .ok_or_else(|| StoreError::Corrupt(format!("role {}", self.role)))?,
        })
    }
}

impl Store {
    pub async fn create_organization(&self, name: &str) -> Result<Organization> {
        let now = timefmt::now_ms();
        let org = Organization {
            id: OrganizationId::new(),
            name: name.to_owned(),
            created_at: now,
            updated_at: now,
        };
        on_writer!(self, |pool| {
            sqlx::query("INSERT INTO organizations (id, name, created_at, updated_at) VALUES ($1, $2, $3, $4)")
                .bind(org.id.uuid().to_string())
                .bind(&org.name)
                .bind(now)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(org)
    }

    pub async fn get_organization(&self, id: OrganizationId) -> Result<Organization> {
        let row: Option<OrgRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, name, created_at, updated_at FROM organizations WHERE id = $1",
            )
            .bind(id.uuid().to_string())
            .fetch_optional(pool)
            .await?
        });
        row.ok_or(StoreError::NotFound)?.into_model()
    }

    pub async fn list_organizations(&self) -> Result<Vec<Organization>> {
        let rows: Vec<OrgRow> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, name, created_at, updated_at FROM organizations ORDER BY created_at, id")
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(OrgRow::into_model).collect()
    }

    pub async fn count_organizations(&self) -> Result<i64> {
        let n: i64 = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM organizations")
                .fetch_one(pool)
                .await?
        });
        Ok(n)
    }

    /// Creates a user; the email is stored lower-cased and must be unique.
    pub async fn create_user(&self, new: NewUser) -> Result<User> {
        let now = timefmt::now_ms();
        let user = User {
            id: UserId::new(),
            email: new.email.trim().to_lowercase(),
            name: new.name,
            created_at: now,
            updated_at: now,
        };
        on_writer!(self, |pool| {
            sqlx::query(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(user.id.uuid().to_string())
            .bind(&user.email)
            .bind(&user.name)
            .bind(&new.password_hash)
            .bind(now)
            .bind(now)
            .execute(pool)
            .await
            .map_err(|e| conflict_on_unique(e, "a user with this email"))?;
        });
        Ok(user)
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<UserAuthRow>> {
        let row: Option<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, email, name, password_hash, created_at, updated_at FROM users WHERE email = $1")
                .bind(email.trim().to_lowercase())
                .fetch_optional(pool)
                .await?
        });
        row.map(UserRow::into_auth).transpose()
    }

    pub async fn get_user(&self, id: UserId) -> Result<User> {
        let row: Option<UserRow> = on_pool!(self, |pool| {
            sqlx::query_as("SELECT id, email, name, password_hash, created_at, updated_at FROM users WHERE id = $1")
                .bind(id.uuid().to_string())
                .fetch_optional(pool)
                .await?
        });
        Ok(row.ok_or(StoreError::NotFound)?.into_auth()?.user)
    }

    /// Users of one organization with their roles, oldest first.
    pub async fn list_users(&self, org: OrganizationId) -> Result<Vec<(User, Role)>> {
        #[derive(FromRow)]
        struct Row {
            #[sqlx(flatten)]
            user: UserRow,
            role: String,
        }
        let rows: Vec<Row> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT u.id, u.email, u.name, u.password_hash, u.created_at, u.updated_at, m.role \
                 FROM users u JOIN memberships m ON m.user_id = u.id \
                 WHERE m.organization_id = $1 ORDER BY m.created_at, u.id",
            )
            .bind(org.uuid().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                let role = Role::parse(&r.role)
                    .ok_or_else(|| StoreError::Corrupt(format!("role {}", r.role)))?;
                Ok((r.user.into_auth()?.user, role))
            })
            .collect()
    }

    pub async fn add_membership(
        &self,
        org: OrganizationId,
        user: UserId,
        role: Role,
    ) -> Result<()> {
        on_writer!(self, |pool| {
            sqlx::query("INSERT INTO memberships (organization_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)")
                .bind(org.uuid().to_string())
                .bind(user.uuid().to_string())
                .bind(role.as_str())
                .bind(timefmt::now_ms())
                .execute(pool)
                .await
                .map_err(|e| conflict_on_unique(e, "this user is already a member"))?;
        });
        Ok(())
    }

    /// The user's organizations, in the order they joined.
    pub async fn memberships(&self, user: UserId) -> Result<Vec<Membership>> {
        let rows: Vec<MembershipRow> = on_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT m.organization_id, o.name AS organization_name, m.role \
                 FROM memberships m JOIN organizations o ON o.id = m.organization_id \
                 WHERE m.user_id = $1 ORDER BY m.created_at, m.organization_id",
            )
            .bind(user.uuid().to_string())
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(MembershipRow::into_model).collect()
    }
}
