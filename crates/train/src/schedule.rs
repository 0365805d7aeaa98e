//! Learning-rate schedules with linear warm-up, as `transformers.get_scheduler` defines them.
//!
//! `lr(step)` is the rate used for optimizer step `step` (0-based), like PyTorch's `LambdaLR`
//! after `step` calls to `scheduler.step()`.

use serde::{Deserialize, Serialize};

/// Shape of the learning-rate curve after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchedulerKind {
    /// Constant after warm-up (`constant_with_warmup`).
    Constant,
    /// Linear decay to 0 at `total_steps` (`linear`).
    Linear,
    /// Half-cosine decay to 0 at `total_steps` (`cosine`, 0.5 cycles).
    #[default]
    Cosine,
}

/// A schedule: peak rate, warm-up steps and total steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    pub kind: SchedulerKind,
    pub peak_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl Schedule {
    /// Multiplier of the peak rate at `step` (transformers' lambda functions).
    pub fn factor(&self, step: usize) -> f64 {
        let (w, t) = (self.warmup_steps, self.total_steps.max(1));
        if step < w {
            return step as f64 / w.max(1) as f64;
        }
        match self.kind {
            SchedulerKind::Constant => 1.0,
            SchedulerKind::Linear => {
                ((t.saturating_sub(step)) as f64 / (t.saturating_sub(w)).max(1) as f64).max(0.0)
            }
            SchedulerKind::Cosine => {
                let progress = (step - w) as f64 / (t.saturating_sub(w)).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        }
    }

    /// Learning rate for optimizer step `step`.
    pub fn lr(&self, step: usize) -> f64 {
        self.peak_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(kind: SchedulerKind) -> Schedule {
        Schedule {
            kind,
            peak_lr: 2.0,
            warmup_steps: 4,
            total_steps: 20,
        }
    }

    #[test]
    fn warmup_is_linear_from_zero() {
        for kind in [
            SchedulerKind::Constant,
            SchedulerKind::Linear,
            SchedulerKind::Cosine,
        ] {
            let s = sched(kind);
            assert_eq!(s.lr(0), 0.0);
            assert!((s.lr(2) - 1.0).abs() < 1e-12);
            assert!(
                (s.lr(4) - 2.0).abs() < 1e-12,
                "{kind:?} peak at end of warm-up"
            );
        }
    }

    #[test]
    fn decay_shapes() {
        let lin = sched(SchedulerKind::Linear);
        // transformers: max(0, (T - s) / (T - w)) -> at s = 12: 8/16.
        assert!((lin.lr(12) - 1.0).abs() < 1e-12);
        assert_eq!(lin.lr(20), 0.0);
        assert_eq!(lin.lr(25), 0.0);
        let cos = sched(SchedulerKind::Cosine);
        assert!(
            (cos.lr(12) - 1.0).abs() < 1e-12,
            "half-way is half the peak"
        );
        assert!(cos.lr(20).abs() < 1e-12);
        let c = sched(SchedulerKind::Constant);
        assert_eq!(c.lr(19), 2.0);
    }
}
