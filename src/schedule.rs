//! One task per target (pool × node × address): probe on schedule, feed
//! rise/fall, report transitions to the zone's reconciler at once; keep a
//! watch connection to an up target and probe at once when it ends.

use std::sync::Arc;
use std::time::Duration;

use prometheus::Histogram;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::core::health::{Health, State, Transition};
use crate::dane::KeyDigest;
use crate::events::{Event, Outbox};
use crate::metrics::{Metrics, TargetSeries};
use crate::probe::{DaneVerdict, Keepalive, ProbeOutcome, ProbeSpec, Prober, Recent, WatchEnd};
use crate::status::Board;
use crate::targets::Target;

mod timing;

use timing::falls_within;
pub use timing::{
    LastProbe, WatchLoss, WatchMeaning, greeting_deadline, next_probe, watch_backoff, watch_meaning,
};

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

type WatchFuture = std::pin::Pin<Box<dyn Future<Output = WatchEnd> + Send>>;

/// The end of the watch, if there is one (pending otherwise).
async fn watch_end(watch: &mut Option<WatchFuture>) -> WatchEnd {
    match watch.as_mut() {
        Some(w) => w.await,
        None => std::future::pending().await,
    }
}

/// The state of one target's task.
struct TargetTask {
    target: Target,
    ctx: TargetContext,
    series: ProbeSeries,
    health: Health,
    /// The first result is yet to come (readiness).
    first: bool,
    log_limit: LogLimit,
    /// The node's recent greeting times.
    greetings: Recent,
    /// `dane = "manage"`: the key last told to the reconciler.
    served_key: Option<KeyDigest>,
}

impl TargetTask {
    /// Takes one result, of a probe or of the watch: rise/fall, metrics,
    /// status, log, and the event when it decides. A first failure while up
    /// makes the siblings (the node's other services) probe at once.
    fn take(&mut self, outcome: &ProbeOutcome) {
        self.tell_key(outcome);
        let settings = &self.target.settings;
        let was_sure = !self.health.in_doubt();
        let was_falling = self.health.falling(settings.fall).is_some();
        let transition = self
            .health
            .observe(outcome.is_ok(), settings.rise, settings.fall);
        let falling = self.health.falling(settings.fall);
        if transition.is_none() && falling.is_some() != was_falling {
            self.ctx.outbox.send(Event::Falling {
                generation: self.ctx.generation,
                target: self.target.id.clone(),
                within: falling.map(|left| falls_within(settings, left)),
            });
        }
        if let Some(greeted) = outcome.greeted_in.filter(|_| outcome.is_ok()) {
            self.greetings.push(greeted);
        }
        self.log_limit.roll(self.health.state());
        let log_it = transition.is_some() && self.log_limit.allow();
        report(
            &self.target,
            &self.ctx,
            &self.series,
            outcome,
            self.health.state(),
            transition,
            log_it,
        );
        if !outcome.is_ok() && was_sure && self.health.state() == State::Up {
            self.target.siblings.notify_waiters();
        }
        if self.first {
            self.first = false;
            self.ctx.outbox.send(Event::FirstResult {
                generation: self.ctx.generation,
                target: self.target.id.clone(),
            });
        }
    }

    /// `dane = "manage"`: tells the reconciler of a key the node serves
    /// that it was not told before, ahead of any transition the same probe
    /// decides (a node is published only once its key's record is old enough).
    fn tell_key(&mut self, outcome: &ProbeOutcome) {
        let manage = self.target.spec.dane.as_ref().is_some_and(|d| d.manage);
        let Some(key) = outcome.dane.as_ref().and_then(|d| d.key) else {
            return;
        };
        if manage && self.served_key != Some(key) {
            self.served_key = Some(key);
            self.ctx.outbox.send(Event::ServedKey {
                generation: self.ctx.generation,
                target: self.target.id.clone(),
                key,
            });
        }
    }

    /// The greeting deadline of the next probe: shortened while an up
    /// target is in doubt.
    fn greeting_within(&self) -> Option<Duration> {
        (self.health.state() == State::Up && self.health.in_doubt())
            .then(|| greeting_deadline(&self.greetings, self.target.settings.timeout))
    }
}

/// Runs one target until `shutdown`. `initial` is the state to start from
/// (unknown at start; kept across a reload).
///
/// Not an `async fn`: one keeps its arguments in the future beside what
/// they are moved into. Here the task's state is built first, in a box, so
/// that each of 10,000 idle tasks holds a pointer to it and the await
/// points' own state only.
pub fn run(
    target: Target,
    initial: State,
    ctx: TargetContext,
    shutdown: CancellationToken,
) -> impl Future<Output = ()> + Send {
    let task = Box::new(TargetTask {
        series: ProbeSeries::new(&target, &ctx.metrics),
        health: Health::with_state(initial),
        first: initial == State::Unknown,
        log_limit: LogLimit::new(),
        greetings: Recent::default(),
        served_key: None,
        target,
        ctx,
    });
    run_task(task, shutdown)
}

async fn run_task(mut task: Box<TargetTask>, shutdown: CancellationToken) {
    let settings = task.target.settings;
    let keepalive = Some(Keepalive {
        every: settings.interval / 2,
    });
    let mut watch: Option<WatchFuture> = None;
    let mut watch_opened = Instant::now();
    let mut reopen_after = Duration::ZERO;
    tokio::select! {
        () = sleep(first_probe_offset(&task.target)) => {}
        () = shutdown.cancelled() => return,
    }
    loop {
        let started = Instant::now();
        // Boxed, so that the probe's state machine (~2 KiB) is allocated
        // only while a probe runs rather than inside every idle task.
        let mut probe = Box::pin(
            task.ctx
                .prober
                .probe_within(&task.target.spec, task.greeting_within()),
        );
        // The watch is heard while the probe runs: a shutdown announced or a
        // keepalive unanswered cuts short a probe waiting on a frozen node,
        // and the next one, in doubt, waits less for its greeting.
        let outcome = loop {
            tokio::select! {
                outcome = &mut probe => break Ok(outcome),
                () = shutdown.cancelled() => return,
                end = watch_end(&mut watch) => {
                    watch = None;
                    if let WatchMeaning::Failed(observed) = watch_meaning(&end) {
                        break Err(observed);
                    }
                }
            }
        };
        drop(probe);
        // Taken in a block, so that the outcome is not kept across the waits
        // below (in every idle task's future).
        let ok = match outcome {
            Ok(outcome) => {
                task.take(&outcome);
                outcome.is_ok()
            }
            Err(observed) => {
                debug!(detail = %observed.detail, "The watch failed while a probe ran; probing again at once.");
                task.take(&observed);
                continue;
            }
        };
        if task.health.state() != State::Up || !ok {
            watch = None;
        } else if watch.is_none() && settings.watch && task.target.spec.check.is_mail() {
            watch = Some(open_watch(
                &task.ctx,
                &task.target.spec,
                reopen_after,
                keepalive,
            ));
            watch_opened = Instant::now() + reopen_after;
        }
        let last = LastProbe {
            started,
            ended: Instant::now(),
        };
        let mut next = next_probe(&settings, task.health.in_doubt(), last, None);
        let siblings = task.target.siblings.clone();
        loop {
            tokio::select! {
                () = sleep_until(next) => {
                    // How late the scheduler started it: a saturated runtime shows here.
                    task.ctx.metrics.probe_delay.observe(next.elapsed().as_secs_f64());
                    break;
                }
                () = shutdown.cancelled() => return,
                () = siblings.notified() => {
                    // Another service of this node just failed: look now,
                    // unless this target is already on it.
                    if task.health.state() == State::Up && !task.health.in_doubt() {
                        debug!("A sibling failed; probing now.");
                        break;
                    }
                }
                end = watch_end(&mut watch) => {
                    let meaning = watch_meaning(&end);
                    if meaning == WatchMeaning::Reopen {
                        // An idle timeout of the server: reopen quietly, with jitter.
                        debug!(?end, "Watch connection closed politely for inactivity; reopening.");
                        watch = Some(open_watch(&task.ctx, &task.target.spec, jitter(&task.target), keepalive));
                        continue;
                    }
                    debug!(?end, "Watch connection lost; probing now.");
                    watch = None;
                    let lived = watch_opened.elapsed();
                    reopen_after = watch_backoff(reopen_after, lived, &settings);
                    if let WatchMeaning::Failed(observed) = meaning {
                        task.take(&observed);
                    }
                    let now = Instant::now();
                    let loss = WatchLoss { at: now, lived };
                    next = next_probe(&settings, task.health.in_doubt(), last, Some(loss));
                    if next <= now {
                        break;
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
    spec: &Arc<ProbeSpec>,
    delay: Duration,
    keepalive: Option<Keepalive>,
) -> WatchFuture {
    let prober = ctx.prober.clone();
    let gauge = ctx.metrics.watch_connections.clone();
    let spec = Arc::clone(spec);
    Box::pin(async move {
        if !delay.is_zero() {
            sleep(delay).await;
        }
        prober.watch(&spec, &gauge, keepalive).await
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
    if let Some(dane) = &outcome.dane {
        series.target.set_dane_match(match dane.verdict {
            DaneVerdict::Match => Some(true),
            DaneVerdict::Mismatch => Some(false),
            DaneVerdict::NotInForce | DaneVerdict::Unreadable => None,
        });
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
