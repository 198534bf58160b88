//! Replays the fuzz corpora (fuzz/corpus/<target>/*) through the same entry
//! points as the cargo-fuzz targets: every input that ever mattered keeps
//! passing without a panic.
//!
//! A corpus holds two kinds of input. The seeds were written by hand and
//! are named for what they are (`contract`, `example`, `minimal`: the
//! contract's example config, the shipped one, a minimal valid one);
//! libFuzzer names every input it adds by the SHA-1 of its bytes.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pigeon_dns::config::{CheckKind, Severity, load_str};
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

/// A hand-written seed, not an input libFuzzer added (named by its SHA-1:
/// 40 hex digits).
fn is_seed(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    !(name.len() == 40 && name.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The seeds of the config corpus are valid configs and load; every other
/// input loads or fails with diagnostics located in it (at least one
/// error, each naming the file, a line inside the text when it has one),
/// and none panics. Every input that does not is reported at once.
#[test]
fn config_corpus() {
    let mut seeds = Vec::new();
    let mut problems = Vec::new();
    let mut counts = [0usize; 2];
    for (path, data) in corpus("config") {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let seed = is_seed(&path);
        if seed {
            seeds.push(name.clone());
        }
        let Ok(text) = std::str::from_utf8(&data) else {
            if seed {
                problems.push(format!("seed {name}: not UTF-8"));
            }
            continue;
        };
        let Ok(loaded) = catch_unwind(AssertUnwindSafe(|| load_str(&path, text))) else {
            problems.push(format!("{name}: load_str panicked"));
            continue;
        };
        let diagnostics = match loaded {
            Ok(_) => {
                counts[0] += 1;
                continue;
            }
            Err(diagnostics) => diagnostics,
        };
        counts[1] += 1;
        let rendered: String = diagnostics.iter().map(|d| format!("  {d}\n")).collect();
        if seed {
            problems.push(format!("seed {name} does not load:\n{rendered}"));
            continue;
        }
        if !diagnostics.iter().any(|d| d.severity == Severity::Error) {
            problems.push(format!("{name}: refused without an error:\n{rendered}"));
        }
        let lines = text.matches('\n').count() + 1;
        for d in &diagnostics {
            let inside = d.line.is_none_or(|l| (1..=lines).contains(&l));
            if d.file != path || !inside {
                problems.push(format!(
                    "{name}: not located in the input ({lines} lines): {d}"
                ));
            }
        }
    }
    println!(
        "{} inputs load, {} are refused; seeds {seeds:?}",
        counts[0], counts[1]
    );
    assert!(!seeds.is_empty(), "the config corpus has no seed");
    assert!(
        problems.is_empty(),
        "{} config corpus inputs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
