//! SIGHUP: the configuration and key file read again and applied. A valid
//! one reaches the zones' reconcilers first (zones gone are retired, new
//! ones started), then replaces the target tasks; a target probed the same
//! way keeps its decided state and status, by its stable id. An invalid one
//! is logged with every error and the running one kept.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{
    Daemon, Probing, config_drains, drain_source, lease_setup, primary, tlsa_cache, zone_setup,
};
use crate::config;
use crate::core::health::State;
use crate::metrics::Metrics;
use crate::reconcile::{Input, ZoneReload};
use crate::status::Entry;
use crate::targets::{Layout, TargetId};

/// The daemon's log target, which the reload's lines carried before they
/// moved to their own file: log filters and JSON consumers see them as
/// they were.
const LOG_TARGET: &str = "pigeon_dns::app";

/// Re-reads the configuration and key file. A valid one goes to the zones'
/// reconcilers first, then replaces the target tasks (kept targets keep
/// their state); an invalid one is logged with every error and the running
/// one is kept.
pub(super) fn reload(
    path: &Path,
    current: &Probing,
    daemon: &mut Daemon,
    tasks: &mut JoinSet<()>,
    shutdown: &CancellationToken,
) -> Option<Probing> {
    info!(target: LOG_TARGET, file = %path.display(), "SIGHUP: reloading the configuration.");
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            for e in &errors {
                error!(target: LOG_TARGET, "{}", e.located());
            }
            error!(
                target: LOG_TARGET,
                errors = errors.len(),
                "The new configuration is invalid; keeping the running one."
            );
            return None;
        }
    };
    for w in &full.warnings {
        warn!(target: LOG_TARGET, "{}", w.located());
    }
    let keys = full.keys;
    let config = Arc::new(full.config);
    let generation = current.generation + 1;
    if daemon.prober.judges_dane() || config.pools.iter().any(|p| p.dane.is_on()) {
        // The TLSA reads follow the zone's server and key as reloaded.
        let tlsa = tlsa_cache(&config, &keys, Some(&daemon.metrics));
        daemon.prober = crate::probe::Prober::with_tlsa(tlsa);
    }
    let layout = Arc::new(Layout::new(&config, &daemon.host));
    // Carry state and status across by stable id, when probed the same way.
    let old = daemon.board.targets();
    let started = SystemTime::now();
    let mut health = HashMap::new();
    let mut entries = Vec::new();
    for t in &layout.targets {
        let kept = old
            .get(&t.id)
            .filter(|e| e.check == t.spec.check && e.port == t.spec.addr.port());
        let entry = match kept {
            Some(entry) => {
                if entry.state != State::Unknown {
                    health.insert(t.id.clone(), entry.state);
                }
                // A hold-out is told again by the next pass, if it still holds.
                Entry {
                    held_out: None,
                    ..entry.clone()
                }
            }
            None => {
                // New, or probed another way now (check or port changed): its
                // series start again, like its state (no stale node_up or expiry).
                if old.contains_key(&t.id) {
                    forget(&daemon.metrics, &t.id);
                }
                Entry::new(t.spec.check, t.spec.addr.port(), started)
            }
        };
        entries.push((t.id.clone(), entry));
    }
    // Forget the series of targets and pools that are gone.
    let kept: HashSet<&TargetId> = layout.targets.iter().map(|t| &t.id).collect();
    for id in old.keys().filter(|id| !kept.contains(id)) {
        forget(&daemon.metrics, id);
    }
    let labels = |l: &Layout| -> Vec<Arc<str>> {
        l.zones
            .iter()
            .flat_map(|z| z.shape.pools.iter().map(|p| p.label.clone()))
            .collect()
    };
    let new_labels = labels(&layout);
    for label in labels(&current.layout) {
        if !new_labels.contains(&label) {
            daemon.metrics.forget_pool(&label);
        }
    }
    let new_members = members(&layout);
    for (pool, node) in members(&current.layout) {
        if !new_members.contains(&(pool.clone(), node.clone())) {
            daemon.metrics.forget_member(&pool, &node);
        }
    }
    daemon.board.set_config_drains(config_drains(&config));
    daemon
        .drain_source
        .send_replace(drain_source(&config, &keys[0]));
    daemon.metrics.init_layout(&layout, config.ha.is_some());
    daemon.board.replace_targets(entries);
    // The reconcilers learn of the new generation before any of its target
    // tasks runs, so that no early transition is dropped as stale.
    let names: HashSet<&str> = layout.zones.iter().map(|z| z.name.as_str()).collect();
    daemon.zones.retain(|name, task| {
        let keep = names.contains(name.as_str());
        if !keep {
            info!(target: LOG_TARGET, zone = %name, "Zone removed: deleting its records.");
            let _ = task.inbox.send(Input::Retire);
            task.watcher.cancel();
            daemon.metrics.forget_zone(name);
        }
        keep
    });
    daemon.board.set_zones(&super::zone_servers(&config));
    for zone in &layout.zones {
        let zone_health: HashMap<TargetId, State> = layout
            .targets
            .iter()
            .filter(|t| layout.zones[t.zone].name == zone.name)
            .filter_map(|t| health.get(&t.id).map(|s| (t.id.clone(), *s)))
            .collect();
        let dns = &config.zones[zone.index];
        let key = &keys[zone.index];
        let changed = match daemon.zones.get(&zone.name) {
            // The secondaries' watcher starts again with new settings.
            Some(task) if task.dns != *dns => {
                task.watcher.cancel();
                Some(daemon.spawn_watcher(tasks, dns, key, shutdown))
            }
            _ => None,
        };
        match daemon.zones.get_mut(&zone.name) {
            Some(task) => {
                let changed = changed.map(|(changed, watcher)| {
                    task.watcher = watcher;
                    task.dns = dns.clone();
                    changed
                });
                let _ = task.inbox.send(Input::Reload(Box::new(ZoneReload {
                    generation,
                    setup: zone_setup(&config, zone),
                    shape: zone.shape.clone(),
                    primary: primary(dns, key),
                    ha: lease_setup(&config, zone),
                    health: zone_health,
                    targets: zone.targets,
                    changed,
                    tlsa: zone.tlsa.clone(),
                    tlsa_cache: daemon.prober.tlsa(),
                    stamp_ahead: dns.timeout,
                })));
            }
            None => daemon.spawn_zone(tasks, &config, key, zone, generation, zone_health, shutdown),
        }
    }
    let next = daemon.spawn_targets(tasks, generation, layout.clone(), &health, shutdown);
    info!(
        target: LOG_TARGET,
        generation,
        nodes = config.nodes.len(),
        pools = config.pools.len(),
        targets = layout.targets.len(),
        "Configuration reloaded."
    );
    Some(next)
}

/// Every pool × node of a layout, by pool label and node name.
fn members(layout: &Layout) -> HashSet<(Arc<str>, Arc<str>)> {
    layout
        .zones
        .iter()
        .flat_map(|z| z.shape.pools.iter())
        .flat_map(|p| p.members.iter().map(|m| (p.label.clone(), m.node.clone())))
        .collect()
}

fn forget(metrics: &Metrics, id: &TargetId) {
    metrics.forget_target(&id.pool, &id.node, &id.address.to_string());
}

#[cfg(test)]
mod tests {
    use prometheus::Registry;
    use tokio::sync::mpsc;

    use super::*;
    use crate::app::ZoneTask;
    use crate::events::Event;
    use crate::probe::Prober;
    use crate::reconcile::Mode;
    use crate::schedule::TargetContext;
    use crate::status::Board;
    use crate::targets::Target;

    /// A target that decides at once: its transition is sent while it is
    /// being started, as a fast probe's could be.
    fn instant(
        _: &mut JoinSet<()>,
        target: Target,
        _: State,
        ctx: TargetContext,
        _: CancellationToken,
    ) {
        ctx.outbox.send(Event::Transition {
            generation: ctx.generation,
            target: target.id,
            state: State::Up,
        });
    }

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// A reload tells the zone's reconciler of the new generation before any
    /// target task of that generation can report: a transition that came
    /// first would be dropped as stale, and its target never published.
    #[tokio::test]
    async fn a_reload_reaches_the_reconciler_before_its_targets_events() {
        let dir = tempfile::tempdir().unwrap();
        let key = write(
            dir.path(),
            "k.key",
            "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI=\";\n};\n",
        );
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let config = write(
            dir.path(),
            "p.toml",
            "[dns]\nserver = \"127.0.0.1:53\"\nzone = \"example.com\"\nkey_file = \"k.key\"\n\
             [http]\nlisten = \"\"\n\
             [[node]]\nname = \"mail1\"\naddresses = [\"192.0.2.11\"]\n\
             [[pool]]\nname = \"imap\"\ncheck = \"tcp\"\nport = 143\n",
        );
        let full = config::load_all(&config).expect("valid");
        let layout = Arc::new(Layout::new(&full.config, "test"));
        let (inbox, mut rx) = mpsc::unbounded_channel();
        let mut daemon = Daemon {
            launch: instant,
            prober: Prober::new(),
            metrics: Metrics::new(Registry::new()).unwrap(),
            board: Arc::new(Board::default()),
            host: "test".into(),
            token: "t".into(),
            mode: Mode::Write,
            zones: [(
                "example.com.".to_string(),
                ZoneTask {
                    inbox,
                    dns: full.config.zones[0].clone(),
                    watcher: CancellationToken::new(),
                },
            )]
            .into(),
            drains: tokio::sync::watch::channel(Default::default()).1,
            drain_source: tokio::sync::watch::channel(drain_source(&full.config, full.key(0))).0,
        };
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let current = daemon.spawn_targets(&mut tasks, 0, layout, &HashMap::new(), &shutdown);
        let next = reload(&config, &current, &mut daemon, &mut tasks, &shutdown).expect("reloaded");
        assert_eq!(next.generation, 1);
        let mut order = Vec::new();
        while let Ok(input) = rx.try_recv() {
            order.push(match input {
                Input::Event(Event::Transition { generation, .. }) => format!("event {generation}"),
                Input::Event(Event::FirstResult { generation, .. }) => {
                    format!("first {generation}")
                }
                Input::Event(Event::Falling { generation, .. }) => {
                    format!("falling {generation}")
                }
                Input::Event(Event::ServedKey { generation, .. }) => {
                    format!("key {generation}")
                }
                Input::Reload(r) => format!("reload {}", r.generation),
                Input::Retire => "retire".into(),
            });
        }
        assert_eq!(order, ["event 0", "reload 1", "event 1"]);
    }
}
