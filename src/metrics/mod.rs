//! Prometheus metrics: registered once on a registry passed in, handles cloned
//! into the tasks. Names are the contract's (`pigeon_dns_` prefix). The
//! per-target families live beside the registry (`targets`).

mod registry;
mod targets;

pub use registry::*;
pub use targets::{TargetFamilies, TargetSeries};
