//! Values that several tables share: optional settings, durations, counts,
//! and the primary's `host:port`.

use std::net::Ipv6Addr;
use std::time::Duration;

use serde_spanned::Spanned;

use super::checker::Checker;
use super::raw::RawDuration;

/// A setting that may be left out: unset (a default or inherited value
/// applies), set but invalid (already reported), or set.
#[derive(Clone, Copy, Debug)]
pub(super) enum Setting<T> {
    Unset,
    Invalid,
    Set(T),
}

impl<T> Setting<T> {
    /// This setting, or `fallback` where it is unset.
    pub(super) fn or(self, fallback: Setting<T>) -> Setting<T> {
        match self {
            Setting::Unset => fallback,
            set => set,
        }
    }

    /// The value, `default` where unset, `None` where invalid.
    pub(super) fn or_default(self, default: T) -> Option<T> {
        match self {
            Setting::Unset => Some(default),
            Setting::Invalid => None,
            Setting::Set(value) => Some(value),
        }
    }
}

impl Checker<'_> {
    /// A duration written as a string with a unit; zero is refused (every
    /// duration of the config is a wait or a timeout).
    pub(super) fn duration(
        &mut self,
        raw: Option<&Spanned<RawDuration>>,
        field: &str,
    ) -> Setting<Duration> {
        let Some(raw) = raw else {
            return Setting::Unset;
        };
        match parse_duration(raw.get_ref()) {
            Ok(value) if value.is_zero() => {
                self.error(raw, field, "must be longer than 0");
                Setting::Invalid
            }
            Ok(value) => Setting::Set(value),
            Err(message) => {
                self.error(raw, field, message);
                Setting::Invalid
            }
        }
    }

    pub(super) fn at_least_one(&mut self, raw: Option<&Spanned<u32>>, field: &str) -> Setting<u32> {
        match raw {
            None => Setting::Unset,
            Some(value) if *value.get_ref() == 0 => {
                self.error(value, field, "must be at least 1");
                Setting::Invalid
            }
            Some(value) => Setting::Set(*value.get_ref()),
        }
    }
}

pub(super) fn value_or<T: Copy>(value: &Option<Spanned<T>>, default: T) -> T {
    value.as_ref().map_or(default, |v| *v.get_ref())
}

/// "2s", "500ms", "1m"; a bare number is refused with the fix.
fn parse_duration(raw: &RawDuration) -> Result<Duration, String> {
    match raw {
        RawDuration::Number(n) => Err(format!(
            "a bare number is not a duration: write it as a string with a unit, e.g. \"{n}s\" or \"{n}ms\""
        )),
        RawDuration::Text(text) => {
            let trimmed = text.trim();
            if trimmed.parse::<f64>().is_ok() {
                return Err(format!(
                    "`{trimmed}` has no unit: write e.g. \"{trimmed}s\" or \"{trimmed}ms\""
                ));
            }
            humantime::parse_duration(trimmed).map_err(|error| {
                format!(
                    "`{text}` is not a duration ({error}); write e.g. \"2s\", \"500ms\" or \"1m\""
                )
            })
        }
    }
}

/// `host:port`, with an IPv6 host in brackets. The host is not resolved
/// here: `check` needs no resolver.
pub(super) fn check_server(server: &str) -> Result<(), String> {
    let example = "e.g. \"127.0.0.1:53\", \"ns1.example.com:53\" or \"[::1]:53\"";
    if let Some(rest) = server.strip_prefix('[') {
        let (host, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("`{server}`: expected [IPv6]:port, {example}"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
        return check_port(port, server);
    }
    if server.parse::<Ipv6Addr>().is_ok() {
        return Err(format!(
            "`{server}`: put an IPv6 address in brackets and add the port, e.g. \"[{server}]:53\""
        ));
    }
    let Some((host, port)) = server.rsplit_once(':') else {
        return Err(format!("`{server}` has no port: write \"{server}:53\""));
    };
    if host.contains(':') {
        return Err(format!(
            "`{server}`: put an IPv6 address in brackets, e.g. \"[{host}]:{port}\""
        ));
    }
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !valid_host {
        return Err(format!(
            "`{host}` is not a host name or IP address; {example}"
        ));
    }
    check_port(port, server)
}

fn check_port(port: &str, server: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("`{server}`: the port must be 1-65535")),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::{BASE, IMAP_POOL, assert_errors, config};

    #[test]
    fn a_bare_number_is_not_a_duration() {
        let bad = |what, value, needle| {
            let text = format!("{BASE}{IMAP_POOL}interval = {value}\n");
            (what, text, Some(14), "pool[0].interval", needle)
        };
        assert_errors(&[
            bad("an integer", "5", "\"5s\""),
            bad("a string without a unit", "\"5\"", "has no unit"),
            bad("a float", "0.5", "bare number"),
        ]);
    }

    #[test]
    fn durations_take_humantime_units() {
        let text = format!(
            "{BASE}{IMAP_POOL}interval = \"1m\"\ntimeout = \"1500ms\"\nfast_interval = \"250ms\"\n"
        );
        let probe = config(&text).pools[0].probe;
        assert_eq!(probe.interval, Duration::from_secs(60));
        assert_eq!(probe.timeout, Duration::from_millis(1500));
        assert_eq!(probe.fast_interval, Duration::from_millis(250));
        assert_errors(&[
            (
                "an unknown unit",
                format!("{BASE}{IMAP_POOL}interval = \"2 parsecs\"\n"),
                Some(14),
                "pool[0].interval",
                "not a duration",
            ),
            (
                "zero",
                format!("{BASE}{IMAP_POOL}fast_interval = \"0s\"\n"),
                Some(14),
                "pool[0].fast_interval",
                "longer than 0",
            ),
        ]);
    }
}
