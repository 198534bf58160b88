//! The daemon: builds the tasks from a loaded configuration, runs them until
//! shutdown, and applies a new configuration on SIGHUP.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::config::{self, Config, Full};
use crate::dns::DnsClient;
use crate::dns::key::TsigKey;
use crate::health::State;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::reconcile::{Reconciler, pool_labels};
use crate::state::{Board, Event, Reload, TargetId, TargetStatus, rfc3339};
use crate::target::{self, Target, TargetContext};

/// How long shutdown waits for tasks (an UPDATE in flight) before giving up.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(1800);

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot install the SIGHUP handler: {0}")]
    Signal(std::io::Error),
}

/// The EHLO name: this host's name (RFC 5321 §4.1.1.1 asks for the client's FQDN).
pub fn ehlo_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "pigeon-dns".to_string())
}

/// Installs ring as the process-wide rustls provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub fn dns_client(config: &Config, key: &TsigKey) -> DnsClient {
    DnsClient::new(config.dns.server.clone(), key.signer(), config.dns.timeout)
}

/// The running target tasks of one configuration generation.
struct Probing {
    generation: u64,
    config: Arc<Config>,
    targets: Vec<Target>,
    /// Cancelling it stops every target task of this generation.
    token: CancellationToken,
}

/// Shared handles for spawning target tasks.
struct Spawner {
    prober: Prober,
    events: mpsc::UnboundedSender<Event>,
    metrics: Metrics,
    board: Arc<Board>,
    ehlo: String,
}

impl Spawner {
    /// Starts the target tasks of `config`, each from the state in `initial`
    /// (unknown when absent).
    fn spawn(
        &self,
        tasks: &mut JoinSet<()>,
        generation: u64,
        config: Arc<Config>,
        initial: &HashMap<TargetId, State>,
        shutdown: &CancellationToken,
    ) -> Probing {
        let labels = pool_labels(&config);
        self.metrics.init_config(&config, &labels);
        let targets = target::targets(&config, &labels, &self.ehlo);
        let token = shutdown.child_token();
        let ctx = TargetContext {
            generation,
            prober: self.prober.clone(),
            events: self.events.clone(),
            metrics: self.metrics.clone(),
            board: self.board.clone(),
        };
        for t in &targets {
            let state = initial.get(&t.id).copied().unwrap_or(State::Unknown);
            let span = info_span!("probe", pool = %t.pool, node = %t.node, address = %t.id.address);
            tasks.spawn(
                target::run(t.clone(), state, ctx.clone(), token.child_token()).instrument(span),
            );
        }
        Probing {
            generation,
            config,
            targets,
            token,
        }
    }
}

/// Runs the daemon until `shutdown` is cancelled. `path` is re-read on SIGHUP.
pub async fn run(
    full: Full,
    path: &Path,
    dry_run: bool,
    shutdown: CancellationToken,
) -> Result<(), AppError> {
    install_crypto_provider();
    let config = Arc::new(full.config);
    let metrics = Metrics::new(Registry::new())?;
    let board = Arc::new(Board::default());
    board.set_dry_run(dry_run);
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(AppError::Signal)?;

    let mut tasks = JoinSet::new();
    if let Some(addr) = config.http.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Listen { addr, source })?;
        info!(%addr, "HTTP listening.");
        let (m, b, token) = (metrics.clone(), board.clone(), shutdown.child_token());
        let grace = config.dns.resync_interval;
        tasks.spawn(
            async move {
                if let Err(error) = crate::http::serve(listener, m, b, grace, token).await {
                    warn!(%error, "HTTP server stopped.");
                }
            }
            .instrument(info_span!("http")),
        );
    }

    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let spawner = Spawner {
        prober: Prober::new(),
        events: events_tx.clone(),
        metrics: metrics.clone(),
        board: board.clone(),
        ehlo: ehlo_name(),
    };
    let mut probing = spawner.spawn(&mut tasks, 0, config.clone(), &HashMap::new(), &shutdown);
    let started = rfc3339(SystemTime::now());
    board.replace_targets(
        probing
            .targets
            .iter()
            .map(|t| (t.id, initial_status(t, &started)))
            .collect(),
    );
    let reconciler = Reconciler::new(
        config.clone(),
        dns_client(&config, &full.key),
        metrics.clone(),
        board.clone(),
        dry_run,
        probing.targets.len(),
    );
    tasks.spawn(
        reconciler
            .run(events_rx, shutdown.child_token())
            .instrument(info_span!("reconcile")),
    );
    info!(
        zone = %config.dns.zone,
        server = %config.dns.server,
        key = %full.key.name,
        nodes = config.nodes.len(),
        pools = config.pools.len(),
        targets = probing.targets.len(),
        dry_run,
        "pigeon-dns started."
    );
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog(shutdown.child_token());

    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = hangup.recv() => {
                notify(&[sd_notify::NotifyState::Reloading]);
                if let Some(next) = reload(path, &probing, &spawner, &mut tasks, &events_tx, &shutdown) {
                    probing.token.cancel();
                    probing = next;
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            // Reap finished target tasks of earlier generations.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    info!("Shutting down.");
    notify(&[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!("Some tasks did not stop in time; exiting anyway.");
    }
    Ok(())
}

/// Re-reads the configuration and key file. A valid one replaces the target
/// tasks (kept targets keep their state) and goes to the reconciler; an
/// invalid one is logged with every error and the running one is kept.
fn reload(
    path: &Path,
    current: &Probing,
    spawner: &Spawner,
    tasks: &mut JoinSet<()>,
    events: &mpsc::UnboundedSender<Event>,
    shutdown: &CancellationToken,
) -> Option<Probing> {
    info!(file = %path.display(), "SIGHUP: reloading the configuration.");
    let full = match config::load_all(path) {
        Ok(full) => full,
        Err(errors) => {
            for e in &errors {
                error!("{}", e.located());
            }
            error!(
                errors = errors.len(),
                "The new configuration is invalid; keeping the running one."
            );
            return None;
        }
    };
    for w in &full.warnings {
        warn!("{}", w.located());
    }
    let config = Arc::new(full.config);
    let generation = current.generation + 1;
    // Carry state and status across by (pool label, node, address).
    let old_status = spawner.board.targets();
    let by_key: BTreeMap<(String, String, String), &TargetStatus> = old_status
        .values()
        .map(|s| ((s.pool.clone(), s.node.clone(), s.address.clone()), s))
        .collect();
    let new_labels = pool_labels(&config);
    let mut health = HashMap::new();
    let mut statuses = BTreeMap::new();
    let mut new_keys = std::collections::HashSet::new();
    let started = rfc3339(SystemTime::now());
    for t in target::targets(&config, &new_labels, &spawner.ehlo) {
        let key = (t.pool.clone(), t.node.clone(), t.id.address.to_string());
        // A target is kept when it is probed the same way as before.
        let kept = by_key
            .get(&key)
            .filter(|s| s.check == t.spec.check.as_str() && s.port == t.spec.addr.port());
        let status = match kept {
            Some(status) => {
                let state = match status.state.as_str() {
                    "up" => State::Up,
                    "down" => State::Down,
                    _ => State::Unknown,
                };
                if state != State::Unknown {
                    health.insert(t.id, state);
                }
                (*status).clone()
            }
            None => {
                // Probed another way now (check or port changed): its series
                // start again, like its state (no stale node_up or expiry).
                if by_key.contains_key(&key) {
                    spawner.metrics.forget_target(&key.0, &key.1, &key.2);
                }
                initial_status(&t, &started)
            }
        };
        statuses.insert(t.id, status);
        new_keys.insert(key);
    }
    // Forget the series of targets and pools that are gone.
    for key in by_key.keys().filter(|k| !new_keys.contains(*k)) {
        spawner.metrics.forget_target(&key.0, &key.1, &key.2);
    }
    for label in pool_labels(&current.config) {
        if !new_labels.contains(&label) {
            spawner.metrics.forget_pool(&label);
        }
    }
    spawner.board.replace_targets(statuses);
    let next = spawner.spawn(tasks, generation, config.clone(), &health, shutdown);
    let _ = events.send(Event::Reload(Box::new(Reload {
        generation,
        config: config.clone(),
        health,
        targets: next.targets.len(),
        client: dns_client(&config, &full.key),
    })));
    info!(
        generation,
        nodes = config.nodes.len(),
        pools = config.pools.len(),
        targets = next.targets.len(),
        "Configuration reloaded."
    );
    Some(next)
}

fn initial_status(t: &Target, started: &str) -> TargetStatus {
    TargetStatus {
        pool: t.pool.clone(),
        node: t.node.clone(),
        address: t.id.address.to_string(),
        check: t.spec.check.as_str().to_string(),
        port: t.spec.addr.port(),
        state: State::Unknown.as_str().to_string(),
        since: started.to_string(),
        last: None,
    }
}

fn notify(state: &[sd_notify::NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, state) {
        warn!(%error, "Cannot notify systemd.");
    }
}

/// Pings systemd's watchdog at half of `WatchdogSec`.
fn watchdog(shutdown: CancellationToken) -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => notify(&[sd_notify::NotifyState::Watchdog]),
                () = shutdown.cancelled() => return,
            }
        }
    }))
}
