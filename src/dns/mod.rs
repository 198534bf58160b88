//! DNS: the TSIG key, the signed client and the UPDATE builder.

pub mod key;
