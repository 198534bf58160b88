//! The commands of the `pigeon-dns` binary, one file each; each returns the
//! process's [`ExitCode`]. `run` starts the daemon ([`crate::app`]); the
//! one-shot commands reuse its parts: `check` the config and key loader,
//! `probe` the prober, `plan` the reconciler's pass and writer, `status`
//! the daemon's `/status`, `drain` and `undrain` `plan`'s way to the primary
//! and the drain marks of the core.
//!
//! A new command is a file here, declared and re-exported below, with its
//! subcommand in `main.rs`.

mod output;
mod table;

mod check;
mod drain;
mod exit;
mod plan;
mod probe;
mod run;
mod status;

pub use check::check;
pub use drain::{drain, undrain};
pub use exit::ExitCode;
pub use plan::plan;
pub use probe::probe;
pub use run::run;
pub use status::status;
