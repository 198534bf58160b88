//! The end of a failover: the zone's secondaries. After each UPDATE that
//! changed the zone, and every `resync_interval`, the zone's other
//! authoritative servers are asked for their SOA serial (unsigned, as any
//! resolver asks them), compared with the primary's by RFC 1982; after a
//! change they are asked again every few milliseconds until each serves the
//! new serial. Clients ask the secondaries as often as the primary: a
//! failover is over when they serve it too.
//!
//! Its own task per zone, so that a slow or silent secondary never delays
//! the reconciler; readiness does not depend on secondaries.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Primary;
use crate::config::Secondaries;
use crate::core::serial::serves;
use crate::dns::DnsError;
use crate::metrics::ZoneSeries;
use crate::status::{Board, SecondaryStatus};

/// How often the secondaries are asked while a change is on its way.
const FOLLOW_EVERY: Duration = Duration::from_millis(10);

/// Where serials come from.
pub trait Serials: Send + Sync {
    /// The primary's serial.
    fn primary(&self) -> impl Future<Output = Result<u32, DnsError>> + Send;
    /// A secondary's serial.
    fn secondary(&self, server: SocketAddr) -> impl Future<Output = Result<u32, DnsError>> + Send;
    /// Which servers are the zone's secondaries now.
    fn servers(&self) -> impl Future<Output = Result<Vec<SocketAddr>, String>> + Send;
}

/// Serials over DNS: the primary's through its signed client, the
/// secondaries' by unsigned queries.
pub struct DnsSerials<P> {
    pub primary: P,
    pub zone: String,
    pub timeout: Duration,
    pub secondaries: Secondaries,
}

impl<P: Primary> Serials for DnsSerials<P> {
    async fn primary(&self) -> Result<u32, DnsError> {
        self.primary.soa_serial().await
    }

    async fn secondary(&self, server: SocketAddr) -> Result<u32, DnsError> {
        crate::dns::client::soa_serial_unsigned(server, &self.zone, self.timeout).await
    }

    async fn servers(&self) -> Result<Vec<SocketAddr>, String> {
        let primary = resolve(self.primary.server()).await?;
        let listed = match &self.secondaries {
            Secondaries::Servers(servers) => {
                let mut all = Vec::new();
                for server in servers {
                    all.extend(resolve(server).await?);
                }
                all
            }
            Secondaries::Ns => {
                let port = primary.first().map_or(53, SocketAddr::port);
                let addresses = self
                    .primary
                    .name_server_addresses()
                    .await
                    .map_err(|e| format!("cannot read the zone's NS records: {e}"))?;
                addresses
                    .into_iter()
                    .filter(|ip| !primary.iter().any(|p| p.ip() == *ip))
                    .map(|ip| SocketAddr::new(ip, port))
                    .collect()
            }
        };
        let mut unique: Vec<SocketAddr> = Vec::new();
        for addr in listed {
            if !unique.contains(&addr) && !primary.contains(&addr) {
                unique.push(addr);
            }
        }
        Ok(unique)
    }
}

/// `host:port` to addresses (a name through the system's resolver).
async fn resolve(server: &str) -> Result<Vec<SocketAddr>, String> {
    tokio::net::lookup_host(server)
        .await
        .map(Iterator::collect)
        .map_err(|e| format!("cannot resolve {server}: {e}"))
}

/// What is known of one secondary.
#[derive(Clone, Debug)]
struct Secondary {
    addr: SocketAddr,
    label: String,
    serial: Option<u32>,
    up: bool,
    /// Since when it has served an older serial than the primary's, or not
    /// answered.
    behind_since: Option<Instant>,
    /// Its trouble was logged (behind for long, or silent): the way back is
    /// logged too.
    told: bool,
}

/// The secondaries of one zone.
pub struct Watcher<S> {
    zone: String,
    serials: S,
    secondaries: Vec<Secondary>,
    resync: Duration,
    series: ZoneSeries,
    board: Arc<Board>,
    primary_serial: Option<u32>,
    /// The last failure to learn the servers was logged.
    servers_unknown: bool,
}

impl<S: Serials> Watcher<S> {
    pub fn new(
        zone: &str,
        serials: S,
        resync: Duration,
        series: ZoneSeries,
        board: Arc<Board>,
    ) -> Self {
        Self {
            zone: zone.to_string(),
            serials,
            secondaries: Vec::new(),
            resync,
            series,
            board,
            primary_serial: None,
            servers_unknown: false,
        }
    }

    /// Learns the zone's secondaries again (their NS records may have
    /// changed); what is known of a server that stays is kept. On failure
    /// the list is kept as it was, and the failure logged once.
    async fn refresh_servers(&mut self) {
        let servers = match self.serials.servers().await {
            Ok(servers) => servers,
            Err(error) => {
                if !self.servers_unknown {
                    warn!(zone = %self.zone, %error, "Cannot learn the zone's secondaries; keeping the last known.");
                    self.servers_unknown = true;
                }
                return;
            }
        };
        if self.servers_unknown {
            info!(zone = %self.zone, secondaries = servers.len(), "The zone's secondaries are known again.");
            self.servers_unknown = false;
        }
        let mut old = std::mem::take(&mut self.secondaries);
        for addr in servers {
            let kept = old
                .iter()
                .position(|s| s.addr == addr)
                .map(|i| old.swap_remove(i));
            self.secondaries.push(kept.unwrap_or_else(|| {
                debug!(zone = %self.zone, server = %addr, "Following a secondary.");
                Secondary {
                    addr,
                    label: addr.to_string(),
                    serial: None,
                    up: true,
                    behind_since: None,
                    told: false,
                }
            }));
        }
        for gone in old {
            info!(zone = %self.zone, server = %gone.label, "No longer a secondary of the zone.");
            self.series.forget_secondary(&gone.label);
        }
    }

    /// Runs until `shutdown`. `applied` carries the instant of each UPDATE
    /// that changed the zone.
    pub async fn run(
        mut self,
        mut applied: mpsc::UnboundedReceiver<Instant>,
        shutdown: CancellationToken,
    ) {
        let mut next_check = Instant::now();
        // The earliest change not yet served by every secondary.
        let mut following: Option<Instant> = None;
        loop {
            let wake = match following {
                Some(_) => Instant::now() + FOLLOW_EVERY,
                None => next_check,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                at = applied.recv() => match at {
                    Some(at) => following = Some(following.map_or(at, |f| f.min(at))),
                    None => return,
                },
                () = sleep_until(wake) => {}
            }
            let now = Instant::now();
            if following.is_none() && now < next_check {
                continue;
            }
            if now >= next_check {
                next_check = now + self.resync;
                self.refresh_servers().await;
            }
            let all_serve = self.check(now).await;
            if let Some(since) = following {
                if self.secondaries.is_empty() {
                    // No secondary: nothing propagates.
                    following = None;
                } else if all_serve {
                    let took = since.elapsed();
                    debug!(zone = %self.zone, took_ms = %format_args!("{:.1}", took.as_secs_f64() * 1000.0), "Every secondary serves the change.");
                    self.series.propagated(took.as_secs_f64());
                    following = None;
                } else if since.elapsed() > self.resync {
                    // Still behind: the resync checks go on, the logs tell.
                    following = None;
                }
            }
        }
    }

    /// Asks the primary and every secondary; true when every secondary
    /// serves the primary's serial (or a later one).
    async fn check(&mut self, now: Instant) -> bool {
        let primary = match self.serials.primary().await {
            Ok(serial) => serial,
            Err(error) => {
                // The reconciler reports the primary's failures.
                debug!(zone = %self.zone, %error, "Cannot read the primary's serial.");
                return false;
            }
        };
        self.primary_serial = Some(primary);
        self.series.serial("primary", Some(primary));
        let answers = join_all(
            self.secondaries
                .iter()
                .map(|s| self.serials.secondary(s.addr)),
        )
        .await;
        let mut all = true;
        for (s, answer) in self.secondaries.iter_mut().zip(answers) {
            let in_sync = match answer {
                Ok(serial) => {
                    if !s.up {
                        info!(zone = %self.zone, server = %s.label, serial, "Secondary answers again.");
                    }
                    s.up = true;
                    s.serial = Some(serial);
                    serves(serial, primary)
                }
                Err(error) => {
                    if s.up {
                        warn!(zone = %self.zone, server = %s.label, %error, "Secondary does not answer.");
                        s.told = true;
                    }
                    s.up = false;
                    false
                }
            };
            if in_sync {
                if s.told {
                    info!(zone = %self.zone, server = %s.label, serial = primary, "Secondary is in sync again.");
                    s.told = false;
                }
                s.behind_since = None;
            } else {
                all = false;
                let since = *s.behind_since.get_or_insert(now);
                if s.up && !s.told && now.duration_since(since) > self.resync {
                    warn!(
                        zone = %self.zone, server = %s.label,
                        serial = s.serial.unwrap_or_default(), primary,
                        behind_s = now.duration_since(since).as_secs(),
                        "Secondary serves an older serial than the primary for longer than resync_interval."
                    );
                    s.told = true;
                }
            }
        }
        self.publish(now);
        all
    }

    /// Metrics and `/status`.
    fn publish(&self, now: Instant) {
        let mut statuses = Vec::new();
        for s in &self.secondaries {
            let behind = s
                .behind_since
                .map_or(0.0, |since| now.duration_since(since).as_secs_f64());
            self.series.serial(&s.label, s.serial);
            self.series.secondary(&s.label, s.up, behind);
            statuses.push(SecondaryStatus {
                server: s.label.clone(),
                serial: s.serial,
                up: s.up,
                in_sync: s.behind_since.is_none(),
                behind_seconds: behind,
            });
        }
        self.board
            .set_serials(&self.zone, self.primary_serial, statuses);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use tokio::time::sleep;

    use super::*;
    use crate::metrics::Metrics;

    /// Serials as the test sets them; a server absent from the map is
    /// silent; the servers are those of `Fake::servers`.
    #[derive(Clone, Default)]
    struct Fake(
        Arc<Mutex<(u32, HashMap<SocketAddr, u32>)>>,
        Arc<Mutex<Vec<SocketAddr>>>,
    );

    impl Fake {
        fn with_servers(servers: &[SocketAddr]) -> Self {
            let fake = Fake::default();
            *fake.1.lock().unwrap() = servers.to_vec();
            fake
        }
    }

    impl Serials for Fake {
        async fn primary(&self) -> Result<u32, DnsError> {
            Ok(self.0.lock().unwrap().0)
        }

        async fn secondary(&self, server: SocketAddr) -> Result<u32, DnsError> {
            self.0
                .lock()
                .unwrap()
                .1
                .get(&server)
                .copied()
                .ok_or(DnsError::Timeout {
                    server: server.to_string(),
                    timeout: Duration::from_secs(2),
                })
        }

        async fn servers(&self) -> Result<Vec<SocketAddr>, String> {
            Ok(self.1.lock().unwrap().clone())
        }
    }

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 53))
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_is_followed_until_every_secondary_serves_it() {
        let fake = Fake::with_servers(&[addr(1), addr(2)]);
        fake.0.lock().unwrap().0 = 5;
        fake.0
            .lock()
            .unwrap()
            .1
            .extend([(addr(1), 5), (addr(2), 5)]);
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let board = Arc::new(Board::default());
        let watcher = Watcher::new(
            "example.com.",
            fake.clone(),
            Duration::from_secs(60),
            metrics.zone("example.com."),
            board.clone(),
        );
        let (tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watcher.run(rx, shutdown.clone()));
        sleep(Duration::from_millis(5)).await;
        // An UPDATE: the primary moves to 6; one secondary follows at once,
        // the other 40 ms later.
        fake.0.lock().unwrap().0 = 6;
        fake.0.lock().unwrap().1.insert(addr(1), 6);
        tx.send(Instant::now()).unwrap();
        sleep(Duration::from_millis(40)).await;
        let behind = board.status(Duration::from_secs(60)).zones[0]
            .secondaries
            .clone();
        assert_eq!(behind.iter().filter(|s| s.in_sync).count(), 1);
        fake.0.lock().unwrap().1.insert(addr(2), 6);
        sleep(Duration::from_millis(40)).await;
        let zone = &board.status(Duration::from_secs(60)).zones[0];
        assert_eq!(zone.serial, Some(6));
        assert!(
            zone.secondaries
                .iter()
                .all(|s| s.in_sync && s.serial == Some(6))
        );
        let histogram = metrics
            .propagation
            .with_label_values(&["example.com"])
            .get_sample_count();
        assert_eq!(histogram, 1);
        let sum = metrics
            .propagation
            .with_label_values(&["example.com"])
            .get_sample_sum();
        assert!((0.04..0.06).contains(&sum), "{sum}");
        shutdown.cancel();
        let _ = task.await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_secondary_is_down_and_falls_behind_until_it_answers() {
        let fake = Fake::with_servers(&[addr(1)]);
        fake.0.lock().unwrap().0 = 5;
        let metrics = Metrics::new(prometheus::Registry::new()).unwrap();
        let resync = Duration::from_secs(10);
        let watcher = Watcher::new(
            "example.com.",
            fake.clone(),
            resync,
            metrics.zone("example.com."),
            Arc::new(Board::default()),
        );
        let (_tx, rx) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(watcher.run(rx, shutdown.clone()));
        sleep(3 * resync + Duration::from_millis(5)).await;
        let up = metrics
            .secondary_up
            .with_label_values(&["example.com", "192.0.2.1:53"]);
        let behind = metrics
            .secondary_behind
            .with_label_values(&["example.com", "192.0.2.1:53"]);
        assert_eq!(up.get(), 0.0);
        assert_eq!(behind.get(), 30.0, "behind since the first look");
        fake.0.lock().unwrap().1.insert(addr(1), 5);
        sleep(resync).await;
        assert_eq!(up.get(), 1.0);
        assert_eq!(behind.get(), 0.0);
        shutdown.cancel();
        let _ = task.await;
    }
}
