//! The file as written: serde structs that mirror the TOML, each value with its
//! byte span so that validation can name the line.
//!
//! Only TOML syntax, key names and value types are checked here. Each table
//! (`[dns]`, every `[[node]]`, every `[[pool]]`, ...) is deserialized on its own,
//! so that a wrong type in `pool[2]` does not hide the problems of `node[0]`:
//! serde stops at the first error of a struct, but the file goes on.

use std::fmt;
use std::ops::Range;

use serde::de::{self, IntoDeserializer as _};
use serde::{Deserialize, Deserializer};
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

/// A problem found before validation, located by byte span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Located {
    /// `None` when the problem has no single place.
    pub span: Option<Range<usize>>,
    /// Dotted path, e.g. `pool[2].port`; empty for TOML syntax errors.
    pub field: String,
    pub message: String,
}

/// One `[table]` of the file.
#[derive(Debug)]
pub(super) enum Section<T> {
    /// Not in the file: defaults apply.
    Absent,
    /// In the file but not deserializable; the error is already reported.
    Broken,
    Present(Spanned<T>),
}

/// The entries of an array of tables (`[[node]]`, `[[pool]]`), in file order.
#[derive(Debug)]
pub(super) struct Entries<T> {
    /// `None` for an entry that could not be deserialized (already reported);
    /// kept so that indexes (`pool[2]`) stay those of the file.
    pub items: Vec<Option<Spanned<T>>>,
    /// The key itself had the wrong shape (e.g. `node = "x"`).
    pub malformed: bool,
}

impl<T> Default for Entries<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            malformed: false,
        }
    }
}

impl<T> Entries<T> {
    /// Every entry deserialized: checks that look across entries
    /// (references, uniqueness, "at least one") can trust what they see.
    pub fn complete(&self) -> bool {
        !self.malformed && self.items.iter().all(Option::is_some)
    }
}

/// The whole file, table by table.
#[derive(Debug)]
pub(super) struct RawDocument {
    pub dns: Section<RawDns>,
    pub probe: Section<RawProbe>,
    pub http: Section<RawHttp>,
    pub ha: Section<RawHa>,
    pub zones: Entries<RawZone>,
    pub nodes: Entries<RawNode>,
    pub pools: Entries<RawPool>,
}

/// A duration as written. A bare number is kept (not rejected by serde) so that
/// validation can say which unit to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum RawDuration {
    Text(String),
    /// A TOML integer or float, as text.
    Number(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDns {
    pub server: Option<Spanned<String>>,
    pub zone: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub key_name: Option<Spanned<String>>,
    pub ttl: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub resync_interval: Option<Spanned<RawDuration>>,
    pub secondaries: Option<Spanned<RawSecondaries>>,
}

/// One `[[zone]]`: a zone of its own, each key overriding `[dns]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawZone {
    pub name: Option<Spanned<String>>,
    pub server: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub key_name: Option<Spanned<String>>,
    pub ttl: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub resync_interval: Option<Spanned<RawDuration>>,
    pub secondaries: Option<Spanned<RawSecondaries>>,
}

/// `secondaries`: a word (`"ns"`) or a list of `host:port`. The list's
/// elements carry no span of their own (an untagged enum cannot keep
/// them): problems name the line of the key.
#[derive(Debug, Deserialize)]
#[serde(untagged, expecting = "\"ns\" or a list of \"host:port\" strings")]
pub(super) enum RawSecondaries {
    Word(String),
    List(Vec<String>),
}

/// `[probe]` and the same keys as per-pool overrides.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    pub interval: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub fast_interval: Option<Spanned<RawDuration>>,
    pub watch: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub listen: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHa {
    pub lease: Option<Spanned<String>>,
    pub lease_time: Option<Spanned<RawDuration>>,
    pub instance: Option<Spanned<String>>,
}

/// Required keys are `Option` too: a missing one is reported by validation,
/// together with every other problem, rather than by serde alone.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub name: Option<Spanned<String>>,
    pub addresses: Option<Spanned<Vec<Spanned<String>>>>,
    pub host: Option<Spanned<String>>,
    pub drain: Option<Spanned<bool>>,
    pub tlsa_next: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub zone: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub check: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub nodes: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    pub preference: Option<Spanned<u16>>,
    pub priority: Option<Spanned<u16>>,
    pub weight: Option<Spanned<u16>>,
    pub all_down: Option<Spanned<String>>,
    pub interval: Option<Spanned<RawDuration>>,
    pub timeout: Option<Spanned<RawDuration>>,
    pub rise: Option<Spanned<u32>>,
    pub fall: Option<Spanned<u32>>,
    pub fast_interval: Option<Spanned<RawDuration>>,
    pub watch: Option<Spanned<bool>>,
    pub starttls: Option<Spanned<bool>>,
    pub path: Option<Spanned<String>>,
    pub expect_body: Option<Spanned<String>>,
    pub tls_verify: Option<Spanned<bool>>,
    pub tls_name: Option<Spanned<String>>,
    pub tls_ca_file: Option<Spanned<String>>,
    pub cert_min_days: Option<Spanned<u32>>,
    pub dane: Option<Spanned<String>>,
}

/// The probe settings of `[probe]` or of one pool's overrides, borrowed, so
/// that both are validated by the same code.
pub(super) struct RawTiming<'r> {
    pub interval: Option<&'r Spanned<RawDuration>>,
    pub timeout: Option<&'r Spanned<RawDuration>>,
    pub rise: Option<&'r Spanned<u32>>,
    pub fall: Option<&'r Spanned<u32>>,
    pub fast_interval: Option<&'r Spanned<RawDuration>>,
    pub watch: Option<&'r Spanned<bool>>,
}

impl RawProbe {
    pub fn timing(&self) -> RawTiming<'_> {
        RawTiming {
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            rise: self.rise.as_ref(),
            fall: self.fall.as_ref(),
            fast_interval: self.fast_interval.as_ref(),
            watch: self.watch.as_ref(),
        }
    }
}

impl RawPool {
    pub fn timing(&self) -> RawTiming<'_> {
        RawTiming {
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            rise: self.rise.as_ref(),
            fall: self.fall.as_ref(),
            fast_interval: self.fast_interval.as_ref(),
            watch: self.watch.as_ref(),
        }
    }
}

impl<'de> Deserialize<'de> for RawDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DurationVisitor)
    }
}

struct DurationVisitor;

impl de::Visitor<'_> for DurationVisitor {
    type Value = RawDuration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration with a unit, such as \"2s\" or \"500ms\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawDuration, E> {
        Ok(RawDuration::Text(v.to_owned()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawDuration, E> {
        Ok(RawDuration::Number(v.to_string()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawDuration, E> {
        Ok(RawDuration::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawDuration, E> {
        Ok(RawDuration::Number(v.to_string()))
    }
}

/// The top-level keys; anything else is an unknown table.
const TOP_LEVEL: [&str; 7] = ["dns", "zone", "probe", "http", "ha", "node", "pool"];

/// Parses the text. `None` (with every syntax error) when the TOML itself is
/// broken: what follows a syntax error cannot be trusted.
pub(super) fn parse(text: &str) -> (Option<RawDocument>, Vec<Located>) {
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        return (None, errors.iter().map(syntax_error).collect());
    }
    let mut problems = Vec::new();
    let mut doc = RawDocument {
        dns: Section::Absent,
        probe: Section::Absent,
        http: Section::Absent,
        ha: Section::Absent,
        zones: Entries::default(),
        nodes: Entries::default(),
        pools: Entries::default(),
    };
    for (key, value) in root.into_inner() {
        let name = key.get_ref().as_ref();
        match name {
            "dns" => doc.dns = section(value, "dns", &mut problems),
            "probe" => doc.probe = section(value, "probe", &mut problems),
            "http" => doc.http = section(value, "http", &mut problems),
            "ha" => doc.ha = section(value, "ha", &mut problems),
            "zone" => doc.zones = entries(value, "zone", &mut problems),
            "node" => doc.nodes = entries(value, "node", &mut problems),
            "pool" => doc.pools = entries(value, "pool", &mut problems),
            _ => problems.push(unknown_top_level(name, key.span())),
        }
    }
    (Some(doc), problems)
}

fn syntax_error(error: &toml::de::Error) -> Located {
    Located {
        span: error.span(),
        field: String::new(),
        message: format!("TOML syntax: {}", error.message().trim_end()),
    }
}

fn unknown_top_level(name: &str, span: Range<usize>) -> Located {
    let hint = match name {
        "nodes" => "; write [[node]] for each node".to_owned(),
        "pools" => "; write [[pool]] for each pool".to_owned(),
        "zones" => "; write [[zone]] for each zone".to_owned(),
        _ => String::new(),
    };
    Located {
        span: Some(span),
        field: name.to_owned(),
        message: format!(
            "unknown key `{name}`, expected one of {}{hint}",
            TOP_LEVEL.map(|k| format!("`{k}`")).join(", ")
        ),
    }
}

/// Deserializes one table, or reports why it could not be.
fn section<T>(value: Spanned<DeValue<'_>>, field: &str, problems: &mut Vec<Located>) -> Section<T>
where
    T: for<'de> Deserialize<'de>,
{
    match deserialize::<T>(value, field) {
        Ok(parsed) => Section::Present(parsed),
        Err(problem) => {
            problems.push(problem);
            Section::Broken
        }
    }
}

/// Deserializes each entry of an array of tables on its own.
fn entries<T>(value: Spanned<DeValue<'_>>, field: &str, problems: &mut Vec<Located>) -> Entries<T>
where
    T: for<'de> Deserialize<'de>,
{
    let span = value.span();
    let DeValue::Array(array) = value.into_inner() else {
        problems.push(Located {
            span: Some(span),
            field: field.to_owned(),
            message: format!("expected an array of tables: write [[{field}]] for each entry"),
        });
        return Entries {
            items: Vec::new(),
            malformed: true,
        };
    };
    let items = array
        .into_iter()
        .enumerate()
        .map(
            |(i, item)| match deserialize::<T>(item, &format!("{field}[{i}]")) {
                Ok(parsed) => Some(parsed),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            },
        )
        .collect();
    Entries {
        items,
        malformed: false,
    }
}

/// Deserializes `value` as a `T`, keeping its span; on error, finds the
/// field the error points at (serde errors carry a span, not a path).
fn deserialize<T>(value: Spanned<DeValue<'_>>, field: &str) -> Result<Spanned<T>, Located>
where
    T: for<'de> Deserialize<'de>,
{
    let span = value.span();
    let copy = value.clone();
    match T::deserialize(value.into_deserializer()) {
        Ok(parsed) => Ok(Spanned::new(span, parsed)),
        Err(error) => {
            let at = error.span().unwrap_or(span);
            Err(Located {
                field: field_at(field.to_owned(), copy.get_ref(), &at),
                span: Some(at),
                message: error.message().trim_end().to_owned(),
            })
        }
    }
}

/// The dotted path of the deepest key or element of `value` whose span holds `at`.
fn field_at(base: String, value: &DeValue<'_>, at: &Range<usize>) -> String {
    match value {
        DeValue::Table(table) => {
            for (key, item) in table.iter() {
                let path = format!("{base}.{}", key.get_ref());
                if holds(&key.span(), at) {
                    return path;
                }
                if holds(&item.span(), at) {
                    return field_at(path, item.get_ref(), at);
                }
            }
            base
        }
        DeValue::Array(array) => {
            for (i, item) in array.iter().enumerate() {
                if holds(&item.span(), at) {
                    return field_at(format!("{base}[{i}]"), item.get_ref(), at);
                }
            }
            base
        }
        _ => base,
    }
}

fn holds(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// The 1-based line of a byte offset. An offset at the very end of a file
/// that ends with a newline belongs to the last line, not to a phantom one.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let bytes = text.as_bytes();
    let mut end = offset.min(bytes.len());
    if end == bytes.len() && end > 0 && bytes[end - 1] == b'\n' {
        end -= 1;
    }
    bytes[..end].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<Located> {
        parse(text).1
    }

    #[test]
    fn line_of_counts_from_one() {
        let text = "a\nb\nc\n";
        assert_eq!(line_of(text, 0), 1);
        assert_eq!(line_of(text, 2), 2);
        assert_eq!(line_of(text, 4), 3);
        assert_eq!(line_of(text, text.len()), 3);
        assert_eq!(line_of(text, 1000), 3);
        assert_eq!(line_of("", 0), 1);
    }

    #[test]
    fn syntax_errors_stop_parsing_and_are_all_reported() {
        let (doc, found) = parse("[dns]\nzone = \n[[pool]]\nbar = [1,\n");
        assert!(doc.is_none());
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|p| p.message.starts_with("TOML syntax")));
    }

    #[test]
    fn unknown_key_names_its_field_and_span() {
        let text = "[[pool]]\nname = \"a\"\nbogus = 1\n";
        let found = problems(text);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "pool[0].bogus");
        let span = found[0].span.clone().unwrap_or_default();
        assert_eq!(line_of(text, span.start), 3);
        assert!(found[0].message.contains("unknown field `bogus`"));
    }

    #[test]
    fn wrong_type_in_array_element_names_the_index() {
        let text = "[[node]]\nname = \"a\"\naddresses = [\"192.0.2.1\", 3]\n";
        let found = problems(text);
        assert_eq!(found[0].field, "node[0].addresses[1]");
    }

    #[test]
    fn a_broken_entry_keeps_the_indexes_of_the_others() {
        let text = "[[pool]]\nport = \"x\"\n[[pool]]\nname = \"b\"\n[[pool]]\nport = 70000\n";
        let (doc, found) = parse(text);
        let doc = doc.expect("valid TOML");
        assert_eq!(doc.pools.items.len(), 3);
        assert!(doc.pools.items[0].is_none());
        assert!(doc.pools.items[1].is_some());
        assert!(!doc.pools.complete());
        let fields: Vec<_> = found.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["pool[0].port", "pool[2].port"]);
    }

    #[test]
    fn unknown_top_level_table_hints_at_the_singular() {
        let found = problems("[[nodes]]\nname = \"a\"\n");
        assert_eq!(found[0].field, "nodes");
        assert!(found[0].message.contains("[[node]]"));
    }

    #[test]
    fn a_table_where_an_array_belongs_is_reported() {
        let found = problems("[node]\nname = \"a\"\n");
        assert_eq!(found[0].field, "node");
        assert!(found[0].message.contains("[[node]]"));
    }

    #[test]
    fn durations_keep_bare_numbers_for_validation() {
        let (doc, found) = parse("[probe]\ninterval = 2\ntimeout = \"1s\"\n");
        assert!(found.is_empty());
        let Some(RawDocument {
            probe: Section::Present(probe),
            ..
        }) = doc
        else {
            panic!("probe parsed");
        };
        let probe = probe.into_inner();
        assert_eq!(
            probe.interval.map(Spanned::into_inner),
            Some(RawDuration::Number("2".into()))
        );
        assert_eq!(
            probe.timeout.map(Spanned::into_inner),
            Some(RawDuration::Text("1s".into()))
        );
    }
}
