//! pigeon-dns: keeps a mail cluster's DNS round-robin in step with node health.
#![forbid(unsafe_code)]

pub mod config;
pub mod dns;
pub mod probe;
pub mod desired;
pub mod diff;
pub mod health;
pub mod metrics;
pub mod state;
pub mod target;
pub mod reconcile;
pub mod http;
pub mod app;
pub mod commands;
pub mod lease;
