//! The pure timing of a target: when its next probe starts, how a watch
//! that ended is read and reopened, how long a greeting may take while the
//! target is in doubt, and how long a falling target says it needs.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::ProbeSettings;
use crate::probe::{Goodbye, ProbeOutcome, ProbeResult, Recent, WatchEnd};

/// A watch connection that ends sooner than this after it opened counts as
/// unstable: the next one waits (see `watch_backoff`).
const WATCH_MIN_LIFE: Duration = Duration::from_secs(1);

/// When a target's last probe ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastProbe {
    pub started: Instant,
    pub ended: Instant,
}

/// A watch connection lost: when, and how long it had lived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatchLoss {
    pub at: Instant,
    pub lived: Duration,
}

/// When the next probe starts. While rise/fall has not decided, the next
/// probe starts `fast_interval` after the last one ended; otherwise
/// `interval` after it started. A lost watch connection brings it forward:
/// at once when the watch had lived (so that a node's services, whose
/// watches all end together, are probed together), but never to less than
/// `fast_interval` after the last probe for a watch that died young (a
/// server that greets and hangs up must not cause a probe storm).
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
    watch_lost: Option<WatchLoss>,
) -> Instant {
    let regular = if in_doubt {
        last.ended + settings.fast_interval
    } else {
        last.started + settings.interval
    };
    match watch_lost {
        Some(loss) if loss.lived >= WATCH_MIN_LIFE => regular.min(loss.at),
        Some(loss) => regular.min(loss.at.max(last.ended + settings.fast_interval)),
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

/// What the end of a watch connection means for the target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMeaning {
    /// An idle timeout: open another, quietly.
    Reopen,
    /// Closed, reset, or a goodbye of no known kind: probe at once; the
    /// probe decides.
    Probe,
    /// A goodbye announcing a shutdown, or a keepalive left unanswered: one
    /// failed observation (it counts towards `fall`), then a probe at once.
    /// Never "down" on its own: dovecot says "Shutting down" to idle
    /// clients 6 s after a reload too, and a node may stall once.
    Failed(ProbeOutcome),
}

/// What the end of a watch means (pure).
pub fn watch_meaning(end: &WatchEnd) -> WatchMeaning {
    let failed = |result, detail: &str| {
        WatchMeaning::Failed(ProbeOutcome {
            result,
            detail: format!("watch: {detail}"),
            latency: Duration::ZERO,
            tls: None,
            greeted_in: None,
            dane: None,
        })
    };
    match end {
        WatchEnd::Closed {
            goodbye: Some(Goodbye::Idle),
            ..
        } => WatchMeaning::Reopen,
        WatchEnd::Closed {
            goodbye: Some(Goodbye::Shutdown),
            detail,
        } => failed(ProbeResult::BadGreeting, detail),
        WatchEnd::Unanswered { detail } => failed(ProbeResult::Timeout, detail),
        WatchEnd::Closed { .. } | WatchEnd::Failed { .. } => WatchMeaning::Probe,
    }
}

/// The shortest wait for a greeting while a target that is up is in doubt:
/// a node that greets in a millisecond greets within this unless it is
/// gone (dovecot's greetings came 56-287 ms late for a moment after a
/// reload); longer waits come from the greetings seen.
const GREETING_FLOOR: Duration = Duration::from_millis(400);

/// How long a probe waits for the greeting while an up target is in doubt
/// (a failure, or a failed observation of the watch): four times the
/// slowest of the node's recent greetings, at least [`GREETING_FLOOR`], at
/// most the timeout. A server that always greets slowly keeps its time; one
/// that has stopped greeting costs a fraction of the timeout.
pub fn greeting_deadline(recent: &Recent, timeout: Duration) -> Duration {
    match recent.slowest() {
        Some(_) => recent.deadline(GREETING_FLOOR, timeout),
        None => timeout,
    }
}

/// How long a falling target takes to decide if each of its `left`
/// failures comes as fast as a refused connection: one fast interval each,
/// and a little for the probe itself; capped, as it holds the node's
/// removal from its other pools.
pub(super) fn falls_within(settings: &ProbeSettings, left: u32) -> Duration {
    const SLACK: Duration = Duration::from_millis(50);
    const CAP: Duration = Duration::from_millis(500);
    (settings.fast_interval * left + SLACK).min(CAP)
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
    fn a_lost_watch_brings_the_probe_forward_paced_only_when_it_died_young() {
        let s = settings();
        let t0 = Instant::now();
        let last = LastProbe {
            started: t0,
            ended: t0 + 30 * MS,
        };
        let young = |at| WatchLoss { at, lived: 10 * MS };
        let lived = |at| WatchLoss {
            at,
            lived: WATCH_MIN_LIFE,
        };
        // Long after the last probe: at once.
        assert_eq!(
            next_probe(&s, false, last, Some(young(t0 + 500 * MS))),
            t0 + 500 * MS
        );
        // A young watch right after a probe: fast_interval after it ended.
        assert_eq!(
            next_probe(&s, false, last, Some(young(t0 + 40 * MS))),
            t0 + 130 * MS
        );
        // A watch that lived: at once, whenever the last probe ran, so that
        // a node's services are probed together.
        assert_eq!(
            next_probe(&s, false, last, Some(lived(t0 + 40 * MS))),
            t0 + 40 * MS
        );
        // Never later than the regular schedule.
        assert_eq!(
            next_probe(&s, true, last, Some(young(t0 + 40 * MS))),
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

    #[test]
    fn a_shutdown_or_an_unanswered_keepalive_is_a_failed_observation() {
        let closed = |goodbye| WatchEnd::Closed {
            goodbye,
            detail: "connection closed by the server after \"* BYE Shutting down\"".into(),
        };
        assert_eq!(
            watch_meaning(&closed(Some(Goodbye::Idle))),
            WatchMeaning::Reopen
        );
        assert_eq!(
            watch_meaning(&closed(Some(Goodbye::Other))),
            WatchMeaning::Probe
        );
        assert_eq!(watch_meaning(&closed(None)), WatchMeaning::Probe);
        let WatchMeaning::Failed(observed) = watch_meaning(&closed(Some(Goodbye::Shutdown))) else {
            panic!("a shutdown is a failed observation")
        };
        assert_eq!(observed.result, ProbeResult::BadGreeting);
        assert!(observed.detail.starts_with("watch: connection closed"));
        let unanswered = WatchEnd::Unanswered {
            detail: "no answer to the watch's NOOP within 250ms".into(),
        };
        let WatchMeaning::Failed(observed) = watch_meaning(&unanswered) else {
            panic!("an unanswered keepalive is a failed observation")
        };
        assert_eq!(observed.result, ProbeResult::Timeout);
        assert_eq!(
            watch_meaning(&WatchEnd::Failed {
                detail: "connection refused".into()
            }),
            WatchMeaning::Probe
        );
    }

    #[test]
    fn the_greeting_deadline_follows_the_node_s_own_greetings() {
        let timeout = Duration::from_secs(1);
        let mut recent = Recent::default();
        assert_eq!(
            greeting_deadline(&recent, timeout),
            timeout,
            "nothing known yet"
        );
        recent.push(Duration::from_micros(300));
        assert_eq!(
            greeting_deadline(&recent, timeout),
            Duration::from_millis(400)
        );
        recent.push(Duration::from_millis(150));
        assert_eq!(
            greeting_deadline(&recent, timeout),
            Duration::from_millis(600)
        );
        recent.push(Duration::from_millis(300));
        assert_eq!(
            greeting_deadline(&recent, timeout),
            timeout,
            "a slow node keeps its time"
        );
    }
}
