//! Names in the zone: "@", absolute and relative names, and the warning
//! for a relative name that looks meant to be absolute.

use hickory_proto::rr::Name;
use serde_spanned::Spanned;

use super::checker::Checker;

impl Checker<'_> {
    /// A name in the zone as written in the file: an error when invalid, a
    /// warning when a relative name looks meant to be absolute.
    pub(super) fn owner_name(
        &mut self,
        written: &Spanned<String>,
        zone: &Name,
        field: &str,
    ) -> Option<Name> {
        match resolve_name(written.get_ref(), zone, &self.zones) {
            Ok((name, warning)) => {
                if let Some(warning) = warning {
                    self.warn(written, field, warning);
                }
                Some(name)
            }
            Err(message) => {
                self.error(written, field, message);
                None
            }
        }
    }
}

/// A DNS name as written: letters, digits, '-', '_' and dots, in valid labels.
pub(super) fn parse_name(written: &str) -> Result<Name, String> {
    if written.is_empty() {
        return Err("empty name; write \"@\" for the zone apex".to_owned());
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if let Some(bad) = written.chars().find(|&c| !allowed(c)) {
        return Err(format!(
            "`{written}` is not a valid DNS name: {bad:?} is not allowed"
        ));
    }
    Name::from_ascii(written)
        .map_err(|error| format!("`{written}` is not a valid DNS name: {error}"))
}

/// The config's name rules: "@" is the apex; a name that ends with a dot or
/// with the zone's name (or another configured zone's, in `zones`) is absolute; any other is relative to the zone, and
/// warned about when it contains a dot (`mx.other.org` is most likely meant
/// outside the zone). Service names such as `_imaps._tcp` end with an
/// underscore label that no domain has: they are plainly relative, and not
/// warned about.
pub(super) fn resolve_name(
    written: &str,
    zone: &Name,
    zones: &[Name],
) -> Result<(Name, Option<String>), String> {
    if written == "@" {
        return Ok((zone.clone(), None));
    }
    let name = parse_name(written)?;
    if name.is_fqdn() {
        return Ok((name, None));
    }
    let mut absolute = name.clone();
    absolute.set_fqdn(true);
    if zone.zone_of(&absolute) || zones.iter().any(|z| z.zone_of(&absolute)) {
        return Ok((absolute, None));
    }
    let full = name
        .clone()
        .append_domain(zone)
        .map_err(|error| format!("`{written}` in {zone} is too long: {error}"))?;
    let service = written
        .rsplit('.')
        .next()
        .is_some_and(|l| l.starts_with('_'));
    let warning = (name.num_labels() > 1 && !service).then(|| {
        format!("relative name `{written}` is read as `{full}`; write `{written}.` for a name outside the zone")
    });
    Ok((full, warning))
}

impl Checker<'_> {
    /// A name pigeon-dns writes (a pool, the lease): it must be in the zone,
    /// or the primary answers every UPDATE that touches it with NOTZONE.
    pub(super) fn name_in_zone(
        &mut self,
        written: &Spanned<String>,
        zone: &Name,
        field: &str,
    ) -> Option<Name> {
        let name = self.owner_name(written, zone, field)?;
        if zone.zone_of(&name) {
            return Some(name);
        }
        self.error(
            written,
            field,
            format!(
                "`{}` is outside the zone {zone}: pigeon-dns writes only names in its zone (the primary would answer NOTZONE)",
                written.get_ref()
            ),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Severity;
    use crate::config::test_support::{BASE, IMAP_POOL, assert_errors, config, find, loaded, name};

    #[test]
    fn node_host_follows_the_name_rules() {
        let node = |host: &str| {
            format!(
                "{BASE}[[node]]\nname = \"mail3\"\naddresses = [\"192.0.2.13\"]\nhost = \"{host}\"\n{IMAP_POOL}"
            )
        };
        let host = |text: &str| config(text).nodes[2].host.clone();
        assert_eq!(host(&node("m3")), name("m3.example.com."));
        assert_eq!(host(&node("m3.example.com")), name("m3.example.com."));
        assert_eq!(host(&node("M3.EXAMPLE.com")), name("m3.example.com."));
        assert_eq!(host(&node("mx.other.org.")), name("mx.other.org."));
        assert_eq!(host(&node("@")), name("example.com."));
        let loaded = loaded(&node("mx.other.org"));
        assert_eq!(
            loaded.config.nodes[2].host,
            name("mx.other.org.example.com.")
        );
        let warning = find(&loaded.warnings, "node[2].host", Severity::Warning);
        assert_eq!(warning.line, Some(14));
        assert_eq!(
            warning.message,
            "relative name `mx.other.org` is read as `mx.other.org.example.com.`; write `mx.other.org.` for a name outside the zone"
        );
        let bad = |what, host: &str, needle| (what, node(host), Some(14), "node[2].host", needle);
        assert_errors(&[
            bad("a space", "bad host", "not a valid DNS name"),
            bad("a leading hyphen", "-x", "not a valid DNS name"),
            bad("empty", "", "empty name"),
            bad("a label of 64", &"a".repeat(64), "not a valid DNS name"),
        ]);
    }

    #[test]
    fn pool_names_follow_the_name_rules() {
        let pool = |name: &str| format!("{BASE}[[pool]]\nname = \"{name}\"\ncheck = \"imap\"\n");
        let fqdn = |text: &str| config(text).pools[0].fqdn.clone();
        assert_eq!(fqdn(&pool("@")), name("example.com."));
        assert_eq!(fqdn(&pool("imap")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("imap.example.com")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("imap.example.com.")), name("imap.example.com."));
        assert_eq!(fqdn(&pool("example.com")), name("example.com."));
        assert_eq!(fqdn(&pool("IMAP.Example.COM.")), name("imap.example.com."));
        // Label-wise: "notexample.com" does not end with the zone.
        assert_eq!(
            fqdn(&pool("notexample.com")),
            name("notexample.com.example.com.")
        );
        let warning = find(
            &loaded(&pool("mx.other.org")).warnings,
            "pool[0].name",
            Severity::Warning,
        )
        .clone();
        assert_eq!(warning.line, Some(12));
        assert!(warning.message.contains("write `mx.other.org.`"));
        assert!(loaded(&pool("_imaps._tcp")).warnings.is_empty());
        let bad = |what, name, needle| (what, pool(name), Some(12), "pool[0].name", needle);
        assert_errors(&[
            // A name pigeon-dns writes must be in its zone (NOTZONE otherwise).
            bad(
                "outside the zone",
                "imap.other.org.",
                "outside the zone example.com.",
            ),
            bad("a space", "im ap", "not a valid DNS name"),
            bad("a wildcard", "*.x", "not a valid DNS name"),
        ]);
    }
}
