//! Prometheus metrics: registered once on a registry passed in, handles cloned
//! into the tasks. Names are the contract's (`pigeon_dns_` prefix). The
//! per-target families and the drain gauge live beside the registry
//! (`targets`, `drains`).

mod drains;
mod registry;
mod targets;

pub use drains::DrainFamily;
pub use registry::*;
pub use targets::{TargetFamilies, TargetSeries};
