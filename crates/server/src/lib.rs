//! The Switchyard server: configuration, first-run bootstrap and wiring.

pub mod app;
pub mod bench;
pub mod bench_abuse;
pub mod bench_media;
pub mod bench_recordings;
pub mod bench_sip;
pub mod bench_webhooks;
pub mod bootstrap;
pub mod config;
pub mod logging;
pub mod private_files;
