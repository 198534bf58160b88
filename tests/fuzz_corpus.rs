//! Replays the fuzz corpora (fuzz/corpus/<target>/*) through the same entry
//! points as the cargo-fuzz targets: every input that ever mattered keeps
//! passing without a panic.

use std::path::{Path, PathBuf};

use pigeon_dns::config::{CheckKind, load_str};
use pigeon_dns::dns::key::parse_key_text;
use pigeon_dns::probe::fuzzing::dialogue;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus {}", dir.display());
    inputs
}

#[test]
fn probe_dialogue_corpus() {
    let mut passed = 0;
    for (path, data) in corpus("probe_dialogue") {
        let Some((&selector, input)) = data.split_first() else {
            continue;
        };
        let check = match selector % 3 {
            0 => CheckKind::Smtp,
            1 => CheckKind::Pop3,
            _ => CheckKind::Imap,
        };
        let ok = dialogue(check, input);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with("-ok") {
            assert!(ok, "{name} should pass");
        }
        if ok {
            passed += 1;
        }
    }
    assert!(passed >= 3);
}

#[test]
fn key_file_corpus() {
    for (path, data) in corpus("key_file") {
        if let Ok(text) = std::str::from_utf8(&data) {
            let result = parse_key_text(&path, text, None);
            if path.ends_with("tsig-keygen") {
                assert!(result.is_ok(), "{result:?}");
            }
        }
    }
}

#[test]
fn config_corpus() {
    for (path, data) in corpus("config") {
        if let Ok(text) = std::str::from_utf8(&data)
            && let Err(errors) = load_str(&path, text)
        {
            assert!(!errors.is_empty());
        }
    }
}
