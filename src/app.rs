//! The daemon: builds the tasks from a loaded configuration and runs them
//! until shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prometheus::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{Config, Full};
use crate::dns::DnsClient;
use crate::dns::key::TsigKey;
use crate::health::State;
use crate::metrics::Metrics;
use crate::probe::Prober;
use crate::reconcile::{Reconciler, pool_labels};
use crate::state::{Board, LeaseStatus, TargetStatus, rfc3339};
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

/// Runs the daemon until `shutdown` is cancelled.
pub async fn run(full: Full, dry_run: bool, shutdown: CancellationToken) -> Result<(), AppError> {
    install_crypto_provider();
    let config = Arc::new(full.config);
    let labels = pool_labels(&config);
    let metrics = Metrics::new(Registry::new())?;
    metrics.init_config(&config, &labels);
    metrics.lease_held.set(1.0);
    let board = Arc::new(Board::default());
    board.set_dry_run(dry_run);
    board.set_lease(LeaseStatus {
        holder: Some(ehlo_name()),
        held: true,
    });

    let listener = match config.http.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| AppError::Listen { addr, source })?,
        ),
        None => None,
    };

    let targets = target::targets(&config, &labels, &ehlo_name());
    let started = rfc3339(SystemTime::now());
    for t in &targets {
        board.add_target(t.id, initial_status(t, &started));
    }

    let mut tasks = JoinSet::new();
    if let Some(listener) = listener {
        let addr = listener.local_addr().ok();
        info!(?addr, "HTTP listening.");
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
    let reconciler = Reconciler::new(
        config.clone(),
        dns_client(&config, &full.key),
        metrics.clone(),
        board.clone(),
        dry_run,
        targets.len(),
    );
    tasks.spawn(
        reconciler
            .run(events_rx, shutdown.child_token())
            .instrument(info_span!("reconcile", zone = %config.dns.zone)),
    );

    let ctx = TargetContext {
        prober: Prober::new(),
        events: events_tx,
        metrics: metrics.clone(),
        board: board.clone(),
    };
    for t in targets {
        let span = info_span!("probe", pool = %t.pool, node = %t.node, address = %t.id.address);
        tasks.spawn(target::run(t, State::Unknown, ctx.clone(), shutdown.child_token()).instrument(span));
    }
    info!(
        zone = %config.dns.zone,
        server = %config.dns.server,
        key = %full.key.name,
        nodes = config.nodes.len(),
        pools = config.pools.len(),
        dry_run,
        "pigeon-dns started."
    );
    notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = watchdog(shutdown.child_token());

    shutdown.cancelled().await;
    info!("Shutting down.");
    notify(&[sd_notify::NotifyState::Stopping]);
    drop(watchdog);
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        warn!("Some tasks did not stop in time; exiting anyway.");
    }
    Ok(())
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

/// Pings systemd's watchdog at half of `WatchdogSec` while the runtime lives.
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
