//! Aggregation over seeds: mean, sample standard deviation (n - 1 in the denominator, as
//! `numpy.std(ddof=1)`; the paper reports the spread over seeds the same way), min and max.

use serde::{Deserialize, Serialize};

/// Summary statistics of one quantity over the seeds of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation; `None` with fewer than two values.
    pub std: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub values: Vec<f64>,
}

impl Stat {
    /// Statistics of the finite values of `values` (`None` when there is none).
    pub fn of(values: &[f64]) -> Option<Stat> {
        let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let ss: f64 = v.iter().map(|x| (x - mean) * (x - mean)).sum();
            (ss / (n - 1) as f64).sqrt()
        });
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(Stat {
            n,
            mean,
            std,
            min,
            max,
            values: v,
        })
    }

    /// `mean ± std` with `digits` decimals (`mean` alone for a single value).
    pub fn display(&self, digits: usize) -> String {
        match self.std {
            Some(s) => format!("{:.*} ± {:.*}", digits, self.mean, digits, s),
            None => format!("{:.*}", digits, self.mean),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_value_has_no_spread_and_non_finite_values_are_dropped() {
        let s = Stat::of(&[2.5, f64::NAN]).unwrap();
        assert_eq!((s.n, s.mean, s.std), (1, 2.5, None));
        assert!(Stat::of(&[]).is_none());
        assert!(Stat::of(&[f64::INFINITY]).is_none());
    }
}
