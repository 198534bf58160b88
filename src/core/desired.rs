//! Pure: (pools, health, drains, what the primary holds) -> the records
//! pigeon-dns wants at each owned RRset, with the `all_down` policy applied.
//!
//! The pools come in as [`PoolShape`]s, built once per configuration by
//! `targets`: what the core needs of the config, and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use super::health::State;
use super::records::{RRsetKey, RType, Rdata, View};

/// Records pigeon-dns owns, per RRset.
pub type Owned = BTreeMap<RRsetKey, BTreeSet<Rdata>>;

/// What a pool publishes for each node it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publish {
    /// A and AAAA records of the node's addresses.
    Address,
    /// `MX preference host`.
    Mx { preference: u16 },
    /// `SRV priority weight port host`.
    Srv {
        priority: u16,
        weight: u16,
        port: u16,
    },
}

/// What a pool publishes when none of its nodes is up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllDown {
    /// Publish every (non-drained) node.
    PublishAll,
    /// Leave the records as they are (publish all where none is left).
    Keep,
}

/// A pool as the core sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolShape {
    /// The pool's label (its name, made unique with the type when two pools
    /// share a name): the `pool` of metrics, targets and drain marks.
    pub label: Arc<str>,
    /// The owner name of its records (a name key).
    pub owner: String,
    pub publish: Publish,
    pub all_down: AllDown,
    pub members: Vec<Member>,
}

/// A node of a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub node: Arc<str>,
    /// Target of MX and SRV records (a name key).
    pub host: String,
    pub addresses: Vec<IpAddr>,
    /// `drain = true` in the config.
    pub drain: bool,
}

impl PoolShape {
    /// The record that `member` (at `address`, for address pools) publishes.
    pub fn rdata(&self, member: &Member, address: IpAddr) -> Rdata {
        match self.publish {
            Publish::Address => Rdata::address(address),
            Publish::Mx { preference } => Rdata::Mx {
                preference,
                exchange: member.host.clone(),
            },
            Publish::Srv {
                priority,
                weight,
                port,
            } => Rdata::Srv {
                priority,
                weight,
                port,
                target: member.host.clone(),
            },
        }
    }

    /// The RRset types the pool owns. Both families of an address pool are
    /// always owned, so that a family left empty is cleaned up.
    pub fn rtypes(&self) -> &'static [RType] {
        match self.publish {
            Publish::Address => &[RType::A, RType::Aaaa],
            Publish::Mx { .. } => &[RType::Mx],
            Publish::Srv { .. } => &[RType::Srv],
        }
    }
}

/// Every record pigeon-dns owns: those of configured nodes at configured
/// pool names, drained nodes included. Depends on the configuration alone.
pub fn owned<'a>(pools: impl IntoIterator<Item = &'a PoolShape>) -> Owned {
    let mut out = Owned::new();
    for pool in pools {
        for &rtype in pool.rtypes() {
            out.entry(RRsetKey {
                name: pool.owner.clone(),
                rtype,
            })
            .or_default();
        }
        for member in &pool.members {
            for &address in &member.addresses {
                let rdata = pool.rdata(member, address);
                out.entry(RRsetKey {
                    name: pool.owner.clone(),
                    rtype: rdata.rtype(),
                })
                .or_default()
                .insert(rdata);
            }
        }
    }
    out
}

/// The outcome for one pool.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolOutcome {
    /// The `all_down` policy is in force for at least one family (address
    /// pools) or for the pool (MX, SRV).
    pub all_down: bool,
    /// Records the pool wants published.
    pub published: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// The owned records that should be published, per RRset.
    pub wanted: BTreeMap<RRsetKey, BTreeSet<Rdata>>,
    /// Indexed like the pools given.
    pub pools: Vec<PoolOutcome>,
}

/// What decides one node of one pool: its targets' health and whether it is
/// kept out (drained, or held out by a rule such as DANE's).
pub trait Inputs {
    /// The decided state of the target (pool label, node, address).
    fn health(&self, pool: &str, node: &str, address: IpAddr) -> State;
    /// Drained at run time (config drains are in [`Member::drain`]): never published.
    fn drained(&self, pool: &str, node: &str) -> bool;
}

/// Computes the desired records of `pools` from `inputs` and what the
/// primary holds now (`current`: for undecided targets and `keep`).
pub fn desired<'a>(
    pools: impl IntoIterator<Item = &'a PoolShape>,
    inputs: &dyn Inputs,
    current: &View,
) -> Desired {
    let mut out = Desired::default();
    for pool in pools {
        let mut outcome = PoolOutcome::default();
        for (rtype, candidates) in candidates(pool, inputs) {
            let key = RRsetKey {
                name: pool.owner.clone(),
                rtype,
            };
            let present = current.get(&key).map(|s| &s.records);
            let (wanted, all_down) = choose(&candidates, present, pool.all_down);
            outcome.all_down |= all_down;
            outcome.published += wanted.len();
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
fn candidates(pool: &PoolShape, inputs: &dyn Inputs) -> Vec<(RType, Vec<Candidate>)> {
    let mut by_type: BTreeMap<RType, Vec<Candidate>> =
        pool.rtypes().iter().map(|&t| (t, Vec::new())).collect();
    for member in &pool.members {
        let drained = member.drain || inputs.drained(&pool.label, &member.node);
        let health = |a| inputs.health(&pool.label, &member.node, a);
        match pool.publish {
            Publish::Address => {
                for &address in &member.addresses {
                    let rdata = pool.rdata(member, address);
                    by_type.entry(rdata.rtype()).or_default().push(Candidate {
                        rdata,
                        state: health(address),
                        drained,
                    });
                }
            }
            Publish::Mx { .. } | Publish::Srv { .. } => {
                let Some(&first) = member.addresses.first() else {
                    continue;
                };
                let rdata = pool.rdata(member, first);
                let state = node_state(member.addresses.iter().map(|&a| health(a)));
                by_type.entry(rdata.rtype()).or_default().push(Candidate {
                    rdata,
                    state,
                    drained,
                });
            }
        }
    }
    by_type.into_iter().collect()
}

/// A node counts as up when any of its addresses is up, down when all are down.
pub fn node_state(states: impl Iterator<Item = State>) -> State {
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
