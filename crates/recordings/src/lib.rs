//! Recordings after the call, for Switchyard.
//!
//! - [`storage`]: the service's `RecordingStorage` port over `object_store`
//!   (a local directory by default, S3-compatible when configured).
//! - [`worker`]: the encoding worker (live WAV → `.m4a` files → stored →
//!   AVAILABLE, exactly once, picked up again after a restart) and the
//!   retention sweeper.
//!
//! The encoding itself is `switchyard_media::m4a`; the URLs and the media
//! route are the service's (`switchyard_service::recordings`).

pub mod storage;
pub mod worker;

pub use storage::{ObjectStorage, StorageConfig};
pub use worker::{RecordingWorker, WorkerConfig};
