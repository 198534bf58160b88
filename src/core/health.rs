//! Rise/fall hysteresis: a pure state machine per target, no I/O, no clock.

use std::fmt;

/// The decided state of a target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Not decided yet (at start): its records are left as they are.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change of decided state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: State,
    pub to: State,
}

/// Counts consecutive results and decides: `rise` successes in a row make a
/// target up, `fall` failures in a row make it down. A result that agrees with
/// the state resets the opposite streak, so flapping never accumulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    state: State,
    successes: u32,
    failures: u32,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub const fn new() -> Self {
        Self {
            state: State::Unknown,
            successes: 0,
            failures: 0,
        }
    }

    /// Starts from a known state (used when a reload keeps a target).
    pub const fn with_state(state: State) -> Self {
        Self {
            state,
            successes: 0,
            failures: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Feeds one probe result; returns the transition when rise or fall decides one.
    pub fn observe(&mut self, ok: bool, rise: u32, fall: u32) -> Option<Transition> {
        if ok {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        let to = if ok && self.successes >= rise.max(1) {
            State::Up
        } else if !ok && self.failures >= fall.max(1) {
            State::Down
        } else {
            return None;
        };
        if to == self.state {
            return None;
        }
        let from = self.state;
        self.state = to;
        Some(Transition { from, to })
    }

    /// Failures still needed for `fall` to decide down while up and in
    /// doubt (`None` otherwise).
    pub fn falling(&self, fall: u32) -> Option<u32> {
        (self.state == State::Up && self.failures > 0)
            .then(|| fall.max(1).saturating_sub(self.failures))
    }

    /// True while rise/fall has not decided: unknown, a failure while up, or a
    /// success while down. The scheduler re-probes fast while this holds.
    pub fn in_doubt(&self) -> bool {
        match self.state {
            State::Unknown => true,
            State::Up => self.failures > 0,
            State::Down => self.successes > 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(health: &mut Health, results: &[bool], rise: u32, fall: u32) -> Vec<Transition> {
        results
            .iter()
            .filter_map(|&ok| health.observe(ok, rise, fall))
            .collect()
    }

    #[test]
    fn unknown_until_rise_or_fall_decides() {
        let mut h = Health::new();
        assert_eq!(h.observe(true, 2, 2), None);
        assert_eq!(h.state(), State::Unknown);
        assert!(h.in_doubt());
        assert_eq!(
            h.observe(true, 2, 2),
            Some(Transition {
                from: State::Unknown,
                to: State::Up
            })
        );
        assert!(!h.in_doubt());

        let mut h = Health::new();
        assert_eq!(feed(&mut h, &[false, false], 2, 2).len(), 1);
        assert_eq!(h.state(), State::Down);
    }

    #[test]
    fn a_single_failure_does_not_take_an_up_target_down() {
        let mut h = Health::with_state(State::Up);
        assert!(feed(&mut h, &[false, true, false, true, false], 2, 2).is_empty());
        assert_eq!(h.state(), State::Up);
        assert!(h.in_doubt(), "the last result was a failure");
        h.observe(true, 2, 2);
        assert!(!h.in_doubt());
    }

    #[test]
    fn fall_consecutive_failures_take_it_down_and_rise_brings_it_back() {
        let mut h = Health::with_state(State::Up);
        let t = feed(&mut h, &[false, false, false], 2, 3);
        assert_eq!(
            t,
            vec![Transition {
                from: State::Up,
                to: State::Down
            }]
        );
        let t = feed(&mut h, &[true, true, false, true, true], 3, 3);
        assert!(t.is_empty(), "never three successes in a row");
        let t = feed(&mut h, &[true], 3, 3);
        assert_eq!(t.len(), 1);
        assert_eq!(h.state(), State::Up);
    }

    #[test]
    fn never_flips_on_fewer_than_rise_or_fall_consecutive_results() {
        // Exhaustive over all result sequences of length 10, for small rise/fall.
        for rise in 1..=3u32 {
            for fall in 1..=3u32 {
                for bits in 0u32..(1 << 10) {
                    let mut h = Health::new();
                    let mut streak = (false, 0u32);
                    for i in 0..10 {
                        let ok = bits & (1 << i) != 0;
                        streak = if streak.0 == ok && streak.1 > 0 {
                            (ok, streak.1 + 1)
                        } else {
                            (ok, 1)
                        };
                        if let Some(t) = h.observe(ok, rise, fall) {
                            let need = if t.to == State::Up { rise } else { fall };
                            assert!(streak.1 >= need, "flipped after {} of {need}", streak.1);
                            assert_eq!(t.to == State::Up, ok);
                        }
                    }
                }
            }
        }
    }
}
