//! Order statistics of a handful of samples.

use serde_json::{Value, json};

/// The `q`-quantile (0..=1) by linear interpolation between closest ranks
/// (numpy's default), so a p95 of 20 samples lies between the 19th and 20th.
pub fn quantile(samples: &[f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    if lo == hi {
        return sorted[lo];
    }
    if sorted[hi].is_infinite() {
        // A censored sample (see [`censored`]): nothing is known past it.
        return f64::INFINITY;
    }
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

pub fn median(samples: &[f64]) -> f64 {
    quantile(samples, 0.5)
}

pub fn p95(samples: &[f64]) -> f64 {
    quantile(samples, 0.95)
}

/// One decimal: milliseconds to a tenth are plenty.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `{n, min, median, p95, max, samples}`, all rounded to a tenth.
pub fn summary(samples: &[f64]) -> Value {
    let max = samples.iter().copied().fold(f64::NAN, f64::max);
    let min = samples.iter().copied().fold(f64::NAN, f64::min);
    json!({
        "n": samples.len(),
        "min": round1(min),
        "median": round1(median(samples)),
        "p95": round1(p95(samples)),
        "max": round1(max),
        "samples": samples.iter().map(|s| round1(*s)).collect::<Vec<_>>(),
    })
}

/// [`summary`] of times of which `misses` more never came within `limit_ms`
/// (a node that never left DNS): they count as longer than every sample,
/// and a quantile that falls among them is `null`, shown as "> limit".
pub fn censored(samples: &[f64], misses: usize, limit_ms: f64) -> Value {
    let mut all: Vec<f64> = samples.to_vec();
    all.extend(std::iter::repeat_n(f64::INFINITY, misses));
    let finite = |x: f64| {
        if x.is_finite() {
            Value::from(round1(x))
        } else {
            Value::Null
        }
    };
    let max = all.iter().copied().fold(f64::NAN, f64::max);
    let min = all.iter().copied().fold(f64::NAN, f64::min);
    json!({
        "n": all.len(),
        "misses": misses,
        "limit_ms": round1(limit_ms),
        "min": finite(min),
        "median": finite(median(&all)),
        "p95": finite(p95(&all)),
        "max": finite(max),
        "samples": samples.iter().map(|s| round1(*s)).collect::<Vec<_>>(),
    })
}

/// A 95% bootstrap interval of `median(b) - median(a)`: `rounds`
/// resamples of each (with replacement), the 2.5th and 97.5th percentiles
/// of their medians' differences. NaN when either is empty.
pub fn median_difference_interval(
    a: &[f64],
    b: &[f64],
    rng: &mut super::Rng,
    rounds: usize,
) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mut resample = |s: &[f64]| -> Vec<f64> {
        (0..s.len())
            .map(|_| s[(rng.next_u64() % s.len() as u64) as usize])
            .collect()
    };
    let diffs: Vec<f64> = (0..rounds)
        .map(|_| {
            let b = median(&resample(b));
            b - median(&resample(a))
        })
        .collect();
    (quantile(&diffs, 0.025), quantile(&diffs, 0.975))
}
