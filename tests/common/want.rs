//! What BIND should answer for the pools of a [`Lab`] when `nodes` are the
//! healthy ones: the sorted rdata [`Bind::query`](super::Bind::query)
//! returns, with the [`FOREIGN_RECORDS`] that share a pool's name, a wait
//! for all of [`Lab::standard_config`]'s pools at once, and one for a
//! stopped node to leave `imap`.

use std::time::{Duration, Instant};

use super::bind::FOREIGN_RECORDS;
use super::cluster::Lab;

/// The foreign A record at `imap` ([`FOREIGN_RECORDS`], TTL 300).
pub const FOREIGN_IMAP: &str = FOREIGN_RECORDS[0].3;
/// The foreign MX at the apex ([`FOREIGN_RECORDS`], TTL 3600).
pub const BACKUP_MX: &str = FOREIGN_RECORDS[1].3;

/// `items`, sorted: the order `Bind::query` answers in.
pub fn sorted(items: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = items.into_iter().collect();
    v.sort();
    v
}

/// The nodes' addresses, as `Bind::query` returns A rdata.
pub fn ips(lab: &Lab, nodes: &[&str]) -> Vec<String> {
    sorted(nodes.iter().map(|n| lab.node(n).ip().to_string()))
}

/// `imap` A: the nodes plus the foreign record.
pub fn imap_a(lab: &Lab, nodes: &[&str]) -> Vec<String> {
    sorted(ips(lab, nodes).into_iter().chain([FOREIGN_IMAP.to_owned()]))
}

/// `@` MX: preference 10 to each node's host, plus the foreign backup MX.
pub fn apex_mx(lab: &Lab, nodes: &[&str]) -> Vec<String> {
    sorted(
        nodes
            .iter()
            .map(|n| format!("10 {}.", lab.node(n).host))
            .chain([BACKUP_MX.to_owned()]),
    )
}

/// `_imap._tcp` SRV: `0 1 PORT host.` per node, at the cluster's IMAP port.
pub fn imap_srv(lab: &Lab, nodes: &[&str]) -> Vec<String> {
    let port = lab.cluster.ports.imap;
    sorted(
        nodes
            .iter()
            .map(|n| format!("0 1 {port} {}.", lab.node(n).host)),
    )
}

/// Waits until every pool of [`Lab::standard_config`] holds exactly `nodes`
/// (`imap`, `pop`, `smtp`, `@` MX, `_imap._tcp` SRV), all within `timeout`.
pub fn wait_standard_pools(lab: &Lab, nodes: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let left = || deadline.saturating_duration_since(Instant::now());
    let want = imap_a(lab, nodes);
    lab.bind.wait_for("imap", "A", |a| a == want, left());
    let want = ips(lab, nodes);
    lab.bind.wait_for("pop", "A", |a| a == want, left());
    lab.bind.wait_for("smtp", "A", |a| a == want, left());
    let want = apex_mx(lab, nodes);
    lab.bind.wait_for("@", "MX", |a| a == want, left());
    let want = imap_srv(lab, nodes);
    lab.bind
        .wait_for("_imap._tcp", "SRV", |a| a == want, left());
}

/// Stops `node`'s dovecot (a crash) and waits until BIND's `imap` A no
/// longer holds its address, and still holds some record.
pub fn stop_until_unpublished(lab: &mut Lab, node: &str, timeout: Duration) {
    let ip = lab.node(node).ip().to_string();
    lab.node_mut(node).stop();
    lab.bind
        .wait_for("imap", "A", |r| !r.contains(&ip) && !r.is_empty(), timeout);
}
