//! `[probe]` and its per-pool overrides: the pool's settings over `[probe]`
//! over the defaults.

use std::time::Duration;

use super::checker::{Checker, field};
use super::raw::{RawPool, RawProbe, RawTiming, Section};
use super::types::{CheckKind, ProbeSettings};
use super::values::Setting;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(1);
const DEFAULT_RISE: u32 = 2;
const DEFAULT_FALL: u32 = 2;
const DEFAULT_FAST_INTERVAL: Duration = Duration::from_millis(100);

/// Probe settings as written in `[probe]` or in one pool.
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    interval: Setting<Duration>,
    timeout: Setting<Duration>,
    rise: Setting<u32>,
    fall: Setting<u32>,
    fast_interval: Setting<Duration>,
    watch: Setting<bool>,
}

impl Timing {
    fn defaults() -> Self {
        Timing {
            interval: Setting::Set(DEFAULT_INTERVAL),
            timeout: Setting::Set(DEFAULT_PROBE_TIMEOUT),
            rise: Setting::Set(DEFAULT_RISE),
            fall: Setting::Set(DEFAULT_FALL),
            fast_interval: Setting::Set(DEFAULT_FAST_INTERVAL),
            watch: Setting::Unset,
        }
    }
}

impl Checker<'_> {
    pub(super) fn probe(&mut self, section: &Section<RawProbe>) -> Timing {
        let default = RawProbe::default();
        let raw = match section {
            Section::Present(probe) => probe.get_ref(),
            Section::Absent | Section::Broken => &default,
        };
        let timing = self.timing(raw.timing(), "probe");
        let defaults = Timing::defaults();
        let interval = timing
            .interval
            .or(defaults.interval)
            .or_default(DEFAULT_INTERVAL);
        let timeout = timing
            .timeout
            .or(defaults.timeout)
            .or_default(DEFAULT_PROBE_TIMEOUT);
        if let (Some(interval), Some(timeout)) = (interval, timeout) {
            let (at, name) = match (raw.timeout.as_ref(), raw.interval.as_ref()) {
                (Some(at), _) => (at, "probe.timeout"),
                (None, Some(at)) => (at, "probe.interval"),
                (None, None) => return timing,
            };
            if timeout >= interval {
                self.error(at, name, shorter_message(timeout, interval));
            }
        }
        timing
    }

    fn timing(&mut self, raw: RawTiming<'_>, base: &str) -> Timing {
        Timing {
            interval: self.duration(raw.interval, &field(base, "interval")),
            timeout: self.duration(raw.timeout, &field(base, "timeout")),
            rise: self.at_least_one(raw.rise, &field(base, "rise")),
            fall: self.at_least_one(raw.fall, &field(base, "fall")),
            fast_interval: self.duration(raw.fast_interval, &field(base, "fast_interval")),
            watch: raw
                .watch
                .map_or(Setting::Unset, |w| Setting::Set(*w.get_ref())),
        }
    }

    /// The pool's settings over `[probe]` over the defaults. A timeout not
    /// shorter than the interval is reported where the pool set one of
    /// them; when it set neither, `[probe]` was already checked.
    pub(super) fn pool_probe(
        &mut self,
        raw: &RawPool,
        base: &str,
        inherited: Timing,
        check: Option<CheckKind>,
    ) -> Option<ProbeSettings> {
        let own = self.timing(raw.timing(), base);
        let interval = own
            .interval
            .or(inherited.interval)
            .or_default(DEFAULT_INTERVAL);
        let timeout = own
            .timeout
            .or(inherited.timeout)
            .or_default(DEFAULT_PROBE_TIMEOUT);
        let rise = own.rise.or(inherited.rise).or_default(DEFAULT_RISE);
        let fall = own.fall.or(inherited.fall).or_default(DEFAULT_FALL);
        let fast_interval = own
            .fast_interval
            .or(inherited.fast_interval)
            .or_default(DEFAULT_FAST_INTERVAL);
        let watch = own.watch.or(inherited.watch).or_default(check?.is_mail());
        let (interval, timeout) = (interval?, timeout?);
        if timeout >= interval {
            let at = match (raw.timeout.as_ref(), raw.interval.as_ref()) {
                (Some(at), _) => Some((at, "timeout")),
                (None, Some(at)) => Some((at, "interval")),
                (None, None) => None,
            };
            if let Some((at, key)) = at {
                self.error(at, &field(base, key), shorter_message(timeout, interval));
            }
            return None;
        }
        Some(ProbeSettings {
            interval,
            timeout,
            rise: rise?,
            fall: fall?,
            fast_interval: fast_interval?,
            watch: watch?,
        })
    }
}

fn shorter_message(timeout: Duration, interval: Duration) -> String {
    format!(
        "timeout ({}) must be shorter than interval ({})",
        humantime::format_duration(timeout),
        humantime::format_duration(interval)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Severity;
    use crate::config::test_support::{BASE, IMAP_POOL, assert_errors, config, diagnostics, find};

    #[test]
    fn probe_timeout_must_be_shorter_than_interval() {
        let probe = |lines| format!("{BASE}[probe]\n{lines}{IMAP_POOL}");
        assert_errors(&[
            (
                "a timeout equal to the interval",
                probe("interval = \"1s\"\ntimeout = \"1s\"\n"),
                Some(13),
                "probe.timeout",
                "shorter than interval",
            ),
            // Only the interval set: the default timeout (1s) is too long.
            (
                "an interval below the default timeout",
                probe("interval = \"500ms\"\n"),
                Some(12),
                "probe.interval",
                "timeout (1s) must be shorter than interval (500ms)",
            ),
        ]);
    }

    #[test]
    fn pool_overrides_are_checked_after_merging() {
        assert_errors(&[
            (
                "a pool's timeout beyond the default interval",
                format!("{BASE}{IMAP_POOL}timeout = \"3s\"\n"),
                Some(14),
                "pool[0].timeout",
                "timeout (3s) must be shorter than interval (2s)",
            ),
            (
                "a pool's interval below [probe] timeout",
                format!("{BASE}[probe]\ntimeout = \"800ms\"\n{IMAP_POOL}interval = \"500ms\"\n"),
                Some(16),
                "pool[0].interval",
                "shorter than interval",
            ),
        ]);
        let text = format!(
            "{BASE}[probe]\ninterval = \"10s\"\ntimeout = \"5s\"\n{IMAP_POOL}interval = \"6s\"\n"
        );
        let probe = config(&text).pools[0].probe;
        assert_eq!(
            (probe.interval, probe.timeout),
            (Duration::from_secs(6), Duration::from_secs(5))
        );
    }

    #[test]
    fn rise_and_fall_are_at_least_one() {
        let text = format!("{BASE}[probe]\nrise = 0\nfall = 3\n{IMAP_POOL}fall = 0\n");
        let diagnostics = diagnostics(&text);
        assert_eq!(
            find(&diagnostics, "probe.rise", Severity::Error).line,
            Some(12)
        );
        assert_eq!(
            find(&diagnostics, "pool[0].fall", Severity::Error).line,
            Some(17)
        );
        let text = format!("{BASE}[probe]\nrise = 3\nfall = 4\n{IMAP_POOL}fall = 1\n");
        let probe = config(&text).pools[0].probe;
        assert_eq!((probe.rise, probe.fall), (3, 1));
    }

    #[test]
    fn watch_defaults_to_the_check_and_explicit_values_win() {
        let pools = "[[pool]]\nname = \"a\"\ncheck = \"imap\"\n[[pool]]\nname = \"b\"\ncheck = \"tcp\"\nport = 4190\n[[pool]]\nname = \"c\"\ncheck = \"https\"\n[[pool]]\nname = \"d\"\ncheck = \"smtp\"\nwatch = false\n";
        let watch: Vec<bool> = config(&format!("{BASE}{pools}"))
            .pools
            .iter()
            .map(|p| p.probe.watch)
            .collect();
        assert_eq!(watch, [true, false, false, false]);
        let with_probe = format!(
            "{BASE}[probe]\nwatch = false\n{pools}[[pool]]\nname = \"e\"\ncheck = \"pop3\"\nwatch = true\n"
        );
        let watch: Vec<bool> = config(&with_probe)
            .pools
            .iter()
            .map(|p| p.probe.watch)
            .collect();
        assert_eq!(watch, [false, false, false, false, true]);
    }
}
