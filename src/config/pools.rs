//! `[[pool]]`: what a pool publishes (its owner name, record type and nodes)
//! and the limits on it; its check is read by [`pool_check`](super::pool_check).

use std::collections::HashMap;
use std::ops::Range;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::{Checker, field};
use super::dns::ZoneTable;
use super::names::parse_name;
use super::nodes::NodeTable;
use super::probe::Timing;
use super::raw::{Entries, RawPool};
use super::types::{AllDown, Pool, PoolKind};
use super::values::value_or;
use crate::diagnostic::Severity;

const DEFAULT_PREFERENCE: u16 = 10;
const DEFAULT_PRIORITY: u16 = 0;
const DEFAULT_WEIGHT: u16 = 1;
use super::types::MAX_RECORDS_PER_TYPE;

/// What every pool is validated against.
struct PoolContext<'c> {
    zones: &'c ZoneTable,
    nodes: &'c NodeTable,
    probe: Timing,
    /// (owner name, record type) -> index of the first pool publishing it.
    owners: HashMap<(String, &'static str), usize>,
}

impl Checker<'_> {
    pub(super) fn pools(
        &mut self,
        entries: &Entries<RawPool>,
        zones: &ZoneTable,
        nodes: &NodeTable,
        probe: Timing,
    ) -> Option<Vec<Pool>> {
        if entries.items.is_empty() && !entries.malformed {
            self.error_in_file("pool", "no [[pool]]: at least one pool is required");
        }
        let mut context = PoolContext {
            zones,
            nodes,
            probe,
            owners: HashMap::new(),
        };
        let pools: Vec<Option<Pool>> = entries
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_ref()
                    .and_then(|raw| self.pool(raw, i, &mut context))
            })
            .collect();
        pools.into_iter().collect()
    }

    fn pool(
        &mut self,
        raw: &Spanned<RawPool>,
        i: usize,
        context: &mut PoolContext<'_>,
    ) -> Option<Pool> {
        let base = format!("pool[{i}]");
        let header = raw.span();
        let pool = raw.get_ref();
        let name = self.required(
            &pool.name,
            &header,
            &field(&base, "name"),
            "the owner name, e.g. \"imap\" or \"@\"",
        );
        let (zone, fqdn) = match name {
            Some(name) => self.pool_zone(pool, name, &base, context.zones),
            None => (None, None),
        };
        let check = self.check_kind(pool, &header, &base);
        let kind = self.pool_kind(pool, &base);
        let port = self.port(pool, &header, &base, check);
        let members = self.members(pool, &base, context.nodes);
        let all_down = self.all_down(pool, &base);
        let probe = self.pool_probe(pool, &base, context.probe, check);
        let starttls = self.starttls(pool, &base, check);
        let (path, expect_body) = self.http_options(pool, &base, check);
        let tls = self.tls_options(pool, &base, check, starttls);
        let dane = self.dane_mode(pool, &base, check, starttls);
        if let (Some(name), Some(fqdn), Some(kind)) = (name, &fqdn, kind) {
            self.unique_owner(name, fqdn, kind, i, &base, &mut context.owners);
        }
        if let (Some(kind), Some(members)) = (kind, &members) {
            self.rrset_limit(pool, &header, &base, kind, members, context.nodes);
        }
        Some(Pool {
            zone: zone?,
            name: name?.get_ref().clone(),
            fqdn: fqdn?,
            kind: kind?,
            check: check?,
            port: port?,
            nodes: members?,
            all_down: all_down?,
            probe: probe?,
            starttls: starttls?,
            path: path?,
            expect_body: expect_body?,
            tls: tls?,
            dane: dane?,
        })
    }

    /// The pool's zone (by index) and its owner name in it. `zone` names
    /// it; without, the only zone, or the one zone an absolute name lies in.
    fn pool_zone(
        &mut self,
        pool: &RawPool,
        name: &Spanned<String>,
        base: &str,
        zones: &ZoneTable,
    ) -> (Option<usize>, Option<Name>) {
        let index = match &pool.zone {
            Some(zone) => self.named_zone(zone, &field(base, "zone"), zones),
            None if zones.names.len() <= 1 => (!zones.names.is_empty()).then_some(0),
            None => self.implied_zone(name, &field(base, "name"), zones),
        };
        let Some((index, zone)) = index.and_then(|i| Some((i, zones.names.get(i)?.as_ref()?)))
        else {
            return (None, None);
        };
        let fqdn = self.name_in_zone(name, zone, &field(base, "name"));
        let fqdn = fqdn.filter(|fqdn| {
            let deeper = zones.names.iter().flatten().find(|other| {
                other.num_labels() > zone.num_labels() && zone.zone_of(other) && other.zone_of(fqdn)
            });
            let Some(deeper) = deeper else {
                return true;
            };
            self.error(
                name,
                &field(base, "name"),
                format!(
                    "`{}` is in the zone {deeper}, which this config updates as a zone of its own (the primary of {zone} would answer NOTZONE): write zone = \"{}\"",
                    name.get_ref(),
                    deeper.to_ascii().trim_end_matches('.')
                ),
            );
            false
        });
        (Some(index), fqdn)
    }

    /// The zone `zone = "..."` names.
    fn named_zone(
        &mut self,
        zone: &Spanned<String>,
        field: &str,
        zones: &ZoneTable,
    ) -> Option<usize> {
        let wanted = match parse_name(zone.get_ref()) {
            Ok(mut name) => {
                name.set_fqdn(true);
                name
            }
            Err(message) => {
                self.error(zone, field, message);
                return None;
            }
        };
        let found = zones.names.iter().position(|z| z.as_ref() == Some(&wanted));
        if found.is_none() && zones.complete {
            let message = format!(
                "`{}` is not a configured zone; the zones are {}",
                zone.get_ref(),
                zone_list(zones)
            );
            self.error(zone, field, message);
        }
        found
    }

    /// Without `zone` among several zones: an absolute name that lies in
    /// exactly one of them.
    fn implied_zone(
        &mut self,
        name: &Spanned<String>,
        field: &str,
        zones: &ZoneTable,
    ) -> Option<usize> {
        let written = name.get_ref();
        let absolute = parse_name(written).ok().filter(|parsed| {
            let mut fqdn = parsed.clone();
            fqdn.set_fqdn(true);
            parsed.is_fqdn() || zones.names.iter().flatten().any(|z| z.zone_of(&fqdn))
        });
        let Some(mut absolute) = absolute else {
            if parse_name(written).is_ok() || written == "@" {
                let message = format!(
                    "missing `zone`: required when there are several zones ({}); `{written}` could be in any of them",
                    zone_list(zones)
                );
                self.error(name, field, message);
            } else if let Err(message) = parse_name(written) {
                self.error(name, field, message);
            }
            return None;
        };
        absolute.set_fqdn(true);
        let holding: Vec<usize> = zones
            .names
            .iter()
            .enumerate()
            .filter(|(_, z)| z.as_ref().is_some_and(|z| z.zone_of(&absolute)))
            .map(|(i, _)| i)
            .collect();
        match holding.as_slice() {
            [one] => Some(*one),
            [] => {
                if zones.complete {
                    let message = format!(
                        "`{written}` is outside every zone ({}): pigeon-dns writes only names in its zones",
                        zone_list(zones)
                    );
                    self.error(name, field, message);
                }
                None
            }
            several => {
                let names: Vec<String> = several
                    .iter()
                    .filter_map(|&i| zones.names[i].as_ref().map(ToString::to_string))
                    .collect();
                let message = format!(
                    "`{written}` could belong to the zones {}: name one with `zone`",
                    names.join(" and ")
                );
                self.error(name, field, message);
                None
            }
        }
    }

    /// `type` with its record fields; a field of another type is an error
    /// (a `preference` on an SRV pool is a mistake, not a no-op).
    fn pool_kind(&mut self, pool: &RawPool, base: &str) -> Option<PoolKind> {
        let written = pool.kind.as_ref().map(|k| k.get_ref().to_ascii_uppercase());
        let kind = match written.as_deref() {
            None | Some("A") => Some(PoolKind::Address),
            Some("MX") => Some(PoolKind::Mx {
                preference: value_or(&pool.preference, DEFAULT_PREFERENCE),
            }),
            Some("SRV") => Some(PoolKind::Srv {
                priority: value_or(&pool.priority, DEFAULT_PRIORITY),
                weight: value_or(&pool.weight, DEFAULT_WEIGHT),
            }),
            Some(other) => {
                let hint = if other == "AAAA" {
                    "; an \"A\" pool publishes both A and AAAA records"
                } else {
                    ""
                };
                let message =
                    format!("unknown type `{other}`; expected \"A\", \"MX\" or \"SRV\"{hint}");
                if let Some(at) = &pool.kind {
                    self.error(at, &field(base, "type"), message);
                }
                None
            }
        };
        let is_mx = matches!(kind, Some(PoolKind::Mx { .. }));
        let is_srv = matches!(kind, Some(PoolKind::Srv { .. }));
        let mut valid = kind.is_some();
        if let (Some(at), false) = (&pool.preference, is_mx) {
            self.error(
                at,
                &field(base, "preference"),
                "applies to MX pools only (type = \"MX\")",
            );
            valid = false;
        }
        for (value, key) in [(&pool.priority, "priority"), (&pool.weight, "weight")] {
            if let (Some(at), false) = (value, is_srv) {
                self.error(
                    at,
                    &field(base, key),
                    "applies to SRV pools only (type = \"SRV\")",
                );
                valid = false;
            }
        }
        kind.filter(|_| valid)
    }

    /// Indexes of the pool's nodes: every node by default.
    fn members(&mut self, pool: &RawPool, base: &str, nodes: &NodeTable) -> Option<Vec<usize>> {
        let Some(list) = &pool.nodes else {
            return Some((0..nodes.names.len()).collect());
        };
        let here = field(base, "nodes");
        if list.get_ref().is_empty() {
            self.error(list, &here, "empty; leave `nodes` out to use every node");
            return None;
        }
        let mut members = Vec::new();
        let mut valid = true;
        for (j, written) in list.get_ref().iter().enumerate() {
            let name = written.get_ref();
            let found = nodes
                .names
                .iter()
                .position(|n| n.as_deref() == Some(name.as_str()));
            match found {
                Some(index) if members.contains(&index) => {
                    self.error(
                        written,
                        &format!("{here}[{j}]"),
                        format!("node `{name}` is listed twice"),
                    );
                    valid = false;
                }
                Some(index) => members.push(index),
                None if nodes.complete => {
                    let known: Vec<String> = nodes
                        .names
                        .iter()
                        .flatten()
                        .map(|n| format!("`{n}`"))
                        .collect();
                    let message =
                        format!("unknown node `{name}`; the nodes are {}", known.join(", "));
                    self.error(written, &format!("{here}[{j}]"), message);
                    valid = false;
                }
                // A [[node]] that failed to parse may be the one named here.
                None => valid = false,
            }
        }
        valid.then_some(members)
    }

    fn all_down(&mut self, pool: &RawPool, base: &str) -> Option<AllDown> {
        let Some(written) = &pool.all_down else {
            return Some(AllDown::PublishAll);
        };
        match written.get_ref().as_str() {
            "publish-all" => Some(AllDown::PublishAll),
            "keep" => Some(AllDown::Keep),
            other => {
                let message =
                    format!("unknown policy `{other}`; expected \"publish-all\" or \"keep\"");
                self.error(written, &field(base, "all_down"), message);
                None
            }
        }
    }

    /// Two pools may share a name (an A pool and an MX pool at "@"), not a
    /// name and a record type: they would fight over the same RRset.
    fn unique_owner(
        &mut self,
        name: &Spanned<String>,
        fqdn: &Name,
        kind: PoolKind,
        i: usize,
        base: &str,
        owners: &mut HashMap<(String, &'static str), usize>,
    ) {
        let key = (fqdn.to_lowercase().to_ascii(), record_type(kind));
        if let Some(&first) = owners.get(&key) {
            let message = format!(
                "pool[{first}] already publishes the {} records of {fqdn}",
                record_type(kind)
            );
            self.error(name, &field(base, "name"), message);
        } else {
            owners.insert(key, i);
        }
    }

    /// BIND refuses an UPDATE that grows an RRset past `max-records-per-type`.
    fn rrset_limit(
        &mut self,
        pool: &RawPool,
        header: &Range<usize>,
        base: &str,
        kind: PoolKind,
        members: &[usize],
        nodes: &NodeTable,
    ) {
        let addresses = || {
            members
                .iter()
                .filter_map(|&i| nodes.nodes.get(i).and_then(Option::as_ref))
                .flat_map(|node| node.addresses.iter())
        };
        let counts = match kind {
            PoolKind::Address => vec![
                (
                    "IPv4 addresses (A records)",
                    addresses().filter(|a| a.is_ipv4()).count(),
                ),
                (
                    "IPv6 addresses (AAAA records)",
                    addresses().filter(|a| a.is_ipv6()).count(),
                ),
            ],
            PoolKind::Mx { .. } => vec![("nodes (MX records)", members.len())],
            PoolKind::Srv { .. } => vec![("nodes (SRV records)", members.len())],
        };
        let span = pool.nodes.as_ref().map_or(header.clone(), Spanned::span);
        for (what, count) in counts {
            if count > MAX_RECORDS_PER_TYPE {
                let message = format!(
                    "{count} {what} in one RRset: BIND refuses more than {MAX_RECORDS_PER_TYPE} records per type by default (max-records-per-type); split the pool"
                );
                self.push(
                    Severity::Error,
                    Some(span.clone()),
                    &field(base, "nodes"),
                    message,
                );
            }
        }
    }
}

fn record_type(kind: PoolKind) -> &'static str {
    match kind {
        PoolKind::Address => "A/AAAA",
        PoolKind::Mx { .. } => "MX",
        PoolKind::Srv { .. } => "SRV",
    }
}

/// The configured zones, for messages.
fn zone_list(zones: &ZoneTable) -> String {
    let names: Vec<String> = zones
        .names
        .iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{
        BASE, IMAP_POOL, assert_errors, assert_pool_error, base_with, config,
    };
    use crate::config::{AllDown, PoolKind};

    #[test]
    fn pool_name_and_check_are_required() {
        let bad =
            |what, pool, line, field, needle| (what, base_with(pool), Some(line), field, needle);
        assert_errors(&[
            bad(
                "no name",
                "[[pool]]\ncheck = \"imap\"\n",
                11,
                "pool[0].name",
                "missing",
            ),
            bad(
                "no check",
                "[[pool]]\nname = \"imap\"\n",
                11,
                "pool[0].check",
                "one of tcp, smtp",
            ),
            bad(
                "an unknown check",
                "[[pool]]\nname = \"imap\"\ncheck = \"IMAP4\"\n",
                13,
                "pool[0].check",
                "unknown check `IMAP4`",
            ),
        ]);
    }

    #[test]
    fn pool_nodes_name_known_nodes_once() {
        let text = format!("{IMAP_POOL}nodes = [\"mail2\"]\n");
        assert_eq!(config(&format!("{BASE}{text}")).pools[0].nodes, [1]);
        let bad = |what, nodes, field, needle| {
            let text = base_with(&format!("{IMAP_POOL}nodes = [{nodes}]\n"));
            (what, text, Some(14), field, needle)
        };
        assert_errors(&[
            bad(
                "an unknown node",
                "\"mail2\", \"mail3\"",
                "pool[0].nodes[1]",
                "unknown node `mail3`; the nodes are `mail1`, `mail2`",
            ),
            bad(
                "a node twice",
                "\"mail2\", \"mail2\"",
                "pool[0].nodes[1]",
                "listed twice",
            ),
            bad("no node", "", "pool[0].nodes", "empty"),
        ]);
    }

    #[test]
    fn pool_types_and_their_fields() {
        let pool = |lines: &str| format!("{BASE}[[pool]]\nname = \"@\"\ncheck = \"smtp\"\n{lines}");
        assert_eq!(
            config(&pool("type = \"mx\"\n")).pools[0].kind,
            PoolKind::Mx { preference: 10 }
        );
        assert_eq!(
            config(&pool("type = \"MX\"\npreference = 20\n")).pools[0].kind,
            PoolKind::Mx { preference: 20 }
        );
        assert_eq!(
            config(&pool("type = \"srv\"\n")).pools[0].kind,
            PoolKind::Srv {
                priority: 0,
                weight: 1
            }
        );
        assert_eq!(
            config(&pool("type = \"SRV\"\npriority = 5\nweight = 0\n")).pools[0].kind,
            PoolKind::Srv {
                priority: 5,
                weight: 0
            }
        );
        assert_eq!(
            config(&pool("type = \"a\"\n")).pools[0].kind,
            PoolKind::Address
        );
        let bad = |what, lines, line, field, needle| (what, pool(lines), Some(line), field, needle);
        assert_errors(&[
            bad(
                "AAAA",
                "type = \"AAAA\"\n",
                14,
                "pool[0].type",
                "publishes both A and AAAA",
            ),
            bad(
                "CNAME",
                "type = \"CNAME\"\n",
                14,
                "pool[0].type",
                "unknown type `CNAME`",
            ),
            bad(
                "a preference for an A pool",
                "preference = 5\n",
                14,
                "pool[0].preference",
                "MX pools only",
            ),
            bad(
                "a priority for an MX pool",
                "type = \"MX\"\npriority = 5\n",
                15,
                "pool[0].priority",
                "SRV pools only",
            ),
            bad(
                "a weight for an A pool",
                "weight = 5\n",
                14,
                "pool[0].weight",
                "SRV pools only",
            ),
            bad(
                "a preference for an SRV pool",
                "type = \"SRV\"\npreference = 5\n",
                15,
                "pool[0].preference",
                "MX pools only",
            ),
        ]);
    }

    #[test]
    fn pool_all_down_is_a_known_policy() {
        let text = format!("{BASE}{IMAP_POOL}all_down = \"keep\"\n");
        assert_eq!(config(&text).pools[0].all_down, AllDown::Keep);
        assert_pool_error(
            &format!("{IMAP_POOL}all_down = \"publish_all\"\n"),
            14,
            "pool[0].all_down",
            "\"publish-all\" or \"keep\"",
        );
    }

    #[test]
    fn two_pools_may_share_a_name_not_a_type() {
        let a_and_mx = "[[pool]]\nname = \"@\"\ncheck = \"imap\"\n[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n";
        assert_eq!(config(&format!("{BASE}{a_and_mx}")).pools.len(), 2);
        let twice =
            format!("{IMAP_POOL}[[pool]]\nname = \"IMAP.example.com.\"\ncheck = \"imaps\"\n");
        let two_mx = "[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\n[[pool]]\nname = \"example.com.\"\ntype = \"MX\"\ncheck = \"smtps\"\n";
        assert_errors(&[
            (
                "two A pools at one name, written two ways",
                base_with(&twice),
                Some(15),
                "pool[1].name",
                "pool[0] already publishes the A/AAAA records of IMAP.example.com.",
            ),
            (
                "two MX pools at the apex",
                base_with(two_mx),
                Some(16),
                "pool[1].name",
                "MX records",
            ),
        ]);
    }

    /// `count` nodes of one IPv4 address each.
    fn many_nodes(count: usize) -> String {
        (0..count)
            .map(|i| {
                format!(
                    "[[node]]\nname = \"n{i}\"\naddresses = [\"10.0.{}.{}\"]\n",
                    i / 250,
                    i % 250
                )
            })
            .collect()
    }

    #[test]
    fn rrsets_stay_within_bind_max_records_per_type() {
        let head = "[dns]\nserver = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"k\"\n";
        let ok = format!(
            "{head}{}[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
            many_nodes(100)
        );
        assert_eq!(config(&ok).pools[0].nodes.len(), 100);
        let line = 4 + 3 * 101 + 1;
        let a = format!(
            "{head}{}[[pool]]\nname = \"imap\"\ncheck = \"imap\"\n",
            many_nodes(101)
        );
        let mx = format!(
            "{head}{}[[pool]]\nname = \"@\"\ntype = \"MX\"\ncheck = \"smtp\"\nnodes = [{}]\n",
            many_nodes(101),
            (0..101)
                .map(|i| format!("\"n{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_errors(&[
            (
                "101 A records",
                a,
                Some(line),
                "pool[0].nodes",
                "max-records-per-type",
            ),
            (
                "101 MX records",
                mx,
                Some(line + 4),
                "pool[0].nodes",
                "BIND refuses more than 100 records per type",
            ),
        ]);
    }
}
