//! A real dovecot (IMAP, POP3, submission) for one mail node.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::net;
use super::process::{self, Guarded};

/// dovecot greets ~30 ms after start; a loaded CI machine may be slower.
const START_TIMEOUT: Duration = Duration::from_secs(20);

static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// The ports of one node's listeners. The TLS ones are only used with
/// [`DovecotOpts::tls`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DovecotPorts {
    pub imap: u16,
    pub pop3: u16,
    pub submission: u16,
    pub imaps: Option<u16>,
    pub pop3s: Option<u16>,
    pub submissions: Option<u16>,
}

impl DovecotPorts {
    /// Plain-text listeners only.
    pub fn plain(imap: u16, pop3: u16, submission: u16) -> DovecotPorts {
        DovecotPorts {
            imap,
            pop3,
            submission,
            imaps: None,
            pop3s: None,
            submissions: None,
        }
    }

    /// Ports free on every one of `ips` (for nodes that share port numbers).
    pub fn free_on(ips: &[IpAddr]) -> DovecotPorts {
        let mut taken = Vec::new();
        let mut next = || loop {
            let p = net::common_free_port(ips);
            if !taken.contains(&p) {
                taken.push(p);
                return p;
            }
        };
        DovecotPorts::plain(next(), next(), next())
    }
}

/// A certificate and its key, PEM files readable by root.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Clone, Debug)]
pub struct DovecotOpts {
    pub ip: IpAddr,
    pub ports: DovecotPorts,
    /// The name in the SMTP greeting, e.g. `mail1.example.com`.
    pub hostname: String,
    /// `Some`: `ssl = yes` with this certificate (STARTTLS on the plain
    /// listeners; imaps/pop3s/submissions listeners on the TLS ports).
    pub tls: Option<TlsFiles>,
}

impl DovecotOpts {
    pub fn new(ip: IpAddr, ports: DovecotPorts) -> DovecotOpts {
        DovecotOpts {
            ip,
            ports,
            hostname: "mail.example.com".into(),
            tls: None,
        }
    }
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_owned();
        self
    }
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }
}

/// A protocol a dovecot listener speaks, with its greeting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MailProtocol {
    Imap,
    Pop3,
    Submission,
}

impl MailProtocol {
    /// How a ready server's greeting starts.
    pub fn greeting_prefix(self) -> &'static str {
        match self {
            MailProtocol::Imap => "* OK",
            MailProtocol::Pop3 => "+OK",
            MailProtocol::Submission => "220",
        }
    }
}

/// One dovecot master with its own config, base_dir and log in a tempdir.
/// All its processes are in one process group, killed on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    opts: DovecotOpts,
    process: Option<Guarded>,
    /// A killed master whose children linger.
    lingering: Option<Guarded>,
}

impl Dovecot {
    /// IMAP, POP3 and submission on `ip` at `ports`, without TLS.
    pub fn start(ip: IpAddr, ports: DovecotPorts) -> Dovecot {
        Dovecot::start_with(DovecotOpts::new(ip, ports))
    }

    pub fn start_with(opts: DovecotOpts) -> Dovecot {
        process::tool("dovecot");
        for binary in [
            "imap",
            "pop3",
            "submission",
            "imap-login",
            "pop3-login",
            "submission-login",
        ] {
            process::require_dovecot_protocol(binary);
        }
        let dir = tempfile::Builder::new()
            .prefix("pigeon-dovecot-")
            .tempdir()
            .expect("tempdir");
        // dovecot's unprivileged processes (users dovecot, dovenull) must
        // traverse to their sockets in base_dir: tempdirs are 0700.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let mut dovecot = Dovecot {
            dir,
            opts,
            process: None,
            lingering: None,
        };
        dovecot.write_conf();
        dovecot.spawn();
        dovecot
    }

    pub fn ip(&self) -> IpAddr {
        self.opts.ip
    }
    pub fn ports(&self) -> DovecotPorts {
        self.opts.ports
    }
    pub fn imap_addr(&self) -> SocketAddr {
        SocketAddr::new(self.opts.ip, self.opts.ports.imap)
    }
    pub fn pop3_addr(&self) -> SocketAddr {
        SocketAddr::new(self.opts.ip, self.opts.ports.pop3)
    }
    pub fn submission_addr(&self) -> SocketAddr {
        SocketAddr::new(self.opts.ip, self.opts.ports.submission)
    }
    pub fn addr(&self, protocol: MailProtocol) -> SocketAddr {
        match protocol {
            MailProtocol::Imap => self.imap_addr(),
            MailProtocol::Pop3 => self.pop3_addr(),
            MailProtocol::Submission => self.submission_addr(),
        }
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// dovecot's log: one line per login-process connection, which shows
    /// whether a probe said goodbye politely.
    pub fn log_text(&self) -> String {
        process::log_text(&self.dir.path().join("dovecot.log"))
    }
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(|p| !p.has_exited())
    }

    /// Kills the node (SIGKILL to the whole process group, like a crash) and
    /// waits until its ports refuse connections. Immediate; a SIGTERM would
    /// take dovecot ~1 s.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("KILL", Duration::from_secs(5));
        }
        for protocol in [
            MailProtocol::Imap,
            MailProtocol::Pop3,
            MailProtocol::Submission,
        ] {
            net::wait_refused(self.addr(protocol), Duration::from_secs(5));
        }
    }

    /// SIGTERM to every process of the node at once (`pkill dovecot`, a
    /// container's stop): the login processes say goodbye to their clients
    /// at once; waits until the master is gone.
    pub fn terminate_all(&mut self) {
        if let Some(mut p) = self.process.take() {
            process::signal_group(p.pid(), "TERM");
            p.wait_exit(Duration::from_secs(10));
        }
    }

    /// SIGKILL to the master alone: its login processes linger (dovecot
    /// ends them 30 s later) and keep idle clients' connections open, while
    /// new connections are refused. Waits until the ports refuse.
    pub fn kill_master(&mut self) {
        if let Some(p) = self.process.take() {
            process::signal(p.pid(), "KILL");
            p.wait_dead(Duration::from_secs(5));
            // The children live on in the group, which is killed when the
            // node is dropped or started again (the dead leader stays
            // unreaped meanwhile, so the group id cannot be reused).
            self.lingering = Some(p);
        }
        for protocol in [
            MailProtocol::Imap,
            MailProtocol::Pop3,
            MailProtocol::Submission,
        ] {
            net::wait_refused(self.addr(protocol), Duration::from_secs(5));
        }
    }

    /// SIGSTOP to every process: a frozen node (the kernel still accepts
    /// connections, nothing answers, nothing closes), as a black hole looks.
    pub fn freeze(&self) {
        if let Some(p) = &self.process {
            process::signal_group(p.pid(), "STOP");
        }
    }

    /// SIGCONT: the frozen node goes on.
    pub fn thaw(&self) {
        if let Some(p) = &self.process {
            process::signal_group(p.pid(), "CONT");
        }
    }

    /// SIGHUP to the master: dovecot reads its configuration and
    /// certificates again, and new connections get what it read (the
    /// way an operator deploys a renewed certificate).
    pub fn reload(&self) {
        if let Some(p) = &self.process {
            process::signal(p.pid(), "HUP");
        }
    }

    /// A clean shutdown (SIGTERM; dovecot takes about a second).
    pub fn stop_graceful(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop("TERM", Duration::from_secs(10));
        }
    }

    /// Starts the node again on the same address and ports, and waits until
    /// every listener greets.
    pub fn start_again(&mut self) {
        assert!(self.process.is_none(), "dovecot is still running");
        // Reaping the dead master kills its lingering children.
        self.lingering = None;
        self.spawn();
    }

    fn spawn(&mut self) {
        // A stale pid file of a killed master is harmless unless its pid was
        // reused; then dovecot would refuse to start.
        let _ = std::fs::remove_file(self.dir.path().join("run/master.pid"));
        let stderr =
            std::fs::File::create(self.dir.path().join("dovecot.stderr")).expect("stderr file");
        let mut cmd = Command::new(process::tool("dovecot"));
        cmd.arg("-F")
            .arg("-c")
            .arg(self.dir.path().join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        self.process = Some(Guarded::spawn(cmd, true).expect("spawn dovecot"));
        for protocol in [
            MailProtocol::Imap,
            MailProtocol::Pop3,
            MailProtocol::Submission,
        ] {
            self.wait_greeting(protocol);
        }
    }

    fn wait_greeting(&mut self, protocol: MailProtocol) {
        let addr = self.addr(protocol);
        let prefix = protocol.greeting_prefix();
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                panic!(
                    "dovecot exited at start.\nstderr:\n{}\nlog:\n{}",
                    std::fs::read_to_string(self.dir.path().join("dovecot.stderr"))
                        .unwrap_or_default(),
                    self.log_text()
                );
            }
            match net::read_greeting(addr, Duration::from_secs(2)) {
                Ok(line) if line.starts_with(prefix) => return,
                _ if std::time::Instant::now() >= deadline => panic!(
                    "dovecot at {addr} did not greet with {prefix:?} within {START_TIMEOUT:?}.\nlog:\n{}",
                    self.log_text()
                ),
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn write_conf(&self) {
        let dir = self.dir.path().display().to_string();
        let n = INSTANCES.fetch_add(1, Ordering::Relaxed);
        let instance = format!("pigeon-{}-{n}", std::process::id());
        let DovecotOpts {
            ip,
            ports,
            hostname,
            tls,
        } = &self.opts;
        std::fs::write(
            self.dir.path().join("passwd"),
            format!("probe:{{PLAIN}}not-used:65534:65534::{dir}/home::\n"),
        )
        .expect("write passwd");
        std::fs::create_dir_all(self.dir.path().join("state")).expect("state dir");
        let listen = match ip {
            IpAddr::V4(_) => ip.to_string(),
            IpAddr::V6(_) => format!("[{ip}]"),
        };
        let ssl = match tls {
            None => "ssl = no\n".to_owned(),
            Some(files) => format!(
                "ssl = yes\nssl_cert = <{}\nssl_key = <{}\n",
                files.cert.display(),
                files.key.display()
            ),
        };
        let tls_port = |p: Option<u16>| if tls.is_some() { p.unwrap_or(0) } else { 0 };
        let mut conf = format!(
            r#"# Written by the pigeon-dns test harness.
instance_name = {instance}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap pop3 submission
listen = {listen}
hostname = {hostname}
{ssl}disable_plaintext_auth = no
auth_mechanisms = plain
# Stop fast: clients are cut off with the master.
shutdown_clients = yes
login_trusted_networks = 127.0.0.0/8
mail_location = maildir:{dir}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/passwd
}}
userdb {{
  driver = passwd-file
  args = {dir}/passwd
}}
# Required by submission; it relays only for authenticated users, which
# probes never are, so this address is never contacted.
submission_relay_host = 127.0.0.1
submission_relay_port = 9
# Few processes: a login process serves many connections.
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
  process_min_avail = 0
  service_count = 0
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
  service_count = 0
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
"#,
            imap = ports.imap,
            pop3 = ports.pop3,
            submission = ports.submission,
            imaps = tls_port(ports.imaps),
            pop3s = tls_port(ports.pop3s),
        );
        if let (Some(_), Some(port)) = (tls, ports.submissions) {
            let _ = write!(
                conf,
                "  inet_listener submissions {{\n    port = {port}\n    ssl = yes\n  }}\n"
            );
        }
        conf.push_str("  service_count = 0\n}\n");
        std::fs::write(self.dir.path().join("dovecot.conf"), conf).expect("write dovecot.conf");
    }
}
