//! pigeon-dns: keeps a mail cluster's DNS round-robin in step with node health.
#![forbid(unsafe_code)]

pub mod app;
pub mod commands;
pub mod config;
pub mod dane;
pub mod desired;
pub mod diff;
pub mod dns;
pub mod health;
pub mod http;
pub mod lease;
pub mod metrics;
pub mod probe;
pub mod reconcile;
pub mod state;
pub mod target;
