//! `drain` and `undrain`: maintenance without editing the config. The
//! command reads the config and the key like `plan` (whoever can drain could
//! already write the zone) and changes the drain marks in the first zone
//! ([`crate::core::drain`]) with one UPDATE guarded by the TXT RRset exactly
//! as read: a compare-and-swap, retried on a fresh read when another change
//! came first. The daemons (writer and standby alike) read the marks every
//! half second, so the writer leaves a drained node out within a second of
//! the command returning.
//!
//! Nothing changes when the node or pool is unknown, or the primary is
//! unreachable or refuses: exit 1, with the reason. A node already drained
//! there (`drain`) or not drained (`undrain`) is said so, exit 0.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use super::ExitCode;
use super::output::{errln, outln, print_diagnostics};
use crate::app::{AppPrimary, drain_source, host_name};
use crate::config::{self, Config};
use crate::core::drain::{self, ALL_POOLS, DrainMark, Edit};
use crate::core::records::Rdata;
use crate::dns::{DnsError, Update};
use crate::reconcile::{DrainSource, Primary, read_txt};
use crate::status::rfc3339;
use crate::targets::pool_labels;

/// How many times a mark is swapped in on a fresh read when another
/// change to the marks came first.
const SWAP_TRIES: usize = 5;

/// The longest mark text: one TXT character-string (RFC 1035 §3.3), so that
/// it reads back exactly as written.
const MAX_MARK_BYTES: usize = 255;

#[derive(Debug, thiserror::Error)]
enum DrainError {
    #[error("unknown node {node:?}; the config's nodes: {known}")]
    UnknownNode { node: String, known: String },
    #[error("unknown pool {pool:?}; the config's pools: {known} (or * for every pool)")]
    UnknownPool { pool: String, known: String },
    #[error("node {node} is not in pool {pool}")]
    NotInPool { node: String, pool: String },
    #[error("the reason holds a control character (a line break?): write it on one line")]
    ControlInReason,
    #[error(
        "the mark would be {0} bytes, longer than one TXT string ({MAX_MARK_BYTES}): shorten the reason"
    )]
    TooLong(usize),
    #[error("cannot read the drain marks at {name}: {error}")]
    Read { name: String, error: DnsError },
    #[error("the primary did not apply the change to {name}: {error}")]
    Update { name: String, error: DnsError },
    #[error(
        "the drain marks at {0} kept changing under us ({SWAP_TRIES} tries); nothing changed, try again"
    )]
    Raced(String),
    #[error(
        "{node} is drained in every pool by {by} ({reason:?}); undrain it without --pool, then drain the pools it should stay out of"
    )]
    EveryPool {
        node: String,
        by: String,
        reason: String,
    },
}

/// `pigeon-dns drain NODE [--pool POOL] [--reason TEXT]`.
pub async fn drain(path: &Path, node: &str, pool: Option<&str>, reason: &str) -> ExitCode {
    let Some(full) = load(path) else {
        return ExitCode::Failure;
    };
    let config = &full.config;
    let pool = pool.unwrap_or(ALL_POOLS);
    let mark = match check_target(config, node, pool).and_then(|()| mark(node, pool, reason)) {
        Ok(mark) => mark,
        Err(error) => return fail(&error),
    };
    let source = drain_source(config, full.key(0));
    let edit = swap(&source, |held| drain::drain(held, &mark)).await;
    match edit {
        Ok(Edit::AlreadyDrained(m)) => {
            outln!(
                "{node} is already drained {} (by {} at {}: {:?}); nothing changed.",
                pools_words(&m.pool),
                m.by,
                rfc3339(m.made()),
                m.reason
            );
        }
        Ok(_) => {
            outln!("{node} drained {}: {}", pools_words(pool), mark.text());
            outln!(
                "Every pigeon-dns instance reads the mark within half a second; the writer then removes {node}'s records."
            );
        }
        Err(error) => return fail(&error),
    }
    if config.nodes.iter().any(|n| n.name == node && n.drain) {
        errln!("note: {node} is also drained by the config (drain = true).");
    }
    ExitCode::Ok
}

/// `pigeon-dns undrain NODE [--pool POOL]`.
pub async fn undrain(path: &Path, node: &str, pool: Option<&str>) -> ExitCode {
    let Some(full) = load(path) else {
        return ExitCode::Failure;
    };
    let config = &full.config;
    if let Err(error) = check_target(config, node, pool.unwrap_or(ALL_POOLS)) {
        return fail(&error);
    }
    let source = drain_source(config, full.key(0));
    match swap(&source, |held| drain::undrain(held, node, pool)).await {
        Ok(Edit::NotDrained) => {
            outln!(
                "{node} is not drained{} (no drain mark in the zone); nothing changed.",
                pool.map(|p| format!(" in pool {p}")).unwrap_or_default()
            );
        }
        Ok(Edit::EveryPool(m)) => {
            return fail(&DrainError::EveryPool {
                node: node.to_string(),
                by: m.by,
                reason: m.reason,
            });
        }
        Ok(_) => {
            outln!(
                "{node} undrained {}; every pigeon-dns instance reads it within half a second.",
                pool.map(pools_words)
                    .unwrap_or_else(|| "in every pool".into())
            );
        }
        Err(error) => return fail(&error),
    }
    if config.nodes.iter().any(|n| n.name == node && n.drain) {
        errln!(
            "warning: {node} stays drained: drain = true in the config ({}).",
            config.source.display()
        );
    }
    ExitCode::Ok
}

fn load(path: &Path) -> Option<config::Full> {
    match config::load_all(path) {
        Ok(full) => {
            print_diagnostics(&full.warnings);
            Some(full)
        }
        Err(errors) => {
            print_diagnostics(&errors);
            None
        }
    }
}

fn fail(error: &DrainError) -> ExitCode {
    errln!("error: {error}");
    ExitCode::Failure
}

fn pools_words(pool: &str) -> String {
    if pool == ALL_POOLS {
        "in every pool".into()
    } else {
        format!("in pool {pool}")
    }
}

/// The node must be configured, and the pool (a label as in metrics and
/// `status`, or `*`) must exist and list the node.
fn check_target(config: &Config, node: &str, pool: &str) -> Result<(), DrainError> {
    let Some(index) = config.nodes.iter().position(|n| n.name == node) else {
        return Err(DrainError::UnknownNode {
            node: node.to_string(),
            known: names(config.nodes.iter().map(|n| n.name.as_str())),
        });
    };
    if pool == ALL_POOLS {
        return Ok(());
    }
    let labels = pool_labels(config);
    let Some(at) = labels.iter().position(|l| &**l == pool) else {
        return Err(DrainError::UnknownPool {
            pool: pool.to_string(),
            known: names(labels.iter().map(|l| &**l)),
        });
    };
    if !config.pools[at].nodes.contains(&index) {
        return Err(DrainError::NotInPool {
            node: node.to_string(),
            pool: pool.to_string(),
        });
    }
    Ok(())
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = names.collect();
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// The mark: who (`$USER@host`), now, and why.
fn mark(node: &str, pool: &str, reason: &str) -> Result<DrainMark, DrainError> {
    if reason.chars().any(char::is_control) {
        return Err(DrainError::ControlInReason);
    }
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let mark = DrainMark {
        node: node.to_string(),
        pool: pool.to_string(),
        by: one_word(&format!("{user}@{}", host_name())),
        at: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        reason: reason.trim().to_string(),
    };
    let len = mark.text().len();
    if len > MAX_MARK_BYTES {
        return Err(DrainError::TooLong(len));
    }
    Ok(mark)
}

/// A mark's fields are separated by spaces: `by` must hold none.
fn one_word(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// Reads the marks, asks `edit` what to change, and swaps it in guarded by
/// the RRset as read (RFC 2136 §2.4.2, or §2.4.3 when there was none): a
/// change that came in between fails the prerequisite (NXRRSET/YXRRSET),
/// and the edit is made again on a fresh read. Returns the edit applied, or
/// the one that needed no change.
async fn swap(
    source: &DrainSource<AppPrimary>,
    edit: impl Fn(&BTreeSet<Rdata>) -> Edit,
) -> Result<Edit, DrainError> {
    for _ in 0..SWAP_TRIES {
        let held = read_txt(&source.primary, &source.name)
            .await
            .map_err(|error| DrainError::Read {
                name: source.name.clone(),
                error,
            })?;
        let change = edit(&held);
        let Edit::Change { delete, add } = &change else {
            return Ok(change);
        };
        let mut update = Update::new(&source.zone);
        update.txt_swap(&source.name, &held, delete, add.clone());
        match source.primary.update(&update).await {
            Ok(()) => return Ok(change),
            Err(error) if error.is_prerequisite_failure() => continue,
            Err(error) => {
                return Err(DrainError::Update {
                    name: source.name.clone(),
                    error,
                });
            }
        }
    }
    Err(DrainError::Raced(source.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_names_who_in_one_word_and_refuses_what_would_not_read_back() {
        let m = mark("mail1", "*", " kernel update ").unwrap();
        assert_eq!(m.reason, "kernel update");
        assert!(!m.by.contains(char::is_whitespace) && m.by.contains('@'));
        assert_eq!(DrainMark::parse(&m.text()), Some(m));
        assert!(matches!(
            mark("mail1", "*", "two\nlines"),
            Err(DrainError::ControlInReason)
        ));
        assert!(matches!(
            mark("mail1", "*", &"x".repeat(300)),
            Err(DrainError::TooLong(_))
        ));
        assert_eq!(one_word("a b\tc"), "a_b_c");
    }
}
