//! Which key of the file: the one `dns.key_name` names, or the only one;
//! then its name, algorithm and secret checked into a [`TsigKey`].

use data_encoding::BASE64;
use hickory_proto::rr::Name;

use super::load::Report;
use super::syntax::{RawKey, quotable};
use super::tsig::{ALGORITHM_HINT, TsigKey, parse_algorithm};
use crate::diagnostic::Diagnostic;

/// Picks the key to use; the names in the file are listed when that fails.
pub(super) fn choose<'k>(
    keys: &'k [RawKey],
    key_name: Option<&str>,
    report: &Report<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<&'k RawKey> {
    let names = || {
        keys.iter()
            .map(|k| format!("`{}`", k.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, key) in keys.iter().enumerate() {
        if let Some(first) = keys[..i].iter().find(|k| same_name(&k.name, &key.name)) {
            let message = format!(
                "key `{}` is defined twice (first at line {})",
                key.name, first.line
            );
            diagnostics.push(report.error(Some(key.line), &key.field(""), message));
        }
    }
    match (key_name, keys) {
        (_, []) => {
            let message = "no key in this file; expected `key \"NAME\" { algorithm hmac-sha256; secret \"...\"; };`";
            diagnostics.push(report.error(None, "", message.to_owned()));
            None
        }
        (Some(wanted), _) => {
            let found = keys.iter().find(|k| same_name(&k.name, wanted));
            if found.is_none() {
                let message = format!(
                    "no key `{wanted}` (dns.key_name) in this file; it holds {}",
                    names()
                );
                diagnostics.push(report.error(None, "", message));
            }
            found
        }
        (None, [only]) => Some(only),
        (None, _) => {
            let message = format!(
                "{} keys in this file ({}): set dns.key_name to the one to use",
                keys.len(),
                names()
            );
            diagnostics.push(report.error(None, "", message));
            None
        }
    }
}

/// Key names compare as DNS names: case-insensitive, trailing dot optional.
fn same_name(a: &str, b: &str) -> bool {
    a.trim_end_matches('.')
        .eq_ignore_ascii_case(b.trim_end_matches('.'))
}

/// Checks the chosen key's name, algorithm and secret, reporting each problem.
pub(super) fn build(
    raw: &RawKey,
    report: &Report<'_>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<TsigKey> {
    let name = match Name::from_ascii(&raw.name) {
        Ok(name) => Some(name),
        Err(error) => {
            let message = format!("`{}` is not a valid key name: {error}", raw.name);
            diagnostics.push(report.error(Some(raw.line), &raw.field(""), message));
            None
        }
    };
    let algorithm = match &raw.algorithm {
        None => {
            diagnostics.push(report.error(
                Some(raw.line),
                &raw.field(""),
                "missing `algorithm`".to_owned(),
            ));
            None
        }
        Some((written, line)) => {
            let parsed = parse_algorithm(written);
            if parsed.is_none() {
                let shown = if quotable(written) {
                    format!(" `{written}`")
                } else {
                    String::new()
                };
                let message = format!("algorithm{shown} is not supported: {ALGORITHM_HINT}");
                diagnostics.push(report.error(Some(*line), &raw.field("algorithm"), message));
            }
            parsed
        }
    };
    let secret = match &raw.secret {
        None => {
            diagnostics.push(report.error(
                Some(raw.line),
                &raw.field(""),
                "missing `secret`".to_owned(),
            ));
            None
        }
        Some((written, line)) => {
            let decoded = decode_secret(written);
            if let Err(message) = &decoded {
                diagnostics.push(report.error(Some(*line), &raw.field("secret"), message.clone()));
            }
            decoded.ok()
        }
    };
    // Cannot fail: only algorithms TSigner supports get here.
    TsigKey::new(name?, algorithm?, secret?).ok()
}

/// Base64, as BIND writes it; whitespace inside is ignored. The message
/// never quotes the secret.
fn decode_secret(written: &str) -> Result<Vec<u8>, String> {
    let compact: String = written.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.is_empty() {
        return Err("the secret is empty".to_owned());
    }
    match BASE64.decode(compact.as_bytes()) {
        Ok(secret) if secret.is_empty() => Err("the secret is empty".to_owned()),
        Ok(secret) => Ok(secret),
        Err(error) => Err(format!(
            "the secret is not valid base64 (at character {}); copy it again from the tsig-keygen output",
            error.position + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::rr::rdata::tsig::TsigAlgorithm;

    use super::*;
    use crate::dns::key::KeyError;
    use crate::dns::key::test_support::{SECRET, TSIG_KEYGEN, TWO_KEYS, assert_error, key, name};

    #[test]
    fn several_keys_need_a_key_name() {
        assert_error(
            TWO_KEYS,
            None,
            None,
            "",
            "2 keys in this file (`one`, `two`): set dns.key_name",
        );
        assert_error(
            TWO_KEYS,
            Some("three"),
            None,
            "",
            "no key `three` (dns.key_name) in this file; it holds `one`, `two`",
        );
        assert_error("# empty\n", None, None, "", "no key in this file");
    }

    #[test]
    fn md5_and_sha1_are_refused_with_a_hint() {
        for algorithm in [
            "hmac-md5",
            "hmac-md5.sig-alg.reg.int",
            "HMAC-MD5.SIG-ALG.REG.INT",
            "hmac-sha1",
            "hmac-sha224",
        ] {
            let text = TSIG_KEYGEN.replace("hmac-sha256", algorithm);
            assert_error(
                &text,
                None,
                Some(2),
                "key \"pigeon-dns\".algorithm",
                "hickory signs hmac-sha256/384/512 only; generate a new key with `tsig-keygen -a hmac-sha256 NAME`",
            );
        }
        let md5 = TsigKey::new(name("k"), TsigAlgorithm::HmacMd5, vec![1, 2, 3]);
        assert!(matches!(md5, Err(KeyError::UnsupportedAlgorithm(_))));
    }

    #[test]
    fn only_the_chosen_key_must_be_usable() {
        let text = format!(
            "key old {{ algorithm hmac-md5; secret \"bm90IGEgc2VjcmV0\"; }};\n{TSIG_KEYGEN}"
        );
        assert_eq!(key(&text, Some("pigeon-dns")).name, name("pigeon-dns."));
    }

    #[test]
    fn bad_base64_is_an_error() {
        let text = TSIG_KEYGEN.replace("l0fWxlEj", "l0fW*lEj");
        assert_error(
            &text,
            None,
            Some(3),
            "key \"pigeon-dns\".secret",
            "not valid base64 (at character 5)",
        );
        let text = TSIG_KEYGEN.replace(SECRET, "");
        assert_error(&text, None, Some(3), "key \"pigeon-dns\".secret", "empty");
    }

    #[test]
    fn missing_clauses_are_errors() {
        let text = "key \"k\" {\n algorithm hmac-sha256;\n};\n";
        assert_error(text, None, Some(1), "key \"k\"", "missing `secret`");
        let text = "key \"k\" {\n secret \"bm90IGEgc2VjcmV0\";\n};\n";
        assert_error(text, None, Some(1), "key \"k\"", "missing `algorithm`");
    }
}
