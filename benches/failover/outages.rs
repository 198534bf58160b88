//! Taking nodes away and back ([`Bench::outages`]), and what each outage
//! waits for: every node published ([`Bench::wait_ready`]), every pool
//! holding or dropping a node ([`Bench::pools_hold`]), a quiet zone
//! ([`Bench::wait_quiet`]).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hickory_proto::rr::Name;

use crate::common::Daemon;
use crate::lab::{Settings, Way};
use crate::support::dns::{Dns, Poller, name};
use crate::support::ms;
use crate::{Bench, NOTIFY_DELAY_DEFAULT, System};

/// The shell loop's period (`sleep 1` between rounds).
pub const SHELL_PERIOD: Duration = Duration::from_secs(1);

/// What an outage watches: the A names at the DNS server the system keeps
/// (BIND's primary, or PowerDNS), and for pigeon-dns the BIND secondary
/// and every pool at the primary.
pub struct Watch<'a> {
    pub poller: &'a Poller,
    /// The secondary, polled for the same names (None: not watched).
    pub replica: Option<&'a Poller>,
    /// The A names polled: a node is gone when it has left all of them.
    pub names: &'a [String],
    /// Every pool at the primary, each of which must drop the node before
    /// its UPDATEs are counted, and hold every node before an outage
    /// (empty: not checked).
    pub pools: &'a [Held],
    /// Addresses published besides the three dovecots' (the in-process
    /// nodes of the single-zone pigeon-dns part).
    pub extra_ips: &'a [IpAddr],
}

/// A pool at the primary: `name` (relative to `zone`) of `rtype`.
#[derive(Clone, Debug)]
pub struct Held {
    pub zone: String,
    pub name: String,
    pub rtype: &'static str,
}

impl Held {
    pub fn new(zone: &str, name: &str, rtype: &'static str) -> Held {
        Held {
            zone: zone.to_owned(),
            name: name.to_owned(),
            rtype,
        }
    }
}

/// One outage: a node taken away and brought back.
#[derive(Clone, Debug, Default)]
pub struct Rep {
    pub node: String,
    /// Signal to the first answer without the node in every watched name
    /// (None: not within the limit).
    pub gone_ms: Option<f64>,
    /// The same for each watched name, in [`Watch::names`]' order.
    pub gone_by_name: Vec<Option<f64>>,
    /// Bringing it back to the first answer with it (in every name).
    pub back_ms: Option<f64>,
    /// Signal to the secondary's first answer without it (in every name).
    pub replica_gone_ms: Option<f64>,
    /// "UPDATE applied." lines of the daemon for this failure.
    pub updates: Option<usize>,
    /// The same per zone of [`Watch::pools`], in the order they first appear.
    pub updates_by_zone: Vec<usize>,
    /// The longest of their round trips to the primary (`duration_ms`:
    /// from the connection to BIND's answer, its journal commit included).
    pub update_ms: Option<f64>,
    /// Serial increments at the primary for this failure (all zones).
    pub serial_delta: Option<u32>,
    /// The same per zone.
    pub serial_by_zone: Vec<Option<u32>>,
    /// How long the zone had not changed before the signal.
    pub quiet_ms: Option<f64>,
}

/// The outages of one way against one system.
pub struct Outages {
    pub reps: Vec<Rep>,
    pub planned: usize,
    pub limit: Duration,
    /// Stopped early: this many outages in a row never left DNS.
    pub gave_up: bool,
    /// How long the outages took, waits included.
    pub took: Duration,
}

impl Outages {
    /// Two runs of the same measurement as one.
    pub fn merge(mut self, other: Outages) -> Outages {
        self.reps.extend(other.reps);
        self.planned += other.planned;
        self.gave_up |= other.gave_up;
        self.took += other.took;
        self
    }
}

/// The zones of `pools`, each once, in order.
pub fn zones_of(pools: &[Held]) -> Vec<String> {
    let mut zones: Vec<String> = Vec::new();
    for p in pools {
        if !zones.contains(&p.zone) {
            zones.push(p.zone.clone());
        }
    }
    zones
}

impl Bench {
    /// The time between two checks of a node by `system`: the random phase
    /// before each event is drawn from [0, this).
    pub fn period(&self, system: System) -> Duration {
        match system {
            System::Pigeon => Settings::DEFAULT.interval,
            System::Pdns => Duration::from_secs(self.pdns_interval),
            System::Shell => SHELL_PERIOD,
        }
    }

    /// How long a node may take to leave DNS before the outage counts as
    /// "never": well past every bound of the system.
    pub fn limit(&self, system: System, way: Way) -> Duration {
        match system {
            System::Pigeon => Settings::DEFAULT.bound(way) + Duration::from_secs(10),
            _ if self.smoke => Duration::from_secs(3),
            _ => Duration::from_secs(20),
        }
    }

    /// A random phase in [0, period): the event must not be in step with
    /// the system's checks. (None in smoke runs, to keep them short.)
    pub fn random_phase(&mut self, period: Duration) {
        if !self.smoke {
            std::thread::sleep(self.rng.duration(period));
        }
    }

    /// Takes nodes away `way` and back, `reps` times, rotating over the
    /// three dovecots (from `mail{first + 1}`). Stops early after three
    /// outages in a row (one in smoke runs) that never left DNS within the
    /// limit.
    #[allow(clippy::too_many_arguments)]
    pub fn outages(
        &mut self,
        system: System,
        way: Way,
        watch: &Watch,
        daemon: Option<&Daemon>,
        quiet: Option<Duration>,
        reps: usize,
        first: usize,
    ) -> Outages {
        let limit = self.limit(system, way);
        let give_up_after = if self.smoke { 1 } else { 3 };
        let period = self.period(system);
        let mut out = Outages {
            reps: Vec::new(),
            planned: reps,
            limit,
            gave_up: false,
            took: Duration::ZERO,
        };
        let started = Instant::now();
        let mut missed_in_a_row = 0;
        let main_zone = name(self.lab.bind.zone());
        let zones: Vec<Name> = zones_of(watch.pools).iter().map(|z| name(z)).collect();
        let mut dns = Dns::new(self.lab.bind.addr());
        for i in 0..reps {
            let node = format!("mail{}", 1 + (first + i) % 3);
            let ip = self.lab.node(&node).ip();
            self.wait_ready(system, watch, Duration::from_secs(60));
            let quiet_ms = quiet.map(|q| ms(self.wait_quiet(&main_zone, q)));
            self.random_phase(period);
            let mark = daemon.map(Daemon::log_mark);
            let serials0: Vec<Option<u32>> = zones.iter().map(|z| dns.serial(z).ok()).collect();
            let t0 = Instant::now();
            way.down(self.lab.node_mut(&node));
            let gone_by_name = gone_in(watch.poller, watch.names, ip, false, t0, limit);
            let gone = latest(&gone_by_name);
            let mut rep = Rep {
                node: node.clone(),
                gone_ms: gone,
                gone_by_name,
                quiet_ms,
                ..Rep::default()
            };
            if gone.is_some() {
                missed_in_a_row = 0;
                if let Some(replica) = watch.replica {
                    let within = NOTIFY_DELAY_DEFAULT + Duration::from_secs(10);
                    rep.replica_gone_ms =
                        latest(&gone_in(replica, watch.names, ip, false, t0, within));
                }
                if let (Some(daemon), Some(mark)) = (daemon, mark) {
                    // Every pool has dropped the node: all of its UPDATEs are in.
                    let deadline = Instant::now() + Duration::from_secs(30);
                    while !self.pools_hold(watch.pools, &node, false) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let applied: Vec<String> = daemon.logs()[mark..]
                        .iter()
                        .filter(|l| l.contains("UPDATE applied."))
                        .cloned()
                        .collect();
                    rep.updates = Some(applied.len());
                    rep.updates_by_zone = zones_of(watch.pools)
                        .iter()
                        .map(|z| {
                            applied
                                .iter()
                                .filter(|l| zone_field(l).is_some_and(|lz| lz == z))
                                .count()
                        })
                        .collect();
                    rep.update_ms = applied
                        .iter()
                        .filter_map(|l| field(l, "duration_ms")?.parse::<f64>().ok())
                        .reduce(f64::max);
                    rep.serial_by_zone = zones
                        .iter()
                        .zip(&serials0)
                        .map(|(z, s0)| Some(dns.serial(z).ok()?.wrapping_sub((*s0)?)))
                        .collect();
                    rep.serial_delta = rep.serial_by_zone.iter().copied().sum();
                }
            } else {
                missed_in_a_row += 1;
            }
            self.random_phase(period);
            let t1 = Instant::now();
            way.up(self.lab.node_mut(&node));
            if gone.is_some() {
                let back_limit = limit + Duration::from_secs(10);
                rep.back_ms = latest(&gone_in(
                    watch.poller,
                    watch.names,
                    ip,
                    true,
                    t1,
                    back_limit,
                ));
            }
            println!(
                "  {}",
                crate::rows::describe_rep(system, way, &rep, watch.names)
            );
            out.reps.push(rep);
            if missed_in_a_row >= give_up_after {
                println!(
                    "  {} {}: never left DNS within {limit:?} {missed_in_a_row} times in a row; not repeated",
                    system.key(),
                    way.key()
                );
                out.gave_up = true;
                break;
            }
        }
        out.took = started.elapsed();
        println!(
            "  ({} {}: {:.1} s)",
            system.key(),
            way.key(),
            out.took.as_secs_f64()
        );
        out
    }

    /// Waits until the system publishes every node in every watched name
    /// (at the secondary too when it is watched) and, when pools are
    /// given, in every pool at the primary.
    pub fn wait_ready(&self, system: System, watch: &Watch, timeout: Duration) {
        let mut ips = self.lab.cluster.ips();
        ips.extend(watch.extra_ips);
        let deadline = Instant::now() + timeout;
        // Every address in one answer: PowerDNS answers one address at
        // random while it counts them all down (before its first checks).
        let holds_all = |poller: &Poller| {
            watch.names.iter().all(|n| {
                let current = poller.current(n);
                ips.iter().all(|ip| current.contains(ip))
            })
        };
        while !holds_all(watch.poller) || watch.replica.is_some_and(|r| !holds_all(r)) {
            assert!(
                Instant::now() < deadline,
                "{}: not every node published within {timeout:?}: {:?} (secondary: {:?})",
                system.key(),
                watch
                    .names
                    .iter()
                    .map(|n| watch.poller.current(n))
                    .collect::<Vec<_>>(),
                watch
                    .replica
                    .map(|r| watch.names.iter().map(|n| r.current(n)).collect::<Vec<_>>())
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        if !watch.pools.is_empty() {
            for node in ["mail1", "mail2", "mail3"] {
                while !self.pools_hold(watch.pools, node, true) {
                    assert!(
                        Instant::now() < deadline,
                        "{node} not back in every pool within {timeout:?}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Whether every one of `pools` at the primary holds `node`
    /// (`present`) or none does (`!present`): dig over TCP, BIND's own
    /// answers.
    pub fn pools_hold(&self, pools: &[Held], node: &str, present: bool) -> bool {
        let n = self.lab.node(node);
        let (ip, host) = (n.ip().to_string(), format!("{}.", n.host));
        pools.iter().all(|p| {
            let records = self.lab.bind.query_in(&p.zone, &p.name, p.rtype);
            let held = if p.rtype == "A" {
                records.contains(&ip)
            } else {
                records
                    .iter()
                    .any(|r| r.split_whitespace().last() == Some(host.as_str()))
            };
            held == present
        })
    }

    /// Waits until the secondary has held the primary's serial for
    /// `quiet`, counted from the call at the earliest: the primary's last
    /// NOTIFY (which the secondary's transfer follows at once) is that long
    /// ago, and so is its last reload (before the call), so its
    /// notify-delay window is closed. Returns how long that has been.
    pub fn wait_quiet(&self, zone: &Name, quiet: Duration) -> Duration {
        let mut primary = Dns::new(self.lab.bind.addr());
        let mut replica = Dns::new(self.replica_addr);
        let deadline = Instant::now() + quiet + Duration::from_secs(60);
        let mut since = Instant::now();
        let mut last = replica.serial(zone).ok();
        loop {
            let now = Instant::now();
            let serials = (primary.serial(zone).ok(), replica.serial(zone).ok());
            if serials.0.is_none() || serials.0 != serials.1 || serials.1 != last {
                last = serials.1;
                since = now;
            }
            if now.duration_since(since) >= quiet {
                return now.duration_since(since);
            }
            assert!(
                now < deadline,
                "the zone never stayed unchanged for {quiet:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// For each of `names`, the time from `t0` to the first answer of
/// `poller` with `ip`'s presence changed to `present`, waiting at most
/// `limit` from now for all of them.
fn gone_in(
    poller: &Poller,
    names: &[String],
    ip: IpAddr,
    present: bool,
    t0: Instant,
    limit: Duration,
) -> Vec<Option<f64>> {
    let deadline = Instant::now() + limit;
    names
        .iter()
        .map(|n| {
            let left = deadline.saturating_duration_since(Instant::now());
            poller
                .wait_change(n, ip, present, t0, left)
                .map(|c| ms(c.at - t0))
        })
        .collect()
}

/// The last of the times, when every one came.
fn latest(times: &[Option<f64>]) -> Option<f64> {
    times
        .iter()
        .copied()
        .try_fold(f64::NEG_INFINITY, |a, t| Some(a.max(t?)))
        .filter(|t| t.is_finite())
}

/// The value of `key=value` in a text log line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!("{key}="))? + key.len() + 1;
    line[start..]
        .split_whitespace()
        .next()
        .map(|v| v.trim_matches('"'))
}

/// The zone of a daemon log line (its `reconcile{zone=...}` span),
/// without the final dot.
pub fn zone_field(line: &str) -> Option<&str> {
    let start = line.find("zone=")? + "zone=".len();
    let rest = line[start..].trim_start_matches('"');
    let end = rest
        .find(|c: char| c == '}' || c == ',' || c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end_matches('.'))
}
