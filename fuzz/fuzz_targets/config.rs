//! The config loader: any text, no panic; every error located.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pigeon_dns::config::load_str;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(errors) = load_str(Path::new("/nonexistent/fuzz.toml"), text) {
        assert!(!errors.is_empty());
        for d in errors {
            let _ = d.to_string();
        }
    }
});
