//! Pure: (config, health, what the primary holds) -> the records pigeon-dns
//! wants at each owned RRset, with the `all_down` policy applied.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use crate::config::{AllDown, Config, Pool, PoolKind};
use crate::dns::records::{RRset, RRsetKey, RType, Rdata, name_key};
use crate::health::State;

/// What the primary holds at the owned RRsets (absent key: empty RRset).
pub type View = BTreeMap<RRsetKey, RRset>;

/// The outcome for one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolOutcome {
    /// The `all_down` policy is in force for at least one family (A pools) or
    /// for the pool (MX, SRV).
    pub all_down: bool,
    /// Records the pool wants published.
    pub published: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every record pigeon-dns owns, per RRset: those of configured nodes at
    /// configured pool names, drained nodes included.
    pub owned: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
    /// The owned records that should be published, per RRset.
    pub wanted: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
    /// Indexed like `Config::pools`.
    pub pools: Vec<PoolOutcome>,
}

/// Computes the desired records. `health(pool, node, address)` is the decided
/// state of one target.
pub fn desired(
    config: &Config,
    health: &dyn Fn(usize, usize, IpAddr) -> State,
    current: &View,
) -> Desired {
    let mut out = Desired::default();
    for (pool_index, pool) in config.pools.iter().enumerate() {
        let mut outcome = PoolOutcome::default();
        for (rtype, candidates) in pool_candidates(config, pool_index, health) {
            let key = RRsetKey {
                name: name_key(&pool.fqdn),
                rtype,
            };
            let owned: BTreeSet<Rdata> = candidates.iter().map(|c| c.rdata.clone()).collect();
            let present = current.get(&key).map(|s| &s.records);
            let (wanted, all_down) = choose(&candidates, present, pool.all_down);
            outcome.all_down |= all_down;
            outcome.published += wanted.len();
            out.owned.entry(key.clone()).or_default().extend(owned);
            out.wanted.entry(key).or_default().extend(wanted);
        }
        out.pools.push(outcome);
    }
    out
}

/// One record a pool could publish, and the state that decides it.
#[derive(Clone, Debug)]
struct Candidate {
    rdata: Rdata,
    state: State,
    drained: bool,
}

/// The candidate records of a pool, per RRset type.
fn pool_candidates(
    config: &Config,
    pool_index: usize,
    health: &dyn Fn(usize, usize, IpAddr) -> State,
) -> Vec<(RType, Vec<Candidate>)> {
    let pool = &config.pools[pool_index];
    let mut by_type: BTreeMap<RType, Vec<Candidate>> = BTreeMap::new();
    match pool.kind {
        PoolKind::Address => {
            // Both families are always owned, so a family left empty is cleaned up.
            by_type.insert(RType::A, Vec::new());
            by_type.insert(RType::Aaaa, Vec::new());
            for &node_index in &pool.nodes {
                let node = &config.nodes[node_index];
                for &address in &node.addresses {
                    let rdata = Rdata::address(address);
                    by_type.entry(rdata.rtype()).or_default().push(Candidate {
                        rdata,
                        state: health(pool_index, node_index, address),
                        drained: node.drain,
                    });
                }
            }
        }
        PoolKind::Mx { .. } | PoolKind::Srv { .. } => {
            let rtype = if matches!(pool.kind, PoolKind::Mx { .. }) {
                RType::Mx
            } else {
                RType::Srv
            };
            let list = by_type.entry(rtype).or_default();
            for &node_index in &pool.nodes {
                let node = &config.nodes[node_index];
                let states = node
                    .addresses
                    .iter()
                    .map(|&a| health(pool_index, node_index, a));
                list.push(Candidate {
                    rdata: host_rdata(pool, &name_key(&node.host)),
                    state: node_state(states),
                    drained: node.drain,
                });
            }
        }
    }
    by_type.into_iter().collect()
}

/// The MX or SRV rdata of a pool pointing at `host`.
pub fn host_rdata(pool: &Pool, host: &str) -> Rdata {
    match pool.kind {
        PoolKind::Mx { preference } => Rdata::Mx {
            preference,
            exchange: host.to_string(),
        },
        PoolKind::Srv { priority, weight } => Rdata::Srv {
            priority,
            weight,
            port: pool.port,
            target: host.to_string(),
        },
        PoolKind::Address => unreachable!("address pools publish addresses"),
    }
}

/// A node counts as up when any of its addresses is up, down when all are down.
fn node_state(states: impl Iterator<Item = State>) -> State {
    let mut all_down = true;
    for state in states {
        match state {
            State::Up => return State::Up,
            State::Unknown => all_down = false,
            State::Down => {}
        }
    }
    if all_down {
        State::Down
    } else {
        State::Unknown
    }
}

/// Applies health and the `all_down` policy to one RRset's candidates. Returns
/// the records to publish and whether the policy is in force.
fn choose(
    candidates: &[Candidate],
    present: Option<&BTreeSet<Rdata>>,
    policy: AllDown,
) -> (BTreeSet<Rdata>, bool) {
    let is_present = |r: &Rdata| present.is_some_and(|p| p.contains(r));
    let active: Vec<&Candidate> = candidates.iter().filter(|c| !c.drained).collect();
    // Up records, plus undecided ones that are already there (nothing is added
    // or removed for a target until rise or fall decides).
    let base: BTreeSet<Rdata> = active
        .iter()
        .filter(|c| c.state == State::Up || (c.state == State::Unknown && is_present(&c.rdata)))
        .map(|c| c.rdata.clone())
        .collect();
    if !base.is_empty() || !active.iter().any(|c| c.state == State::Down) {
        return (base, false);
    }
    // Publish-all never adds an undecided target: nothing is added for it
    // until rise or fall decides (so the next pass, with the same health,
    // changes nothing). A down one is there to decide the policy.
    let all: BTreeSet<Rdata> = active
        .iter()
        .filter(|c| c.state != State::Unknown || is_present(&c.rdata))
        .map(|c| c.rdata.clone())
        .collect();
    let chosen = match policy {
        AllDown::PublishAll => all,
        AllDown::Keep => {
            let kept: BTreeSet<Rdata> = all.iter().filter(|r| is_present(r)).cloned().collect();
            if kept.is_empty() { all } else { kept }
        }
    };
    (chosen, true)
}

#[cfg(test)]
mod tests;
