//! The P3 report as Markdown: the main table, the largest-batch table and the per-phase profiles.
use super::P3Report;
use crate::p3_max::AttemptKind;

/// The largest-batch table as Markdown (`max_batch` runs; arms without a search are left out).
pub fn max_batch_table(rep: &P3Report) -> String {
    let gib = |v: Option<f64>| v.map_or("-".to_string(), |g| format!("{g:.1}"));
    let mut s = format!(
        "P3/P4 at the largest batch that fits (seq {}; rule: crates/bench/src/p3_max.rs)\n\n| arm | batch | s / step | tokens / s | MFU | peak used GiB | peak reserved GiB | predicted reserved GiB | budget GiB | attempts | note |\n|---|---|---|---|---|---|---|---|---|---|---|\n",
        rep.options.seq
    );
    for r in &rep.results {
        let Some(m) = &r.max_batch else { continue };
        let attempts = m
            .attempts
            .iter()
            .map(|a| {
                let kind = match a.kind {
                    AttemptKind::Probe => "probe ",
                    AttemptKind::Final => "",
                };
                let what = match (&a.error, a.peak_used_gib) {
                    (Some(e), _) if e == "oom" => "oom".to_string(),
                    (Some(_), _) => "failed".to_string(),
                    (None, u) => format!("{} GiB", gib(u)),
                };
                format!("{kind}b={}: {what}", a.batch)
            })
            .collect::<Vec<_>>()
            .join("; ");
        let predicted = m.plan.map_or("-".to_string(), |p| {
            format!("{:.1}", p.predicted_reserved_gib)
        });
        let note = m.error.clone().unwrap_or_default();
        match m.batch {
            Some(b) => {
                s += &format!(
                    "| {} | {b} | {:.3} | {:.0} | {:.1} % | {} | {} | {predicted} | {:.1} | {attempts} | {note} |\n",
                    r.arm,
                    m.step_s,
                    m.tokens_per_s,
                    100.0 * m.mfu,
                    gib(m.peak_used_gib),
                    gib(m.peak_reserved_gib),
                    m.budget_gib,
                )
            }
            None => {
                s += &format!(
                    "| {} | - | | | | | | {predicted} | {:.1} | {attempts} | {note} |\n",
                    r.arm, m.budget_gib,
                )
            }
        }
    }
    s
}

/// The per-phase profile of each profiled arm as Markdown ([`crosslore_train::profile::table`]).
pub fn profile_tables(rep: &P3Report) -> String {
    let mut s = String::new();
    for r in &rep.results {
        let Some(p) = &r.profile else { continue };
        let n = r.samples_s.len().max(1);
        s += &format!(
            "Per-phase profile of {} (batch {} x seq {}; {} profiled steps, median {:.3} s/step with a device sync per phase; unprofiled {:.3} s/step)\n\n{}\n",
            r.arm,
            rep.options.batch,
            rep.options.seq,
            n,
            r.profiled_step_s,
            r.step_s,
            crosslore_train::profile::table(p, n)
        );
    }
    s
}

/// The P3/P4 table as Markdown.
pub fn table(rep: &P3Report) -> String {
    let gib = |v: Option<f64>| v.map_or("-".to_string(), |g| format!("{g:.1}"));
    let mut s = format!(
        "P3/P4 end-to-end step, {} parameters, batch {} x seq {}, bf16, device {}, pool is default: {:?}\n\n| arm | s / step | tokens / s | MFU | first step s | peak used GiB | peak reserved GiB | loss |\n|---|---|---|---|---|---|---|---|\n",
        rep.n_params, rep.options.batch, rep.options.seq, rep.device, rep.pool_is_default
    );
    for r in &rep.results {
        if let Some(e) = &r.error {
            s += &format!("| {} | FAILED: {e} | | | | | | |\n", r.arm);
            continue;
        }
        s += &format!(
            "| {} | {:.3} | {:.0} | {:.1} % | {:.2} | {} | {} | {:.4} |\n",
            r.arm,
            r.step_s,
            r.tokens_per_s,
            100.0 * r.mfu,
            r.first_step_s,
            gib(r.peak_used_gib),
            gib(r.peak_reserved_gib),
            r.last_loss
        );
    }
    s += &format!(
        "\nbf16 matmul {:.0} TFLOP/s (MFU denominator, same run)\n",
        rep.rates.bf16_square_flops / 1e12
    );
    s
}
