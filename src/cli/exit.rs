//! The exit statuses of `pigeon-dns`, as the contract lists them: every
//! command returns one, and `main` returns it to the system.

use std::process::Termination;

/// How the process ends. Ordered by value: `plan` ends with the highest of
/// its zones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum ExitCode {
    /// Done: a valid config, every check passed, nothing to change or the
    /// change applied, the daemon stopped by SIGTERM or SIGINT.
    Ok = 0,
    /// An invalid config (`check`), a failed check (`probe`), an error, no
    /// daemon answering (`status`).
    Failure = 1,
    /// `plan` without `--apply`: there are changes to send.
    ChangesPending = 2,
    /// `run`: the config is invalid at start (EX_USAGE), so that systemd's
    /// `RestartPreventExitStatus=64` stops a restart loop.
    InvalidConfig = 64,
}

impl Termination for ExitCode {
    fn report(self) -> std::process::ExitCode {
        std::process::ExitCode::from(self as u8)
    }
}
