//! Application services: each public function is one use case. The API
//! parses and authorises, then calls in here; services validate, enforce the
//! rules and talk to the store and the telephony port.

pub mod api_keys;
pub mod auth;
pub mod calls;
pub mod error;
pub mod json;
pub mod loads;
pub mod pagination;
pub mod query;
pub mod recordings;
pub mod scheduler;
pub mod telephony;
pub mod trunks;
pub mod validate;
pub mod webhooks;

pub use auth::{AuthService, Principal, PrincipalKind};
pub use error::{Error, ErrorCode};

use std::sync::Arc;

use switchyard_store::Store;

/// Everything a request handler needs, shared across requests.
#[derive(Clone)]
pub struct Services {
    pub store: Store,
    pub auth: Arc<AuthService>,
    pub telephony: Option<Arc<dyn telephony::Telephony>>,
    /// Recording storage and playback URLs.
    pub recordings: Arc<recordings::Recordings>,
    /// Where webhooks may be sent (the configuration's allow-list).
    pub webhook_destinations: Arc<switchyard_domain::destination::DestinationPolicy>,
}

impl Services {
    /// Readiness: the database answers.
    pub async fn ready(&self) -> error::Result<()> {
        self.store.ping().await.map_err(Error::internal)
    }
}
