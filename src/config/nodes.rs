//! `[[node]]`: unique names, addresses that belong to one node, hosts.

use std::collections::HashMap;
use std::net::IpAddr;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::{Checker, field};
use super::raw::{Entries, RawNode};
use super::types::Node;

/// The nodes as far as they validated, for the pools that refer to them.
pub(super) struct NodeTable {
    /// Names as written, by file index (`None` where missing or unreadable).
    pub(super) names: Vec<Option<String>>,
    pub(super) nodes: Vec<Option<Node>>,
    /// Every `[[node]]` deserialized: a name not found is really unknown.
    pub(super) complete: bool,
}

impl Checker<'_> {
    pub(super) fn nodes(&mut self, entries: &Entries<RawNode>, zone: Option<&Name>) -> NodeTable {
        if entries.items.is_empty() && !entries.malformed {
            self.error_in_file("node", "no [[node]]: at least one node is required");
        }
        let mut first_name: HashMap<String, usize> = HashMap::new();
        let mut first_address: HashMap<IpAddr, (usize, usize)> = HashMap::new();
        let mut table = NodeTable {
            names: Vec::new(),
            nodes: Vec::new(),
            complete: entries.complete(),
        };
        for (i, item) in entries.items.iter().enumerate() {
            let node = item.as_ref().and_then(|raw| {
                let name = self.node_name(raw, i, &mut first_name);
                let addresses = self.addresses(raw, i, &mut first_address);
                let host = self.node_host(raw.get_ref(), i, name.as_deref(), zone);
                let drain = raw.get_ref().drain.as_ref().is_some_and(|d| *d.get_ref());
                let tlsa_next = self.tlsa_next(raw.get_ref(), i);
                Some(Node {
                    name: name?,
                    addresses: addresses?,
                    host: host?,
                    drain,
                    tlsa_next: tlsa_next?,
                })
            });
            let written = item
                .as_ref()
                .and_then(|raw| raw.get_ref().name.as_ref())
                .map(|name| name.get_ref().clone());
            table.names.push(written);
            table.nodes.push(node);
        }
        table
    }

    fn node_name(
        &mut self,
        raw: &Spanned<RawNode>,
        i: usize,
        first: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let base = format!("node[{i}]");
        let name = self.required(
            &raw.get_ref().name,
            &raw.span(),
            &field(&base, "name"),
            "unique, [a-z0-9-]",
        )?;
        let written = name.get_ref();
        let valid = !written.is_empty()
            && written
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            let message = format!("`{written}`: a node name is lower-case letters, digits and '-'");
            self.error(name, &field(&base, "name"), message);
            return None;
        }
        if let Some(other) = first.get(written) {
            let message = format!("duplicate node name `{written}` (also node[{other}])");
            self.error(name, &field(&base, "name"), message);
            return None;
        }
        first.insert(written.clone(), i);
        Some(written.clone())
    }

    /// Every address parses, none repeats, none belongs to another node
    /// (one address is one probe target, with one health).
    fn addresses(
        &mut self,
        raw: &Spanned<RawNode>,
        i: usize,
        first: &mut HashMap<IpAddr, (usize, usize)>,
    ) -> Option<Vec<IpAddr>> {
        let base = field(&format!("node[{i}]"), "addresses");
        let list = self.required(
            &raw.get_ref().addresses,
            &raw.span(),
            &base,
            "the node's IPv4 and IPv6 addresses",
        )?;
        if list.get_ref().is_empty() {
            self.error(list, &base, "empty: a node needs at least one address");
            return None;
        }
        let mut valid = true;
        let mut addresses = Vec::new();
        for (j, written) in list.get_ref().iter().enumerate() {
            let here = format!("{base}[{j}]");
            let Ok(address) = written.get_ref().trim().parse::<IpAddr>() else {
                let message = format!("`{}` is not an IP address", written.get_ref());
                self.error(written, &here, message);
                valid = false;
                continue;
            };
            match first.get(&address) {
                Some(&(node, other)) if node == i => {
                    let message = format!("duplicate address {address} (also addresses[{other}])");
                    self.error(written, &here, message);
                    valid = false;
                }
                Some(&(node, other)) => {
                    let message = format!(
                        "address {address} is also node[{node}].addresses[{other}]: an address belongs to one node"
                    );
                    self.error(written, &here, message);
                    valid = false;
                }
                None => {
                    first.insert(address, (i, j));
                    addresses.push(address);
                }
            }
        }
        valid.then_some(addresses)
    }

    fn node_host(
        &mut self,
        raw: &RawNode,
        i: usize,
        name: Option<&str>,
        zone: Option<&Name>,
    ) -> Option<Name> {
        let zone = zone?;
        match &raw.host {
            Some(host) => self.owner_name(host, zone, &format!("node[{i}].host")),
            None => Name::from_ascii(name?).ok()?.append_domain(zone).ok(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Severity;
    use crate::config::test_support::{BASE, IMAP_POOL, assert_errors, config, diagnostics, find};

    #[test]
    fn at_least_one_node_and_one_pool() {
        let text = "[dns]\nserver = \"[::1]:53\"\nzone = \"example.com\"\nkey_file = \"k\"\n";
        let diagnostics = diagnostics(text);
        assert_eq!(find(&diagnostics, "node", Severity::Error).line, None);
        assert_eq!(find(&diagnostics, "pool", Severity::Error).line, None);
    }

    #[test]
    fn node_names_are_lowercase_and_unique() {
        let node = |lines: &str| {
            format!("{BASE}[[node]]\n{lines}addresses = [\"192.0.2.13\"]\n{IMAP_POOL}")
        };
        assert_errors(&[
            (
                "upper case and '_'",
                node("name = \"Mail_3\"\n"),
                Some(12),
                "node[2].name",
                "lower-case letters, digits and '-'",
            ),
            (
                "a duplicate",
                node("name = \"mail1\"\n"),
                Some(12),
                "node[2].name",
                "duplicate node name `mail1` (also node[0])",
            ),
            ("none", node(""), Some(11), "node[2].name", "missing"),
        ]);
    }

    #[test]
    fn node_addresses_are_valid_and_unique() {
        let node = |list: &str| {
            format!("{BASE}[[node]]\nname = \"mail3\"\naddresses = [{list}]\n{IMAP_POOL}")
        };
        let bad = |what, list, field, needle| (what, node(list), Some(13), field, needle);
        assert_errors(&[
            bad("none", "", "node[2].addresses", "at least one address"),
            bad(
                "a name",
                "\"192.0.2.13\", \"mail3\"",
                "node[2].addresses[1]",
                "not an IP address",
            ),
            bad(
                "one address twice, written two ways",
                "\"2001:db8::13\", \"2001:DB8:0::13\"",
                "node[2].addresses[1]",
                "duplicate address 2001:db8::13 (also addresses[0])",
            ),
            bad(
                "another node's address",
                "\"192.0.2.12\"",
                "node[2].addresses[0]",
                "also node[1].addresses[0]",
            ),
            (
                "no addresses key",
                format!("{BASE}[[node]]\nname = \"mail3\"\n{IMAP_POOL}"),
                Some(11),
                "node[2].addresses",
                "missing",
            ),
        ]);
    }

    #[test]
    fn drain_is_read() {
        let text = format!(
            "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\ndrain = true\n{IMAP_POOL}"
        );
        let config = config(&text);
        assert_eq!(
            config.nodes.iter().map(|n| n.drain).collect::<Vec<_>>(),
            [false, false, true]
        );
    }
}
