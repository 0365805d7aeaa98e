//! P3 at the largest batch that fits each arm (issue 5: "at batch 4 x sequence 512 and at the
//! largest batch that fits each method"), found without bisecting by full runs.
//!
//! **Rule.** At a fixed sequence length the peak device memory of a training step is affine in
//! the batch `b`: `peak(b) = fixed + b * per_sample` (weights, optimizer state and gradients do
//! not depend on `b`; saved activations and the head's logit chunks grow linearly with it). Two
//! points give both constants: the arm's base run at `b0` (the P3 table's row, steady state) and
//! a probe at `2 b0` running `warmup` steps (the first step allocates the optimizer state, the
//! second is a steady step: the same kinds of step as the base run's peak). The largest batch is
//! then ([`plan`])
//!
//! `b_max = floor((budget / overhead - fixed) / per_sample)`, at least the probe's batch,
//!
//! with `budget` = the device memory free at the start of the arm (pool trimmed) minus
//! `free_fraction` (3 %) of the card, and `overhead` = the probe's reserved / used ratio (the
//! pool reserves more than it hands out: what fails with out-of-memory is the reservation).
//!
//! **Refinement.** The peak is the largest of the step's moments (e.g. the start of the backward,
//! all activations alive, vs its end, all gradients of a whole-model step alive), each affine in
//! `b` with its own slope: a convex, piecewise-affine function whose slope can grow past the
//! probe (the moment with the most activations takes over). A line through two points
//! underestimates it beyond them. So when `b_max` is more than twice the probe's batch, a second
//! probe runs at `b_max / 2` and the line through the two probes gives the final `b_max`
//! (extrapolated over at most a factor 2).
//!
//! **Plateau.** When a probe's peak is within 0.5 % of the point below it, the peak at these
//! batches is a batch-independent moment (PyTorch AdamW's optimizer step, 62.8 GiB at b = 4 and
//! 8 on the H200, above the activations): the probe batch doubles (at most 4 times) and the
//! search goes on from the last flat point; the refinement then puts both points of the final
//! line on the activations' piece. Same rule in `bench/reference/max_batch.py`.
//!
//! `b_max` is run in full (`warmup` + timed steps). If it fails with out-of-memory, the batch
//! steps down to `min(b - 1, floor(0.9 b))`, at most `step_downs` (2) times; the row says
//! `oom at b=...` for each batch that failed. A failed attempt's model, optimizer and
//! activations are dropped (the attempt's function returned) and the pool trimmed before the
//! next attempt.
//!
//! The PyTorch reference (`bench/reference/p3_torch.py --max-batch`) applies the same rule with
//! `max_memory_allocated` / `max_memory_reserved` and writes the same JSON keys
//! ([`MaxBatchReport`]).
use serde::Serialize;

/// Options of the largest-batch search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaxBatchOptions {
    /// Fraction of the card's memory left free by the prediction (0.03).
    pub free_fraction: f64,
    /// Step-downs (x 0.9) after an out-of-memory attempt at the predicted batch (2).
    pub step_downs: usize,
    /// Timed steps at the largest batch (after the arm's warm-up steps).
    pub steps: usize,
    /// Largest batch ever tried.
    pub limit: usize,
    /// CPU smoke tests only: memory figures from this affine model instead of the CUDA pool (an
    /// attempt whose simulated reservation exceeds the capacity fails as out of memory without
    /// running; the others run for real at their batch).
    pub simulate: Option<SimulatedMemory>,
}

impl Default for MaxBatchOptions {
    fn default() -> Self {
        Self {
            free_fraction: 0.03,
            step_downs: 2,
            steps: 2,
            limit: 512,
            simulate: None,
        }
    }
}

/// An affine memory model standing in for the device (CPU smoke tests of the search).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimulatedMemory {
    pub fixed_gib: f64,
    pub per_sample_gib: f64,
    /// Reserved / used.
    pub overhead: f64,
    /// The card's memory: what a reservation may not exceed.
    pub capacity_gib: f64,
}

impl SimulatedMemory {
    /// (used, reserved) GiB at `batch`.
    pub fn at(&self, batch: usize) -> (f64, f64) {
        let used = self.fixed_gib + batch as f64 * self.per_sample_gib;
        (used, used * self.overhead)
    }
}

/// Peak memory of one run at `batch`, GiB.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MemPoint {
    pub batch: usize,
    pub used_gib: f64,
    pub reserved_gib: f64,
}

/// The extrapolation of [`plan`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Plan {
    pub per_sample_gib: f64,
    pub fixed_gib: f64,
    /// Reserved / used at the probe (>= 1).
    pub overhead: f64,
    /// The predicted largest batch.
    pub batch: usize,
    pub predicted_used_gib: f64,
    pub predicted_reserved_gib: f64,
}

/// The largest batch whose predicted reservation `(fixed + b * per_sample) * overhead` stays
/// within `budget_gib`, from the base run and the probe (module docs); at least the probe's batch
/// (which ran), at most `limit`. An error when the two points do not determine a growing line.
pub fn plan(
    base: MemPoint,
    probe: MemPoint,
    budget_gib: f64,
    limit: usize,
) -> Result<Plan, String> {
    if probe.batch <= base.batch {
        return Err(format!(
            "probe batch {} is not above the base batch {}",
            probe.batch, base.batch
        ));
    }
    let per = (probe.used_gib - base.used_gib) / (probe.batch - base.batch) as f64;
    if !(per > 0.0 && per.is_finite()) {
        return Err(format!(
            "peak memory did not grow with the batch ({:.2} GiB at b={}, {:.2} GiB at b={})",
            base.used_gib, base.batch, probe.used_gib, probe.batch
        ));
    }
    let fixed = base.used_gib - base.batch as f64 * per;
    let ratio = probe.reserved_gib / probe.used_gib;
    let overhead = if ratio.is_finite() {
        ratio.max(1.0)
    } else {
        1.0
    };
    let room = (budget_gib / overhead - fixed) / per;
    let fit = if room.is_finite() && room > 0.0 {
        room.floor() as usize
    } else {
        0
    };
    let batch = fit.max(probe.batch).min(limit.max(1));
    let used = fixed + batch as f64 * per;
    Ok(Plan {
        per_sample_gib: per,
        fixed_gib: fixed,
        overhead,
        batch,
        predicted_used_gib: used,
        predicted_reserved_gib: used * overhead,
    })
}

/// The next batch after an out-of-memory attempt at `b`: `floor(0.9 b)`, and at least one less.
pub fn step_down(b: usize) -> usize {
    ((b as f64 * 0.9).floor() as usize).min(b.saturating_sub(1))
}

/// Whether an error message is a device out-of-memory (candle/cudarc: `CUDA_ERROR_OUT_OF_MEMORY`;
/// cuBLAS: `CUBLAS_STATUS_ALLOC_FAILED`; the simulation: "out of memory").
pub fn is_oom(msg: &str) -> bool {
    msg.contains("OUT_OF_MEMORY") || msg.contains("ALLOC_FAILED") || msg.contains("out of memory")
}

/// Why an attempt did not produce a result.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptError {
    Oom(String),
    Other(String),
}

impl AttemptError {
    /// Classifies an error message ([`is_oom`]).
    pub fn from_message(msg: String) -> Self {
        if is_oom(&msg) {
            AttemptError::Oom(msg)
        } else {
            AttemptError::Other(msg)
        }
    }
}

/// What an attempt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptKind {
    /// `warmup` steps at a larger batch, for the memory line (twice the base batch, then half
    /// the first prediction when that is more than twice the probe).
    Probe,
    /// A full run (warm-up + timed steps) at a candidate largest batch.
    Final,
}

/// One attempt of the search.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    pub batch: usize,
    pub kind: AttemptKind,
    pub peak_used_gib: Option<f64>,
    pub peak_reserved_gib: Option<f64>,
    /// `Some("oom")` for out-of-memory, the message for another failure.
    pub error: Option<String>,
}

/// The search of one arm: its attempts, the plan, and the figures of the final run when one fit.
#[derive(Debug, Clone, Serialize)]
pub struct MaxBatchReport {
    /// The largest batch that ran in full (`None`: none did).
    pub batch: Option<usize>,
    pub free_fraction: f64,
    /// The card's memory and the reservation allowed ([`plan`]'s budget), GiB.
    pub total_gib: f64,
    pub budget_gib: f64,
    pub base: MemPoint,
    pub plan: Option<Plan>,
    pub attempts: Vec<Attempt>,
    pub samples_s: Vec<f64>,
    pub step_s: f64,
    pub tokens_per_s: f64,
    pub mfu: f64,
    pub peak_used_gib: Option<f64>,
    pub peak_reserved_gib: Option<f64>,
    pub first_step_s: f64,
    /// `oom at b=...` (every batch that failed with out-of-memory), or another failure.
    pub error: Option<String>,
}

/// Figures of a successful attempt that the search needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Ran<T> {
    pub mem: MemPoint,
    pub result: T,
}

/// The outcome of [`search`]: attempts in order, the plan, and the final run that fit.
#[derive(Debug, Clone)]
pub struct Searched<T> {
    pub plan: Option<Plan>,
    pub attempts: Vec<Attempt>,
    pub best: Option<Ran<T>>,
    pub error: Option<String>,
}

/// The search of the module docs. `attempt(batch, kind)` runs the arm (a probe: `warmup` steps;
/// a final run: warm-up + timed steps), dropping everything it allocated before it returns.
/// Relative growth below which a probe counts as flat (see [`search`]).
const FLAT: f64 = 0.005;
/// Doublings of the probe batch on a plateau.
const MAX_FLAT: usize = 4;

pub fn search<T>(
    base: MemPoint,
    budget_gib: f64,
    opts: &MaxBatchOptions,
    mut attempt: impl FnMut(usize, AttemptKind) -> Result<Ran<T>, AttemptError>,
) -> Searched<T> {
    let mut out = Searched {
        plan: None,
        attempts: Vec::new(),
        best: None,
        error: None,
    };
    let mut ooms: Vec<usize> = Vec::new();
    let record = |out: &mut Searched<T>, batch, kind, res: &Result<Ran<T>, AttemptError>| {
        let (used, reserved, error) = match res {
            Ok(r) => (Some(r.mem.used_gib), Some(r.mem.reserved_gib), None),
            Err(AttemptError::Oom(_)) => (None, None, Some("oom".to_string())),
            Err(AttemptError::Other(e)) => (None, None, Some(e.clone())),
        };
        out.attempts.push(Attempt {
            batch,
            kind,
            peak_used_gib: used,
            peak_reserved_gib: reserved,
            error,
        });
    };
    let probe_b = (2 * base.batch).min(opts.limit.max(1));
    if probe_b <= base.batch {
        out.error = Some(format!(
            "limit {} leaves no batch above the base batch {}",
            opts.limit, base.batch
        ));
        return out;
    }
    // Probes: at twice the base batch, then (refinement) at half a prediction more than twice
    // the last probe; each plan uses the two largest points.
    // A probe within FLAT of the point below it sits on a batch-independent plateau (e.g. an
    // optimizer step's peak above the activations at small batches): the probe batch doubles,
    // at most MAX_FLAT times, and the search goes on from the last flat point.
    let mut low = base;
    let mut probe_at = probe_b;
    let (mut refined, mut flat) = (false, 0);
    let mut b = loop {
        let res = attempt(probe_at, AttemptKind::Probe);
        record(&mut out, probe_at, AttemptKind::Probe, &res);
        match res {
            Ok(r)
                if r.mem.used_gib <= low.used_gib * (1.0 + FLAT)
                    && flat < MAX_FLAT
                    && (2 * probe_at).min(opts.limit.max(1)) > probe_at =>
            {
                flat += 1;
                low = r.mem;
                probe_at = (2 * probe_at).min(opts.limit.max(1));
            }
            Ok(r) => match plan(low, r.mem, budget_gib, opts.limit) {
                Ok(p) => {
                    out.plan = Some(p);
                    let next = p.batch / 2;
                    if !refined && next > probe_at {
                        refined = true;
                        low = r.mem;
                        probe_at = next;
                        continue;
                    }
                    break p.batch;
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            },
            Err(AttemptError::Oom(_)) => {
                ooms.push(probe_at);
                break step_down(probe_at);
            }
            Err(AttemptError::Other(e)) => {
                out.error = Some(e);
                return out;
            }
        }
    };
    let mut downs = 0;
    loop {
        if b <= base.batch {
            break; // the base run is the largest measured batch
        }
        let res = attempt(b, AttemptKind::Final);
        record(&mut out, b, AttemptKind::Final, &res);
        match res {
            Ok(r) => {
                out.best = Some(r);
                break;
            }
            Err(AttemptError::Oom(_)) => {
                ooms.push(b);
                if downs == opts.step_downs {
                    break;
                }
                downs += 1;
                b = step_down(b);
            }
            Err(AttemptError::Other(e)) => {
                out.error = Some(e);
                return out;
            }
        }
    }
    if !ooms.is_empty() {
        let list = ooms
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        out.error = Some(format!("oom at b={list}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(sim: &SimulatedMemory, batch: usize) -> MemPoint {
        let (used_gib, reserved_gib) = sim.at(batch);
        MemPoint {
            batch,
            used_gib,
            reserved_gib,
        }
    }

    /// A device following `sim` exactly, with `capacity_gib` available to reservations.
    fn device(
        sim: SimulatedMemory,
        calls: &mut Vec<(usize, AttemptKind)>,
    ) -> impl FnMut(usize, AttemptKind) -> Result<Ran<usize>, AttemptError> + '_ {
        move |b, kind| {
            calls.push((b, kind));
            let m = point(&sim, b);
            if m.reserved_gib > sim.capacity_gib {
                Err(AttemptError::from_message(
                    "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
                ))
            } else {
                Ok(Ran { mem: m, result: b })
            }
        }
    }

    /// [`search`] from SIM's point at b = 4 with `budget`, on a card following SIM with
    /// `capacity_gib` available (less than SIM's own: something else holds memory).
    fn search_sim(
        capacity_gib: f64,
        budget: f64,
        calls: &mut Vec<(usize, AttemptKind)>,
    ) -> Searched<usize> {
        let card = SimulatedMemory {
            capacity_gib,
            ..SIM
        };
        search(
            point(&SIM, 4),
            budget,
            &MaxBatchOptions::default(),
            device(card, calls),
        )
    }

    /// A device whose peak at batch `b` is `peak(b)` GiB (used = reserved), `cap` GiB in all.
    fn card<'a>(
        peak: impl Fn(usize) -> f64 + 'a,
        cap: f64,
        calls: &'a mut Vec<(usize, AttemptKind)>,
    ) -> impl FnMut(usize, AttemptKind) -> Result<Ran<usize>, AttemptError> + 'a {
        move |b, kind| {
            calls.push((b, kind));
            let p = peak(b);
            if p > cap {
                return Err(AttemptError::Oom("out of memory".into()));
            }
            Ok(Ran {
                mem: at_peak(b, p),
                result: b,
            })
        }
    }

    fn at_peak(batch: usize, p: f64) -> MemPoint {
        MemPoint {
            batch,
            used_gib: p,
            reserved_gib: p,
        }
    }

    const SIM: SimulatedMemory = SimulatedMemory {
        fixed_gib: 20.0,
        per_sample_gib: 3.0,
        overhead: 1.04,
        capacity_gib: 139.0,
    };

    #[test]
    fn plan_recovers_the_affine_line_and_keeps_the_margin() {
        let budget = 139.0 - 0.03 * 139.0;
        let p = plan(point(&SIM, 4), point(&SIM, 8), budget, 512).unwrap();
        assert!((p.per_sample_gib - 3.0).abs() < 1e-12, "{p:?}");
        assert!((p.fixed_gib - 20.0).abs() < 1e-12, "{p:?}");
        assert!((p.overhead - 1.04).abs() < 1e-12, "{p:?}");
        // (134.83 / 1.04 - 20) / 3 = 36.55 -> 36
        assert_eq!(p.batch, 36);
        assert!(p.predicted_reserved_gib <= budget, "{p:?}");
        let next = (20.0 + 37.0 * 3.0) * 1.04;
        assert!(next > budget, "37 would not keep the margin: {next}");
    }

    #[test]
    fn plan_clamps_to_the_probe_and_the_limit() {
        // budget below the probe's own reservation: the probe ran, so its batch stands
        let p = plan(point(&SIM, 4), point(&SIM, 8), 30.0, 512).unwrap();
        assert_eq!(p.batch, 8);
        let p = plan(point(&SIM, 4), point(&SIM, 8), 1e6, 100).unwrap();
        assert_eq!(p.batch, 100);
    }

    #[test]
    fn plan_refuses_a_flat_or_falling_line() {
        let a = MemPoint {
            batch: 4,
            used_gib: 30.0,
            reserved_gib: 31.0,
        };
        let flat = MemPoint { batch: 8, ..a };
        assert!(plan(a, flat, 100.0, 512)
            .unwrap_err()
            .contains("did not grow"));
        let fall = MemPoint {
            used_gib: 29.0,
            ..flat
        };
        assert!(plan(a, fall, 100.0, 512).is_err());
        assert!(plan(a, a, 100.0, 512).unwrap_err().contains("not above"));
    }

    #[test]
    fn step_down_is_ninety_percent_and_always_smaller() {
        assert_eq!(step_down(40), 36);
        assert_eq!(step_down(36), 32);
        assert_eq!(step_down(9), 8);
        assert_eq!(step_down(5), 4);
        assert_eq!(step_down(1), 0);
    }

    #[test]
    fn oom_messages_are_recognised() {
        assert!(is_oom(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"
        ));
        assert!(is_oom(
            "model: DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")"
        ));
        assert!(is_oom("cublas: CUBLAS_STATUS_ALLOC_FAILED"));
        assert!(!is_oom("shape mismatch in matmul"));
    }

    #[test]
    fn search_probes_then_runs_the_prediction() {
        let mut calls = Vec::new();
        let s = search_sim(SIM.capacity_gib, 0.97 * SIM.capacity_gib, &mut calls);
        // 36 is more than twice the probe: a second probe at 18, the same line
        assert_eq!(
            calls,
            vec![
                (8, AttemptKind::Probe),
                (18, AttemptKind::Probe),
                (36, AttemptKind::Final)
            ]
        );
        assert_eq!(s.best.map(|r| r.result), Some(36));
        assert!(s.error.is_none());
        assert_eq!(s.attempts.len(), 3);
        assert_eq!(s.plan.map(|p| p.batch), Some(36));
    }

    #[test]
    fn search_steps_down_after_oom_and_names_each_failed_batch() {
        // The device has less memory than the budget claims (something else holds 20 GiB):
        // 36 and 32 fail, 28 fits.
        let mut calls = Vec::new();
        let s = search_sim(119.0, 0.97 * SIM.capacity_gib, &mut calls);
        let batches: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(batches, vec![8, 18, 36, 32, 28]);
        assert_eq!(s.best.map(|r| r.result), Some(28));
        assert_eq!(s.error.as_deref(), Some("oom at b=36, 32"));
        assert_eq!(s.attempts[2].error.as_deref(), Some("oom"));
        assert!(s.attempts[4].error.is_none());
    }

    #[test]
    fn search_gives_up_after_two_step_downs() {
        let mut calls = Vec::new();
        let s = search_sim(50.0, 0.97 * SIM.capacity_gib, &mut calls);
        // 8 fits (44 * 1.04 = 45.8); the second probe (18) fails, then 16, 14, 12; no third
        // step-down
        let batches: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(batches, vec![8, 18, 16, 14, 12]);
        assert!(s.best.is_none());
        assert_eq!(s.error.as_deref(), Some("oom at b=18, 16, 14, 12"));
    }

    #[test]
    fn search_after_an_oom_probe_steps_down_from_it() {
        // 8 does not fit (44 * 1.04 > 40), 7 does not, 6 fits (38 * 1.04 = 39.5)
        let mut calls = Vec::new();
        let s = search_sim(40.0, 100.0, &mut calls);
        assert_eq!(
            calls,
            vec![
                (8, AttemptKind::Probe),
                (7, AttemptKind::Final),
                (6, AttemptKind::Final)
            ]
        );
        assert!(s.plan.is_none());
        assert_eq!(s.best.map(|r| r.result), Some(6));
        assert_eq!(s.error.as_deref(), Some("oom at b=8, 7"));
    }

    /// Whole-model step: the peak is at the end of the backward (all gradients, few activations)
    /// at small batches and at its start (all activations) at large ones. The line through the
    /// base and the first probe is too flat; the refining probe at half its prediction finds the
    /// steep piece and the largest batch that fits.
    #[test]
    fn search_refines_a_convex_peak_with_a_second_probe() {
        let peak = |b: usize| (75.0 + 0.3 * b as f64).max(62.6 + 2.4 * b as f64);
        let cap = 139.0f64;
        let budget = 0.97 * cap;
        let truth = ((budget - 62.6) / 2.4).floor() as usize; // 30
        let mut calls = Vec::new();
        let s = search(
            at_peak(4, peak(4)),
            budget,
            &MaxBatchOptions::default(),
            card(peak, cap, &mut calls),
        );
        // the first line predicts 45 (would need 170 GiB); the second probe at 22
        assert_eq!(
            calls,
            vec![
                (8, AttemptKind::Probe),
                (22, AttemptKind::Probe),
                (truth, AttemptKind::Final)
            ]
        );
        assert_eq!(s.best.map(|r| r.result), Some(truth));
        assert!(s.error.is_none());
        let p = s.plan.unwrap();
        assert!((p.per_sample_gib - 2.4).abs() < 1e-9, "{p:?}");
    }

    #[test]
    fn search_stops_at_another_error() {
        let mut n = 0;
        let s: Searched<()> = search(
            point(&SIM, 4),
            100.0,
            &MaxBatchOptions::default(),
            |_, _| {
                n += 1;
                Err(AttemptError::from_message("shape mismatch".into()))
            },
        );
        assert_eq!(n, 1);
        assert_eq!(s.error.as_deref(), Some("shape mismatch"));
        assert_eq!(s.attempts[0].error.as_deref(), Some("shape mismatch"));
    }

    #[test]
    fn search_climbs_off_a_plateau() {
        // PyTorch AdamW at 7B: the optimizer step's 62.8 GiB dominates until b ~ 12
        let peak = |b: usize| (62.8f64).max(13.5 + 4.0 * b as f64);
        let cap = 139.0f64;
        let budget = 0.97 * cap;
        let mut calls = Vec::new();
        let s = search(
            at_peak(4, peak(4)),
            budget,
            &MaxBatchOptions::default(),
            card(peak, cap, &mut calls),
        );
        let batches: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(&batches[..2], &[8, 16], "{calls:?}");
        assert!(s.error.is_none(), "{:?}", s.error);
        assert!((s.plan.map(|p| p.per_sample_gib).unwrap_or(0.0) - 4.0).abs() < 1e-9);
        assert_eq!(
            s.best.map(|r| r.result),
            Some(((budget - 13.5) / 4.0).floor() as usize)
        );
    }

    #[test]
    fn search_reports_a_plateau_up_to_the_limit() {
        let mut calls = Vec::new();
        let opts = MaxBatchOptions {
            limit: 64,
            ..MaxBatchOptions::default()
        };
        let s = search(
            at_peak(4, 62.8),
            130.0,
            &opts,
            card(|_| 62.8, f64::INFINITY, &mut calls),
        );
        let batches: Vec<usize> = calls.iter().map(|c| c.0).collect();
        assert_eq!(batches, vec![8, 16, 32, 64]);
        assert!(s.best.is_none());
        assert!(
            s.error
                .as_deref()
                .is_some_and(|e| e.contains("did not grow")),
            "{:?}",
            s.error
        );
    }
}
