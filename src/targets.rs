//! The one walk of pool × node × address: every target with a stable id,
//! and every pool as the core sees it. Built once per configuration.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::{
    Config, DaneMode, Node, Pool, PoolKind, ProbeSettings, pool_tlsa_owner, pool_zone,
};
use crate::core::desired::{Member, PoolShape, Publish};
use crate::core::records::name_key;
use crate::probe::{DaneSpec, ProbeSpec};
use crate::reconcile::{ManagedService, Shape, TlsaShape};

/// Identifies a target across reloads: the pool's label, the node's name
/// and the address probed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetId {
    pub pool: Arc<str>,
    pub node: Arc<str>,
    pub address: IpAddr,
}

impl TargetId {
    pub fn new(pool: &str, node: &str, address: IpAddr) -> Self {
        Self {
            pool: pool.into(),
            node: node.into(),
            address,
        }
    }
}

impl std::fmt::Display for TargetId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.pool, self.node, self.address)
    }
}

/// Everything a target task needs, resolved from the config once.
#[derive(Clone, Debug)]
pub struct Target {
    pub id: TargetId,
    /// Index of its pool's zone in [`Layout::zones`].
    pub zone: usize,
    /// Shared with its watch connection's future rather than copied there.
    pub spec: Arc<ProbeSpec>,
    pub settings: ProbeSettings,
    /// Shared by every target at the same address (its other pools, in any
    /// zone): a failure one of them sees while up makes the others probe at
    /// once, so that a node's failure is decided in every pool together and
    /// goes out as one UPDATE per zone.
    pub siblings: Arc<tokio::sync::Notify>,
}

/// A zone with the pools it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneLayout {
    /// Its index in `Config::zones` (and in [`Layout::zones`]).
    pub index: usize,
    /// The zone (a name key).
    pub name: String,
    pub shape: Arc<Shape>,
    /// Targets of its pools.
    pub targets: usize,
    /// `dane = "manage"`: the TLSA owners it manages and the services there.
    pub tlsa: Arc<TlsaShape>,
}

/// A configuration's pools and targets.
#[derive(Clone, Debug)]
pub struct Layout {
    pub zones: Vec<ZoneLayout>,
    pub targets: Vec<Target>,
}

/// The name without its final dot, as a host name is written in TLS and HTTP.
fn host_text(name: &hickory_proto::rr::Name) -> String {
    name.to_ascii().trim_end_matches('.').to_string()
}

/// The labels of the pools, unique across zones: the name as written;
/// when pools of several zones share it, the owner name instead (without
/// its final dot: `@` of example.org is `example.org`); when two pools
/// still share it (an A and an MX pool at `@`), with the type after a `/`.
pub fn pool_labels(config: &Config) -> Vec<Arc<str>> {
    let base: Vec<String> = config
        .pools
        .iter()
        .map(|pool| {
            let across_zones = config
                .pools
                .iter()
                .any(|p| p.name == pool.name && p.zone != pool.zone);
            if across_zones {
                host_text(&pool.fqdn)
            } else {
                pool.name.clone()
            }
        })
        .collect();
    config
        .pools
        .iter()
        .zip(&base)
        .map(|(pool, label)| {
            if base.iter().filter(|b| *b == label).count() > 1 {
                let t = match pool.kind {
                    PoolKind::Address => "a",
                    PoolKind::Mx { .. } => "mx",
                    PoolKind::Srv { .. } => "srv",
                };
                format!("{label}/{t}").into()
            } else {
                label.as_str().into()
            }
        })
        .collect()
}

/// What a probe of `pool` at `node` needs for DANE (`None`: off).
fn dane_spec(pool: &Pool, node: &Node) -> Option<DaneSpec> {
    pool.dane.is_on().then(|| DaneSpec {
        manage: pool.dane == DaneMode::Manage,
        owner: pool_tlsa_owner(pool, node),
        host: host_text(&node.host),
    })
}

/// The services of `zone`'s `manage` pools, one per node and TLSA owner,
/// with the labels of the pools that publish the node under that owner.
fn tlsa_shape(config: &Config, labels: &[Arc<str>], zone: &str) -> TlsaShape {
    let in_zone = |pool: &Pool| name_key(&pool_zone(config, pool).0.to_ascii()) == zone;
    let mut services: Vec<ManagedService> = Vec::new();
    for (pool, label) in config.pools.iter().zip(labels) {
        if pool.dane != DaneMode::Manage || !in_zone(pool) {
            continue;
        }
        for node in pool.nodes.iter().filter_map(|&n| config.nodes.get(n)) {
            let owner = pool_tlsa_owner(pool, node);
            match services
                .iter_mut()
                .find(|s| &*s.node == node.name.as_str() && s.owner == owner)
            {
                Some(service) => service.pools.push(label.clone()),
                None => services.push(ManagedService {
                    node: node.name.as_str().into(),
                    owner,
                    pools: vec![label.clone()],
                    addresses: node.addresses.clone(),
                    next: node.tlsa_next.iter().map(|k| k.digest).collect(),
                }),
            }
        }
    }
    TlsaShape {
        services,
        dane: config.pools.iter().any(|p| p.dane.is_on() && in_zone(p)),
    }
}

impl Layout {
    /// `ehlo_name`: the argument of the probes' EHLO (this host's name).
    pub fn new(config: &Config, ehlo_name: &str) -> Self {
        let labels = pool_labels(config);
        let mut shapes: Vec<Vec<PoolShape>> = vec![Vec::new(); config.zones.len()];
        let mut targets = Vec::new();
        let mut siblings: std::collections::HashMap<IpAddr, Arc<tokio::sync::Notify>> =
            std::collections::HashMap::new();
        for (pool, label) in config.pools.iter().zip(&labels) {
            let mut members = Vec::new();
            for &node_index in &pool.nodes {
                let node = &config.nodes[node_index];
                let node_name: Arc<str> = node.name.as_str().into();
                members.push(Member {
                    node: node_name.clone(),
                    host: name_key(&node.host.to_ascii()),
                    addresses: node.addresses.clone(),
                    drain: node.drain,
                });
                for &address in &node.addresses {
                    let default_tls_name = match pool.kind {
                        PoolKind::Address => host_text(&pool.fqdn),
                        PoolKind::Mx { .. } | PoolKind::Srv { .. } => host_text(&node.host),
                    };
                    targets.push(Target {
                        id: TargetId {
                            pool: label.clone(),
                            node: node_name.clone(),
                            address,
                        },
                        zone: pool.zone,
                        spec: Arc::new(ProbeSpec {
                            check: pool.check,
                            addr: (address, pool.port).into(),
                            timeout: pool.probe.timeout,
                            starttls: pool.starttls,
                            tls_name: pool.tls.name.clone().unwrap_or(default_tls_name),
                            tls: pool.tls.clone(),
                            http_host: host_text(&pool.fqdn),
                            path: pool.path.clone(),
                            expect_body: pool.expect_body.clone(),
                            ehlo_name: ehlo_name.to_string(),
                            dane: dane_spec(pool, node),
                        }),
                        settings: pool.probe,
                        siblings: siblings.entry(address).or_default().clone(),
                    });
                }
            }
            shapes[pool.zone].push(PoolShape {
                label: label.clone(),
                owner: name_key(&pool.fqdn.to_ascii()),
                publish: match pool.kind {
                    PoolKind::Address => Publish::Address,
                    PoolKind::Mx { preference } => Publish::Mx { preference },
                    PoolKind::Srv { priority, weight } => Publish::Srv {
                        priority,
                        weight,
                        port: pool.port,
                    },
                },
                all_down: pool.all_down,
                members,
            });
        }
        let zones = config
            .zones
            .iter()
            .zip(shapes)
            .enumerate()
            .map(|(index, (zone, pools))| ZoneLayout {
                index,
                name: name_key(&zone.zone.to_ascii()),
                shape: Arc::new(Shape::new(pools)),
                targets: targets.iter().filter(|t| t.zone == index).count(),
                tlsa: Arc::new(tlsa_shape(
                    config,
                    &labels,
                    &name_key(&zone.zone.to_ascii()),
                )),
            })
            .collect();
        Self { zones, targets }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::test_support::BASE;

    fn config(text: &str) -> Config {
        match crate::config::load_str(Path::new("/etc/pigeon-dns/pigeon-dns.toml"), text) {
            Ok(loaded) => loaded.config,
            Err(errors) => panic!("{errors:?}"),
        }
    }

    #[test]
    fn each_zone_gets_its_pools_and_labels_stay_unique_across_zones() {
        let config = config(
            "[dns]\nserver = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_file = \"k\"\n\
             [[zone]]\nname = \"example.org\"\n\
             [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
             [[pool]]\nzone = \"example.com\"\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n\
             [[pool]]\nzone = \"example.com\"\nname = \"@\"\ncheck = \"http\"\n\
             [[pool]]\nzone = \"example.org\"\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n\
             [[pool]]\nzone = \"example.org\"\nname = \"imap\"\ncheck = \"imap\"\n",
        );
        let labels: Vec<String> = pool_labels(&config).iter().map(|l| l.to_string()).collect();
        assert_eq!(
            labels,
            ["example.com/mx", "example.com/a", "example.org", "imap"]
        );
        let layout = Layout::new(&config, "probe.example");
        let zones: Vec<(&str, usize, usize)> = layout
            .zones
            .iter()
            .map(|z| (z.name.as_str(), z.shape.pools.len(), z.targets))
            .collect();
        assert_eq!(zones, [("example.com.", 2, 2), ("example.org.", 2, 2)]);
        let in_org: Vec<&str> = layout
            .targets
            .iter()
            .filter(|t| t.zone == 1)
            .map(|t| &*t.id.pool)
            .collect();
        assert_eq!(in_org, ["example.org", "imap"]);
        // One node's targets in every zone share one notifier.
        assert!(
            layout
                .targets
                .windows(2)
                .all(|w| Arc::ptr_eq(&w[0].siblings, &w[1].siblings))
        );
    }

    #[test]
    fn manage_pools_give_one_service_per_node_and_owner() {
        let text = format!(
            r#"{BASE}
[[pool]]
name = "@"
type = "MX"
check = "smtp"
starttls = true
dane = "manage"
[[pool]]
name = "smtp"
check = "smtp"
starttls = true
dane = "manage"
nodes = ["mail1"]
[[pool]]
name = "submission"
check = "submission"
starttls = true
dane = "verify"
"#
        );
        let config = crate::config::load_str(Path::new("/etc/pigeon-dns/p.toml"), &text)
            .expect("valid")
            .config;
        let layout = Layout::new(&config, "probe.test");
        let tlsa = &layout.zones[0].tlsa;
        assert!(tlsa.dane);
        let services: Vec<(&str, &str, Vec<&str>, usize)> = tlsa
            .services
            .iter()
            .map(|s| {
                let pools = s.pools.iter().map(|p| &**p).collect();
                (&*s.node, s.owner.as_str(), pools, s.addresses.len())
            })
            .collect();
        assert_eq!(
            services,
            [
                ("mail1", "_25._tcp.mail1.example.com.", vec!["@", "smtp"], 2),
                ("mail2", "_25._tcp.mail2.example.com.", vec!["@"], 1),
            ]
        );
        let spec = |pool: &str, node: &str| {
            layout
                .targets
                .iter()
                .find(|t| &*t.id.pool == pool && &*t.id.node == node)
                .and_then(|t| t.spec.dane.clone())
        };
        assert_eq!(
            spec("submission", "mail2"),
            Some(DaneSpec {
                manage: false,
                owner: "_587._tcp.mail2.example.com.".into(),
                host: "mail2.example.com".into(),
            })
        );
        assert!(spec("@", "mail1").is_some_and(|d| d.manage));
    }
}
