//! The PNG plots of a grid summary: each metric per group with the seed spread, time per step
//! and memory per group, and the loss curves (mean over seeds) overlaid.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::plot::{bars, lines, Row, Series};
use crate::stats::Stat;
use crate::summary::ExperimentSummary;

fn row(label: &str, s: &Stat) -> Row {
    Row {
        label: label.to_string(),
        mean: s.mean,
        std: s.std.unwrap_or(0.0),
        values: s.values.clone(),
    }
}

/// Writes the plots into `dir`; returns their paths.
pub fn write_plots(s: &ExperimentSummary, dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| crate::ExperimentError::io(dir, "create", e))?;
    let mut out = Vec::new();
    let mut keys: Vec<String> = s
        .groups
        .iter()
        .flat_map(|g| g.metrics.keys().cloned())
        .filter(|k| !["rouge1", "rouge2", "rougeLsum"].contains(&k.as_str()))
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let rows: Vec<Row> = s
            .groups
            .iter()
            .filter_map(|g| g.metrics.get(&k).map(|st| row(&g.group, st)))
            .collect();
        if rows.is_empty() {
            continue;
        }
        let p = dir.join(format!("metric-{k}.png"));
        bars(
            &p,
            &format!(
                "{} ({}): {k} after fine-tuning, mean ± std over seeds (x = seeds)",
                s.name, s.task
            ),
            &k,
            &rows,
        )?;
        out.push(p);
    }
    let time: Vec<Row> = s
        .groups
        .iter()
        .filter_map(|g| g.mean_step_s.as_ref().map(|st| row(&g.group, st)))
        .collect();
    if !time.is_empty() {
        let p = dir.join("time-per-step.png");
        bars(
            &p,
            &format!("{}: wall time per optimizer step", s.name),
            "seconds per step",
            &time,
        )?;
        out.push(p);
    }
    let mem: Vec<Row> = s
        .groups
        .iter()
        .flat_map(|g| {
            let a = g
                .estimated_peak_mib
                .as_ref()
                .map(|st| row(&format!("{} peak", g.group), st));
            let b = g
                .optimizer_state_mib
                .as_ref()
                .map(|st| row(&format!("{} optimizer", g.group), st));
            a.into_iter().chain(b)
        })
        .collect();
    if !mem.is_empty() {
        let p = dir.join("memory.png");
        bars(
            &p,
            &format!(
                "{}: memory accounting (estimated peak; optimizer state)",
                s.name
            ),
            "MiB",
            &mem,
        )?;
        out.push(p);
    }
    let curves: Vec<Series> = s
        .groups
        .iter()
        .filter(|g| !g.loss_curve.is_empty())
        .map(|g| Series {
            label: g.group.clone(),
            points: g.loss_curve.iter().map(|&(x, y)| (x as f64, y)).collect(),
        })
        .collect();
    if !curves.is_empty() {
        let p = dir.join("loss-curves.png");
        lines(
            &p,
            &format!("{}: training loss (mean over seeds)", s.name),
            ("step", "loss"),
            &curves,
            false,
        )?;
        out.push(p);
    }
    Ok(out)
}
