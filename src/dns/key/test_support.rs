//! What the key tests share: real key files as the BIND tools write them,
//! and helpers that load a text and find its diagnostics.

use hickory_proto::rr::Name;
use tempfile::TempDir;

use super::{TsigKey, load_key_file};
use crate::diagnostic::{Diagnostic, Severity};

pub(super) const SECRET: &str = "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";

/// Real `tsig-keygen pigeon-dns` output.
pub(super) const TSIG_KEYGEN: &str = "key \"pigeon-dns\" {\n\talgorithm hmac-sha256;\n\tsecret \"l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=\";\n};\n";

/// `ddns-confgen -z example.com` output (comments around the key).
pub(super) const DDNS_CONFGEN: &str = r#"# To activate this key, place the following in named.conf, and
# in a separate keyfile on the system or systems from which nsupdate
# will be run:
key "ddns-key.example.com" {
	algorithm hmac-sha256;
	secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";
};

# Then, in the "zone" definitions statements for the zones
# that this key will be used to update, place the following:
#
# update-policy {
#	grant ddns-key.example.com zonesub ANY;
# };
#
# After the keyfile has been placed, the following command will
# execute nsupdate using this key:
#
# nsupdate -k <keyfile>
"#;

pub(super) const TWO_KEYS: &str = r#"// two keys
key "one" {
    algorithm hmac-sha384;
    secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU=";
};
/* the second
   key */
key two { algorithm HMAC-SHA512; secret "l0fWxlEjWyj8wOXhJHNC3Y9iTBWDsL2bTRxPNxFrDkU="; };
"#;

/// Writes a key file (mode 0600 unless said otherwise) and loads it.
fn load_text(
    text: &str,
    key_name: Option<&str>,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    load_with_mode(text, key_name, 0o600)
}

pub(super) fn load_with_mode(
    text: &str,
    key_name: Option<&str>,
    mode: u32,
) -> Result<(TsigKey, Vec<Diagnostic>), Vec<Diagnostic>> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("pigeon-dns.key");
    std::fs::write(&path, text).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    load_key_file(&path, key_name)
}

pub(super) fn key(text: &str, key_name: Option<&str>) -> TsigKey {
    match load_text(text, key_name) {
        Ok((key, warnings)) => {
            assert!(warnings.is_empty(), "{warnings:?}");
            key
        }
        Err(diagnostics) => panic!("{}", render(&diagnostics)),
    }
}

fn errors(text: &str, key_name: Option<&str>) -> Vec<Diagnostic> {
    match load_text(text, key_name) {
        Ok(_) => panic!("expected errors"),
        Err(diagnostics) => diagnostics,
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{d}\n")).collect()
}

/// The one error, with its line, field and a part of its message.
pub(super) fn assert_error(
    text: &str,
    key_name: Option<&str>,
    line: Option<usize>,
    field: &str,
    needle: &str,
) {
    let diagnostics = errors(text, key_name);
    let found: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(found.len(), 1, "{}", render(&diagnostics));
    assert_eq!(
        (found[0].line, found[0].field.as_str()),
        (line, field),
        "{}",
        found[0]
    );
    assert!(
        found[0].message.contains(needle),
        "`{needle}` not in: {}",
        found[0]
    );
}

pub(super) fn name(text: &str) -> Name {
    Name::from_ascii(text).expect("name")
}
