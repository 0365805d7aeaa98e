//! Synchronised wall-clock timing: a device sync before reading the clock at both ends.
use std::time::Instant;

use candle_core::Device;

use crate::Result;

/// Seconds of one call of `f`, with a device synchronisation before starting and stopping the
/// clock (so queued GPU work is neither counted before nor missed after).
pub fn time_once<T>(dev: &Device, f: &mut impl FnMut() -> Result<T>) -> Result<(f64, T)> {
    dev.synchronize()?;
    let t = Instant::now();
    let out = f()?;
    dev.synchronize()?;
    Ok((t.elapsed().as_secs_f64(), out))
}

/// `warmup` untimed calls, then the median of `reps` timed calls (seconds), and every sample.
pub fn median_time<T>(
    dev: &Device,
    warmup: usize,
    reps: usize,
    mut f: impl FnMut() -> Result<T>,
) -> Result<(f64, Vec<f64>)> {
    for _ in 0..warmup {
        f()?;
    }
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        v.push(time_once(dev, &mut f)?.0);
    }
    Ok((median(&v), v))
}

/// Median of a non-empty slice (mean of the middle two for an even length); NaN when empty.
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_odd_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
