//! The Switchyard server: configuration, first-run bootstrap and wiring.

pub mod app;
pub mod bench;
pub mod bootstrap;
pub mod config;
