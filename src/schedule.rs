//! One task per target (pool × node × address): probe on schedule, feed
//! rise/fall, report transitions to the zone's reconciler at once; keep a
//! watch connection to an up target and probe at once when it ends.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ProbeSettings;
use crate::core::health::{Health, State, Transition};
use crate::events::{Event, Outbox};
use crate::metrics::{Metrics, TargetSeries};
use crate::probe::{ProbeOutcome, ProbeSpec, Prober, WatchEnd};
use crate::status::Board;
use crate::targets::Target;

/// Shared handles of the target tasks.
#[derive(Clone)]
pub struct TargetContext {
    /// The configuration generation the task belongs to.
    pub generation: u64,
    pub prober: Prober,
    pub outbox: Outbox,
    pub metrics: Metrics,
    pub board: Arc<Board>,
}

/// A watch connection that ends sooner than this after it opened counts as
/// unstable: the next one waits (see `watch_backoff`).
const WATCH_MIN_LIFE: Duration = Duration::from_secs(1);

/// The first probes of all targets are spread over this long (or one
/// interval, when shorter): long enough to turn a burst into a steady rate,
/// short enough that the first decisions (and readiness) still come quickly.
const FIRST_PROBE_SPREAD: Duration = Duration::from_secs(1);

/// At most this many transition lines per target and window; the rest are
/// counted and summed up in one line, so a flapping node cannot flood the
/// journal. Metrics and DNS still follow every transition.
const LOG_BURST: u32 = 10;
const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Rate limit of a target's transition log lines.
#[derive(Debug)]
struct LogLimit {
    window_start: Instant,
    logged: u32,
    suppressed: u32,
}

impl LogLimit {
    fn new() -> Self {
        Self {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }

    /// Closes the window when it is over, logging the summary of what it held back.
    fn roll(&mut self, state: State) {
        if self.window_start.elapsed() < LOG_WINDOW {
            return;
        }
        if self.suppressed > 0 {
            info!(
                suppressed = self.suppressed,
                state = %state,
                "Target flapped: {} more transitions in the last {}s were not logged one by one.",
                self.suppressed,
                LOG_WINDOW.as_secs()
            );
        }
        *self = Self::new();
    }

    /// Whether this transition may be logged on its own line.
    fn allow(&mut self) -> bool {
        if self.logged < LOG_BURST {
            self.logged += 1;
            return true;
        }
        if self.suppressed == 0 {
            warn!(
                "Target is flapping: more than {LOG_BURST} transitions within {}s; further ones are summed up.",
                LOG_WINDOW.as_secs()
            );
        }
        self.suppressed += 1;
        false
    }
}

/// When a target's last probe ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastProbe {
    pub started: Instant,
    pub ended: Instant,
}

/// When the next probe starts. While rise/fall has not decided, the next
/// probe starts `fast_interval` after the last one ended; otherwise
/// `interval` after it started. A lost watch connection (at `watch_lost`)
/// brings it forward, but never to less than `fast_interval` after the last
/// probe ended, whatever the watch does.
///
/// Targets that one event (a switch, a restart) probed together stay
/// together: their next transitions go out in one UPDATE. (Keeping each
/// target's phase instead was measured: it spread 100 nodes coming back over
/// a whole interval, 60+ UPDATEs, and did not make late probes any rarer at
/// 10,000 targets.)
pub fn next_probe(
    settings: &ProbeSettings,
    in_doubt: bool,
    last: LastProbe,
    watch_lost: Option<Instant>,
) -> Instant {
    let regular = if in_doubt {
        last.ended + settings.fast_interval
    } else {
        last.started + settings.interval
    };
    match watch_lost {
        Some(at) => regular.min(at.max(last.ended + settings.fast_interval)),
        None => regular,
    }
}

/// How long to wait before opening a watch again after one ended. A watch
/// that a server ends at once (it greets then hangs up, or talks on an idle
/// connection) must not turn into a probe storm: one that lived less than
/// a second waits a delay doubling from `fast_interval` up to
/// `interval`; one that lived longer is reopened at once.
pub fn watch_backoff(previous: Duration, lived: Duration, settings: &ProbeSettings) -> Duration {
    if lived < WATCH_MIN_LIFE {
        (previous * 2)
            .max(settings.fast_interval)
            .min(settings.interval)
    } else {
        Duration::ZERO
    }
}

/// Runs one target until `shutdown`. `initial` is the state to start from
/// (unknown at start; kept across a reload).
pub async fn run(target: Target, initial: State, ctx: TargetContext, shutdown: CancellationToken) {
    let mut health = Health::with_state(initial);
    let mut first = initial == State::Unknown;
    let mut watch: Option<std::pin::Pin<Box<dyn Future<Output = WatchEnd> + Send>>> = None;
    let settings = target.settings;
    let mut log_limit = LogLimit::new();
    let mut watch_opened = Instant::now();
    let mut reopen_after = Duration::ZERO;
    let series = ProbeSeries::new(&target, &ctx.metrics);
    tokio::select! {
        () = sleep(first_probe_offset(&target)) => {}
        () = shutdown.cancelled() => return,
    }
    loop {
        let started = Instant::now();
        // Boxed, so that the probe's state machine (~2 KiB) is allocated
        // only while a probe runs rather than inside every idle task.
        let probe = Box::pin(ctx.prober.probe(&target.spec));
        let outcome = tokio::select! {
            outcome = probe => outcome,
            () = shutdown.cancelled() => return,
        };
        let transition = health.observe(outcome.is_ok(), settings.rise, settings.fall);
        log_limit.roll(health.state());
        let log_it = transition.is_some() && log_limit.allow();
        report(
            &target,
            &ctx,
            &series,
            &outcome,
            health.state(),
            transition,
            log_it,
        );
        if first {
            first = false;
            ctx.outbox.send(Event::FirstResult {
                generation: ctx.generation,
                target: target.id.clone(),
            });
        }
        if health.state() != State::Up || !outcome.is_ok() {
            watch = None;
        } else if watch.is_none() && settings.watch && target.spec.check.is_mail() {
            watch = Some(open_watch(&ctx, &target.spec, reopen_after));
            watch_opened = Instant::now() + reopen_after;
        }
        let last = LastProbe {
            started,
            ended: Instant::now(),
        };
        let mut next = next_probe(&settings, health.in_doubt(), last, None);
        loop {
            let watch_end = async {
                match watch.as_mut() {
                    Some(w) => w.await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = sleep_until(next) => {
                    // How late the scheduler started it: a saturated runtime shows here.
                    ctx.metrics.probe_delay.observe(next.elapsed().as_secs_f64());
                    break;
                }
                () = shutdown.cancelled() => return,
                end = watch_end => {
                    match end {
                        WatchEnd::Closed { polite: true, detail } => {
                            // An idle timeout of the server: reopen quietly, with jitter.
                            debug!(%detail, "Watch connection closed politely; reopening.");
                            watch = Some(open_watch(&ctx, &target.spec, jitter(&target)));
                        }
                        WatchEnd::Closed { polite: false, detail } | WatchEnd::Failed { detail } => {
                            debug!(%detail, "Watch connection lost; probing now.");
                            watch = None;
                            reopen_after =
                                watch_backoff(reopen_after, watch_opened.elapsed(), &settings);
                            let now = Instant::now();
                            next = next_probe(&settings, health.in_doubt(), last, Some(now));
                            if next <= now {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// How long a target waits before its first probe: spread by target over up
/// to [`FIRST_PROBE_SPREAD`] (at most one interval), so that targets started
/// together do not all connect at once, then again at once every interval:
/// 10,000 simultaneous probes keep a 2-core host busy for long enough that
/// many start late and some time out. The phase, once set, persists.
fn first_probe_offset(target: &Target) -> Duration {
    use std::hash::{Hash, Hasher};
    let spread = target.settings.interval.min(FIRST_PROBE_SPREAD);
    // Not `jitter`'s clock-seeded hash: the same target keeps its phase.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    target.id.hash(&mut hasher);
    let nanos = u64::try_from(spread.as_nanos()).unwrap_or(u64::MAX).max(1);
    Duration::from_nanos(hasher.finish() % nanos)
}

fn open_watch(
    ctx: &TargetContext,
    spec: &ProbeSpec,
    delay: Duration,
) -> std::pin::Pin<Box<dyn Future<Output = WatchEnd> + Send>> {
    let prober = ctx.prober.clone();
    let gauge = ctx.metrics.watch_connections.clone();
    let spec = spec.clone();
    Box::pin(async move {
        if !delay.is_zero() {
            sleep(delay).await;
        }
        prober.watch(&spec, &gauge).await
    })
}

/// 0.5 to 1.5 s, spread by target so reopened watches do not arrive together.
fn jitter(target: &Target) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    target.id.hash(&mut hasher);
    Instant::now().hash(&mut hasher);
    Duration::from_millis(500 + hasher.finish() % 1000)
}

/// The series every probe of a target updates, looked up once per task:
/// a lookup by label values allocates the labels, hashes them and takes a
/// lock, per probe (visible in profiles at thousands of probes a second).
struct ProbeSeries {
    target: Arc<TargetSeries>,
    duration: Histogram,
}

impl ProbeSeries {
    fn new(target: &Target, metrics: &Metrics) -> Self {
        let (pool, node, address) = (
            &target.id.pool,
            &target.id.node,
            target.id.address.to_string(),
        );
        Self {
            // Created by `init_config`; missing only when a later reload has
            // removed the target already: counted nowhere then.
            target: metrics
                .targets
                .find(pool, node, &address)
                .unwrap_or_default(),
            duration: metrics
                .probe_duration
                .with_label_values(&[target.spec.check.as_str()]),
        }
    }
}

/// Metrics, status and the log line of one probe: a transition at info, a
/// result that confirms the known state at debug.
fn report(
    target: &Target,
    ctx: &TargetContext,
    series: &ProbeSeries,
    outcome: &ProbeOutcome,
    state: State,
    transition: Option<Transition>,
    log_transition: bool,
) {
    series.target.probed(outcome.result);
    series.duration.observe(outcome.latency.as_secs_f64());
    match outcome.tls.as_ref().and_then(|t| t.not_after) {
        Some(not_after) => {
            let secs = match not_after.duration_since(std::time::SystemTime::now()) {
                Ok(left) => left.as_secs_f64(),
                Err(past) => -past.duration().as_secs_f64(),
            };
            series.target.set_cert_expiry(Some(secs));
        }
        // No certificate seen this time (untrusted, wrong name, no TLS at
        // all): a stale value would hide the problem, so drop the sample.
        None if target.spec.check.implicit_tls() || target.spec.starttls => {
            series.target.set_cert_expiry(None);
        }
        None => {}
    }
    ctx.board
        .record_probe(&target.id, outcome, state, transition.is_some());
    match transition {
        Some(t) => {
            series.target.transition(t.to);
            // pool, node and address come from the task's span.
            if log_transition {
                info!(
                    from = %t.from, to = %t.to, reason = %outcome.detail,
                    result = outcome.result.as_str(),
                    "Target is {}.", t.to
                );
            }
            ctx.outbox.send(Event::Transition {
                generation: ctx.generation,
                target: target.id.clone(),
                state: t.to,
            });
        }
        None => debug!(
            state = %state,
            result = outcome.result.as_str(), detail = %outcome.detail,
            latency_ms = %format_args!("{:.1}", outcome.latency.as_secs_f64() * 1000.0),
            "Probe."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ProbeSettings {
        ProbeSettings {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
            fast_interval: Duration::from_millis(100),
            watch: true,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_next_probe_keeps_the_interval_or_hurries_while_in_doubt() {
        let s = settings();
        let t0 = Instant::now();
        let last = LastProbe {
            started: t0,
            ended: t0 + 30 * MS,
        };
        assert_eq!(next_probe(&s, false, last, None), t0 + s.interval);
        assert_eq!(next_probe(&s, true, last, None), t0 + 130 * MS);
    }

    #[test]
    fn a_lost_watch_brings_the_probe_forward_but_not_within_fast_interval() {
        let s = settings();
        let t0 = Instant::now();
        let last = LastProbe {
            started: t0,
            ended: t0 + 30 * MS,
        };
        // Long after the last probe: at once.
        assert_eq!(
            next_probe(&s, false, last, Some(t0 + 500 * MS)),
            t0 + 500 * MS
        );
        // Right after it: fast_interval after it ended.
        assert_eq!(
            next_probe(&s, false, last, Some(t0 + 40 * MS)),
            t0 + 130 * MS
        );
        // Never later than the regular schedule.
        assert_eq!(
            next_probe(&s, true, last, Some(t0 + 40 * MS)),
            t0 + 130 * MS
        );
    }

    #[test]
    fn a_watch_that_dies_young_backs_off_up_to_the_interval() {
        let s = settings();
        let young = Duration::from_millis(10);
        let mut delay = Duration::ZERO;
        let mut seen = Vec::new();
        for _ in 0..7 {
            delay = watch_backoff(delay, young, &s);
            seen.push(delay.as_millis());
        }
        assert_eq!(seen, [100, 200, 400, 800, 1600, 2000, 2000]);
        assert_eq!(
            watch_backoff(delay, WATCH_MIN_LIFE, &s),
            Duration::ZERO,
            "a watch that lived is reopened at once"
        );
    }
}
