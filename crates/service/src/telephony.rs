//! The port the SIP engine implements. Services depend on this trait only;
//! until an engine is wired in, QUEUED calls simply wait.

use async_trait::async_trait;
use switchyard_domain::model::Call;

/// What the engine did when asked to end a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndOutcome {
    /// It sent CANCEL or BYE; it will record the final status itself.
    Signalled,
    /// It holds no dialog for this call (e.g. the process that did has died).
    NotHeld,
}

#[async_trait]
pub trait Telephony: Send + Sync {
    /// Calls are waiting in QUEUED: dial as many as trunk capacity allows.
    /// Called on every scheduler tick and after a call is created.
    async fn dispatch_queued(&self) -> anyhow::Result<()>;

    /// Hang up (BYE) or cancel (CANCEL) a live call.
    async fn end(&self, call: &Call) -> anyhow::Result<EndOutcome>;

    /// A SIP trunk was created, changed or deleted (inbound calls are
    /// accepted only from trunks).
    fn trunks_changed(&self) {}
}
