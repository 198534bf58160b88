//! pigeon-dns: keeps a mail cluster's DNS round-robin in step with node health.
//!
//! # Layout
//!
//! Data flows one way:
//!
//! ```text
//! config ─▶ targets ─▶ schedule (one task per pool × node × address: probe → health) ─event─▶ reconcile ─▶ dns ─▶ primary
//!                          │                                                                   │
//!                          └──────────────── status board, metrics ◀──────────────────────────┘   http: /metrics /status /readyz
//! ```
//!
//! - [`config`]: TOML → raw serde structs → a checker → the typed [`config::Config`], every error at once.
//! - [`targets`]: the one walk of pool × node × address: stable [`targets::TargetId`]s and the pools as the core sees them.
//! - [`schedule`]: the task of one target: probe on schedule, rise/fall, the watch connection; a pure `next_probe`.
//! - [`probe`]: one connection that speaks a node's protocol; `mail` is the scaffold of SMTP, POP3 and IMAP; DANE verdicts on TLS.
//! - [`events`]: what the target tasks tell the reconcilers.
//! - [`core`]: pure — records, health, desired, diff, lease decisions; no sockets, no clock reads.
//! - [`dane`]: pure — TLSA records, verification of a served chain (RFC 7672), the rollover planner.
//! - [`reconcile`]: one task per zone — loop, pass, send, writer, and DANE's `manage` — behind the [`reconcile::Primary`] trait;
//!   one drain watcher per daemon reads the drain marks and hands them to every zone.
//! - [`dns`]: the signed TCP client, core ↔ hickory conversions, every UPDATE message, the TSIG key.
//! - [`status`]: the typed board behind `/status`, `/readyz`, `status` and the page: targets, zones, published records, drains, transitions.
//! - [`metrics`], [`http`]: the registry and per-target series; the endpoints.
//! - [`app`]: the daemon — spawns the tasks, reloads on SIGHUP, shuts down.
//! - [`cli`]: the commands — `run`, `check`, `probe`, `plan`, `status`, `drain`, `undrain` — and their [`cli::ExitCode`].
//! - [`diagnostic`]: a problem of an input file, located by file, line and field.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod dane;
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
