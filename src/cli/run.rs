//! `run`: the daemon. Loads the config (exit 64 when it is invalid, so that
//! systemd does not restart into the same error), turns SIGTERM and SIGINT
//! into the shutdown token, and leaves the rest to [`crate::app`].

use std::path::Path;

use tokio_util::sync::CancellationToken;

use super::ExitCode;
use crate::{app, config};

/// The target of these log lines: the binary's, where they were written
/// before the commands moved into the library, so that log filters and
/// JSON consumers see them as they were.
const LOG_TARGET: &str = "pigeon_dns";

/// `run`: until SIGTERM or SIGINT; 64 when the config is invalid at start.
pub async fn run(path: &Path, dry_run: bool) -> ExitCode {
    raise_file_limit();
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            for e in &errors {
                tracing::error!(target: LOG_TARGET, "{}", e.located());
            }
            tracing::error!(
                target: LOG_TARGET,
                file = %path.display(),
                "Invalid configuration; not starting."
            );
            return ExitCode::InvalidConfig;
        }
    };
    for w in &full.warnings {
        tracing::warn!(target: LOG_TARGET, "{}", w.located());
    }
    let shutdown = CancellationToken::new();
    let signals = tokio::spawn(wait_for_signal(shutdown.clone()));
    let result = app::run(full, path, dry_run, shutdown).await;
    signals.abort();
    match result {
        Ok(()) => ExitCode::Ok,
        Err(error) => {
            tracing::error!(target: LOG_TARGET, %error, "pigeon-dns stopped.");
            ExitCode::Failure
        }
    }
}

/// Raises the soft limit of open files to the hard one: every target may hold
/// a watch connection besides its probes (systemd's LimitNOFILE sets both).
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(target: LOG_TARGET, limit, "Open file limit."),
        Err(error) => {
            tracing::warn!(target: LOG_TARGET, %error, "Cannot raise the open file limit.")
        }
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!(target: LOG_TARGET, "Cannot install signal handlers.");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(target: LOG_TARGET, "SIGTERM received."),
        _ = int.recv() => tracing::info!(target: LOG_TARGET, "SIGINT received."),
    }
    shutdown.cancel();
}
