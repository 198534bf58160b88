//! `[ha]`: the lease that lets exactly one of several instances write.

use std::time::Duration;

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::Checker;
use super::dns::ZoneTable;
use super::names::parse_name;
use super::raw::{RawHa, Section};
use super::types::HaConfig;

const DEFAULT_LEASE: &str = "_pigeon-dns-lease";
const DEFAULT_LEASE_TIME: Duration = Duration::from_secs(10);

impl Checker<'_> {
    /// `Some(None)`: no `[ha]`, a single writer. `None`: invalid.
    pub(super) fn ha(
        &mut self,
        section: &Section<RawHa>,
        zones: &ZoneTable,
    ) -> Option<Option<HaConfig>> {
        let ha = match section {
            Section::Absent => return Some(None),
            Section::Broken => return None,
            Section::Present(ha) => ha.get_ref(),
        };
        let lease = match &ha.lease {
            None => Name::from_ascii(DEFAULT_LEASE).ok(),
            Some(lease) => self.lease(lease, zones),
        };
        let lease_time = self
            .duration(ha.lease_time.as_ref(), "ha.lease_time")
            .or_default(DEFAULT_LEASE_TIME);
        let instance = match &ha.instance {
            None => Some(default_instance()),
            Some(instance) if instance.get_ref().trim().is_empty() => {
                self.error(
                    instance,
                    "ha.instance",
                    "empty; leave it out for hostname and process id",
                );
                None
            }
            Some(instance) => Some(instance.get_ref().clone()),
        };
        Some(Some(HaConfig {
            lease: lease?,
            lease_time: lease_time?,
            instance: instance?,
        }))
    }

    /// The lease's owner relative to every zone. With one zone it may be
    /// written absolute (in the zone); with several it must be relative, as
    /// each zone holds its own lease (a prerequisite cannot name another zone).
    fn lease(&mut self, lease: &Spanned<String>, zones: &ZoneTable) -> Option<Name> {
        let known = zones.known();
        let [zone] = known.as_slice() else {
            let written = lease.get_ref();
            let absolute = written == "@"
                || written.ends_with('.')
                || parse_name(written).is_ok_and(|name| {
                    let mut name = name;
                    name.set_fqdn(true);
                    known.iter().any(|z| z.zone_of(&name))
                });
            if absolute && written != "@" {
                self.error(
                    lease,
                    "ha.lease",
                    format!("`{written}` names one zone, but each zone holds its own lease: write it relative, e.g. \"{DEFAULT_LEASE}\""),
                );
                return None;
            }
            if written == "@" {
                return Some(Name::new());
            }
            let first = zones.first()?.clone();
            self.owner_name(lease, &first, "ha.lease")?;
            return parse_name(written).ok();
        };
        let name = self.name_in_zone(lease, zone, "ha.lease")?;
        relative_to(&name, zone)
    }
}

/// `name` without the labels of `zone` (which holds it).
fn relative_to(name: &Name, zone: &Name) -> Option<Name> {
    let keep = usize::from(name.num_labels()).checked_sub(usize::from(zone.num_labels()))?;
    let mut relative = Name::from_labels(name.iter().take(keep)).ok()?;
    relative.set_fqdn(false);
    Some(relative)
}

fn default_instance() -> String {
    let host = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "pigeon-dns".to_owned());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Severity;
    use crate::config::test_support::{BASE, IMAP_POOL, diagnostics, find, loaded, name};

    #[test]
    fn ha_lease_is_a_name_in_the_zone() {
        let text = format!(
            "{BASE}{IMAP_POOL}[ha]\nlease = \"lease.pigeon\"\nlease_time = \"30s\"\ninstance = \"dns1\"\n"
        );
        let loaded = loaded(&text);
        let ha = loaded.config.ha.expect("[ha]");
        assert_eq!(
            ha.lease_in(&name("example.com.")),
            name("lease.pigeon.example.com.")
        );
        assert_eq!(ha.lease_time, Duration::from_secs(30));
        assert_eq!(ha.instance, "dns1");
        let warning = find(&loaded.warnings, "ha.lease", Severity::Warning);
        assert_eq!(warning.line, Some(15));
        let text = format!(
            "{BASE}{IMAP_POOL}[ha]\nlease = \"bad lease\"\nlease_time = \"0s\"\ninstance = \"\"\n"
        );
        let diagnostics = diagnostics(&text);
        assert_eq!(
            find(&diagnostics, "ha.lease", Severity::Error).line,
            Some(15)
        );
        assert_eq!(
            find(&diagnostics, "ha.lease_time", Severity::Error).line,
            Some(16)
        );
        assert_eq!(
            find(&diagnostics, "ha.instance", Severity::Error).line,
            Some(17)
        );
    }
}
