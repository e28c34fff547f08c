//! API keys: created and revoked by people (bearer token), used by machines.

use serde::{Deserialize, Serialize};
use switchyard_domain::id::ApiKeyId;
use switchyard_domain::model::ApiKey;
use switchyard_domain::{Role, timefmt};
use utoipa::ToSchema;

use crate::error::{Error, Result};
use crate::{Principal, Services, validate};

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CreateApiKeyRequest {
    pub name: String,
    pub description: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
}

/// The key as created: the only time `key` is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    pub key: String,
}

impl Services {
    pub async fn create_api_key(
        &self,
        who: &Principal,
        req: CreateApiKeyRequest,
    ) -> Result<CreatedApiKey> {
        let user = who.require_user()?;
        who.require_role(Role::Admin)?;
        let name = validate::text("name", &req.name, 100)?;
        let description = validate::opt_free_text("description", req.description.as_deref(), 500)?;
        let expires_at = req
            .expires_at
            .as_deref()
            .map(|t| {
                timefmt::parse_datetime(t)
                    .ok_or_else(|| Error::validation("expires_at", "must be an RFC 3339 datetime"))
            })
            .transpose()?;
        if expires_at.is_some_and(|e| e <= timefmt::now_ms()) {
            return Err(Error::validation("expires_at", "must be in the future"));
        }
        let (api_key, key) = self
            .auth
            .create_api_key(
                who.organization_id,
                name,
                description,
                expires_at,
                Some(user),
            )
            .await?;
        Ok(CreatedApiKey { api_key, key })
    }

    pub async fn list_api_keys(&self, who: &Principal) -> Result<Vec<ApiKey>> {
        who.require_user()?;
        Ok(self.store.list_api_keys(who.organization_id).await?)
    }

    pub async fn get_api_key(&self, who: &Principal, id: ApiKeyId) -> Result<ApiKey> {
        who.require_user()?;
        self.store
            .get_api_key(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "API key"))
    }

    pub async fn delete_api_key(&self, who: &Principal, id: ApiKeyId) -> Result<()> {
        who.require_user()?;
        who.require_role(Role::Admin)?;
        self.store
            .deactivate_api_key(who.organization_id, id)
            .await
            .map_err(|e| Error::from_store(e, "API key"))?;
        self.auth.forget_cached_keys();
        Ok(())
    }
}
