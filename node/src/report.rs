//! What `evo run` tells the person (or program) watching it: a live line per worker on a
//! terminal, a log line for every birth, death and failure, or JSON lines for machines.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// How `evo run` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputMode {
    /// Log lines on stderr, with a live line per worker when stderr is a terminal.
    Human,
    /// One JSON object a line on stdout for every event, nothing else.
    Json,
    /// Only errors and the final summary.
    Quiet,
}

/// Prints the run's events in the chosen [`OutputMode`].
pub struct Reporter {
    mode: OutputMode,
    multi: Option<MultiProgress>,
    bars: Vec<ProgressBar>,
}

impl Reporter {
    /// A reporter for `workers` workers.
    pub fn new(mode: OutputMode, workers: usize) -> Reporter {
        let multi = (mode == OutputMode::Human)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
            .filter(|m| !m.is_hidden());
        let bars = match &multi {
            Some(m) => (0..workers)
                .map(|i| {
                    let bar = m.add(ProgressBar::new(1));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "worker {prefix} {bar:20} {pos:>6}/{len:6} {msg}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                    );
                    bar.set_prefix(i.to_string());
                    bar.set_message("idle");
                    bar.enable_steady_tick(Duration::from_millis(500));
                    bar
                })
                .collect(),
            None => Vec::new(),
        };
        Reporter { mode, multi, bars }
    }

    /// The mode.
    pub fn mode(&self) -> OutputMode {
        self.mode
    }

    /// A human log line (stderr, above the live lines), time-stamped.
    pub fn line(&self, text: &str) {
        if self.mode != OutputMode::Human {
            return;
        }
        let stamped = format!("[{}] {text}", clock());
        match &self.multi {
            Some(m) => {
                if m.println(&stamped).is_err() {
                    eprintln!("{stamped}");
                }
            }
            None => eprintln!("{stamped}"),
        }
    }

    /// A machine event (stdout, one JSON object a line).
    pub fn json(&self, event: serde_json::Value) {
        if self.mode == OutputMode::Json {
            println!("{event}");
        }
    }

    /// A worker began training an individual for `steps` steps.
    pub fn started(&self, worker: usize, id: u64, what: &str, steps: u64) {
        if let Some(bar) = self.bars.get(worker) {
            bar.set_length(steps);
            bar.set_position(0);
            bar.set_message(format!("#{id} {what}"));
        }
    }

    /// A worker's training progress.
    pub fn progress(&self, worker: usize, id: u64, step: u64, steps: u64, loss: f64) {
        if let Some(bar) = self.bars.get(worker) {
            bar.set_length(steps);
            bar.set_position(step);
            bar.set_message(format!("#{id} loss {loss:.3}"));
        }
        self.json(serde_json::json!({
            "event": "progress", "worker": worker, "id": id, "step": step,
            "steps": steps, "loss": loss,
        }));
    }

    /// A worker has nothing to train.
    pub fn idle(&self, worker: usize, why: &str) {
        if let Some(bar) = self.bars.get(worker) {
            bar.set_position(0);
            bar.set_message(why.to_string());
        }
    }

    /// Removes the live lines.
    pub fn finish(&self) {
        for bar in &self.bars {
            bar.finish_and_clear();
        }
    }
}

/// The time of day, UTC, as HH:MM:SS.
fn clock() -> String {
    let secs = crate::state::now_ms() / 1000;
    format!(
        "{:02}:{:02}:{:02}",
        (secs / 3600) % 24,
        (secs / 60) % 60,
        secs % 60
    )
}
