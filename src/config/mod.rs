//! Configuration: TOML -> serde structs -> validated [`Config`], every error at once.

mod diag;
mod types;

pub use diag::{Diagnostic, Severity};
pub use types::*;
