//! Configuration: TOML -> serde structs -> validated [`Config`], every error at once.

mod diag;
mod load;
mod raw;
mod summary;
mod types;

pub use diag::{Diagnostic, Severity};
pub use load::{Full, Loaded, load, load_all, load_str};
pub use summary::render_summary;
pub use types::*;
