//! A mail cluster on one test subnet, and a `Lab`: subnet + BIND + cluster
//! + a directory for configs, the usual start of an end-to-end test.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::bind::{Bind, BindOpts};
use super::config::{ConfigBuilder, NodeSpec, PoolSpec};
use super::daemon::Daemon;
use super::dovecot::{Dovecot, DovecotOpts, DovecotPorts};
use super::net::Subnet;

/// The port of the daemon's HTTP listener on the lab subnet.
pub const HTTP_PORT: u16 = 9854;

/// One mail node: `mailN` with dovecot at `127.A.B.(10 + N)`.
pub struct MailNode {
    pub name: String,
    /// `mailN.<zone>`: its MX/SRV target.
    pub host: String,
    pub dovecot: Dovecot,
}

impl MailNode {
    pub fn ip(&self) -> IpAddr {
        self.dovecot.ip()
    }
    /// Kills its dovecot (connections refused at once).
    pub fn stop(&mut self) {
        self.dovecot.stop();
    }
    pub fn start_again(&mut self) {
        self.dovecot.start_again();
    }
    /// `[[node]]` for it, with its `host`.
    pub fn spec(&self) -> NodeSpec {
        NodeSpec::new(&self.name, &[self.ip()]).host(&self.host)
    }
}

/// `n` dovecot nodes `mail1..mailN` on `subnet` (`.11`, `.12`, ...), all on
/// the same port numbers, as a real cluster listens on 143 everywhere.
pub struct Cluster {
    pub ports: DovecotPorts,
    pub nodes: Vec<MailNode>,
}

impl Cluster {
    pub fn start(subnet: &Subnet, zone: &str, n: usize) -> Cluster {
        let ips: Vec<IpAddr> = (0..n).map(|i| subnet.node_ip(i)).collect();
        let ports = DovecotPorts::free_on(&ips);
        let nodes = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                let name = format!("mail{}", i + 1);
                let host = format!("{name}.{zone}");
                let dovecot = Dovecot::start_with(DovecotOpts::new(*ip, ports).hostname(&host));
                MailNode {
                    name,
                    host,
                    dovecot,
                }
            })
            .collect();
        Cluster { ports, nodes }
    }

    pub fn node(&self, name: &str) -> &MailNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
    pub fn node_mut(&mut self, name: &str) -> &mut MailNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }
    pub fn ips(&self) -> Vec<IpAddr> {
        self.nodes.iter().map(MailNode::ip).collect()
    }
    /// The node addresses as sorted strings, as [`Bind::query`] returns A rdata.
    pub fn ip_strings(&self) -> Vec<String> {
        let mut ips: Vec<String> = self.ips().iter().map(IpAddr::to_string).collect();
        ips.sort();
        ips
    }
}

/// Zone file lines giving each of `n` nodes' host an A record
/// (`mail1 3600 IN A 127.A.B.11`): MX targets in the zone need one, or BIND
/// refuses the UPDATE.
pub fn host_records(subnet: &Subnet, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("mail{} 3600 IN A {}", i + 1, subnet.node_ip(i)))
        .collect()
}

static CONFIGS: AtomicUsize = AtomicUsize::new(0);

/// Everything an end-to-end test starts with: a private subnet, BIND on
/// 127.0.0.1 at a free port (with [`FOREIGN_RECORDS`](super::bind::FOREIGN_RECORDS) and an A
/// record per node host), `n` dovecot nodes at `.11..`, and a tempdir for
/// configs. The daemon's HTTP listener goes to `.2:9854` (a second instance:
/// `.3:9854`).
pub struct Lab {
    pub subnet: Subnet,
    pub bind: Bind,
    pub cluster: Cluster,
    pub dir: tempfile::TempDir,
}

impl Lab {
    pub fn start(n: usize) -> Lab {
        Lab::start_with(n, BindOpts::default())
    }

    /// With `opts` for BIND (the node host records are added).
    pub fn start_with(n: usize, mut opts: BindOpts) -> Lab {
        let subnet = Subnet::new();
        for line in host_records(&subnet, n) {
            opts = opts.record(&line);
        }
        let bind = Bind::start(opts);
        let cluster = Cluster::start(&subnet, bind.zone(), n);
        let dir = tempfile::Builder::new()
            .prefix("pigeon-lab-")
            .tempdir()
            .expect("tempdir");
        Lab {
            subnet,
            bind,
            cluster,
            dir,
        }
    }

    /// The HTTP address of the `i`-th daemon (0-based): `127.A.B.(2 + i):9854`.
    pub fn http_addr(&self, i: u8) -> SocketAddr {
        SocketAddr::new(self.subnet.ip(2 + i), HTTP_PORT)
    }

    /// `[dns]` for this BIND, `[http]` at [`Lab::http_addr`]`(0)`, every
    /// node; no pools.
    pub fn config(&self) -> ConfigBuilder {
        let mut cfg = ConfigBuilder::for_bind(&self.bind).http(self.http_addr(0));
        for node in &self.cluster.nodes {
            cfg = cfg.node(node.spec());
        }
        cfg
    }

    /// [`Lab::config`] with the usual pools on the cluster's ports: `imap`
    /// (imap), `pop` (pop3), `smtp` (submission), `@` MX 10 (smtp check on
    /// the submission port) and `_imap._tcp` SRV (imap).
    pub fn standard_config(&self) -> ConfigBuilder {
        let p = self.cluster.ports;
        self.config()
            .pool(PoolSpec::a("imap", "imap").port(p.imap))
            .pool(PoolSpec::a("pop", "pop3").port(p.pop3))
            .pool(PoolSpec::a("smtp", "submission").port(p.submission))
            .pool(PoolSpec::mx("@", "smtp", 10).port(p.submission))
            .pool(PoolSpec::srv("_imap._tcp", "imap").port(p.imap))
    }

    /// Writes `cfg` to a new file in the lab's tempdir.
    pub fn write_config(&self, cfg: &ConfigBuilder) -> PathBuf {
        let n = CONFIGS.fetch_add(1, Ordering::Relaxed);
        cfg.write(&self.dir.path().join(format!("pigeon-dns-{n}.toml")))
    }

    /// Writes `cfg` and starts `pigeon-dns run` with it.
    pub fn daemon(&self, cfg: &ConfigBuilder) -> Daemon {
        let path = self.write_config(cfg);
        Daemon::spawn(&path, cfg.http_addr())
    }

    pub fn node(&self, name: &str) -> &MailNode {
        self.cluster.node(name)
    }
    pub fn node_mut(&mut self, name: &str) -> &mut MailNode {
        self.cluster.node_mut(name)
    }
}
