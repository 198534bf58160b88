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
