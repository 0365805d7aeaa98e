//! Opt-in per-phase wall-clock profile of training steps (issue 5, P3): where a step's time goes
//! (forward per block, head, backward per block, gradient norms and their host reads, clipping,
//! optimizer, embedding backward, ...).
//!
//! Off by default ([`crate::Trainer::set_profiling`]); when off every hook is one branch on a
//! `bool`: no device synchronisation, no clock read. When on, each hook ([`Profiler::lap`])
//! records the host time since the previous hook (the time to *enqueue* the phase's work), then
//! synchronises the device and books the wall time since the previous hook to the named phase,
//! so the phases partition the profiled steps. A phase whose wall time is close to its host
//! time is bound by the host (launches, allocations, host reads), one whose wall time is much
//! larger by the device. The synchronisations themselves slow the step down a little (the
//! host can no longer run ahead of the device): the profile explains a step, an unprofiled run
//! times it.

use std::sync::Mutex;
use std::time::Instant;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Accumulated time of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: String,
    /// Times the phase ended (e.g. 32 per step for a per-layer phase).
    pub count: usize,
    /// Wall seconds, the device synchronised at both ends.
    pub wall_s: f64,
    /// Seconds until the host had enqueued the phase's work (before the synchronisation).
    pub host_s: f64,
}

#[derive(Default)]
struct Inner {
    last: Option<Instant>,
    /// In order of first appearance.
    phases: Vec<PhaseTime>,
}

/// The per-phase profiler of a [`crate::Trainer`] (module docs).
pub struct Profiler {
    enabled: bool,
    dev: Device,
    inner: Mutex<Inner>,
}

impl Profiler {
    /// A profiler of work on `dev`, recording only when `enabled`.
    pub fn new(dev: &Device, enabled: bool) -> Self {
        Self {
            enabled,
            dev: dev.clone(),
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // a panic while holding the lock leaves plain numbers behind: keep them
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a step: synchronises the device and starts the clock (nothing when off).
    pub fn begin(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        self.dev.synchronize()?;
        self.inner().last = Some(Instant::now());
        Ok(())
    }

    /// Books the time since the previous hook to `phase`, after a device synchronisation
    /// (nothing when off, or before [`Self::begin`]).
    pub fn lap(&self, phase: &str) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let enqueued = Instant::now();
        self.dev.synchronize()?;
        let now = Instant::now();
        let mut inner = self.inner();
        let Some(last) = inner.last.replace(now) else {
            return Ok(());
        };
        let (wall, host) = (
            now.duration_since(last).as_secs_f64(),
            enqueued.duration_since(last).as_secs_f64(),
        );
        match inner.phases.iter_mut().find(|p| p.phase == phase) {
            Some(p) => {
                p.count += 1;
                p.wall_s += wall;
                p.host_s += host;
            }
            None => inner.phases.push(PhaseTime {
                phase: phase.to_string(),
                count: 1,
                wall_s: wall,
                host_s: host,
            }),
        }
        Ok(())
    }

    /// The phases so far, in order of first appearance.
    pub fn report(&self) -> Vec<PhaseTime> {
        self.inner().phases.clone()
    }

    /// Forgets the phases so far (e.g. after warm-up steps).
    pub fn reset(&self) {
        *self.inner() = Inner::default();
    }
}

/// The phases as a Markdown table over `steps` steps: per-step wall and host milliseconds, share
/// of the total wall time.
pub fn table(phases: &[PhaseTime], steps: usize) -> String {
    let steps = steps.max(1) as f64;
    let total: f64 = phases.iter().map(|p| p.wall_s).sum();
    let mut s = String::from(
        "| phase | count / step | wall ms / step | host ms / step | share |\n|---|---|---|---|---|\n",
    );
    for p in phases {
        s += &format!(
            "| {} | {:.1} | {:.2} | {:.2} | {:.1} % |\n",
            p.phase,
            p.count as f64 / steps,
            1e3 * p.wall_s / steps,
            1e3 * p.host_s / steps,
            100.0 * p.wall_s / total.max(1e-12),
        );
    }
    s += &format!("| total | | {:.2} | | |\n", 1e3 * total / steps);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing() -> Result<()> {
        let p = Profiler::new(&Device::Cpu, false);
        p.begin()?;
        p.lap("a")?;
        assert!(p.report().is_empty());
        Ok(())
    }

    #[test]
    fn laps_partition_the_time_and_accumulate_by_phase() -> Result<()> {
        let p = Profiler::new(&Device::Cpu, true);
        p.lap("before begin")?; // no clock yet: not booked
        let t0 = Instant::now();
        p.begin()?;
        std::thread::sleep(std::time::Duration::from_millis(5));
        p.lap("a")?;
        p.lap("b")?;
        std::thread::sleep(std::time::Duration::from_millis(5));
        p.lap("a")?;
        let elapsed = t0.elapsed().as_secs_f64();
        let r = p.report();
        let names: Vec<&str> = r.iter().map(|x| x.phase.as_str()).collect();
        assert_eq!(names, vec!["a", "b"]);
        assert_eq!(r[0].count, 2);
        assert!(r[0].wall_s >= 0.010, "{r:?}");
        assert!(r[1].wall_s < 0.005, "{r:?}");
        let sum: f64 = r.iter().map(|x| x.wall_s).sum();
        assert!(sum <= elapsed, "{sum} > {elapsed}");
        assert!(r.iter().all(|x| x.host_s <= x.wall_s));
        let t = table(&r, 2);
        assert!(t.contains("| a | 1.0 |"), "{t}");
        p.reset();
        assert!(p.report().is_empty());
        Ok(())
    }
}
