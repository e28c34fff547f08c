//! Webhook delivery: events from the outbox, fanned out to the endpoints
//! that subscribe to them, signed the Standard Webhooks way and posted with
//! retries.
//!
//! - [`signing`]: `webhook-signature` (HMAC-SHA256 of `id.timestamp.body`,
//!   one `v1,` entry per active secret).
//! - [`backoff`]: the retry schedule (exponential, jittered, ~24 h).
//! - [`sender`]: one HTTP POST: destination checks after DNS resolution, no
//!   redirects, no proxy, a time limit, at most 64 KiB of response read.
//! - [`worker`]: the loop that fans out, claims due attempts, sends them
//!   and records the results; safe to run in several processes.
//! - [`clock`]: the time the worker schedules by (injectable in tests).
//!
//! SQL stays in the store; this crate decides what to send and when.

pub mod backoff;
pub mod clock;
pub mod sender;
pub mod signing;
pub mod worker;

pub use clock::{Clock, ManualClock, SystemClock};
pub use sender::{SendOutcome, Sender};
pub use worker::{DeliveryWorker, WorkerConfig};
