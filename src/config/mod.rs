//! Configuration: TOML -> serde structs -> validated [`Config`], every error at once.
//!
//! [`load`] reads the file into `raw` structs and hands them to a checker
//! that validates one table per file (`dns`, `probe`, `http`, `ha`, `nodes`,
//! `pools`, `pool_check` and `dane`), with `names` and `values` for the rules they
//! share.

mod checker;
mod dane;
mod dns;
mod ha;
mod http;
mod load;
mod names;
mod nodes;
mod pool_check;
mod pools;
mod probe;
mod raw;
#[cfg(test)]
pub(crate) mod test_support;
mod types;
mod values;
#[cfg(test)]
mod zones_tests;

pub use crate::diagnostic::{Diagnostic, Severity};
pub use load::{Full, Loaded, load, load_all, load_str};
pub use types::*;
