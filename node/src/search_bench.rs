//! The search benchmark's arithmetic, with no processes and no I/O beyond reading an
//! event log and writing a plot: a run's best validation accuracy over time (from its
//! `events.jsonl`), what its workers did in a window of time, statistics over seeds, and
//! the plot of best accuracy against minutes. `evo bench search` (in `commands::search`)
//! starts the runs and wires these together.

use crate::state::{Direction, Event};
use serde::Serialize;
use std::path::Path;
use thiserror::Error;
use trainer::train::PhaseSeconds;

/// A benchmark file that could not be read or written.
#[derive(Debug, Error)]
pub enum BenchError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The event log has no `created` event: it is not a run's log.
    #[error("{0}: no created event: not the event log of a run")]
    NotARun(String),
    /// Drawing the plot failed.
    #[error("drawing {path}: {reason}")]
    Plot {
        /// The plot's file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// One training that finished, as its event told.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// Seconds since the run started, when it finished.
    pub at_s: f64,
    /// FLOPs it spent.
    pub flops: u64,
    /// Its whole wall time (building, training, scoring, saving), in seconds.
    pub seconds: f64,
    /// Where that time went, when the log has it.
    pub phases: Option<PhaseSeconds>,
    /// The training threads it was given, when the log has them.
    pub threads: Option<usize>,
}

/// A training that never finished: its span (seconds since the start) and the training
/// threads it was given, when the log has them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Unfinished {
    /// When it started.
    pub from: f64,
    /// When it failed, was abandoned or the log ends.
    pub to: f64,
    /// Its training threads, when the log has them.
    pub threads: Option<usize>,
}

/// What one run's event log tells of its progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunTrace {
    /// When the run was created, Unix milliseconds.
    pub start_ms: u64,
    /// Births (and admitted migrants): seconds since the start, validation accuracy.
    pub births: Vec<(f64, f64)>,
    /// Trainings finished.
    pub finished: Vec<Finished>,
    /// The spans (seconds since the start) of the trainings that never finished: those
    /// that failed or were abandoned when the run stopped, until then, and those still
    /// running at the end of the log, until its last event. Their workers were training,
    /// though the work was lost.
    pub unfinished: Vec<Unfinished>,
    /// Seconds from the start to the last event.
    pub last_s: f64,
}

/// What a run's workers did in a window of its wall time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Window {
    /// Trainings that finished in the window.
    pub trained: usize,
    /// The FLOPs of the trainings done in the window: each finished training's FLOPs
    /// shared out evenly over its wall time, the part inside the window counted.
    pub flops: f64,
    /// FLOPs per second of the window.
    pub flops_per_s: f64,
    /// Share of the workers' time in the window spent in SGD steps: each finished
    /// training's SGD seconds shared out evenly over its wall time, and the trainings
    /// that never finished ([`RunTrace::unfinished`]) counted as training throughout.
    pub training_share: f64,
    /// Share of the training threads' time in the window spent in SGD steps: as
    /// `training_share`, each training weighed by the threads it was given (a training
    /// the log gives no threads for, by its worker's even share of them). A lone final
    /// training on all the threads keeps this at its SGD share though the other workers
    /// wait.
    pub thread_training_share: f64,
}

/// Seconds of `[start, end]` inside `[from, to]`.
fn overlap(start: f64, end: f64, from: f64, to: f64) -> f64 {
    (end.min(to) - start.max(from)).max(0.0)
}

impl RunTrace {
    /// Reads the trace from the lines of an event log. Lines that do not parse (a torn
    /// last line of a log still being written) are skipped.
    pub fn parse(text: &str) -> Option<RunTrace> {
        let events: Vec<Event> = text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let start_ms = events.iter().find_map(|e| match e {
            Event::Created { at_ms, .. } => Some(*at_ms),
            _ => None,
        })?;
        let since = |at_ms: u64| at_ms.saturating_sub(start_ms) as f64 / 1000.0;
        let mut trace = RunTrace {
            start_ms,
            ..RunTrace::default()
        };
        let mut running = std::collections::BTreeMap::new();
        for e in &events {
            trace.last_s = trace.last_s.max(since(e.at_ms()));
            match e {
                Event::TrainingStarted {
                    at_ms, id, threads, ..
                } => {
                    running.insert(*id, (since(*at_ms), *threads));
                }
                Event::TrainingFailed { at_ms, id, .. } => {
                    if let Some((from, threads)) = running.remove(id) {
                        trace.unfinished.push(Unfinished {
                            from,
                            to: since(*at_ms),
                            threads,
                        });
                    }
                }
                Event::Resumed { lost, .. } => {
                    // Their node stopped at an unknown time: not counted.
                    for id in lost {
                        running.remove(id);
                    }
                }
                Event::Birth {
                    at_ms,
                    fitness: Some(f),
                    ..
                } if f.is_finite() => trace.births.push((since(*at_ms), *f)),
                Event::Migration {
                    at_ms,
                    direction: Direction::In,
                    fitness,
                    ..
                } if fitness.is_finite() => trace.births.push((since(*at_ms), *fitness)),
                Event::TrainingFinished {
                    at_ms,
                    id,
                    flops,
                    seconds,
                    phases,
                    ..
                } => {
                    let threads = running.remove(id).and_then(|(_, t)| t);
                    trace.finished.push(Finished {
                        at_s: since(*at_ms),
                        flops: *flops,
                        seconds: *seconds,
                        phases: *phases,
                        threads,
                    })
                }
                _ => {}
            }
        }
        let end = trace.last_s;
        trace
            .unfinished
            .extend(running.into_values().map(|(from, threads)| Unfinished {
                from,
                to: end,
                threads,
            }));
        Some(trace)
    }

    /// Reads the event log at `path`.
    pub fn read(path: &Path) -> Result<RunTrace, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            path: path.display().to_string(),
            source,
        })?;
        RunTrace::parse(&text).ok_or_else(|| BenchError::NotARun(path.display().to_string()))
    }

    /// The best validation accuracy born by `seconds` after the start.
    pub fn best_at(&self, seconds: f64) -> Option<f64> {
        self.births
            .iter()
            .filter(|(t, _)| *t <= seconds)
            .map(|(_, f)| *f)
            .reduce(f64::max)
    }

    /// What `workers` workers sharing `threads` training threads did between `from` and
    /// `to` seconds after the start.
    pub fn window(&self, from: f64, to: f64, workers: usize, threads: usize) -> Window {
        let workers = workers.max(1);
        let threads = threads.max(1);
        // A training the log gives no threads for had its worker's even share.
        let threads_of = |t: Option<usize>| t.map_or(threads as f64 / workers as f64, |t| t as f64);
        let trained = self
            .finished
            .iter()
            .filter(|f| f.at_s > from && f.at_s <= to)
            .count();
        let span = (to - from).max(0.0);
        let (mut flops, mut train, mut thread_train) = (0.0, 0.0, 0.0);
        for f in &self.finished {
            let start = f.at_s - f.seconds;
            // The share of its wall time inside the window (all of it for an instant).
            let share = if f.seconds > 0.0 {
                overlap(start, f.at_s, from, to) / f.seconds
            } else if f.at_s > from && f.at_s <= to {
                1.0
            } else {
                0.0
            };
            flops += share * f.flops as f64;
            let sgd = share * f.phases.map_or(f.seconds, |p| p.train);
            train += sgd;
            thread_train += sgd * threads_of(f.threads);
        }
        for u in &self.unfinished {
            let inside = overlap(u.from, u.to, from, to);
            train += inside;
            thread_train += inside * threads_of(u.threads);
        }
        let capacity = span * workers as f64;
        let thread_capacity = span * threads as f64;
        Window {
            trained,
            flops,
            flops_per_s: if span > 0.0 { flops / span } else { 0.0 },
            training_share: if capacity > 0.0 {
                (train / capacity).min(1.0)
            } else {
                0.0
            },
            thread_training_share: if thread_capacity > 0.0 {
                (thread_train / thread_capacity).min(1.0)
            } else {
                0.0
            },
        }
    }

    /// Share of `[from, to]` in which at least one training of this node was running
    /// (its whole job: build, SGD, validation, save). The workers share one pool of
    /// training threads, so a lone training (the final training with one member, say)
    /// keeps the pool busy though the other workers wait. For one node's trace; average
    /// it over the nodes of islands.
    pub fn busy_share(&self, from: f64, to: f64) -> f64 {
        let span = to - from;
        if span <= 0.0 {
            return 0.0;
        }
        let mut spans: Vec<(f64, f64)> = self
            .finished
            .iter()
            .map(|f| (f.at_s - f.seconds, f.at_s))
            .chain(self.unfinished.iter().map(|u| (u.from, u.to)))
            .map(|(a, b)| (a.max(from), b.min(to)))
            .filter(|(a, b)| b > a)
            .collect();
        spans.sort_by(|x, y| x.0.total_cmp(&y.0));
        let (mut busy, mut reach) = (0.0, from);
        for (a, b) in spans {
            if b > reach {
                busy += b - a.max(reach);
                reach = b;
            }
        }
        (busy / span).min(1.0)
    }

    /// This trace and `other` as one experiment (islands): births and trainings of
    /// both, on the clock of whichever started first.
    pub fn merge(&self, other: &RunTrace) -> RunTrace {
        let start_ms = self.start_ms.min(other.start_ms);
        let shift = |t: &RunTrace| (t.start_ms - start_ms) as f64 / 1000.0;
        let mut merged = RunTrace {
            start_ms,
            ..RunTrace::default()
        };
        for t in [self, other] {
            let d = shift(t);
            merged
                .births
                .extend(t.births.iter().map(|(s, f)| (s + d, *f)));
            merged.finished.extend(t.finished.iter().map(|f| Finished {
                at_s: f.at_s + d,
                ..f.clone()
            }));
            merged
                .unfinished
                .extend(t.unfinished.iter().map(|u| Unfinished {
                    from: u.from + d,
                    to: u.to + d,
                    ..*u
                }));
            merged.last_s = merged.last_s.max(t.last_s + d);
        }
        merged
    }
}

/// Mean, smallest and largest of some values (one per seed).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// How many values.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// The smallest.
    pub min: f64,
    /// The largest.
    pub max: f64,
}

/// The spread of `values` (`None` for none).
pub fn spread(values: &[f64]) -> Option<Spread> {
    if values.is_empty() {
        return None;
    }
    let n = values.len();
    Some(Spread {
        n,
        mean: values.iter().sum::<f64>() / n as f64,
        min: values.iter().copied().fold(f64::INFINITY, f64::min),
        max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// One line of the plot: a name and (minutes, accuracy in percent) points.
pub use crate::plots::Series;

/// Draws `series` (best validation accuracy in percent against minutes, up to
/// `minutes`) as an SVG file.
pub fn plot_svg(
    path: &Path,
    title: &str,
    minutes: f64,
    series: &[Series],
) -> Result<(), BenchError> {
    let chart = crate::plots::Chart {
        title: title.to_string(),
        x_desc: "minutes".into(),
        y_desc: "best validation accuracy (%)".into(),
        log_x: false,
        // The x axis runs to the benchmark's end even where no line reaches it.
        x_max: Some(minutes.max(0.1)),
        marks: crate::plots::Marks::Lines,
        series: series.to_vec(),
    };
    chart.save_svg(path).map_err(|e| BenchError::Plot {
        path: e.path,
        reason: e.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ExperimentConfig;

    fn log(lines: &[Event]) -> String {
        lines
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    fn created(at_ms: u64) -> Event {
        let quick = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/quick-cifar10.toml");
        let settings = ExperimentConfig::load(Path::new(quick))
            .unwrap()
            .fitness_settings();
        Event::Created {
            at_ms,
            fingerprint: settings.fingerprint(),
            settings,
        }
    }

    fn birth(at_ms: u64, fitness: f64) -> Event {
        Event::Birth {
            at_ms,
            id: 0,
            parent: None,
            fitness: Some(fitness),
        }
    }

    fn started(at_ms: u64, id: u64) -> Event {
        started_on(at_ms, id, None)
    }

    fn started_on(at_ms: u64, id: u64, threads: Option<usize>) -> Event {
        Event::TrainingStarted {
            at_ms,
            id,
            parent: None,
            mutations: Vec::new(),
            node: "n".into(),
            threads,
        }
    }

    fn finished(at_ms: u64, id: u64, flops: u64, train: f64) -> Event {
        Event::TrainingFinished {
            at_ms,
            id,
            fitness: Some(0.1),
            flops,
            seconds: train + 1.0,
            phases: Some(PhaseSeconds {
                train,
                build: 0.5,
                validate: 0.5,
                save: 0.0,
            }),
        }
    }

    #[test]
    fn the_best_so_far_follows_the_births_and_a_torn_line_is_skipped() {
        let mut text = log(&[
            created(1_000),
            birth(3_000, 0.2),
            birth(5_000, 0.4),
            birth(7_000, 0.3),
        ]);
        text.push_str("{\"event\":\"birth\",\"at_");
        let t = RunTrace::parse(&text).unwrap();
        assert_eq!(t.best_at(1.0), None);
        assert_eq!(t.best_at(2.0), Some(0.2));
        assert_eq!(t.best_at(4.5), Some(0.4));
        assert_eq!(t.best_at(100.0), Some(0.4));
        assert_eq!(t.last_s, 6.0);
        assert!(RunTrace::parse(&log(&[birth(1, 0.5)])).is_none());
    }

    #[test]
    fn a_window_counts_the_part_of_each_training_inside_it() {
        // Trainings of 5, 7 and 6 wall seconds (one of them SGD steps less), back to
        // back: [0, 5], [5, 12], [12, 18].
        let t = RunTrace::parse(&log(&[
            created(0),
            started(0, 1),
            finished(5_000, 1, 100, 4.0),
            started(5_000, 2),
            finished(12_000, 2, 300, 6.0),
            started(12_000, 3),
            finished(18_000, 3, 500, 5.0),
        ]))
        .unwrap();
        assert!(t.unfinished.is_empty());
        let w = t.window(10.0, 20.0, 1, 1);
        assert_eq!(w.trained, 2);
        // 2 of the second's 7 seconds and all of the third are inside.
        let flops = 300.0 * 2.0 / 7.0 + 500.0;
        assert!((w.flops - flops).abs() < 1e-9, "{}", w.flops);
        assert!((w.flops_per_s - flops / 10.0).abs() < 1e-9);
        let train = 6.0 * 2.0 / 7.0 + 5.0;
        assert!((w.training_share - train / 10.0).abs() < 1e-12);
        let w = t.window(10.0, 20.0, 2, 2);
        assert!((w.training_share - train / 20.0).abs() < 1e-12);
        assert_eq!(t.window(20.0, 20.0, 1, 1).flops_per_s, 0.0);
        let whole = t.window(0.0, 18.0, 1, 1);
        assert_eq!(whole.trained, 3);
        assert!((whole.flops - 900.0).abs() < 1e-9);
        assert!((whole.training_share - 15.0 / 18.0).abs() < 1e-12);
    }

    #[test]
    fn trainings_that_never_finished_count_as_training_while_they_ran() {
        let t = RunTrace::parse(&log(&[
            created(0),
            started(0, 1),
            finished(6_000, 1, 100, 5.0),
            started(6_000, 2),
            started(6_000, 3),
            Event::TrainingFailed {
                at_ms: 7_000,
                id: 3,
                reason: "diverged".into(),
            },
            birth(10_000, 0.5),
        ]))
        .unwrap();
        // Number 3 failed after a second; number 2 still runs at the last event.
        let spans: Vec<(f64, f64)> = t.unfinished.iter().map(|u| (u.from, u.to)).collect();
        assert_eq!(spans, vec![(6.0, 7.0), (6.0, 10.0)]);
        // The first: 5 of its 6 seconds SGD; then two workers training.
        let w = t.window(0.0, 10.0, 2, 2);
        assert_eq!(w.trained, 1);
        assert!((w.training_share - (5.0 + 1.0 + 4.0) / 20.0).abs() < 1e-12);
        let w = t.window(5.0, 10.0, 2, 2);
        assert!((w.training_share - (5.0 / 6.0 + 1.0 + 4.0) / 10.0).abs() < 1e-12);
        let w = t.window(8.0, 10.0, 2, 2);
        assert!((w.training_share - 2.0 / 4.0).abs() < 1e-12);
    }

    #[test]
    fn the_thread_share_weighs_each_training_by_its_threads() {
        // Two workers, two threads: two breeding trainings on a thread each, [0, 10],
        // 8 s of SGD each; then one final training on both threads, [10, 20], 9 s of
        // SGD, while the other worker waits.
        let t = RunTrace::parse(&log(&[
            created(0),
            started_on(0, 1, Some(1)),
            started_on(0, 2, Some(1)),
            finished(10_000, 1, 100, 8.0),
            finished(10_000, 2, 100, 8.0),
            started_on(10_000, 3, Some(2)),
            finished(20_000, 3, 100, 9.0),
        ]))
        .unwrap();
        assert_eq!(t.finished[2].threads, Some(2));
        let w = t.window(0.0, 10.0, 2, 2);
        assert!((w.training_share - 0.8).abs() < 1e-12);
        assert!((w.thread_training_share - 0.8).abs() < 1e-12);
        // The worker share halves; the threads were training 90% of the time.
        let w = t.window(10.0, 20.0, 2, 2);
        assert!((w.training_share - 0.45).abs() < 1e-12);
        assert!((w.thread_training_share - 0.9).abs() < 1e-12);
        // A log without threads: each training had its worker's even share.
        let old = RunTrace::parse(&log(&[
            created(0),
            started(0, 1),
            finished(10_000, 1, 100, 9.0),
        ]))
        .unwrap();
        let w = old.window(0.0, 10.0, 2, 2);
        assert!((w.thread_training_share - w.training_share).abs() < 1e-12);
        // An unfinished training on both threads keeps them all training.
        let open = RunTrace::parse(&log(&[
            created(0),
            started_on(0, 1, Some(2)),
            birth(10_000, 0.5),
        ]))
        .unwrap();
        assert!((open.window(0.0, 10.0, 2, 2).thread_training_share - 1.0).abs() < 1e-12);
    }

    #[test]
    fn the_pool_is_busy_while_any_training_runs() {
        // [0, 6] finished; [6, 7] failed and [6, 10] unfinished overlap; nothing after 10.
        let t = RunTrace::parse(&log(&[
            created(0),
            started(0, 1),
            finished(6_000, 1, 100, 5.0),
            started(6_000, 2),
            started(6_000, 3),
            Event::TrainingFailed {
                at_ms: 7_000,
                id: 3,
                reason: "diverged".into(),
            },
            birth(10_000, 0.5),
        ]))
        .unwrap();
        assert!((t.busy_share(0.0, 10.0) - 1.0).abs() < 1e-12);
        // Two overlapping trainings count once.
        assert!((t.busy_share(5.0, 10.0) - 1.0).abs() < 1e-12);
        assert!((t.busy_share(0.0, 20.0) - 0.5).abs() < 1e-12);
        assert!((t.busy_share(8.0, 12.0) - 0.5).abs() < 1e-12);
        assert_eq!(t.busy_share(3.0, 3.0), 0.0);
        // A gap between trainings is idle.
        let gap = RunTrace::parse(&log(&[
            created(0),
            started(0, 1),
            finished(2_000, 1, 1, 1.0),
            started(4_000, 2),
            finished(6_000, 2, 1, 1.0),
        ]))
        .unwrap();
        assert!((gap.busy_share(0.0, 6.0) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn merged_islands_share_the_earlier_clock() {
        let a = RunTrace::parse(&log(&[created(0), birth(10_000, 0.3)])).unwrap();
        let b = RunTrace::parse(&log(&[created(2_000), birth(4_000, 0.5)])).unwrap();
        let m = a.merge(&b);
        assert_eq!(m.best_at(3.9), None);
        assert_eq!(m.best_at(4.0), Some(0.5));
        assert_eq!(m.last_s, 10.0);
    }

    #[test]
    fn spread_gives_mean_min_and_max() {
        assert_eq!(spread(&[]), None);
        let s = spread(&[0.5, 0.7, 0.6]).unwrap();
        assert_eq!((s.n, s.min, s.max), (3, 0.5, 0.7));
        assert!((s.mean - 0.6).abs() < 1e-12);
    }

    #[test]
    fn the_plot_is_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plot.svg");
        let series = vec![
            Series {
                name: "seed 0".into(),
                points: vec![(0.0, 10.0), (1.0, 30.0), (2.0, 42.5)],
                dashed: false,
            },
            Series {
                name: "small".into(),
                points: vec![(0.0, 55.0), (2.0, 55.0)],
                dashed: true,
            },
        ];
        plot_svg(&path, "test", 2.0, &series).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        assert!(svg.contains("seed 0") && svg.contains("small"));
        assert!(svg.matches("<polyline").count() + svg.matches("<path").count() >= 2);
    }
}
