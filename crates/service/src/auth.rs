//! Who is calling: bearer JWTs for users, API keys for machines.
//!
//! API keys are `sy_live_` + 32 random bytes in base32. The store keeps an
//! HMAC of the key (indexed, for lookup) and an argon2 hash (to verify);
//! neither lets anyone recover the key. Verifying argon2 on every request
//! would cost tens of milliseconds, so a verified key's row is kept in
//! memory for [`KEY_CACHE_TTL`]: expiry is checked on every request, a key
//! revoked through this process stops at once, one revoked through another
//! process within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher;
use argon2::{Argon2, PasswordHash, PasswordVerifier};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use switchyard_domain::id::{ApiKeyId, OrganizationId, UserId};
use switchyard_domain::model::{ApiKey, Membership, User};
use switchyard_domain::{Role, timefmt};
use switchyard_store::{ApiKeyAuthRow, NewApiKey, NewUser, Store};

use crate::error::{Error, ErrorCode, Result};

pub const API_KEY_PREFIX: &str = "sy_live_";
/// Domain separation for the lookup HMAC. It is a constant, not a secret:
/// keys carry 256 random bits, so the lookup hash cannot be inverted, and a
/// constant keeps lookups valid across processes and secret rotations.
const LOOKUP_KEY: &[u8] = b"switchyard api-key lookup v1";
const LAST_USED_INTERVAL_MS: i64 = 60_000;
/// How long a verified key's row is trusted without re-reading it.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(5);
const KEY_CACHE_MAX: usize = 10_000;

/// A verified key's row, as read at `fetched`.
struct CachedKey {
    row: ApiKeyAuthRow,
    fetched: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    User(UserId),
    ApiKey(ApiKeyId),
    /// The server itself (first-run bootstrap, seeding from the config file).
    System,
}

/// An authenticated caller acting in one organization.
#[derive(Debug, Clone)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub organization_id: OrganizationId,
    pub role: Role,
}

impl Principal {
    /// The server acting as OWNER of `org`; never the result of a request.
    pub fn system(org: OrganizationId) -> Self {
        Self {
            kind: PrincipalKind::System,
            organization_id: org,
            role: Role::Owner,
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self.kind {
            PrincipalKind::User(u) => Some(u),
            PrincipalKind::ApiKey(_) | PrincipalKind::System => None,
        }
    }

    /// A stable key for per-caller rate limits.
    pub fn rate_key(&self) -> String {
        match self.kind {
            PrincipalKind::User(u) => u.to_string(),
            PrincipalKind::ApiKey(k) => k.to_string(),
            PrincipalKind::System => "system".to_owned(),
        }
    }

    pub fn require_role(&self, required: Role) -> Result<()> {
        if self.role.at_least(required) {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "This action needs the {required} role or higher."
            )))
        }
    }

    /// `/api-keys` is for people, not for other keys (Envoy: "Bearer token required").
    pub fn require_user(&self) -> Result<UserId> {
        self.user_id().ok_or_else(|| {
            Error::forbidden("This endpoint needs a user's bearer token, not an API key.")
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// A freshly issued login token.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LoginResponse {
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

pub struct AuthService {
    store: Store,
    encoding: EncodingKey,
    decoding: DecodingKey,
    token_ttl: Duration,
    /// Verified keys by lookup hash.
    keys: Mutex<HashMap<String, CachedKey>>,
}

impl AuthService {
    pub fn new(store: Store, jwt_secret: &[u8], token_ttl: Duration) -> Self {
        Self {
            store,
            encoding: EncodingKey::from_secret(jwt_secret),
            decoding: DecodingKey::from_secret(jwt_secret),
            token_ttl,
            keys: Mutex::new(HashMap::new()),
        }
    }

    pub fn hash_secret(secret: &str) -> Result<String> {
        Argon2::default()
            .hash_password(secret.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| Error::internal(anyhow::anyhow!("argon2: {e}")))
    }

    fn verify_secret(secret: &str, hash: &str) -> bool {
        PasswordHash::new(hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(secret.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    }

    pub fn lookup_hash(key: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(LOOKUP_KEY)
            .expect("HMAC takes any key length");
        mac.update(key.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    pub fn generate_key() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        format!(
            "{API_KEY_PREFIX}{}",
            data_encoding::BASE32_NOPAD.encode(&bytes).to_lowercase()
        )
    }

    /// Creates a user with a password (argon2-hashed).
    pub async fn create_user(
        &self,
        email: &str,
        name: Option<String>,
        password: &str,
    ) -> Result<User> {
        crate::validate::email("email", email)?;
        if password.len() < 8 {
            return Err(Error::validation(
                "password",
                "must be at least 8 characters",
            ));
        }
        let password_hash = Self::hash_secret(password)?;
        self.store
            .create_user(NewUser {
                email: email.to_owned(),
                name,
                password_hash,
            })
            .await
            .map_err(|e| Error::from_store(e, "user"))
    }

    /// Creates an API key; the returned string is the only copy of the key.
    pub async fn create_api_key(
        &self,
        org: OrganizationId,
        name: String,
        description: Option<String>,
        expires_at: Option<i64>,
        created_by: Option<UserId>,
    ) -> Result<(ApiKey, String)> {
        let key = Self::generate_key();
        let record = self
            .store
            .insert_api_key(NewApiKey {
                organization_id: org,
                name,
                description,
                expires_at,
                lookup_hash: Self::lookup_hash(&key),
                secret_hash: Self::hash_secret(&key)?,
                key_prefix: key[..API_KEY_PREFIX.len() + 6].to_owned(),
                created_by_id: created_by,
            })
            .await
            .map_err(|e| Error::from_store(e, "API key"))?;
        Ok((record, key))
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<LoginResponse> {
        let invalid = || Error::new(ErrorCode::NotAuthenticated, "Incorrect email or password.");
        let row = self.store.find_user_by_email(email).await?;
        // With no such user, check against a dummy hash all the same, so the
        // time taken does not reveal which emails exist.
        let hash = row
            .as_ref()
            .map_or(DUMMY_HASH.to_owned(), |r| r.password_hash.clone());
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || Self::verify_secret(&password, &hash))
            .await
            .map_err(Error::internal)?;
        let Some(row) = row.filter(|_| ok) else {
            return Err(invalid());
        };
        let now = timefmt::now_ms() / 1000;
        let ttl = self.token_ttl.as_secs() as i64;
        let claims = Claims {
            sub: row.user.id.to_string(),
            iat: now,
            exp: now + ttl,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(Error::internal)?;
        Ok(LoginResponse {
            access_token: token,
            token_type: "bearer".into(),
            expires_in: ttl,
        })
    }

    /// Resolves credentials to a principal. `token` is the bearer token or
    /// API key; `org_header` is `X-Organization-ID` if sent.
    pub async fn authenticate(&self, token: &str, org_header: Option<&str>) -> Result<Principal> {
        let wanted_org = org_header
            .map(|h| {
                OrganizationId::parse(h.trim()).map_err(|e| Error::bad_id("X-Organization-ID", e))
            })
            .transpose()?;
        if token.starts_with(API_KEY_PREFIX) {
            self.authenticate_key(token, wanted_org).await
        } else {
            self.authenticate_jwt(token, wanted_org).await
        }
    }

    async fn authenticate_key(
        &self,
        key: &str,
        wanted_org: Option<OrganizationId>,
    ) -> Result<Principal> {
        let lookup = Self::lookup_hash(key);
        // (fresh row, hash this key was verified against) from the cache.
        let cached = self.keys.lock().ok().and_then(|m| {
            m.get(&lookup).map(|c| {
                (
                    (c.fetched.elapsed() < KEY_CACHE_TTL).then(|| c.row.clone()),
                    c.row.secret_hash.clone(),
                )
            })
        });
        let (fresh, verified_hash) = match cached {
            Some((fresh, hash)) => (fresh, Some(hash)),
            None => (None, None),
        };
        let row = match fresh {
            Some(row) => row,
            None => {
                let row = self
                    .store
                    .find_api_key_by_lookup(&lookup)
                    .await?
                    .ok_or_else(Error::unauthenticated)?;
                // Argon2 only the first time: a refresh just re-reads the row.
                if verified_hash.as_deref() != Some(row.secret_hash.as_str()) {
                    let secret = key.to_owned();
                    let hash = row.secret_hash.clone();
                    let ok =
                        tokio::task::spawn_blocking(move || Self::verify_secret(&secret, &hash))
                            .await
                            .map_err(Error::internal)?;
                    if !ok {
                        return Err(Error::unauthenticated());
                    }
                }
                if let Ok(mut m) = self.keys.lock() {
                    if m.len() >= KEY_CACHE_MAX {
                        m.clear();
                    }
                    m.insert(
                        lookup.clone(),
                        CachedKey {
                            row: row.clone(),
                            fetched: Instant::now(),
                        },
                    );
                }
                row
            }
        };
        let now = timefmt::now_ms();
        if !row.key.is_active || row.key.expires_at.is_some_and(|e| e <= now) {
            return Err(Error::unauthenticated());
        }
        if wanted_org.is_some_and(|o| o != row.key.organization_id) {
            return Err(Error::forbidden(
                "This API key belongs to another organization.",
            ));
        }
        if row
            .key
            .last_used_at
            .is_none_or(|t| t < now - LAST_USED_INTERVAL_MS)
        {
            if let Ok(mut m) = self.keys.lock()
                && let Some(c) = m.get_mut(&lookup)
            {
                c.row.key.last_used_at = Some(now);
            }
            self.store
                .touch_api_key(row.key.id, now, LAST_USED_INTERVAL_MS)
                .await?;
        }
        Ok(Principal {
            kind: PrincipalKind::ApiKey(row.key.id),
            organization_id: row.key.organization_id,
            role: Role::Admin,
        })
    }

    async fn authenticate_jwt(
        &self,
        token: &str,
        wanted_org: Option<OrganizationId>,
    ) -> Result<Principal> {
        let mut validation = Validation::new(jsonwebtoken::Algorithm::HS256);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| Error::unauthenticated())?;
        let user = UserId::parse(&data.claims.sub).map_err(|_| Error::unauthenticated())?;
        let memberships: Vec<Membership> = self.store.memberships(user).await?;
        let chosen = match wanted_org {
            Some(org) => memberships
                .iter()
                .find(|m| m.organization_id == org)
                .ok_or_else(|| Error::forbidden("You are not a member of this organization."))?,
            None => memberships
                .first()
                .ok_or_else(|| Error::forbidden("You belong to no organization."))?,
        };
        Ok(Principal {
            kind: PrincipalKind::User(user),
            organization_id: chosen.organization_id,
            role: chosen.role,
        })
    }

    /// Forgets cached keys (after a key is revoked).
    pub fn forget_cached_keys(&self) {
        if let Ok(mut m) = self.keys.lock() {
            m.clear();
        }
    }
}

/// An argon2 hash of a random string, verified against when the email is unknown.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$R3Bc6cm7AZ0JcYz1aUOf0pAHO2hHk4Qq8vWcmd/x7Ms";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_prefix_and_hash_stably() {
        let k = AuthService::generate_key();
        assert!(k.starts_with(API_KEY_PREFIX));
        assert_eq!(k.len(), API_KEY_PREFIX.len() + 52);
        assert_eq!(AuthService::lookup_hash(&k), AuthService::lookup_hash(&k));
        assert_ne!(
            AuthService::lookup_hash(&k),
            AuthService::lookup_hash(&AuthService::generate_key())
        );
    }

    #[test]
    fn argon2_round_trip() {
        let h = AuthService::hash_secret("hunter22").unwrap();
        assert!(AuthService::verify_secret("hunter22", &h));
        assert!(!AuthService::verify_secret("hunter23", &h));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
