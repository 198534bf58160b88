//! The daemon: builds the tasks from a loaded configuration (the HTTP
//! server, one reconciler per zone, one task per target), runs them until
//! shutdown, and applies a new configuration on SIGHUP (module `reload`).

mod reload;
mod tlsa;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{self, Config, Full, ZoneConfig};
use crate::core::health::State;
use crate::core::records::name_key;
use crate::dns::DnsClient;
use crate::dns::key::TsigKey;
use crate::events::Outbox;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::reconcile::{
    DnsPrimary, DnsSerials, DrainSource, DrainWatcher, DrainsRx, Input, LeaseSetup, Mode, Watcher,
    Writer, ZoneReconciler, ZoneSetup,
};
use crate::schedule::{self, TargetContext};
use crate::status::{Board, Entry};
use crate::targets::{Layout, Target, TargetId, ZoneLayout};
use reload::reload;
pub use tlsa::tlsa_cache;

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

/// This host's name: the probes' EHLO argument (RFC 5321 §4.1.1.1 asks for
/// the client's FQDN) and the writer's name without `[ha]`. Read once.
pub fn host_name() -> String {
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

/// A random token drawn once per process: what makes a lease record ours.
pub fn process_token() -> String {
    let mut bytes = [0u8; 8];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes = ((nanos as u64) ^ u64::from(std::process::id())).to_be_bytes();
    }
    data_encoding::HEXLOWER.encode(&bytes)
}

/// The reconciler's [`crate::reconcile::Primary`] in the daemon.
pub type AppPrimary = DnsPrimary<DnsClient>;

/// The primary of a zone, with its key.
pub fn primary(zone: &ZoneConfig, key: &TsigKey) -> AppPrimary {
    let client = DnsClient::new(zone.server.clone(), key.signer(), zone.timeout);
    DnsPrimary::new(client, &name_key(&zone.zone.to_ascii()))
}

/// Where the drain marks live: `_pigeon-dns-drain.<first zone>`, at that
/// zone's primary, read and written with its key. The one place that
/// names the first zone for them (the daemon's watcher, `drain`, `plan`).
/// `key` is the first zone's.
pub fn drain_source(config: &Config, key: &TsigKey) -> DrainSource<AppPrimary> {
    let first = config.first_zone();
    DrainSource::new(&name_key(&first.zone.to_ascii()), primary(first, key))
}

/// The nodes the configuration drains (`drain = true`), for the board.
fn config_drains(config: &Config) -> Vec<String> {
    config
        .nodes
        .iter()
        .filter(|n| n.drain)
        .map(|n| n.name.clone())
        .collect()
}

/// What a zone's reconciler needs of the configuration.
pub fn zone_setup(config: &Config, zone: &ZoneLayout) -> ZoneSetup {
    let dns = &config.zones[zone.index];
    ZoneSetup {
        zone: zone.name.clone(),
        ttl: dns.ttl,
        resync_interval: dns.resync_interval,
        max_records: config::MAX_RECORDS_PER_TYPE,
    }
}

/// `[ha]` for one zone: its lease lives in that zone.
pub fn lease_setup(config: &Config, zone: &ZoneLayout) -> Option<LeaseSetup> {
    config.ha.as_ref().map(|ha| LeaseSetup {
        zone: zone.name.clone(),
        name: name_key(&ha.lease_in(&config.zones[zone.index].zone).to_ascii()),
        lease_time: ha.lease_time,
        instance: ha.instance.clone(),
    })
}

/// A zone's reconciler task, by its inbox, and its secondaries' watcher.
struct ZoneTask {
    inbox: mpsc::UnboundedSender<Input<AppPrimary>>,
    /// The settings the watcher runs with.
    dns: ZoneConfig,
    /// Stops the watcher.
    watcher: CancellationToken,
}

impl ZoneTask {
    fn outbox(&self) -> Outbox {
        let inbox = self.inbox.clone();
        Outbox::new(move |event| {
            let _ = inbox.send(Input::Event(event));
        })
    }
}

/// The running target tasks of one configuration generation.
struct Probing {
    generation: u64,
    layout: Arc<Layout>,
    /// Cancelling it stops every target task of this generation.
    token: CancellationToken,
}

/// Starts one target task (a function, so that a test can stand in for
/// the probes).
type Launch = fn(&mut JoinSet<()>, Target, State, TargetContext, CancellationToken);

/// The target task of the daemon: probes on schedule under its span.
fn launch(
    tasks: &mut JoinSet<()>,
    target: Target,
    state: State,
    ctx: TargetContext,
    token: CancellationToken,
) {
    let span = info_span!("probe", pool = %target.id.pool, node = %target.id.node, address = %target.id.address);
    tasks.spawn(schedule::run(target, state, ctx, token).instrument(span));
}

/// What the daemon keeps to start tasks, now and on reload.
struct Daemon {
    launch: Launch,
    prober: Prober,
    metrics: Metrics,
    board: Arc<Board>,
    host: String,
    token: String,
    mode: Mode,
    zones: HashMap<String, ZoneTask>,
    /// The drain marks, as the watcher last read them.
    drains: DrainsRx,
    /// Where the watcher reads them (a reload may move them).
    drain_source: watch::Sender<DrainSource<AppPrimary>>,
}

impl Daemon {
    /// Starts the reconciler of a zone that has none yet, at `generation`,
    /// from the decided states in `health` (kept across a reload), with
    /// its secondaries' watcher.
    #[allow(clippy::too_many_arguments)]
    fn spawn_zone(
        &mut self,
        tasks: &mut JoinSet<()>,
        config: &Config,
        key: &TsigKey,
        zone: &ZoneLayout,
        generation: u64,
        health: HashMap<TargetId, State>,
        shutdown: &CancellationToken,
    ) {
        let dns = &config.zones[zone.index];
        let (inbox, rx) = mpsc::unbounded_channel();
        let (changed, watcher) = self.spawn_watcher(tasks, dns, key, shutdown);
        let reconciler = ZoneReconciler::new(
            zone_setup(config, zone),
            zone.shape.clone(),
            primary(dns, key),
            Writer::new(
                self.mode,
                lease_setup(config, zone),
                &self.token,
                &self.host,
            ),
            self.metrics.clone(),
            self.board.clone(),
            health,
            zone.targets,
        )
        .telling(changed)
        .managing(zone.tlsa.clone(), self.prober.tlsa(), dns.timeout)
        .at_generation(generation)
        .watching_drains(self.drains.clone());
        tasks.spawn(
            reconciler
                .run(rx, shutdown.child_token())
                .instrument(info_span!("reconcile", zone = %zone.name)),
        );
        let task = ZoneTask {
            inbox,
            dns: dns.clone(),
            watcher,
        };
        self.zones.insert(zone.name.clone(), task);
    }

    /// Starts the watcher of a zone's secondaries: the sender tells it of
    /// every UPDATE that changed the zone; the token stops it.
    fn spawn_watcher(
        &self,
        tasks: &mut JoinSet<()>,
        dns: &ZoneConfig,
        key: &TsigKey,
        shutdown: &CancellationToken,
    ) -> (
        mpsc::UnboundedSender<tokio::time::Instant>,
        CancellationToken,
    ) {
        let zone = name_key(&dns.zone.to_ascii());
        let (changed, applied) = mpsc::unbounded_channel();
        let token = shutdown.child_token();
        let serials = DnsSerials {
            primary: primary(dns, key),
            zone: zone.clone(),
            timeout: dns.timeout,
            secondaries: dns.secondaries.clone(),
        };
        let watcher = Watcher::new(
            &zone,
            serials,
            dns.resync_interval,
            self.metrics.zone(&zone),
            self.board.clone(),
        );
        tasks.spawn(
            watcher
                .run(applied, token.clone())
                .instrument(info_span!("secondaries", zone = %zone)),
        );
        (changed, token)
    }

    /// Starts the target tasks of `layout`, each from the state in
    /// `initial` (unknown when absent).
    fn spawn_targets(
        &self,
        tasks: &mut JoinSet<()>,
        generation: u64,
        layout: Arc<Layout>,
        initial: &HashMap<TargetId, State>,
        shutdown: &CancellationToken,
    ) -> Probing {
        let token = shutdown.child_token();
        let outboxes: Vec<Outbox> = layout
            .zones
            .iter()
            .map(|z| {
                self.zones
                    .get(&z.name)
                    .map_or_else(|| Outbox::new(|_| {}), ZoneTask::outbox)
            })
            .collect();
        for t in &layout.targets {
            let ctx = TargetContext {
                generation,
                prober: self.prober.clone(),
                outbox: outboxes[t.zone].clone(),
                metrics: self.metrics.clone(),
                board: self.board.clone(),
            };
            let state = initial.get(&t.id).copied().unwrap_or(State::Unknown);
            (self.launch)(tasks, t.clone(), state, ctx, token.child_token());
        }
        Probing {
            generation,
            layout,
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
    let keys = full.keys;
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
        let grace = longest_resync(&config);
        tasks.spawn(
            async move {
                if let Err(error) = crate::http::serve(listener, m, b, grace, token).await {
                    warn!(%error, "HTTP server stopped.");
                }
            }
            .instrument(info_span!("http")),
        );
    }

    let (drain_source, source) = watch::channel(drain_source(&config, &keys[0]));
    let (watcher, drains) = DrainWatcher::new(source, board.clone());
    tasks.spawn(
        watcher
            .run(shutdown.child_token())
            .instrument(info_span!("drains")),
    );
    board.set_config_drains(config_drains(&config));

    let host = host_name();
    let layout = Arc::new(Layout::new(&config, &host));
    metrics.init_layout(&layout, config.ha.is_some());
    let mut daemon = Daemon {
        launch,
        prober: Prober::with_tlsa(tlsa_cache(&config, &keys, Some(&metrics))),
        metrics: metrics.clone(),
        board: board.clone(),
        token: process_token(),
        host,
        mode: if dry_run { Mode::DryRun } else { Mode::Write },
        zones: HashMap::new(),
        drains,
        drain_source,
    };
    board.set_zones(&zone_servers(&config));
    for zone in &layout.zones {
        daemon.spawn_zone(
            &mut tasks,
            &config,
            &keys[zone.index],
            zone,
            0,
            HashMap::new(),
            &shutdown,
        );
    }
    let started = SystemTime::now();
    board.replace_targets(
        layout
            .targets
            .iter()
            .map(|t| {
                let entry = Entry::new(t.spec.check, t.spec.addr.port(), started);
                (t.id.clone(), entry)
            })
            .collect(),
    );
    let mut probing =
        daemon.spawn_targets(&mut tasks, 0, layout.clone(), &HashMap::new(), &shutdown);
    let first = config.first_zone();
    info!(
        zone = %first.zone,
        server = %first.server,
        key = %keys[0].name,
        zones = config.zones.len(),
        nodes = config.nodes.len(),
        pools = config.pools.len(),
        targets = layout.targets.len(),
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
                if let Some(next) = reload(path, &probing, &mut daemon, &mut tasks, &shutdown) {
                    probing.token.cancel();
                    probing = next;
                }
                notify(&[sd_notify::NotifyState::Ready]);
            }
            // Reap finished tasks (targets of earlier generations, retired zones).
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

/// `/readyz` tolerates a failing primary for this long: the longest
/// `resync_interval` of the zones.
fn longest_resync(config: &Config) -> Duration {
    config
        .zones
        .iter()
        .map(|z| z.resync_interval)
        .max()
        .unwrap_or(Duration::from_secs(60))
}

/// Each zone (a name key) with its primary, for `/status`.
fn zone_servers(config: &Config) -> Vec<(String, String)> {
    config
        .zones
        .iter()
        .map(|z| (name_key(&z.zone.to_ascii()), z.server.clone()))
        .collect()
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
