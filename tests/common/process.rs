//! Finding the programs the harness runs, running them with a deadline,
//! reading their logs, and stopping what it started.
//!
//! No `libc`: the crate forbids `unsafe`, so signals go through `kill(1)`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

/// Directories searched besides `$PATH`: CI or `sudo` may leave the sbin
/// directories (where `named`, `dovecot` and `tsig-keygen` live) out of it.
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/local/sbin"];

/// The Debian package that ships `tool`, for the panic message.
fn package_of(tool: &str) -> &'static str {
    match tool {
        "named" | "tsig-keygen" | "named-checkconf" | "named-journalprint" => "bind9",
        "dig" | "nsupdate" => "bind9-dnsutils",
        "knotd" | "knotc" | "keymgr" => "knot",
        "kdig" | "knsupdate" => "knot-dnsutils",
        "pdns_server" => "pdns-server pdns-backend-bind",
        "dovecot" | "doveconf" => "dovecot-core",
        "imap" => "dovecot-imapd",
        "pop3" => "dovecot-pop3d",
        "submission" => "dovecot-submissiond",
        "openssl" => "openssl",
        "kill" => "procps",
        "promtool" => "prometheus",
        "systemd-analyze" => "systemd",
        "cargo-deb" => "cargo-deb (cargo install cargo-deb)",
        "chromium" => "chromium",
        "dpkg" | "dpkg-deb" => "dpkg",
        _ => "the package that provides it",
    }
}

/// The text of the log file a program writes at `path`; empty until it
/// writes one.
pub fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The lines of the log file at `path` that contain `needle`.
pub fn log_lines(path: &Path, needle: &str) -> Vec<String> {
    log_text(path)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// The absolute path of `tool`. A missing tool fails the test (never skips
/// it): `named not found: apt-get install bind9`.
pub fn tool(name: &str) -> PathBuf {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let found = path_dirs
        .into_iter()
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    match found {
        Some(path) => path,
        None => panic!("{name} not found: apt-get install {}", package_of(name)),
    }
}

/// Fails the test unless a helper program of dovecot's (`imap`, `pop3`,
/// `submission`) is installed: dovecot itself would start and then refuse
/// the protocol with a less helpful message.
pub fn require_dovecot_protocol(binary: &str) {
    let path = Path::new("/usr/lib/dovecot").join(binary);
    assert!(
        path.is_file(),
        "{} not found: apt-get install {}",
        path.display(),
        package_of(binary)
    );
}

/// Runs `cmd` to completion, feeding it `stdin`, and kills it when it
/// outlives `timeout` (then panics: a hung helper is a harness bug).
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_owned();
        // A writer thread, so a child that does not read cannot block us.
        thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
    }
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let status = match wait_deadline(&mut child, timeout) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {timeout:?}");
        }
    };
    Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// Waits for `child` to exit, polling, for at most `timeout`.
pub fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

/// Sends `signal` (a name such as `TERM`, `KILL`, `HUP`) to one process.
pub fn signal(pid: u32, signal: &str) {
    send(&pid.to_string(), signal);
}

/// Sends `signal` to every process of the group `pgid`.
pub fn signal_group(pgid: u32, signal: &str) {
    send(&format!("-{pgid}"), signal);
}

fn send(target: &str, signal: &str) {
    // The outcome is not checked: the target may have exited already.
    let _ = Command::new(tool("kill"))
        .args(["-s", signal, "--", target])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Processes started by the harness and still running, so that an example
/// interrupted by Ctrl-C can stop them (`Drop` does not run on a signal).
/// `(pid, whole process group)`.
static RUNNING: Mutex<Vec<(u32, bool)>> = Mutex::new(Vec::new());

pub fn register(pid: u32, group: bool) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((pid, group));
}

pub fn unregister(pid: u32) {
    RUNNING
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(p, _)| *p != pid);
}

/// Kills everything the harness started and has not stopped yet. For signal
/// handlers (see `examples/demo.rs`); tests rely on `Drop` instead.
pub fn kill_all_started() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|e| e.into_inner()));
    for (pid, group) in running {
        if group {
            signal_group(pid, "KILL");
        } else {
            signal(pid, "KILL");
        }
    }
}

/// A child that is killed and reaped on drop: SIGKILL to its process group
/// when `group` (dovecot forks; its children hold the listening sockets),
/// to the process alone otherwise.
///
/// The leader is reaped only after its group was killed: until then its pid,
/// and so the group id, cannot be reused by an unrelated process.
pub struct Guarded {
    child: Child,
    group: bool,
    reaped: Option<ExitStatus>,
}

impl Guarded {
    /// Spawns `cmd`; with `group`, in a new process group led by the child.
    pub fn spawn(mut cmd: Command, group: bool) -> std::io::Result<Guarded> {
        if group {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd.spawn()?;
        register(child.id(), group);
        Ok(Guarded {
            child,
            group,
            reaped: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's piped stdout, once.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.child.stdout.take()
    }

    /// The child's piped stderr, once.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Whether the child has exited (without reaping it).
    pub fn has_exited(&self) -> bool {
        self.reaped.is_some() || is_dead(self.pid())
    }

    /// Sends `sig` (`TERM`, `KILL`, ...), waits up to `grace` for the child
    /// to exit, then SIGKILLs it (and its group). Returns its exit status.
    pub fn stop(&mut self, sig: &str, grace: Duration) -> ExitStatus {
        if let Some(status) = self.reaped {
            return status;
        }
        if self.group && sig == "KILL" {
            signal_group(self.pid(), "KILL");
        } else {
            signal(self.pid(), sig);
        }
        let deadline = Instant::now() + grace;
        while !is_dead(self.pid()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        self.reap()
    }

    /// Waits up to `timeout` for the child to exit, without reaping it (nor
    /// killing its group): its children may live on. True when it exited.
    pub fn wait_dead(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !is_dead(self.pid()) {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(5));
        }
        true
    }

    /// Waits for the child to exit by itself, for at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            let deadline = Instant::now() + timeout;
            while !is_dead(self.pid()) {
                if Instant::now() >= deadline {
                    return None;
                }
                thread::sleep(Duration::from_millis(5));
            }
            self.reap();
        }
        self.reaped
    }

    /// Kills what is left (the group first, while the leader is unreaped),
    /// then reaps the leader.
    fn reap(&mut self) -> ExitStatus {
        if let Some(status) = self.reaped {
            return status;
        }
        if self.group {
            signal_group(self.pid(), "KILL");
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for a child");
        unregister(self.pid());
        self.reaped = Some(status);
        status
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.reap();
    }
}

/// True when `pid` is a zombie or gone: it has exited, reaped or not.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses and
        // may itself contain spaces or parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}
