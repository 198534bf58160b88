//! DNS: the TSIG key, the signed client, the core <-> hickory conversions
//! and every UPDATE message.

pub mod client;
pub mod convert;
pub mod key;
pub mod update;

pub use client::{DnsClient, DnsError, Exchange};
pub use update::{Change, Prerequisite, Update};
