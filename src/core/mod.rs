//! The pure core: no sockets, no clock reads (time is passed in), no DNS
//! library types. Everything here is tested exhaustively without I/O.
//!
//! - `records`: owner names, rdata, RRsets, the view of the primary;
//! - `health`: rise/fall hysteresis per target;
//! - `desired`: pools, health and drains -> the records wanted;
//! - `diff`: wanted vs held -> one change per RRset;
//! - `drain`: the drain marks kept in the zone;
//! - `lease`: who writes (compare-and-swap decisions);
//! - `serial`: SOA serials compared by RFC 1982.

pub mod desired;
pub mod diff;
pub mod drain;
pub mod health;
pub mod lease;
pub mod records;
pub mod serial;
