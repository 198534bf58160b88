//! DNS: the TSIG key, the signed client and the UPDATE builder.

pub mod client;
pub mod key;
pub mod records;
pub mod update;

pub use client::{DnsClient, DnsError};
pub use records::{RRset, RRsetKey, RType, Rdata};
pub use update::{Change, UpdatePlan};
