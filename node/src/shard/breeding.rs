//! Breeding: what a worker that asks for work gets (a migrant to score, an initial
//! individual, a child of a tournament's winner, or in the final training a copy of one
//! of the best), and what becomes of what it trained (a birth, or a failure).

use super::{
    individual_seed, node_seed, percent, shape_of, InFlight, Shard, WorkerState,
    FINAL_STEPS_UNKNOWN, MAX_CONSECUTIVE_FAILURES, WAIT,
};
use crate::budget::{child_steps, cost_factor, stall_factor, Budget};
use crate::finale;
use crate::memory_budget::{fit, gib, Fit};
use crate::messages::{Assignment, Check, Job, Trained};
use crate::population::{Decision, IndividualId};
use crate::state::{now_ms, Event, Record, StateError, Status};
use crate::view::WorkerActivity;
use genome::{reproduce_with_style, Genome, Invalidated, MemoryEstimate, Mutation};
use trainer::TrainConfig;

impl Shard {
    pub(super) fn next_job(&mut self, worker: usize) -> Assignment {
        if self.stopping.is_some() || self.leaving.is_some() {
            return Assignment::Stop;
        }
        self.check_stop();
        if self.stopping.is_some() {
            return Assignment::Stop;
        }
        if self.budget_spent().is_some() {
            self.set_idle(worker, "waiting for the last trainings");
            return Assignment::Wait(WAIT);
        }
        if self.in_final_training() {
            return self.start_final(worker);
        }
        if let Some(arrival) = self.arrivals.pop_front() {
            let id = arrival.id;
            if let Some(w) = self.workers.get_mut(worker) {
                *w = WorkerState {
                    state: WorkerActivity::Checking,
                    individual: Some(id),
                    step: 0,
                    steps: 0,
                    loss: None,
                };
            }
            self.checking.insert(id, arrival);
            return Assignment::Check(Check {
                id,
                dir: self.state.individual_dir(id),
                threads: self.worker_threads(),
            });
        }
        if self.initial_made() < self.config.evolution.initial_population
            && !self.population.is_full()
        {
            return self.start(worker, None, None);
        }
        // Each kill shrinks the population, so this ends within a population's worth.
        for _ in 0..=self.population.target_size() + 1 {
            let shapes = &self.shapes;
            let cost = |id| shapes.get(&id).map(|s| s.forward_flops);
            match self.population.select_with_costs(&mut self.rng, cost) {
                Decision::Kill(id) => {
                    if let Err(e) = self.kill(id) {
                        self.fatal(e);
                        return Assignment::Stop;
                    }
                }
                Decision::Reproduce { parent } => return self.start(worker, Some(parent), None),
                Decision::Wait => break,
            }
        }
        self.set_idle(worker, "waiting for trained individuals");
        Assignment::Wait(WAIT)
    }

    pub(super) fn set_idle(&mut self, worker: usize, why: &str) {
        if let Some(w) = self.workers.get_mut(worker) {
            if w.state != WorkerActivity::Idle {
                self.reporter.idle(worker, why);
            }
            w.state = WorkerActivity::Idle;
            w.individual = None;
        }
    }

    /// Hands `worker` a final training: a copy of the best member not yet taken, trained
    /// until shortly before the wall-time limit; or a wait when none is left or too
    /// little time is.
    pub(super) fn start_final(&mut self, worker: usize) -> Assignment {
        let Some(max) = self.config.stop.max_wall_minutes else {
            return Assignment::Wait(WAIT);
        };
        self.begin_final();
        if !finale::another_member(self.config.stop.final_training_members, self.final_started) {
            if let Some(job) = self.start_final_variant(worker, max) {
                return job;
            }
            self.set_idle(worker, "final training: its members are all in training");
            return Assignment::Wait(WAIT);
        }
        let peers = self.peers_of_experiment();
        let ranked = self.population.ranked();
        let chosen = finale::cheapest_near_best(
            &self.final_candidates(&ranked),
            self.config.stop.final_training_cheapest_within,
        );
        let order = finale::islands_apart(chosen, |id| self.home_trains(id, &peers));
        let Some(parent) = finale::next_parent(order, &self.final_taken) else {
            self.set_idle(worker, "final training: no member left to train");
            return Assignment::Wait(WAIT);
        };
        let Some(seconds) = self.final_seconds(parent, max) else {
            self.set_idle(worker, "final training: too little time left");
            return Assignment::Wait(WAIT);
        };
        if self.final_started == 0 {
            self.report_final_choice(parent, &ranked);
        }
        self.final_taken.insert(parent);
        self.final_members.push(parent);
        self.final_started += 1;
        let best = self.final_members[0];
        let copy = finale::FinalCopy {
            seconds,
            augment: None,
            threads: self.final_threads(self.variant_on_spare_worker(best)),
        };
        self.start(worker, Some(parent), Some(copy))
    }

    /// The members of `ranked` (best first) with their fitness and forward FLOPs per
    /// image, for [`finale::cheapest_near_best`].
    fn final_candidates(&self, ranked: &[IndividualId]) -> Vec<finale::Candidate> {
        let limits = self.config.evolution.limits;
        ranked
            .iter()
            .filter_map(|&id| {
                let fitness = self.population.get(id)?.fitness?;
                let flops = self
                    .records
                    .get(&id)
                    .and_then(|r| r.genome.analyze(&limits).ok())
                    .map(|a| a.cost.forward_flops);
                Some(finale::Candidate { id, fitness, flops })
            })
            .collect()
    }

    /// Says which member the final training takes first where
    /// `stop.final_training_cheapest_within` chose a cheaper one near the best (not where
    /// the best is an immigrant its home island trains, `finale::islands_apart`).
    fn report_final_choice(&mut self, chosen: IndividualId, ranked: &[IndividualId]) {
        let Some(&best) = ranked.first() else {
            return;
        };
        if chosen == best {
            return;
        }
        let margin = self.config.stop.final_training_cheapest_within;
        let candidates = self.final_candidates(&[best, chosen]);
        let [b, c] = candidates.as_slice() else {
            return;
        };
        if c.fitness < b.fitness - margin {
            return;
        }
        let mflops =
            |f: Option<u64>| f.map_or("?".to_string(), |f| format!("{:.1}", f as f64 / 1e6));
        self.reporter.line(&format!(
            "final training: #{} ({:.2}%, {} MFLOPs per image) rather than the best, #{} ({:.2}%, {} MFLOPs): the cheapest within {} points of it",
            c.id,
            100.0 * c.fitness,
            mflops(c.flops),
            b.id,
            100.0 * b.fitness,
            mflops(b.flops),
            100.0 * margin,
        ));
        self.reporter.json(serde_json::json!({
            "event": "final_choice",
            "chosen": c.id, "chosen_fitness": c.fitness, "chosen_flops": c.flops,
            "best": b.id, "best_fitness": b.fitness, "best_flops": b.flops,
        }));
    }

    /// Whether `id` is an immigrant whose home island is one of `peers` (the connected
    /// peers of the experiment), so that island's final training can train it.
    fn home_trains(&self, id: IndividualId, peers: &[String]) -> bool {
        self.records
            .get(&id)
            .and_then(|r| r.origin.as_ref())
            .is_some_and(|origin| peers.contains(&origin.island))
    }

    /// The CPU threads of one worker's training: the pool's equal share.
    pub(super) fn worker_threads(&self) -> usize {
        trainer::threads::share(trainer::threads::count(), self.workers.len())
    }

    /// The CPU threads of a final training: the pool's share among the final trainings
    /// that run at once (the members, and the variant if `variant_due`), so that idle
    /// workers' threads go to them.
    fn final_threads(&self, variant_due: bool) -> usize {
        let at_once = finale::concurrent_trainings(
            self.workers.len(),
            self.config.stop.final_training_members,
            variant_due,
        );
        trainer::threads::share(trainer::threads::count(), at_once)
    }

    /// Whether a spare worker trains a second copy of `best` with another augmentation
    /// (its variant is due and not tried within the final training instead).
    fn variant_on_spare_worker(&self, best: IndividualId) -> bool {
        self.config.stop.final_training_augment_probe_share <= 0.0
            && self.final_variant(best).is_some()
    }

    /// The augmentation a second copy of `best` trains with, if
    /// `stop.final_training_augment_variant` asks for one and `best`'s gene differs from
    /// the experiment's augmentation.
    fn final_variant(&self, best: IndividualId) -> Option<genome::AugmentGene> {
        // With augmentation off altogether the gene changes nothing.
        if !self.config.stop.final_training_augment_variant || !self.config.training.augment.enabled
        {
            return None;
        }
        let gene = self.records.get(&best)?.genome.augment;
        finale::augment_variant(gene, self.configured_augmentation())
    }

    /// Begins the final training once its time has come (from a worker asking for work,
    /// or the shard's clock while every worker is busy): says so, and abandons the
    /// breeding trainings in flight. Does nothing before its time or a second time.
    pub(super) fn begin_final(&mut self) {
        if self.final_begun || self.stopping.is_some() || !self.in_final_training() {
            return;
        }
        let Some(max) = self.config.stop.max_wall_minutes else {
            return;
        };
        self.final_begun = true;
        let who = match self.config.stop.final_training_members {
            0 => "each worker trains a copy of one of the best".to_string(),
            1 => "a copy of the best trains".to_string(),
            n => format!("copies of the {n} best train"),
        };
        let line =
            format!("final training: no more breeding; {who} until the limit of {max} minutes");
        self.reporter.line(&line);
        self.reporter
            .json(serde_json::json!({"event": "final_training", "at_minutes": self.run_minutes()}));
        self.abandon_breeding();
    }

    /// The seconds of SGD a final training of `parent` gets now, `None` when too few
    /// are left (its own build, validation and save, or a default, are set aside).
    fn final_seconds(&self, parent: IndividualId, max_wall_minutes: f64) -> Option<f64> {
        let outside_sgd = self
            .records
            .get(&parent)
            .and_then(|r| r.phases)
            .map(|p| p.build + p.validate + p.save);
        let remaining_s = (max_wall_minutes - self.run_minutes()) * 60.0;
        finale::training_seconds(remaining_s, finale::overhead_seconds(outside_sgd))
    }

    /// With `stop.final_training_augment_variant`, a worker the members left free trains
    /// a second copy of the best member with the experiment's augmentation, where the
    /// member's gene differs from it (once per run); `None` otherwise.
    fn start_final_variant(&mut self, worker: usize, max_wall_minutes: f64) -> Option<Assignment> {
        if self.final_variant_decided {
            return None;
        }
        let best = *self.final_members.first()?;
        self.final_variant_decided = true;
        if !self.variant_on_spare_worker(best) {
            return None;
        }
        let augment = self.final_variant(best)?;
        let seconds = self.final_seconds(best, max_wall_minutes)?;
        let copy = finale::FinalCopy {
            seconds,
            augment: Some(augment),
            threads: self.final_threads(true),
        };
        Some(self.start(worker, Some(best), Some(copy)))
    }

    /// The augmentation `[training.augment]` gives, as a gene: what the initial
    /// individuals start with.
    fn configured_augmentation(&self) -> genome::AugmentGene {
        self.config.training.augment.as_gene()
    }

    /// When the final training begins: the breeding trainings in flight are abandoned
    /// (cancelled, logged as failed, their folders removed when their workers report),
    /// so that their threads go to the final training and it starts at once.
    fn abandon_breeding(&mut self) {
        let breeding: Vec<IndividualId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| !f.is_final)
            .map(|(id, _)| *id)
            .collect();
        for id in breeding {
            if !self.abandon(id, "abandoned: the final training began", "final training") {
                return;
            }
        }
    }

    /// With `training.child_time_cap`: abandons the breeding training of `id` if, having
    /// done `step` of its `steps`, its pace would take it past the cap
    /// ([`crate::time_cap`]).
    pub(super) fn enforce_time_cap(&mut self, id: IndividualId, step: u64, steps: u64) {
        let Some(cap) = crate::time_cap::child_time_cap(
            self.config.training.child_time_cap,
            self.config.stop.max_wall_minutes,
            self.config.stop.final_training_share,
        ) else {
            return;
        };
        let Some(flight) = self.in_flight.get(&id).filter(|f| !f.is_final) else {
            return;
        };
        let elapsed = now_ms().saturating_sub(flight.born_at_ms) as f64 / 1000.0;
        if !crate::time_cap::over_time_cap(elapsed, step, steps, cap) {
            return;
        }
        let projected = crate::time_cap::projected_seconds(elapsed, step, steps);
        let reason = format!(
            "abandoned: too slow ({projected:.0} s at the pace of its first {step} steps, over the cap of {cap:.0} s per child)"
        );
        self.abandon(id, &reason, "too slow");
    }

    /// Stops the breeding training of `id`: cancelled, killed, logged as failed with
    /// `reason` (`short` in the JSON event); its folder is removed when its worker
    /// reports. False where the state could not be written (the node then stops).
    fn abandon(&mut self, id: IndividualId, reason: &str, short: &str) -> bool {
        let Some(flight) = self.in_flight.remove(&id) else {
            return true;
        };
        flight.cancel.cancel();
        let _ = self.population.kill(id);
        let logged = self.state.append(&Event::TrainingFailed {
            at_ms: now_ms(),
            id,
            reason: reason.into(),
        });
        self.reporter.line(&format!("#{id} {reason}"));
        self.reporter
            .json(serde_json::json!({"event": "training_abandoned", "id": id, "reason": short}));
        if let Err(e) = logged {
            self.fatal(e);
            return false;
        }
        true
    }

    /// Starts training an initial individual (`parent` `None`) or a child of `parent`:
    /// a mutated one, or with `final_copy` a copy trained for its seconds with one
    /// cosine decay (the final training): unchanged (IDENTITY), or with another
    /// augmentation (ALTER-AUGMENTATION).
    pub(super) fn start(
        &mut self,
        worker: usize,
        parent: Option<IndividualId>,
        final_copy: Option<finale::FinalCopy>,
    ) -> Assignment {
        let final_seconds = final_copy.map(|c| c.seconds);
        let limits = self.config.evolution.limits;
        let mut augment_probe = None;
        let mut augment_judge = None;
        let (genome, mutations, invalidated, inits, parent_tensors) = match parent {
            None => (
                self.initial_genome(),
                Vec::new(),
                Invalidated::none(),
                Vec::new(),
                None,
            ),
            Some(p) if final_seconds.is_some() => {
                let Some(mut parent_genome) = self.records.get(&p).map(|r| r.genome.clone()) else {
                    return Assignment::Wait(WAIT);
                };
                let augment = final_copy.and_then(|c| c.augment);
                if augment.is_some() {
                    parent_genome.augment = augment;
                } else if self.config.stop.final_training_augment_variant
                    && self.config.training.augment.enabled
                {
                    augment_probe = finale::augment_probe(
                        parent_genome.augment,
                        self.configured_augmentation(),
                        self.config.stop.final_training_augment_probe_share,
                        self.config.stop.final_training_augment_probe_margin,
                        final_seconds.unwrap_or(0.0),
                    );
                }
                let weights = self.config.stop.final_training_weights;
                // A fresh copy (stop.final_training_weights) trains the member's network
                // from new weights; the member's are read only where its augmentation
                // probe judges the genes from them.
                let inherits = finale::inherits_weights(weights);
                let tensors = if inherits || augment_probe.is_some() {
                    let dir = self.state.individual_dir(p);
                    match trainer::individual::load_tensors(&dir, &self.cpu) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            self.reporter.line(&format!(
                                "the weights of #{p} could not be read ({e}); it is not trained further"
                            ));
                            return Assignment::Wait(WAIT);
                        }
                    }
                } else {
                    None
                };
                let tensors = if inherits {
                    tensors
                } else {
                    augment_judge = tensors;
                    None
                };
                (
                    parent_genome,
                    finale::copy_mutations(augment.is_some(), weights),
                    Invalidated::none(),
                    Vec::new(),
                    tensors,
                )
            }
            Some(p) => {
                let Some(parent_genome) = self.records.get(&p).map(|r| r.genome.clone()) else {
                    return Assignment::Wait(WAIT);
                };
                let repro = match reproduce_with_style(
                    &parent_genome,
                    self.config.evolution.mutations_per_reproduction,
                    &mut self.rng,
                    &limits,
                    self.config.evolution.mutation_options(),
                    &self.mutation_weights,
                ) {
                    Ok(r) => r,
                    Err(e) => {
                        self.reporter
                            .line(&format!("could not mutate #{p}: {e}; drawing again"));
                        return Assignment::Wait(WAIT);
                    }
                };
                let dir = self.state.individual_dir(p);
                let tensors = match trainer::individual::load_tensors(&dir, &self.cpu) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.reporter.line(&format!(
                            "the weights of #{p} could not be read ({e}); its child starts from fresh weights"
                        ));
                        None
                    }
                };
                let invalidated = repro.invalidated();
                let inits = repro.inits();
                let mutations = repro.applied.iter().map(|a| a.mutation).collect();
                (repro.child, mutations, invalidated, inits, tensors)
            }
        };
        let device = worker % self.memory_budgets.len();
        // A final training may widen its member (its width probe): as far as the
        // device's memory allows, and it reserves the widest.
        let widest = match final_seconds {
            Some(_) => self.widest_that_fits(&genome, device),
            None => (0, None),
        };
        let width_probe = final_seconds.and_then(|seconds| {
            finale::width_probe(
                widest.0,
                (
                    self.config.stop.final_training_widen_min_epochs,
                    self.config.stop.final_training_widen_epochs_in,
                ),
                limits,
                seconds,
            )
        });
        // Does it fit the device beside the trainings in flight?
        let memory = widest.1.unwrap_or_else(|| self.training_memory(&genome));
        let used: u64 = self
            .in_flight
            .values()
            .filter(|f| f.device == device)
            .map(|f| f.memory)
            .sum();
        match fit(self.memory_budgets[device], used, memory) {
            Fit::Start => {}
            Fit::Wait => {
                // Nothing is lost: the parent is chosen again (or another) once a
                // training in flight has finished.
                self.set_idle(worker, "waiting for device memory");
                return Assignment::Wait(WAIT);
            }
            Fit::TooLarge { needs, budget } => {
                self.too_large(parent, mutations, needs, budget);
                return Assignment::Wait(WAIT);
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let born_at_ms = now_ms();
        if let Err(e) = self.population.add(id, None) {
            self.finish("the population is inconsistent".into(), Some(e.to_string()));
            return Assignment::Stop;
        }
        let threads = final_copy.map_or_else(|| self.worker_threads(), |c| c.threads);
        if let Err(e) = self.state.append(&Event::TrainingStarted {
            at_ms: born_at_ms,
            id,
            parent,
            mutations: mutations.clone(),
            node: self.node_id.clone(),
            threads: Some(threads),
        }) {
            self.fatal(e);
            return Assignment::Stop;
        }
        // A fresh final copy of a member evolved at a rate below the floor trains at
        // factors of the floor.
        let rate_scale = finale::fresh_rate_scale(
            genome.learning_rate,
            self.config.stop.final_training_fresh_min_rate,
            self.config.stop.final_training_weights,
        );
        let what = match (parent, final_seconds) {
            (Some(p), Some(seconds)) => {
                let widened = match &width_probe {
                    Some(w) => format!(
                        ", as much as x{} wider (the widest whose timed pace gives {} epochs{})",
                        1u64 << w.max_rounds.min(16),
                        w.min_epochs,
                        match w.epochs_in {
                            trainer::width_probe::EpochsIn::TimeLeft => "",
                            trainer::width_probe::EpochsIn::MainTraining => " of its main training",
                        }
                    ),
                    None => String::new(),
                };
                let trial = match (&augment_probe, &augment_judge) {
                    (Some(probe), None) => format!(
                        ", first {:.0} s each with its own augmentation and the experiment's",
                        probe.seconds
                    ),
                    (Some(probe), Some(_)) => format!(
                        ", its augmentation judged first by {:.0} s each from its own weights with its own and the experiment's",
                        probe.seconds
                    ),
                    (None, _) => String::new(),
                };
                let fresh = if finale::inherits_weights(self.config.stop.final_training_weights) {
                    String::new()
                } else if rate_scale > 1.0 {
                    format!(
                        " from fresh weights at factors of {} rather than of its own rate {:.4}",
                        self.config.stop.final_training_fresh_min_rate, genome.learning_rate
                    )
                } else {
                    " from fresh weights".to_string()
                };
                match final_copy.and_then(|c| c.augment) {
                    None => format!(
                        "final training of #{p}{fresh} for {seconds:.0} s{widened}{trial}"
                    ),
                    Some(a) => format!(
                        "final training of #{p}{fresh} for {seconds:.0} s{widened} with the experiment's augmentation (crop {}, flip {})",
                        on_off(a.crop),
                        on_off(a.flip)
                    ),
                }
            }
            (None, _) => "initial".to_string(),
            (Some(p), None) => format!(
                "from #{p} by {}",
                mutations
                    .iter()
                    .map(|m: &Mutation| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let t = &self.config.training;
        let earlier_children = parent.map(|p| {
            self.records
                .values()
                .filter(|r| r.parent == Some(p))
                .count()
        });
        let steps = match (final_seconds, parent) {
            // Twice the steps the parent's pace would fit, so that the time ends it.
            (Some(seconds), Some(p)) => {
                self.sgd_rates.get(&p).map_or(FINAL_STEPS_UNKNOWN, |rate| {
                    ((2.0 * rate * seconds).ceil() as u64).clamp(t.steps, FINAL_STEPS_UNKNOWN)
                })
            }
            _ => child_steps(
                t.budget,
                t.steps,
                t.budget_max_factor,
                t.budget_min_factor,
                earlier_children,
                self.budget_factor(&genome),
            ),
        };
        if final_seconds.is_some() {
            self.final_taken.insert(id);
        }
        self.reporter.started(worker, id, &what, steps);
        self.reporter.json(serde_json::json!({
            "event": "training_started", "worker": worker, "id": id, "parent": parent,
            "mutations": mutations, "steps": steps,
        }));
        if let Some(w) = self.workers.get_mut(worker) {
            *w = WorkerState {
                state: WorkerActivity::Training,
                individual: Some(id),
                step: 0,
                steps,
                loss: None,
            };
        }
        let cancel = trainer::Cancel::new();
        self.in_flight.insert(
            id,
            InFlight {
                genome: genome.clone(),
                parent,
                mutations,
                born_at_ms,
                memory,
                device,
                cancel: cancel.clone(),
                is_final: final_seconds.is_some(),
            },
        );
        let seed = individual_seed(node_seed(self.config.experiment.seed, &self.node_id), id);
        Assignment::Train(Box::new(Job {
            id,
            genome,
            invalidated,
            inits,
            parent_tensors,
            augment_judge,
            seed,
            dir: self.state.individual_dir(id),
            config: match final_seconds {
                Some(seconds) => TrainConfig {
                    steps,
                    max_seconds: Some(seconds),
                    schedule: trainer::train::Schedule::Cosine,
                    lr_scale: self.config.stop.final_training_lr_factor * rate_scale,
                    rate_probe: finale::rate_probe(
                        &self.config.stop.final_training_lr_probe,
                        rate_scale,
                        self.config.stop.final_training_probe_share,
                        seconds,
                    ),
                    augment_probe,
                    width_probe,
                    cancel: Some(cancel),
                    ..self.config.training.train_config(seed)
                },
                None => TrainConfig {
                    steps,
                    cancel: Some(cancel),
                    ..self.config.training.train_config(seed)
                },
            },
            threads,
        }))
    }

    /// A child that needs more memory than the device has for trainings even alone: it
    /// gets an id and fails at once, logged and said, and the run goes on (it does not
    /// count towards the failures in a row that stop a run: nothing is wrong with the
    /// machine).
    fn too_large(
        &mut self,
        parent: Option<IndividualId>,
        mutations: Vec<Mutation>,
        needs: u64,
        budget: u64,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        self.failures += 1;
        let reason = format!(
            "it needs {:.2} GiB of device memory to train, more than the {:.2} GiB the node has for trainings",
            gib(needs),
            gib(budget)
        );
        let at_ms = now_ms();
        let logged = self
            .state
            .append(&Event::TrainingStarted {
                at_ms,
                id,
                parent,
                mutations,
                node: self.node_id.clone(),
                threads: None,
            })
            .and_then(|()| {
                self.state.append(&Event::TrainingFailed {
                    at_ms,
                    id,
                    reason: reason.clone(),
                })
            });
        self.reporter
            .line(&format!("#{id} is not trained: {reason}"));
        self.reporter
            .json(serde_json::json!({"event": "training_failed", "id": id, "reason": reason}));
        if let Err(e) = logged {
            self.fatal(e);
        }
    }

    /// The paper's initial individual, with an augmentation gene that starts as the
    /// config's augmentation when `evolution.augmentation_gene` is on.
    pub(super) fn initial_genome(&self) -> Genome {
        let mut g = Genome::initial(self.input, self.classes);
        if self.config.evolution.augmentation_gene {
            g.augment = Some(self.configured_augmentation());
        }
        g
    }

    /// Kills a member chosen by selection (already marked dead in the population).
    pub(super) fn kill(&mut self, id: IndividualId) -> Result<(), StateError> {
        let Some(record) = self.records.get_mut(&id) else {
            return Ok(());
        };
        let fitness = record.fitness;
        let at = now_ms();
        self.state.kill(record, at)?;
        self.touched.insert(id, at);
        self.deaths += 1;
        self.reporter.line(&format!(
            "death #{id} (val {})",
            percent(fitness.filter(|f| f.is_finite()))
        ));
        self.reporter
            .json(serde_json::json!({"event": "death", "id": id, "fitness": fitness}));
        Ok(())
    }

    pub(super) fn job_done(
        &mut self,
        worker: usize,
        id: IndividualId,
        result: Result<Trained, String>,
    ) {
        let Some(flight) = self.in_flight.remove(&id) else {
            // Abandoned (the run stopped, the final training began, or it was too
            // slow): what it saved, if anything, is not part of the run.
            if self
                .workers
                .get(worker)
                .is_some_and(|w| w.individual == Some(id))
            {
                self.set_idle(worker, "idle");
            }
            self.discard(id);
            return;
        };
        self.set_idle(worker, "idle");
        match result {
            Ok(trained) => {
                if let Err(e) = self.born(id, flight, &trained) {
                    self.fatal(e);
                    return;
                }
                self.consecutive_failures = 0;
            }
            Err(reason) => {
                self.failures += 1;
                self.consecutive_failures += 1;
                let _ = self.population.kill(id);
                let logged = self.state.append(&Event::TrainingFailed {
                    at_ms: now_ms(),
                    id,
                    reason: reason.clone(),
                });
                self.discard(id);
                self.reporter
                    .line(&format!("training of #{id} failed: {reason}"));
                self.reporter.json(
                    serde_json::json!({"event": "training_failed", "id": id, "reason": reason}),
                );
                if let Err(e) = logged {
                    self.fatal(e);
                    return;
                }
                if self.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
                    self.finish(
                        format!("{MAX_CONSECUTIVE_FAILURES} trainings in a row failed"),
                        Some(reason),
                    );
                    return;
                }
            }
        }
        self.check_stop();
    }

    /// A trained individual joins the population: event, record, birth.
    pub(super) fn born(
        &mut self,
        id: IndividualId,
        flight: InFlight,
        trained: &Trained,
    ) -> Result<(), StateError> {
        self.state.append(&Event::TrainingFinished {
            at_ms: now_ms(),
            id,
            fitness: Some(trained.fitness),
            flops: trained.flops,
            seconds: trained.seconds,
            phases: Some(trained.phases),
        })?;
        let (genome, mutations) = finale::with_probed_width(
            flight.genome,
            flight.mutations,
            trained.widened.as_ref(),
            trained.width_probe.as_ref().map_or(0, |w| w.doublings),
        );
        let (genome, mutations) =
            finale::with_probed_augmentation(genome, mutations, trained.augment_probe.as_ref());
        let genome = with_retried_rate(genome, trained.collapse.as_ref());
        let record = Record {
            id,
            genome,
            fitness: Some(trained.fitness),
            test_accuracy: None,
            status: Status::Alive,
            parent: flight.parent,
            mutations,
            born_at_ms: flight.born_at_ms,
            died_at_ms: None,
            flops: trained.flops,
            node: self.node_id.clone(),
            origin: None,
            phases: Some(trained.phases),
        };
        self.state.add(&record)?;
        if let Err(e) = self.population.set_fitness(id, trained.fitness) {
            return Err(StateError::Conflict {
                id,
                reason: e.to_string(),
            });
        }
        self.total_flops += trained.flops as f64;
        self.phase_totals.add(&trained.phases);
        if trained.phases.train > 0.0 && trained.steps > 0 {
            self.sgd_rates
                .insert(id, trained.steps as f64 / trained.phases.train);
        }
        self.shapes
            .insert(id, shape_of(&record.genome, &self.config.evolution.limits));
        let origin = match record.parent {
            None => "initial".to_string(),
            Some(p) => format!(
                "from #{p} by {}",
                record
                    .mutations
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        self.records.insert(id, record);
        self.touched.insert(id, now_ms());
        self.last_born = Some(id);
        self.announce();
        // The final training sends nobody: the receivers are in theirs too.
        if self.records.get(&id).is_some_and(|r| r.parent.is_some()) && !self.final_begun {
            self.since_migration += 1;
            self.maybe_migrate();
        }
        let best = self.population.best().map(|m| (m.id, m.fitness));
        let probed = trained.probe.as_ref().map_or(String::new(), |p| {
            format!(
                ", at {} of its rate by a probe ({})",
                trained.lr_scale,
                p.factors
                    .iter()
                    .zip(&p.scores)
                    .map(|(f, s)| format!("{f}: {}", percent(Some(*s))))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        });
        let augment_probed = trained.augment_probe.as_ref().map_or(String::new(), |p| {
            format!(
                ", with crop {} and flip {} by an augmentation probe ({})",
                on_off(p.chosen.crop),
                on_off(p.chosen.flip),
                p.genes
                    .iter()
                    .zip(&p.scores)
                    .map(|(g, s)| format!(
                        "crop {}, flip {}: {}",
                        on_off(g.crop),
                        on_off(g.flip),
                        percent(Some(*s))
                    ))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        });
        let width_probed = trained.width_probe.as_ref().map_or(String::new(), |p| {
            let timed = p
                .trials
                .iter()
                .map(|t| {
                    format!(
                        "x{}: {:.1} MFLOPs, {:.1} steps/s, {:.1} epochs",
                        1u64 << t.rounds.min(16),
                        t.forward_flops as f64 / 1e6,
                        t.steps_per_s,
                        t.epochs
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let timed = if p.discarded_seconds > 0.0 {
                format!(
                    "{timed}; epochs in the main training, less the probes' {:.0} s thrown away",
                    p.discarded_seconds
                )
            } else {
                timed
            };
            match p.rounds {
                _ if p.trials.is_empty() => {
                    ", not widened (no convolution can double its channels)".to_string()
                }
                0 => format!(", not widened by a width probe ({timed})"),
                r => format!(
                    ", widened x{} ({} channel doublings) by a width probe ({timed})",
                    1u64 << r.min(16),
                    p.doublings
                ),
            }
        });
        let kept = trained.probe_copy_kept.map_or(String::new(), |trained_to| {
            format!(
                ", the probe's copy kept (the training after it ended at {})",
                percent(Some(trained_to))
            )
        });
        let collapsed = trained.collapse.map_or(String::new(), |c| {
            format!(
                ", collapsed at step {} and trained again at rate {:.4}",
                c.at_step, c.learning_rate
            )
        });
        self.reporter.line(&format!(
            "birth #{id} ({origin}) val {} in {:.1} s{}{collapsed}{width_probed}{probed}{augment_probed}{kept}; best #{} {}; {} trained",
            percent(Some(trained.fitness)),
            trained.seconds,
            if trained.diverged { ", diverged" } else { "" },
            best.map_or("-".to_string(), |b| b.0.to_string()),
            percent(best.and_then(|b| b.1)),
            self.records.len(),
        ));
        let mut event = serde_json::json!({
            "event": "birth", "id": id, "fitness": trained.fitness,
            "seconds": trained.seconds, "flops": trained.flops, "steps": trained.steps,
            "train_loss": trained.train_loss, "diverged": trained.diverged,
            "inherited": trained.inherited, "lr_scale": trained.lr_scale,
        });
        if let (Some(probe), Some(fields)) = (&trained.augment_probe, event.as_object_mut()) {
            fields.insert("augment_probe".into(), serde_json::json!(probe));
        }
        if let (Some(probe), Some(fields)) = (&trained.width_probe, event.as_object_mut()) {
            fields.insert("width_probe".into(), serde_json::json!(probe));
        }
        if let (Some(probe), Some(fields)) = (&trained.probe, event.as_object_mut()) {
            fields.insert("probe".into(), serde_json::json!(probe));
        }
        if let (Some(collapse), Some(fields)) = (trained.collapse, event.as_object_mut()) {
            fields.insert("collapse".into(), serde_json::json!(collapse));
        }
        if let (Some(trained_to), Some(fields)) = (trained.probe_copy_kept, event.as_object_mut()) {
            fields.insert("probe_copy_kept".into(), serde_json::json!(trained_to));
        }
        self.reporter.json(event);
        Ok(())
    }
}

impl Shard {
    /// The memory a training of `genome` takes on the device (0 for a genome that is not
    /// valid, which never gets this far).
    fn training_memory(&self, genome: &Genome) -> u64 {
        genome
            .analyze(&self.config.evolution.limits)
            .map(|a| MemoryEstimate::of(genome, &a, self.config.training.batch as u64).total())
            .unwrap_or(0)
    }

    /// The most rounds of widening (up to `stop.final_training_widen`) after which a
    /// final training of `genome` still fits `device`'s memory budget alone, and the
    /// memory the widest takes (`None` for no rounds).
    fn widest_that_fits(&self, genome: &Genome, device: usize) -> (u32, Option<u64>) {
        let limits = self.config.evolution.limits;
        let budget = self.memory_budgets.get(device).copied().flatten();
        for rounds in (1..=self.config.stop.final_training_widen).rev() {
            let Ok(wide) = genome::widen(genome, rounds, &limits) else {
                break;
            };
            let memory = self.training_memory(&wide.genome);
            if !matches!(fit(budget, 0, memory), Fit::TooLarge { .. }) {
                return (rounds, Some(memory));
            }
        }
        (0, None)
    }

    /// The stall or cost budget's factor for a child of `genome` now; 1 under the
    /// others.
    fn budget_factor(&self, genome: &Genome) -> f64 {
        match self.config.training.budget {
            Budget::Stall => f64::from(self.stall_factor()),
            Budget::Cost => {
                let own = shape_of(genome, &self.config.evolution.limits).forward_flops;
                let members = self
                    .population
                    .members()
                    .filter(|m| m.is_candidate())
                    .filter_map(|m| self.shapes.get(&m.id))
                    .map(|s| s.forward_flops);
                cost_factor(
                    own,
                    members,
                    self.config.training.budget_max_factor,
                    self.config.training.budget_min_factor,
                )
            }
            Budget::Fixed | Budget::Lineage => 1.0,
        }
    }

    /// The stall budget's factor now ([`stall_factor`]) over the individuals trained
    /// here (migrants left out), a generation being `evolution.population_size`
    /// births; 1 under the other budgets.
    fn stall_factor(&self) -> u32 {
        if self.config.training.budget != Budget::Stall {
            return 1;
        }
        let mut births: Vec<(u64, IndividualId, f64)> = self
            .records
            .values()
            .filter(|r| r.origin.is_none())
            .filter_map(|r| Some((r.born_at_ms, r.id, r.fitness?)))
            .collect();
        births.sort_by_key(|&(at, id, _)| (at, id));
        stall_factor(
            births.into_iter().map(|(_, _, f)| f),
            self.config.evolution.population_size,
            self.config.training.budget_max_factor,
        )
    }
}

/// "on" or "off".
fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// The genome a child is recorded with after its training: where the training collapsed
/// and trained again at a lower rate (`collapse`), that rate, which its saved model
/// trained at and its children start from; otherwise as it was.
fn with_retried_rate(
    mut genome: genome::Genome,
    collapse: Option<&trainer::individual_training::CollapseReport>,
) -> genome::Genome {
    if let Some(collapse) = collapse {
        genome.learning_rate = collapse.learning_rate;
    }
    genome
}

#[cfg(test)]
mod tests {
    use super::*;
    use trainer::individual_training::CollapseReport;

    #[test]
    fn a_retried_child_is_recorded_with_the_rate_it_trained_again_at() {
        let shape = genome::InputShape {
            height: 8,
            width: 8,
            channels: 1,
        };
        let g = genome::Genome::initial(shape, 10);
        let report = CollapseReport {
            at_step: 60,
            learning_rate: g.learning_rate / 2.0,
        };
        let retried = with_retried_rate(g.clone(), Some(&report));
        assert_eq!(retried.learning_rate, g.learning_rate / 2.0);
        assert_eq!(retried.edges, g.edges);
        assert_eq!(with_retried_rate(g.clone(), None), g);
    }
}
