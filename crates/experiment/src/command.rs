//! The whole experiment command: `crosslore experiment <spec.toml> [--out DIR]` and
//! `crosslore-bench experiment` call [`run_experiment`].

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::grid::{run_grid, GridOptions};
use crate::spec::{Experiment, Kind};

/// Options of [`run_experiment`].
#[derive(Debug, Clone, Default)]
pub struct CommandOptions {
    /// Output folder (default `runs/experiments/<name>`): run folders, summary, plots.
    pub out: Option<PathBuf>,
    /// Stop starting new grid cells after this many seconds (resume with the same command).
    pub time_budget_s: Option<f64>,
    /// Only rebuild the summary and plots from the run folders.
    pub summarize_only: bool,
    /// Grids: run only shard `(index, count)` of the cells (several processes on one GPU);
    /// projection and sweep experiments run in shard 0 only. Summarise afterwards with
    /// `summarize_only`.
    pub shard: Option<(usize, usize)>,
}

/// Parses `I/N` (`0 <= I < N`).
pub fn parse_shard(s: &str) -> Option<(usize, usize)> {
    let (i, n) = s.split_once('/')?;
    let (i, n): (usize, usize) = (i.trim().parse().ok()?, n.trim().parse().ok()?);
    (n > 0 && i < n).then_some((i, n))
}

/// The default output folder of a spec.
pub fn default_out(exp: &Experiment) -> PathBuf {
    Path::new("runs").join("experiments").join(&exp.spec.name)
}

/// Runs the experiment of `spec` (module docs); returns the output folder.
pub fn run_experiment(spec: &Path, opts: &CommandOptions) -> Result<PathBuf> {
    let exp = Experiment::from_file(spec)?;
    let out = opts.out.clone().unwrap_or_else(|| default_out(&exp));
    std::fs::create_dir_all(&out).map_err(|e| crate::ExperimentError::io(&out, "create", e))?;
    let log = |s: &str| eprintln!("experiment {}: {s}", exp.spec.name);
    if exp.spec.kind != Kind::Grid && !opts.summarize_only && opts.shard.is_some_and(|s| s.0 != 0) {
        log("not a grid: runs in shard 0 only");
        return Ok(out);
    }
    match exp.spec.kind {
        Kind::Grid => {
            if !opts.summarize_only {
                let mut log_line = |s: &str| log(s);
                let outcome = run_grid(
                    &exp,
                    &out,
                    GridOptions {
                        shard: opts.shard,
                        time_budget_s: opts.time_budget_s,
                        log: &mut log_line,
                    },
                )?;
                log(&format!(
                    "{} cells run, {} skipped (finished earlier), {} pending (time budget)",
                    outcome.ran.len(),
                    outcome.skipped.len(),
                    outcome.pending.len()
                ));
            }
            if opts.shard.is_some() {
                return Ok(out); // the shards' summary comes from a --summarize-only call
            }
            let summary = crate::summary::summarize(&exp, &out)?;
            summary.write(&out)?;
            let plots = crate::plots::write_plots(&summary, &out.join("plots"))?;
            print!("{}", summary.markdown());
            log(&format!(
                "summary in {} ({} plots)",
                out.join("summary.md").display(),
                plots.len()
            ));
        }
        Kind::Projection => {
            let rep = if opts.summarize_only {
                crate::projection::rewrite(&out)?
            } else {
                crate::projection::run(&exp, &out)?
            };
            print!("{}", rep.markdown());
        }
        Kind::LrSweep => {
            let rep = crate::sweep::run(&exp, &out, opts.summarize_only, opts.time_budget_s)?;
            print!("{}", rep.markdown());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::parse_shard;

    #[test]
    fn shard_arguments() {
        assert_eq!(parse_shard("0/1"), Some((0, 1)));
        assert_eq!(parse_shard(" 2 / 3 "), Some((2, 3)));
        for bad in ["1/1", "0/0", "3/2", "1", "a/2", "1/b", "-1/2", ""] {
            assert_eq!(parse_shard(bad), None, "{bad:?}");
        }
    }
}
