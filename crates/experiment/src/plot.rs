//! PNG plots with plotters' bitmap backend and an embedded font (`assets/plot-font.ttf`, DejaVu
//! Sans subset to ASCII; `scripts/make_plot_font.sh`), so plotting needs no system font or
//! library: per-group values with their seed spread (horizontal error bars, one row per group),
//! and line plots (loss curves, projection residuals over steps).

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::error::{ExperimentError, Result};

const FONT: &[u8] = include_bytes!("../assets/plot-font.ttf");
const FAMILY: &str = "sans-serif";

fn ensure_font(file: &str) -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(ExperimentError::Plot {
            file: file.into(),
            msg: "the embedded font did not load".into(),
        })
    }
}

fn perr<E: std::fmt::Display>(file: &str) -> impl Fn(E) -> ExperimentError + '_ {
    move |e| ExperimentError::Plot {
        file: file.into(),
        msg: e.to_string(),
    }
}

/// A palette that stays distinguishable for ~10 series.
pub fn color(i: usize) -> RGBColor {
    const C: [RGBColor; 10] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
    ];
    C[i % C.len()]
}

/// One row of a [`bars`] plot: label, mean, spread (std) and the individual values.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub mean: f64,
    pub std: f64,
    pub values: Vec<f64>,
}

fn padded_range(lo: f64, hi: f64, zero: bool) -> (f64, f64) {
    let (mut lo, mut hi) = if zero {
        (lo.min(0.0), hi.max(0.0))
    } else {
        (lo, hi)
    };
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = 0.05 * (hi - lo);
    (if zero && lo == 0.0 { 0.0 } else { lo - pad }, hi + pad)
}

/// Horizontal error-bar plot: one row per group, mean ± std, seeds as dots.
pub fn bars(path: &Path, title: &str, x_desc: &str, rows: &[Row]) -> Result<()> {
    let file = path.display().to_string();
    ensure_font(&file)?;
    if rows.is_empty() {
        return Err(ExperimentError::Plot {
            file,
            msg: "nothing to plot".into(),
        });
    }
    let lo = rows
        .iter()
        .flat_map(|r| r.values.iter().copied().chain([r.mean - r.std]))
        .fold(f64::INFINITY, f64::min);
    let hi = rows
        .iter()
        .flat_map(|r| r.values.iter().copied().chain([r.mean + r.std]))
        .fold(f64::NEG_INFINITY, f64::max);
    let (lo, hi) = padded_range(lo, hi, lo >= 0.0);
    let n = rows.len();
    let height = 110 + 30 * n as u32;
    let root = BitMapBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(perr(&file))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(230)
        .build_cartesian_2d(lo..hi, (0..n).into_segmented())
        .map_err(perr(&file))?;
    let labels: Vec<String> = rows.iter().map(|r| r.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style((FAMILY, 14))
        .draw()
        .map_err(perr(&file))?;
    for (i, r) in rows.iter().enumerate() {
        let c = color(i);
        let y = SegmentValue::CenterOf(i);
        chart
            .draw_series(std::iter::once(ErrorBar::new_horizontal(
                y,
                r.mean - r.std,
                r.mean,
                r.mean + r.std,
                c.stroke_width(2),
                12,
            )))
            .map_err(perr(&file))?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (r.mean, SegmentValue::CenterOf(i)),
                6,
                c.filled(),
            )))
            .map_err(perr(&file))?;
        chart
            .draw_series(
                r.values
                    .iter()
                    .map(|&v| Cross::new((v, SegmentValue::CenterOf(i)), 4, BLACK.stroke_width(1))),
            )
            .map_err(perr(&file))?;
    }
    root.present().map_err(perr(&file))?;
    Ok(())
}

/// One line of a [`lines`] plot.
#[derive(Debug, Clone)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Line plot of several series (e.g. loss curves); `log_y` for a logarithmic y axis.
pub fn lines(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[Series],
    log_y: bool,
) -> Result<()> {
    let file = path.display().to_string();
    ensure_font(&file)?;
    let pts: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
        .collect();
    if pts.is_empty() {
        return Err(ExperimentError::Plot {
            file,
            msg: "nothing to plot".into(),
        });
    }
    let (x0, x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (y0, y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1), b.max(p.1))
        });
    let (x0, x1) = padded_range(x0, x1, false);
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(perr(&file))?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, (FAMILY, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc(y_desc)
                .label_style((FAMILY, 14))
                .draw()
                .map_err(perr(&file))?;
            for (i, s) in series.iter().enumerate() {
                let c = color(i);
                let points: Vec<(f64, f64)> = s
                    .points
                    .iter()
                    .copied()
                    .filter(|(x, y)| x.is_finite() && y.is_finite() && (!log_y || *y > 0.0))
                    .collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                    .map_err(perr(&file))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3))
                    });
                if points.len() <= 30 {
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(perr(&file))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FAMILY, 13))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(perr(&file))?;
        }};
    }
    if log_y {
        let (y0, y1) = (y0 / 1.2, y1 * 1.2);
        draw!(builder
            .build_cartesian_2d(x0..x1, (y0..y1).log_scale())
            .map_err(perr(&file))?);
    } else {
        let (y0, y1) = padded_range(y0, y1, false);
        draw!(builder
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(perr(&file))?);
    }
    root.present().map_err(perr(&file))?;
    Ok(())
}
