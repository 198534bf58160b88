//! The `pigeon-dns probe` table and metric sample names, as tests read them.

use std::path::Path;
use std::time::Duration;

use super::{CliOutput, Daemon, run_cli};

/// One row of the `probe` table.
#[derive(Debug)]
pub struct Row {
    pub pool: String,
    pub node: String,
    pub address: String,
    pub check: String,
    pub result: String,
    pub detail: String,
}

/// The columns before DETAIL hold no spaces; DETAIL is the rest of the line.
pub fn parse_row(line: &str) -> Option<Row> {
    let mut rest = line;
    let mut cols = Vec::new();
    for _ in 0..6 {
        rest = rest.trim_start();
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        cols.push(rest[..end].to_owned());
        rest = &rest[end..];
    }
    let mut cols = cols.into_iter();
    let mut col = || cols.next().unwrap_or_default();
    let (pool, node, address, check, result, _latency) = (col(), col(), col(), col(), col(), col());
    Some(Row {
        pool,
        node,
        address,
        check,
        result,
        detail: rest.trim().to_owned(),
    })
}

/// The row of `pool` and `node`; panics with the whole output otherwise.
pub fn row(out: &CliOutput, pool: &str, node: &str) -> Row {
    let mut rows: Vec<Row> = out
        .stdout
        .lines()
        .skip(1)
        .filter_map(parse_row)
        .filter(|r| r.pool == pool && r.node == node)
        .collect();
    assert_eq!(
        rows.len(),
        1,
        "expected one row for {pool} {node}\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    rows.remove(0)
}

pub fn probe(config: &Path) -> CliOutput {
    let out = run_cli(&["probe".as_ref(), "-c".as_ref(), config.as_os_str()]);
    println!("probe:\n{}{}", out.stdout, out.stderr);
    out
}

pub fn sample(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

/// Waits until `daemon` has counted at least two probes of `pool` at
/// `node`'s `address` as `result`, and its `pigeon_dns_node_up` agrees: 1
/// after `ok`, else 0.
pub fn wait_counted(
    daemon: &Daemon,
    (pool, node, address): (&str, &str, &str),
    result: &str,
    timeout: Duration,
) {
    let labels = [("pool", pool), ("node", node), ("address", address)];
    let [p, n, a] = labels;
    daemon.wait_for_metric(
        &sample("pigeon_dns_probes_total", &[p, n, a, ("result", result)]),
        |v| v >= 2.0,
        timeout,
    );
    let up = if result == "ok" { 1.0 } else { 0.0 };
    daemon.wait_for_metric(&sample("pigeon_dns_node_up", &labels), |v| v == up, timeout);
}
