//! The end-to-end test harness: real `named` and real dovecot, started by the
//! test itself, and the pigeon-dns binary driven from outside.
//!
//! Use it from an integration test with `mod common;` (from an example:
//! `#[path = "../tests/common/mod.rs"] mod common;`).
//!
//! # What it gives
//! - [`Bind`] (`bind.rs`): `named` serving `example.com` as a primary that
//!   accepts TSIG-signed RFC 2136 updates (`update-policy`, configurable),
//!   with [`FOREIGN_RECORDS`] that pigeon-dns must leave alone. Queries
//!   (`query`, `query_with_ttl`, `wait_for`, `zone_records`, `serial`) go
//!   through `dig +tcp`; `nsupdate` injects drift; keys for TSIG failures
//!   (`wrong_secret_key`, `wrong_secret_key_file`, `unknown_key_file`);
//!   `stop`/`start_again` keep the port and the zone (dynamic updates live
//!   in the journal).
//!   More zones on the same `named` with [`BindOpts::also_zone`] and the
//!   `*_in`/`*_of` helpers (`query_in`, `serial_of`, `nsupdate_in`, ...);
//!   a zone signed by named itself with [`BindOpts::dnssec`] /
//!   [`ZoneOpts::dnssec`] (`wait_signed`, `query_dnssec`,
//!   `wait_signed_answer`).
//! - [`Secondary`] (`secondary.rs`): `named` holding copies of a primary's
//!   zones, fed by signed NOTIFY and IXFR (`serial`, `wait_serial`,
//!   `propagation`, `transfer_kinds`, `stop`/`start_again`, `refresh`);
//!   [`BindOpts::notify_delay`].
//! - [`Knot`] (`knot.rs`): `knotd` as another primary (`example.net`),
//!   accepting signed updates, same helpers as [`Bind`] for one zone.
//! - [`Dig`] (`dig.rs`): the queries behind all three, `nsupdate`, and
//!   native UDP queries fine enough to time propagation and signing
//!   ([`soa_serial`], `query_dnssec_native`, `send_notify`, [`timed`]).
//! - [`Dovecot`] (`dovecot.rs`): one mail node, IMAP + POP3 + submission on
//!   one address; `stop` (a crash: refused at once) and `start_again`;
//!   `reload` (SIGHUP: a renewed certificate is served).
//! - [`Cluster`] and [`Lab`] (`cluster.rs`): nodes `mail1..N` on one
//!   [`Subnet`], and the usual test setup with a [`ConfigBuilder`] prefilled.
//! - [`FakeServer`] (`fakes.rs`): silent, refusing, closing nodes.
//! - [`FakePrimary`] (`fake_primary.rs`): a DNS primary over TCP that
//!   verifies every request's TSIG and answers queries and UPDATEs as told
//!   ([`Reply`]: well, with an error rcode, a TSIG error, a bad or missing
//!   signature, silence, a close), switchable while the daemon runs; good
//!   UPDATEs are applied (`records`), every request is kept (`seen`, as
//!   [`Seen`]) and UDP datagrams to its port are counted.
//! - [`WebServer`] (`web.rs`): HTTP/1.1, or https with a rustls config, on
//!   a node's address: 200, 302, 500, slow, and body routes; the Host of
//!   each request is kept (`hosts`, `requests`).
//! - [`ConfigBuilder`] (`config.rs`): pigeon-dns TOML, fast probe defaults.
//! - [`Daemon`], [`run_cli`], [`Metrics`] (`daemon.rs`): the binary
//!   (`wait_for_metric`, `wait_reconciles`, logs, signals).
//! - [`Browser`] and [`Page`] (`browser.rs`): headless Chromium over the
//!   DevTools protocol, to read a page, wait for it, screenshot it.
//! - `probe_table.rs`: the `pigeon-dns probe` table as rows (`probe`,
//!   `row`), metric sample names (`sample`), and `wait_counted` for a probe
//!   result counted and the node judged by it.
//! - `want.rs`: what BIND should answer for a [`Lab`]'s pools when some
//!   nodes are healthy ([`ips`], [`imap_a`], [`apex_mx`], [`imap_srv`],
//!   [`sorted`], [`FOREIGN_IMAP`], [`BACKUP_MX`]), [`wait_standard_pools`]
//!   and [`stop_until_unpublished`].
//!
//! # Rules it keeps
//! - Everything it starts is killed on `Drop` (and reaped); dovecot's and
//!   Chromium's whole process group. The fakes in-process ([`FakeServer`],
//!   [`FakePrimary`], [`WebServer`]) stop their threads on `Drop`. Files
//!   live in tempdirs.
//! - Tests run in parallel threads and processes, so nothing is fixed: each
//!   test takes its own loopback subnet `127.A.B.0/24` ([`Subnet`]), where
//!   nodes share port numbers on distinct addresses like a real cluster, and
//!   free ports. BIND is the exception: `named` only listens on addresses
//!   configured on an interface (`lo` has 127.0.0.1, not the rest of
//!   127.0.0.0/8), so it takes a free port on 127.0.0.1, retried if taken.
//! - A missing program fails the test with the package to install
//!   (`named not found: apt-get install bind9`); nothing is skipped.
//! - Waits poll with a deadline and panic with what they last saw; no blind
//!   sleeps.
//! - It is blocking (std threads and processes): call it from plain
//!   `#[test]`s, or from `spawn_blocking` in async ones.
//! - It needs root (dovecot's login processes; the subnet reservation binds
//!   UDP port 9) and only loopback.
//!
//! # Timing (2 cores)
//! `named` answers ~0.1 s after spawn and exits ~0.1 s after SIGTERM (a
//! signed zone: ~30 ms more for keys and signatures); `knotd` alike. With
//! `notify-delay 0` a secondary serves a change 2-11 ms after the primary
//! does (NOTIFY, SOA query, IXFR; 23-110 ms from nsupdate's start); at
//! BIND's default of 5 s, a change made less than 5 s after the previous
//! NOTIFY (or the zone's load, or a reload) waits for those 5 s to pass.
//! A restarted secondary does not ask its primary by itself
//! ([`Secondary::refresh`]). dovecot greets ~0.05 s after spawn, dies at once on SIGKILL of its group
//! (a SIGTERM takes it ~1 s). Set `HARNESS_ECHO=1` to see the daemon's log
//! live, and `PIGEON_DNS_BIN=/path/to/pigeon-dns` to test another build.
#![allow(dead_code, unused_imports)]

pub mod bind;
pub mod browser;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod dig;
pub mod dovecot;
pub mod fake_primary;
pub mod fakes;
pub mod knot;
pub mod net;
pub mod probe_table;
pub mod process;
pub mod secondary;
pub mod want;
pub mod web;

pub use bind::{Bind, BindOpts, FOREIGN_RECORDS, TRANSFER_KEY, TsigKey, ZoneOpts};
pub use browser::{Browser, Page};
pub use certs::{Leaf, TestCa, now_utc, utc_text};
pub use cluster::{Cluster, HTTP_PORT, Lab, MailNode};
pub use config::{ConfigBuilder, NodeSpec, PoolSpec, toml_str};
pub use daemon::{CliOutput, Daemon, Metrics, Sample, http_get, pigeon_dns_bin, run_cli};
pub use dig::{
    Dig, DigRecord, Propagation, SignedAnswer, normalize_tlsa, soa_serial, timed, wait_serial,
};
pub use dovecot::{Dovecot, DovecotOpts, DovecotPorts, MailProtocol, TlsFiles};
pub use fake_primary::{FakePrimary, Reply, Seen};
pub use fakes::{Behavior, FakeServer, Protocol};
pub use knot::{Knot, KnotOpts};
pub use net::{Subnet, is_refused, read_greeting, wait_for_greeting, wait_refused, wait_until};
pub use process::kill_all_started;
pub use secondary::Secondary;
pub use want::{
    BACKUP_MX, FOREIGN_IMAP, apex_mx, imap_a, imap_srv, ips, sorted, stop_until_unpublished,
    wait_standard_pools,
};
pub use web::WebServer;
