//! When a run stops, and how it ends. The conditions are plain functions of the config's
//! `[stop]` and a few figures of the run ([`RunFigures`]): [`stop_at_once`] (the
//! wall-time limit, a target accuracy) abandons the trainings in flight; [`stop_starting`]
//! (a number of individuals, of FLOPs) starts nothing new and lets them finish. With a
//! final training ([`crate::finale`]) the wall-time limit is of the second kind, and of
//! the first a grace period later.

use super::{RunEnd, Shard};
use crate::config::StopSection;
use crate::finale;
use crate::population::IndividualId;
use crate::state::{now_ms, Event, StateError};

/// What the stop conditions look at.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunFigures {
    /// Wall time of the run so far (summed over resumed sessions), minutes.
    pub run_minutes: f64,
    /// The best validation accuracy of a live member, if any.
    pub best_fitness: Option<f64>,
    /// Individuals trained or in training.
    pub individuals: u64,
    /// FLOPs spent training and validating.
    pub total_flops: f64,
}

/// Whether `stop` has a final training, which lets the wall-time limit wait for it.
fn has_final_training(stop: &StopSection) -> bool {
    finale::starts_at(stop.max_wall_minutes, stop.final_training_share).is_some()
}

/// A condition met that ends the run at once (the trainings in flight are abandoned):
/// why, or `None`.
pub fn stop_at_once(stop: &StopSection, run: &RunFigures) -> Option<String> {
    if let Some(max) = stop.max_wall_minutes {
        let grace = if has_final_training(stop) {
            finale::grace_minutes(max)
        } else {
            0.0
        };
        if run.run_minutes >= max + grace {
            return Some(format!("reached the wall-time limit of {max} minutes"));
        }
    }
    if let (Some(target), Some(best)) = (stop.target_accuracy, run.best_fitness) {
        if best >= target {
            return Some(format!(
                "reached the target validation accuracy {target} ({best:.4})"
            ));
        }
    }
    None
}

/// A condition met after which no new training starts (the run ends once those in
/// flight finish): why, or `None`.
pub fn stop_starting(stop: &StopSection, run: &RunFigures) -> Option<String> {
    if let Some(max) = stop.max_wall_minutes {
        if has_final_training(stop) && run.run_minutes >= max {
            return Some(format!("reached the wall-time limit of {max} minutes"));
        }
    }
    if let Some(max) = stop.max_individuals {
        if run.individuals >= max {
            return Some(format!("trained {max} individuals"));
        }
    }
    if let Some(max) = stop.max_total_flops {
        if run.total_flops >= max {
            return Some(format!("spent {max:e} FLOPs"));
        }
    }
    None
}

impl Shard {
    /// What the stop conditions look at, now.
    fn figures(&self) -> RunFigures {
        RunFigures {
            run_minutes: self.run_minutes(),
            best_fitness: self.population.best().and_then(|m| m.fitness),
            individuals: (self.records.len() + self.in_flight.len()) as u64,
            total_flops: self.total_flops,
        }
    }

    /// Whether the run is in its final training (`stop.final_training_share`).
    pub(super) fn in_final_training(&self) -> bool {
        let stop = &self.config.stop;
        finale::is_final(
            self.run_minutes(),
            stop.max_wall_minutes,
            stop.final_training_share,
        )
    }

    /// A condition after which no new training starts ([`stop_starting`]).
    pub(super) fn budget_spent(&self) -> Option<String> {
        stop_starting(&self.config.stop, &self.figures())
    }

    /// Checks the stop conditions; ends the run if one is met.
    pub(super) fn check_stop(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        if let Some(reason) = stop_at_once(&self.config.stop, &self.figures()) {
            self.finish(reason, None);
        } else if self.in_flight.is_empty() {
            if let Some(reason) = self.budget_spent() {
                self.finish(reason, None);
            }
        }
    }

    /// Ends the run: abandons the trainings in flight, logs the stop, reports the end.
    pub(super) fn finish(&mut self, reason: String, error: Option<String>) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(reason.clone());
        let now = now_ms();
        let abandoned: Vec<IndividualId> = self.in_flight.keys().copied().collect();
        // The run ends whatever happens here; what cannot be logged is said instead.
        let mut unlogged = Vec::new();
        for id in abandoned {
            self.in_flight.remove(&id);
            let _ = self.population.kill(id);
            if let Err(e) = self.state.append(&Event::TrainingFailed {
                at_ms: now,
                id,
                reason: format!("abandoned: the run stopped ({reason})"),
            }) {
                unlogged.push(e);
            }
        }
        if let Err(e) = self.state.append(&Event::Stopped {
            at_ms: now,
            reason: match &error {
                Some(e) => format!("{reason}: {e}"),
                None => reason.clone(),
            },
        }) {
            unlogged.push(e);
        }
        self.reporter.finish();
        if let Some(e) = unlogged.first() {
            self.reporter.line(&format!(
                "{} events of the end could not be logged: {e}",
                unlogged.len()
            ));
        }
        self.reporter.line(&format!("stopping: {reason}"));
        self.reporter
            .json(serde_json::json!({"event": "stopped", "reason": reason, "error": error}));
        let status = self.status();
        if let Some(done) = self.done.take() {
            let _ = done.send(RunEnd {
                reason,
                error,
                status,
            });
        }
    }

    /// A write to the state directory failed: nothing more can be kept safely.
    pub(super) fn fatal(&mut self, error: StateError) {
        self.finish(
            "the state directory could not be written".into(),
            Some(error.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(run_minutes: f64) -> RunFigures {
        RunFigures {
            run_minutes,
            ..RunFigures::default()
        }
    }

    #[test]
    fn with_no_condition_set_a_run_never_stops() {
        let stop = StopSection::default();
        let huge = RunFigures {
            run_minutes: 1e9,
            best_fitness: Some(1.0),
            individuals: u64::MAX,
            total_flops: f64::MAX,
        };
        assert_eq!(stop_at_once(&stop, &huge), None);
        assert_eq!(stop_starting(&stop, &huge), None);
    }

    #[test]
    fn the_wall_time_limit_stops_at_once_without_a_final_training() {
        let stop = StopSection {
            max_wall_minutes: Some(10.0),
            ..StopSection::default()
        };
        assert_eq!(stop_at_once(&stop, &at(9.99)), None);
        let why = stop_at_once(&stop, &at(10.0)).unwrap();
        assert!(why.contains("wall-time limit of 10 minutes"), "{why}");
        assert_eq!(stop_starting(&stop, &at(10.0)), None);
    }

    #[test]
    fn with_a_final_training_the_limit_lets_it_finish_for_a_grace_period() {
        let stop = StopSection {
            max_wall_minutes: Some(10.0),
            final_training_share: 0.3,
            ..StopSection::default()
        };
        assert_eq!(stop_starting(&stop, &at(9.9)), None);
        assert!(stop_starting(&stop, &at(10.0)).is_some());
        // The grace: half a minute for a 10-minute run.
        assert_eq!(stop_at_once(&stop, &at(10.4)), None);
        assert!(stop_at_once(&stop, &at(10.5)).is_some());
    }

    #[test]
    fn the_target_accuracy_stops_at_once_and_the_budgets_start_nothing_new() {
        let stop = StopSection {
            target_accuracy: Some(0.5),
            max_individuals: Some(10),
            max_total_flops: Some(1e12),
            ..StopSection::default()
        };
        let run = |best: Option<f64>, individuals: u64, total_flops: f64| RunFigures {
            run_minutes: 1.0,
            best_fitness: best,
            individuals,
            total_flops,
        };
        assert_eq!(stop_at_once(&stop, &run(None, 0, 0.0)), None);
        assert_eq!(stop_at_once(&stop, &run(Some(0.49), 0, 0.0)), None);
        assert!(stop_at_once(&stop, &run(Some(0.5), 0, 0.0)).is_some());
        assert_eq!(stop_starting(&stop, &run(None, 9, 9e11)), None);
        let why = stop_starting(&stop, &run(None, 10, 0.0)).unwrap();
        assert!(why.contains("trained 10 individuals"), "{why}");
        let why = stop_starting(&stop, &run(None, 0, 1e12)).unwrap();
        assert!(why.contains("FLOPs"), "{why}");
    }
}
