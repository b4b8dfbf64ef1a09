//! What the HTTP endpoint shows of the shard: its status, its members, one individual
//! with its lineage, the history the dashboard draws, and the Prometheus metrics.

use super::{rate, shape_of, InFlight, Shard};
use crate::population::IndividualId;
use crate::state::{now_ms, Record, Status};
use crate::view::{
    Ancestor, HistoryRow, HistoryView, IndividualView, IslandCurve, LineageView, MemberStatus,
    MemberView, StatusView, WorkerActivity, WorkerView, HISTORY_COLUMNS,
};
use genome::Mutation;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The ancestors of an individual whose parent is `parent`, parent first, back to an
/// initial individual or to the first one `records` lacks (a migrant's home-island
/// ancestors); a cycle, which a sound state directory never holds, ends it too.
pub fn lineage(
    records: &BTreeMap<IndividualId, Record>,
    parent: Option<IndividualId>,
) -> Vec<Ancestor> {
    let mut out = Vec::new();
    let mut next = parent;
    while let Some(p) = next {
        let Some(r) = records.get(&p) else {
            break;
        };
        if out.len() >= records.len() {
            break;
        }
        out.push(ancestor(r));
        next = r.parent;
    }
    out
}

/// A record as a step of a lineage.
fn ancestor(r: &Record) -> Ancestor {
    Ancestor {
        id: r.id,
        fitness: r.fitness,
        mutations: r.mutations.clone(),
        origin: r.origin.clone(),
        born_at_ms: r.born_at_ms,
    }
}

/// `record` as a row of the history.
pub fn history_row(record: &Record, status: MemberStatus) -> HistoryRow {
    let mutation = record
        .mutations
        .first()
        .and_then(|m| Mutation::WITH_AUGMENTATION.iter().position(|x| x == m))
        .and_then(|i| u8::try_from(i).ok());
    HistoryRow(
        record.id,
        record.born_at_ms,
        record.fitness.filter(|f| f.is_finite()),
        match status {
            MemberStatus::Alive => 0,
            MemberStatus::Dead => 1,
            MemberStatus::Training => 2,
        },
        record.parent,
        mutation,
        record.flops,
        record.died_at_ms,
        record.origin.is_some(),
    )
}

/// Whether an individual last changed (`touched_ms`: born, died or admitted while this
/// node runs; `None` if not since it started) at or after `since_ms`: only those go into
/// a history asked for since then; everything goes into one asked for since 0.
pub fn changed_since(touched_ms: Option<u64>, since_ms: u64) -> bool {
    since_ms == 0 || touched_ms.is_some_and(|t| t >= since_ms)
}

impl Shard {
    /// `GET /individuals/{id}/lineage`.
    pub(super) fn lineage_view(&self, id: IndividualId) -> Option<LineageView> {
        let first = match (self.records.get(&id), self.in_flight.get(&id)) {
            (Some(r), _) => r.clone(),
            (None, Some(f)) => self.flight_record(id, f),
            (None, None) => return None,
        };
        let mut steps = vec![ancestor(&first)];
        steps.extend(lineage(&self.records, first.parent));
        Some(LineageView { id, steps })
    }

    /// `GET /history?since=MS`: rows of the individuals changed since then (all with 0),
    /// those in training always, and the other islands' curves.
    pub(super) fn history(&self, since_ms: u64) -> HistoryView {
        let mut rows: Vec<HistoryRow> = self
            .records
            .values()
            .filter(|r| changed_since(self.touched.get(&r.id).copied(), since_ms))
            .map(|r| history_row(r, r.status.into()))
            .collect();
        rows.extend(
            self.in_flight
                .iter()
                .map(|(id, f)| history_row(&self.flight_record(*id, f), MemberStatus::Training)),
        );
        rows.sort_by_key(|r| r.0);
        HistoryView {
            node_id: self.node_id.clone(),
            now_ms: now_ms(),
            columns: HISTORY_COLUMNS.iter().map(|c| c.to_string()).collect(),
            mutations: Mutation::WITH_AUGMENTATION
                .iter()
                .map(|m| m.name().to_string())
                .collect(),
            rows,
            islands: self
                .island_curves
                .iter()
                .map(|(island, points)| IslandCurve {
                    island: island.clone(),
                    points: points.iter().map(|p| (p.at_ms, p.best, p.flops)).collect(),
                })
                .collect(),
        }
    }

    pub(super) fn status(&self) -> StatusView {
        let best = self.population.best();
        let busy = self.workers.iter().filter(|w| w.state.is_busy()).count();
        let idle = self
            .workers
            .iter()
            .filter(|w| w.state == WorkerActivity::Idle)
            .count();
        StatusView {
            node_id: self.node_id.clone(),
            experiment_id: self.experiment_id.clone(),
            experiment: self.config.experiment.name.clone(),
            state_dir: self.state.root().display().to_string(),
            population_size: self.population.alive_count(),
            target_size: self.population.target_size(),
            individuals_trained: self.records.len(),
            in_training: self.in_flight.len(),
            deaths: self.deaths,
            failures: self.failures,
            best_fitness: best.and_then(|m| m.fitness).filter(|f| f.is_finite()),
            best_individual: best.map(|m| m.id),
            total_flops: self.total_flops,
            seconds_by_phase: self.phase_totals,
            flops_per_s: rate(self.total_flops, self.run_minutes() * 60.0),
            training_share: rate(
                self.phase_totals.train,
                self.run_minutes() * 60.0 * self.workers.len() as f64,
            ),
            workers_busy: busy,
            workers_idle: idle,
            workers: self
                .workers
                .iter()
                .enumerate()
                .map(|(index, w)| WorkerView {
                    index,
                    state: w.state,
                    individual: w.individual,
                    step: w.step,
                    steps: w.steps,
                    loss: w.loss,
                })
                .collect(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            run_minutes: self.run_minutes(),
            stopping: self.stopping.clone(),
            peer_id: self.network.as_ref().map(|n| n.peer_id.to_string()),
            listen_addrs: self.listen_addrs.clone(),
            connected_peers: self.connected.len(),
            islands_known: self.islands.len(),
            experiment_best: self.best_of_experiment(),
            penalized_peers: self.penalized,
            gossip_bytes_out: self.network.as_ref().map_or(0, |n| {
                n.traffic
                    .bytes_out
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
            gossip_bytes_in: self.network.as_ref().map_or(0, |n| {
                n.traffic
                    .bytes_in
                    .load(std::sync::atomic::Ordering::Relaxed)
            }),
        }
    }

    pub(super) fn member_view(&self, record: &Record) -> MemberView {
        let shape = self.shapes.get(&record.id).copied().unwrap_or_default();
        MemberView {
            id: record.id,
            status: record.status.into(),
            fitness: record.fitness,
            parent: record.parent,
            mutations: record.mutations.clone(),
            learning_rate: record.genome.learning_rate,
            vertices: shape.vertices,
            edges: shape.edges,
            forward_flops: shape.forward_flops,
            params: shape.params,
            flops: record.flops,
            born_at_ms: record.born_at_ms,
            died_at_ms: record.died_at_ms,
            node: record.node.clone(),
        }
    }

    /// What is known of an individual in training, as a record.
    pub(super) fn flight_record(&self, id: IndividualId, f: &InFlight) -> Record {
        Record {
            id,
            genome: f.genome.clone(),
            fitness: None,
            test_accuracy: None,
            status: Status::Alive,
            parent: f.parent,
            mutations: f.mutations.clone(),
            born_at_ms: f.born_at_ms,
            died_at_ms: None,
            flops: 0,
            node: self.node_id.clone(),
            origin: None,
            phases: None,
        }
    }

    pub(super) fn population_view(&self, all: bool) -> Vec<MemberView> {
        let mut out: Vec<MemberView> = self
            .records
            .values()
            .filter(|r| all || r.status == Status::Alive)
            .map(|r| self.member_view(r))
            .collect();
        for (id, f) in &self.in_flight {
            let mut view = self.member_view(&self.flight_record(*id, f));
            let shape = shape_of(&f.genome, &self.config.evolution.limits);
            view.status = MemberStatus::Training;
            view.vertices = shape.vertices;
            view.edges = shape.edges;
            view.forward_flops = shape.forward_flops;
            view.params = shape.params;
            out.push(view);
        }
        out.sort_by_key(|m| m.id);
        out
    }

    pub(super) fn individual_view(&self, id: IndividualId) -> Option<IndividualView> {
        let (record, status) = match (self.records.get(&id), self.in_flight.get(&id)) {
            (Some(r), _) => (r.clone(), r.status.into()),
            (None, Some(f)) => (self.flight_record(id, f), MemberStatus::Training),
            (None, None) => return None,
        };
        let lineage = lineage(&self.records, record.parent);
        let analysis = record.genome.analyze(&self.config.evolution.limits).ok();
        let dot = record.genome.to_dot(analysis.as_ref());
        let cost = analysis.map(|a| a.cost).unwrap_or_default();
        Some(IndividualView {
            status,
            lineage,
            dot,
            forward_flops: cost.forward_flops,
            params: cost.params,
            record,
        })
    }

    pub(super) fn metrics(&self) -> String {
        let s = self.status();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
            let _ = writeln!(out, "# HELP evo_{name} {help}");
            let _ = writeln!(out, "# TYPE evo_{name} {kind}");
            let _ = writeln!(out, "evo_{name} {value}");
        };
        metric(
            "population_size",
            "gauge",
            "Live individuals, those in training included.",
            s.population_size as f64,
        );
        metric(
            "population_target_size",
            "gauge",
            "The size the population is held at.",
            s.target_size as f64,
        );
        metric(
            "individuals_trained_total",
            "counter",
            "Individuals trained and scored over the run.",
            s.individuals_trained as f64,
        );
        metric(
            "individuals_in_training",
            "gauge",
            "Individuals in training now.",
            s.in_training as f64,
        );
        metric(
            "deaths_total",
            "counter",
            "Individuals killed by selection over the run.",
            s.deaths as f64,
        );
        metric(
            "training_failures_total",
            "counter",
            "Trainings that failed since this node started.",
            s.failures as f64,
        );
        metric(
            "best_fitness",
            "gauge",
            "Best validation accuracy of a live individual (NaN if none).",
            s.best_fitness.unwrap_or(f64::NAN),
        );
        metric(
            "flops_total",
            "counter",
            "FLOPs spent training and validating over the run.",
            s.total_flops,
        );
        metric(
            "flops_per_second",
            "gauge",
            "FLOPs spent over the run divided by its wall time.",
            s.flops_per_s,
        );
        metric(
            "training_share",
            "gauge",
            "Share of the workers' wall time spent in SGD steps over the run.",
            s.training_share,
        );
        metric(
            "workers_busy",
            "gauge",
            "Workers training now.",
            s.workers_busy as f64,
        );
        metric(
            "workers_idle",
            "gauge",
            "Workers waiting for work.",
            s.workers_idle as f64,
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since this node started.",
            s.uptime_s,
        );
        let _ = writeln!(
            out,
            "# HELP evo_phase_seconds_total Wall time of the run's trainings by phase."
        );
        let _ = writeln!(out, "# TYPE evo_phase_seconds_total counter");
        for (phase, seconds) in [
            ("build", s.seconds_by_phase.build),
            ("train", s.seconds_by_phase.train),
            ("validate", s.seconds_by_phase.validate),
            ("save", s.seconds_by_phase.save),
        ] {
            let _ = writeln!(
                out,
                "evo_phase_seconds_total{{phase=\"{phase}\"}} {seconds}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genome::{Genome, InputShape, Mutation};

    fn record(id: IndividualId, parent: Option<IndividualId>) -> Record {
        Record {
            id,
            genome: Genome::initial(
                InputShape {
                    height: 8,
                    width: 8,
                    channels: 1,
                },
                10,
            ),
            fitness: Some(id as f64 / 10.0),
            test_accuracy: None,
            status: Status::Alive,
            parent,
            mutations: Vec::new(),
            born_at_ms: id,
            died_at_ms: None,
            flops: 0,
            node: "n".into(),
            origin: None,
            phases: None,
        }
    }

    #[test]
    fn a_lineage_runs_from_the_parent_back_to_the_first_known_ancestor() {
        let records: BTreeMap<IndividualId, Record> = [
            record(0, None),
            record(1, Some(0)),
            record(2, Some(1)),
            record(3, Some(9)),
        ]
        .into_iter()
        .map(|r| (r.id, r))
        .collect();
        let ids = |parent| {
            lineage(&records, parent)
                .iter()
                .map(|a| a.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(Some(2)), vec![2, 1, 0]);
        assert_eq!(ids(None), Vec::<IndividualId>::new());
        // #3's parent is not here (a migrant's home island): the lineage stops at #3.
        assert_eq!(ids(Some(3)), vec![3]);
        assert_eq!(lineage(&records, Some(1))[0].fitness, Some(0.1));
    }

    #[test]
    fn history_rows_are_compact_and_follow_what_changed() {
        let mut r = record(4, Some(2));
        r.mutations = vec![Mutation::InsertConvolution];
        r.flops = 77;
        let row = history_row(&r, MemberStatus::Alive);
        assert_eq!(
            row,
            HistoryRow(4, 4, Some(0.4), 0, Some(2), Some(3), 77, None, false)
        );
        let json = serde_json::to_string(&row).unwrap();
        assert_eq!(json, "[4,4,0.4,0,2,3,77,null,false]");
        r.fitness = Some(f64::NAN);
        r.origin = Some(crate::state::Origin {
            island: "x".into(),
            id: 9,
        });
        let row = history_row(&r, MemberStatus::Dead);
        assert_eq!((row.2, row.3, row.8), (None, 1, true));
        // Touched at 10: in a history since 10 or before, not since 11; one untouched
        // since the node started is only in the whole history (since 0).
        assert!(changed_since(Some(10), 9) && changed_since(Some(10), 10));
        assert!(!changed_since(Some(10), 11));
        assert!(changed_since(None, 0) && !changed_since(None, 1));
        assert_eq!(HISTORY_COLUMNS.len(), 9);
    }

    #[test]
    fn a_cycle_in_damaged_records_ends_the_lineage() {
        let records: BTreeMap<IndividualId, Record> = [record(0, Some(1)), record(1, Some(0))]
            .into_iter()
            .map(|r| (r.id, r))
            .collect();
        assert_eq!(lineage(&records, Some(0)).len(), 2);
    }
}
