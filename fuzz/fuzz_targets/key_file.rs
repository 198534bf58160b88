//! The BIND key-file parser: any text, no panic; the secret never leaks into
//! a diagnostic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeon_dns::dns::key::parse_key_text;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz.key");
    let diagnostics = match parse_key_text(path, text, None) {
        Ok((_, warnings)) => warnings,
        Err(errors) => errors,
    };
    for d in diagnostics {
        let _ = d.to_string();
    }
});
