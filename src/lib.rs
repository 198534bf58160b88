//! pigeon-dns: keeps a mail cluster's DNS round-robin in step with node health.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod diagnostic;
pub mod dns;
pub mod events;
pub mod http;
pub mod metrics;
pub mod probe;
pub mod reconcile;
pub mod schedule;
pub mod status;
pub mod targets;
