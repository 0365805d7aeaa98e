//! Progress display: a single updating line on an interactive terminal, plain log lines (at most
//! one every few seconds, and the last one) when the output goes to a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Whether progress may redraw a line (stdout and stderr both on a terminal).
pub fn interactive() -> bool {
    std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

/// `12s`, `3m05s`, `1h02m`.
pub fn format_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Progress of `total` units of work, written to stderr.
pub struct Progress {
    label: String,
    total: usize,
    start: Instant,
    last: Option<Instant>,
    interactive: bool,
    log_every: Duration,
}

impl Progress {
    pub fn new(label: impl Into<String>, total: usize) -> Self {
        Progress {
            label: label.into(),
            total,
            start: Instant::now(),
            last: None,
            interactive: interactive(),
            log_every: Duration::from_secs(5),
        }
    }

    /// Report `done` units finished; `detail` is appended (loss, tokens/s, ...).
    pub fn update(&mut self, done: usize, detail: &str) {
        let now = Instant::now();
        let finished = done >= self.total;
        if !self.interactive && !finished {
            if let Some(last) = self.last {
                if now.duration_since(last) < self.log_every {
                    return;
                }
            }
        }
        self.last = Some(now);
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = if done > 0 && !finished {
            format!(
                " ETA {}",
                format_duration(elapsed * (self.total - done) as f64 / done as f64)
            )
        } else {
            String::new()
        };
        let pct = 100.0 * done as f64 / self.total.max(1) as f64;
        let mut err = std::io::stderr().lock();
        if self.interactive {
            let width = 24;
            let fill = (width * done.min(self.total)) / self.total.max(1);
            let bar: String = "=".repeat(fill) + &" ".repeat(width - fill);
            let _ = write!(
                err,
                "\r\x1b[2K{} [{bar}] {done}/{} {}{eta} {detail}",
                self.label,
                self.total,
                format_duration(elapsed)
            );
            if finished {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(
                err,
                "{}: {done}/{} ({pct:.0}%) elapsed {}{eta} {detail}",
                self.label,
                self.total,
                format_duration(elapsed)
            );
        }
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::format_duration;

    #[test]
    fn durations() {
        assert_eq!(format_duration(4.4), "4s");
        assert_eq!(format_duration(185.0), "3m05s");
        assert_eq!(format_duration(3720.0), "1h02m");
    }
}
