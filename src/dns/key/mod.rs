//! The TSIG key: read from a BIND key file (as `tsig-keygen` and
//! `ddns-confgen` write it), turned into a hickory [`TSigner`].
//!
//! The secret is held only inside the signer: no `Debug`, `Display` or
//! diagnostic of this module ever shows it, not even part of it, so that a
//! log or a `check` output pasted into a ticket leaks nothing.
//!
//! `load` reads the file and reports on it, `syntax` reads its `key`
//! statements, `select` picks the key to use and checks it, and `tsig`
//! holds the key hickory signs with.
//!
//! [`TSigner`]: hickory_proto::rr::TSigner

mod load;
mod select;
mod syntax;
#[cfg(test)]
mod test_support;
mod tsig;

pub use load::{load_key_file, parse_key_text};
pub use tsig::{KeyError, TsigKey};
