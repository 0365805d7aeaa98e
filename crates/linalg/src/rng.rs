//! Seeded, serializable random numbers for projections (Gaussian test matrices, head sampling).
//!
//! The whole state is four `u64`s (xoshiro256++ seeded through SplitMix64), so an optimizer can
//! save it in its JSON state and a resumed run draws exactly the same numbers.
//!
//! Large Gaussian test matrices (RSI's `Omega`) come from a *counter-based* stream instead
//! ([`counter_normal`]): entry `i` of the stream with key `key` is a pure function of `(key, i)`,
//! so a CUDA kernel draws the same numbers on the device (`kernels::counter_normal`, feature
//! `cuda`) without a host draw or upload. The key is one `next_u64()` of the sequential [`Rng`],
//! so the saved state stays the four `u64`s and resume stays bit-identical on each device.

use serde::{Deserialize, Serialize};

/// xoshiro256++ generator. `Rng::new(seed)` is deterministic across platforms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    s: [u64; 4],
}

/// SplitMix64's increment (the golden ratio in 64-bit fixed point).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function (Stafford's mix13).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(GOLDEN);
    mix64(*x)
}

/// Output `j` of the SplitMix64 generator started at state `key`: `mix64(key + (j + 1) * GOLDEN)`.
/// A counter-based generator (any output without the ones before it), identical in
/// `kernels/crosslore.cu`.
fn splitmix_at(key: u64, j: u64) -> u64 {
    mix64(key.wrapping_add(j.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// Entry `index` of the counter-based standard normal stream `key` (Box-Muller in f64 on the
/// uniforms `u1 = (h1 >> 11 + 1) 2^-53` in (0, 1] and `u2 = (h2 >> 11) 2^-53` in [0, 1) from the
/// SplitMix64 outputs `2 index` and `2 index + 1`; the cosine branch), rounded to f32.
///
/// The CUDA kernel computes the same integers and the same f64 formula; the device's `log`,
/// `sqrt` and `cos` (f64, at most 1-2 ulp from the correctly rounded value, CUDA programming guide
/// Table 13) can differ from the host's libm in the last f64 bit, which can move the f32 result by
/// one f32 ulp at most when the f64 value lies next to a rounding boundary: CPU and CUDA agree to
/// within 1 f32 ulp (relative 1.2e-7; `gpu-check` asserts a relative max error <= 2.4e-7).
pub fn counter_normal(key: u64, index: u64) -> f32 {
    let h1 = splitmix_at(key, index.wrapping_mul(2));
    let h2 = splitmix_at(key, index.wrapping_mul(2).wrapping_add(1));
    let scale = 1.0 / (1u64 << 53) as f64;
    let u1 = ((h1 >> 11) + 1) as f64 * scale; // (0, 1]
    let u2 = (h2 >> 11) as f64 * scale; // [0, 1)
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Entries `0..n` of the counter-based normal stream `key` ([`counter_normal`]).
pub fn counter_normal_vec(key: u64, n: usize) -> Vec<f32> {
    (0..n as u64).map(|i| counter_normal(key, i)).collect()
}

impl Rng {
    /// A generator seeded from `seed` (SplitMix64 expansion, as the xoshiro authors recommend).
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let s = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Self { s }
    }

    /// An independent stream derived from this seed and a label (e.g. a parameter index), so that
    /// adding or removing one parameter does not shift the random numbers of the others.
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut x = seed ^ stream.wrapping_mul(0xD134_2543_DE82_EF95);
        let _ = splitmix64(&mut x);
        Self::new(splitmix64(&mut x))
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// A fresh key for a counter-based stream ([`counter_normal`]); advances the state by one draw.
    pub fn next_key(&mut self) -> u64 {
        self.next_u64()
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (n > 0), by rejection (no modulo bias).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return v % n;
            }
        }
    }

    /// Standard normal sample (Box-Muller; one of the pair is discarded for a simple state).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64(); // (0, 1]
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// `n` standard normal samples as f32.
    pub fn normal_vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }

    /// `k` distinct integers from `0..n`, uniformly (partial Fisher-Yates), in draw order.
    pub fn sample_distinct(&mut self, n: usize, k: usize) -> Vec<usize> {
        assert!(k <= n, "sample_distinct: k={k} > n={n}");
        let mut pool: Vec<usize> = (0..n).collect();
        for i in 0..k {
            let j = i + self.below((n - i) as u64) as usize;
            pool.swap(i, j);
        }
        pool.truncate(k);
        pool
    }

    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    pub fn from_state(s: [u64; 4]) -> Self {
        Self { s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_state_roundtrip() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<u64> = (0..10).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..10).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut c = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), c.next_u64());
        assert_ne!(Rng::new(7).next_u64(), Rng::new(8).next_u64());
        assert_ne!(Rng::derive(7, 0).next_u64(), Rng::derive(7, 1).next_u64());
    }

    #[test]
    fn normal_moments() {
        let mut r = Rng::new(1);
        let v: Vec<f64> = (0..200_000).map(|_| r.normal()).collect();
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / v.len() as f64;
        // Standard error of the mean is 1/sqrt(2e5) ~ 0.0022; of the variance ~ 0.0032.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "var {var}");
    }

    #[test]
    fn counter_normal_is_a_function_of_key_and_index_with_normal_moments() {
        let v = counter_normal_vec(42, 200_000);
        // Counter-based: any entry alone equals the entry in the vector.
        for i in [0usize, 1, 777, 199_999] {
            assert_eq!(counter_normal(42, i as u64).to_bits(), v[i].to_bits());
        }
        assert_ne!(counter_normal(42, 0), counter_normal(43, 0));
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let kurt = v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n / (var * var);
        // Standard errors at n = 2e5: mean 0.0022, variance 0.0032, kurtosis ~0.011.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "var {var}");
        assert!((kurt - 3.0).abs() < 0.06, "kurtosis {kurt}");
        // Neighbouring entries are uncorrelated (lag-1 correlation, standard error 0.0022).
        let lag1 = v.windows(2).map(|w| w[0] as f64 * w[1] as f64).sum::<f64>() / (n - 1.0);
        assert!(lag1.abs() < 0.01, "lag-1 correlation {lag1}");
    }

    #[test]
    fn counter_normal_matches_splitmix_sequence() {
        // Output j of the counter form is the (j+1)-th output of the sequential SplitMix64.
        let mut x = 5u64;
        let seq: Vec<u64> = (0..4).map(|_| splitmix64(&mut x)).collect();
        let ctr: Vec<u64> = (0..4).map(|j| splitmix_at(5, j)).collect();
        assert_eq!(seq, ctr);
    }

    #[test]
    fn sample_distinct_is_distinct_and_in_range() {
        let mut r = Rng::new(3);
        for _ in 0..100 {
            let s = r.sample_distinct(9, 4);
            let mut t = s.clone();
            t.sort();
            t.dedup();
            assert_eq!(t.len(), 4);
            assert!(s.iter().all(|&x| x < 9));
        }
    }
}
