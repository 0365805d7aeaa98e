//! A bounded, seeded random-mutation fuzzer that runs under `cargo test` (no nightly, no
//! libFuzzer, no extra dependencies): the CI fuzz smoke, and the fallback wherever cargo-fuzz
//! cannot be built. It replays `fuzz/corpus/<target>/*`, then mutates those inputs (bit flips,
//! interesting integers, truncation, deletion, duplication, dictionary tokens, splicing) for a
//! budget of executions or seconds, running the same harness body as the libFuzzer target.
//!
//! Budget: `CROSSLORE_FUZZ_SECS` (seconds per target; `scripts/fuzz_smoke.sh` sets it), else
//! `default_execs` executions. `CROSSLORE_FUZZ_SEED` changes the mutation seed (default 1).
//! A panic fails the test; the input is saved under `$CARGO_TARGET_TMPDIR/fuzz-smoke/<target>/`
//! (written before each execution, so an abort also leaves it there).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, dependency-free.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const INTERESTING: [u64; 12] = [
    0,
    1,
    2,
    3,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// One random mutation of `buf` (in place).
fn mutate_once(rng: &mut Rng, buf: &mut Vec<u8>, corpus: &[Vec<u8>], dict: &[&[u8]]) {
    let len = buf.len();
    match rng.below(12) {
        0 if len > 0 => {
            let i = rng.below(len);
            buf[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            buf[i] = rng.next() as u8;
        }
        2 if len > 0 => {
            // an interesting little-endian integer of width 1, 2, 4 or 8
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let w = [1usize, 2, 4, 8][rng.below(4)];
            let i = rng.below(len);
            for (k, b) in v.to_le_bytes().iter().take(w).enumerate() {
                if let Some(slot) = buf.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        3 if len > 0 => buf.truncate(rng.below(len)),
        4 if len > 1 => {
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(64));
            buf.drain(a..a + n);
        }
        5 if len > 0 => {
            let a = rng.below(len);
            let n = 1 + rng.below((len - a).min(64));
            let chunk = buf[a..a + n].to_vec();
            let at = rng.below(len + 1);
            buf.splice(at..at, chunk);
        }
        6 | 7 if !dict.is_empty() => {
            let tok = dict[rng.below(dict.len())];
            let at = rng.below(len + 1);
            if rng.below(2) == 0 || at == len {
                buf.splice(at..at, tok.iter().copied());
            } else {
                let end = (at + tok.len()).min(len);
                buf.splice(at..end, tok.iter().copied());
            }
        }
        8 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let a = rng.below(len + 1);
            let b = rng.below(other.len() + 1);
            buf.truncate(a);
            buf.extend_from_slice(&other[b..]);
        }
        9 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            buf.splice(at..at, bytes);
        }
        10 if len > 0 => {
            // nudge a byte (digits in text, counts and type ids in binary)
            let i = rng.below(len);
            let d = 1 + rng.below(16) as u8;
            buf[i] = if rng.below(2) == 0 {
                buf[i].wrapping_add(d)
            } else {
                buf[i].wrapping_sub(d)
            };
        }
        _ if len > 0 => {
            // copy one range over another
            let a = rng.below(len);
            let b = rng.below(len);
            let n = 1 + rng.below((len - a.max(b)).min(32));
            let chunk = buf[a..a + n].to_vec();
            buf[b..b + n].copy_from_slice(&chunk);
        }
        _ => buf.push(rng.next() as u8),
    }
}

/// What a smoke run did.
#[derive(Debug)]
pub struct Stats {
    pub execs: u64,
    pub elapsed: Duration,
}

/// The committed corpus of a target, sorted by name.
pub fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("read corpus dir").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{}: empty corpus", dir.display());
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read corpus file");
            (p, b)
        })
        .collect()
}

/// Replays the corpus of `target`, then mutates it for the budget, running `body` on each input.
pub fn run(target: &str, default_execs: u64, dict: &[&[u8]], body: impl Fn(&[u8])) -> Stats {
    let seeds: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
    let secs: Option<f64> = std::env::var("CROSSLORE_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok());
    let seed: u64 = std::env::var("CROSSLORE_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("fuzz-smoke")
        .join(target);
    std::fs::create_dir_all(&out).expect("create fuzz-smoke dir");
    let last = out.join("last-input");
    let mut rng = Rng::new(seed ^ target.len() as u64);
    let start = Instant::now();
    let mut execs = 0u64;
    let exec = |input: &[u8], execs: &mut u64| {
        std::fs::write(&last, input).expect("write last-input");
        *execs += 1;
        if catch_unwind(AssertUnwindSafe(|| body(input))).is_err() {
            let crash = out.join(format!("crash-seed{seed}-exec{execs}"));
            std::fs::write(&crash, input).expect("write crash input");
            panic!(
                "fuzz smoke `{target}`: panic on input saved to {} ({} bytes)",
                crash.display(),
                input.len()
            );
        }
    };
    for s in &seeds {
        exec(s, &mut execs);
    }
    loop {
        let done = match secs {
            Some(t) => start.elapsed().as_secs_f64() >= t,
            None => execs >= default_execs,
        };
        if done {
            break;
        }
        let mut buf = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate_once(&mut rng, &mut buf, &seeds, dict);
        }
        buf.truncate(1 << 16);
        exec(&buf, &mut execs);
    }
    let stats = Stats {
        execs,
        elapsed: start.elapsed(),
    };
    println!(
        "fuzz smoke `{target}`: {} execs in {:.1} s (seed {seed}), no panic",
        stats.execs,
        stats.elapsed.as_secs_f64()
    );
    stats
}
