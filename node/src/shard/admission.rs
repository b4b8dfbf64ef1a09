//! Taking migrants in: a migrant is checked (shape, metadata, room, no copy here), saved
//! under a new id with an arrival note ([`Arrival`]), scored by a worker on this node's
//! validation images, and admitted if its score agrees with its sender's claim
//! ([`CLAIM_TOLERANCE`]) and the admission policy lets it in ([`admission`]). Its files
//! are written and read by [`crate::state`].

use super::{percent, shape_of, Shard};
use crate::config::Admission;
use crate::messages::ArrivalSaved;
use crate::network::Command;
use crate::population::{rank, IndividualId};
use crate::state::{now_ms, Arrival, Direction, Event, Origin, Record, StateError, Status};
use protocol::wire::{Migrant, Response};
use rand::Rng;
use trainer::individual::ModelMeta;

/// What the admission policy says of a migrant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Keep it out.
    Refuse,
    /// It joins (the population is under its target size).
    Join,
    /// It joins in place of this member.
    Replace(IndividualId),
}

/// What `policy` says of a migrant of `fitness` when the population is `full` or not,
/// its trained members being `members` (id, fitness): one under its target size always
/// admits; when full, replace-worst replaces the worst member if the migrant is better
/// (ties to the lower id), replace-random a member drawn at random, grow none.
pub fn admission(
    policy: Admission,
    full: bool,
    members: &[(IndividualId, f64)],
    fitness: f64,
    rng: &mut impl Rng,
) -> Admit {
    if !full {
        return Admit::Join;
    }
    match policy {
        Admission::Grow => Admit::Refuse,
        Admission::ReplaceWorst => {
            let worst = members
                .iter()
                .min_by(|a, b| rank(Some(a.1), a.0, Some(b.1), b.0));
            match worst {
                Some(&(id, worst)) if worst < fitness => Admit::Replace(id),
                _ => Admit::Refuse,
            }
        }
        Admission::ReplaceRandom if members.is_empty() => Admit::Refuse,
        Admission::ReplaceRandom => Admit::Replace(members[rng.random_range(0..members.len())].0),
    }
}

/// How far a migrant's measured validation accuracy may be from what its sender claimed
/// (the same weights on the same images score the same; another kind of device may
/// round a few borderline images the other way).
pub const CLAIM_TOLERANCE: f64 = 0.01;

/// Most migrants waiting to be scored at once; more are refused until they are.
pub const MAX_WAITING: usize = 64;

impl Shard {
    /// Takes in the migrants a peer sent, for scoring, as the admission policy allows;
    /// answers with the ids (as sent) of those taken in.
    pub(super) fn admit_migrants(&mut self, peer: &str, migrants: Vec<Migrant>) -> Response {
        if self.stopping.is_some() {
            return Response::Refused {
                reason: "this node is stopping".into(),
            };
        }
        let mut admitted = Vec::new();
        for m in migrants {
            let remote = m.summary.id;
            match self.admit(peer, m) {
                Ok(true) => admitted.push(remote),
                Ok(false) => {}
                Err(e) => {
                    self.reporter
                        .line(&format!("migrant #{remote} from {peer} refused: {e}"));
                }
            }
        }
        Response::Admitted { ids: admitted }
    }

    /// Takes in one migrant for checking if the admission policy may let it in (judged
    /// by the fitness it claims); `Ok(false)` if it may not. It is saved under a new id
    /// and joins the population only once a worker has scored it ([`Self::checked`]).
    pub(super) fn admit(&mut self, peer: &str, m: Migrant) -> Result<bool, String> {
        let g = &m.summary.genome;
        if g.input != self.input || g.classes != self.classes {
            return Err(format!(
                "it takes {}x{}x{} images in {} classes",
                g.input.height, g.input.width, g.input.channels, g.classes
            ));
        }
        serde_json::from_str::<ModelMeta>(&m.meta_json)
            .map_err(|e| format!("malformed model metadata: {e}"))?;
        if self.arrivals.len() + self.checking.len() + self.saving.len() >= MAX_WAITING {
            return Err(format!(
                "{MAX_WAITING} migrants are waiting to be scored already"
            ));
        }
        if let Some(copy) = self.copy_of(&m) {
            return Err(format!("a copy of it is here already ({copy})"));
        }
        if self.admission_of(m.summary.fitness) == Admit::Refuse {
            return Ok(false);
        }
        let id = self.next_id;
        self.next_id += 1;
        let arrival = Arrival {
            id,
            peer: peer.to_string(),
            checksum: hex::encode(m.checksum),
            summary: m.summary,
        };
        // Writing and syncing its weights runs off this thread; it waits to be scored
        // once saved ([`Self::arrival_saved`]).
        self.saving.insert(id, arrival.checksum.clone());
        let models = self.models.clone();
        let (weights, meta_json) = (m.weights, m.meta_json);
        let me = self.self_addr.clone();
        actix::spawn(async move {
            let saved = actix_rt::task::spawn_blocking(move || {
                models
                    .save_arrival(&arrival, &weights, &meta_json)
                    .map(|()| arrival)
                    .map_err(|e| e.to_string())
            })
            .await;
            let result = saved.unwrap_or_else(|e| Err(format!("saving it failed: {e}")));
            if let Some(me) = me {
                me.do_send(ArrivalSaved { id, result });
            }
        });
        Ok(true)
    }

    /// A migrant's files are saved (or could not be): it waits for a worker to score it.
    pub(super) fn arrival_saved(&mut self, id: IndividualId, result: Result<Arrival, String>) {
        self.saving.remove(&id);
        match result {
            Ok(arrival) => {
                self.reporter.line(&format!(
                    "migrant #{} from {} (claims val {}) arrived as #{id}; scoring it",
                    arrival.summary.id,
                    arrival.peer,
                    percent(Some(arrival.summary.fitness)),
                ));
                self.arrivals.push_back(arrival);
            }
            Err(e) => {
                self.discard(id);
                self.reporter
                    .line(&format!("the migrant that was to be #{id} is dropped: {e}"));
            }
        }
    }

    /// Where a copy of `m` is already: a migrant being checked with the same weights,
    /// or a live member with the same genome and weights.
    pub(super) fn copy_of(&self, m: &Migrant) -> Option<String> {
        let sum = hex::encode(m.checksum);
        if let Some(a) = self
            .arrivals
            .iter()
            .chain(self.checking.values())
            .find(|a| a.checksum == sum)
        {
            return Some(format!("#{}, being scored", a.id));
        }
        if let Some((id, _)) = self.saving.iter().find(|(_, c)| **c == sum) {
            return Some(format!("#{id}, being saved"));
        }
        self.records
            .values()
            .filter(|r| r.status == Status::Alive && r.genome == m.summary.genome)
            .find(|r| self.models.weights_checksum(r.id).as_deref() == Some(sum.as_str()))
            .map(|r| format!("#{}", r.id))
    }

    /// What the admission policy says of a migrant of `fitness` ([`admission`]).
    pub(super) fn admission_of(&mut self, fitness: f64) -> Admit {
        let members: Vec<(IndividualId, f64)> = self
            .population
            .members()
            .filter(|x| x.is_candidate())
            .map(|x| (x.id, x.fitness.unwrap_or(f64::NEG_INFINITY)))
            .collect();
        admission(
            self.config.migration.admit,
            self.population.is_full(),
            &members,
            fitness,
            &mut self.rng,
        )
    }

    /// A worker scored a migrant: it joins the population if its score agrees with what
    /// its sender claimed and the admission policy lets it in; otherwise its folder is
    /// removed (and a sender that overstated it is penalized).
    pub(super) fn checked(&mut self, worker: usize, id: IndividualId, result: Result<f64, String>) {
        self.set_idle(worker, "idle");
        let Some(a) = self.checking.remove(&id) else {
            self.discard(id);
            return;
        };
        let (peer, claimed) = (a.peer.clone(), a.summary.fitness);
        let remote = a.summary.id;
        let measured = match result {
            Ok(f) if self.stopping.is_none() && self.leaving.is_none() => f,
            // Stopping: it stays on disk, to be scored again when the run resumes.
            Ok(_) => return,
            Err(e) => {
                self.discard(id);
                self.reporter.line(&format!(
                    "migrant #{remote} from {peer} could not be scored: {e}"
                ));
                return;
            }
        };
        if (measured - claimed).abs() > CLAIM_TOLERANCE {
            self.discard(id);
            let reason = format!(
                "its migrant #{remote} claimed val {} but scores {} here",
                percent(Some(claimed)),
                percent(Some(measured))
            );
            self.reporter
                .line(&format!("migrant from {peer} refused: {reason}"));
            if let (Some(n), Ok(p)) = (&self.network, peer.parse::<libp2p::PeerId>()) {
                n.send(Command::Penalize { peer: p, reason });
            }
            return;
        }
        let victim = match self.admission_of(measured) {
            Admit::Join => None,
            Admit::Replace(id) => Some(id),
            Admit::Refuse => {
                self.discard(id);
                self.reporter.line(&format!(
                    "migrant #{remote} from {peer} (val {}) not admitted: the population is full \
                 and migration.admit keeps it out",
                    percent(Some(measured))
                ));
                return;
            }
        };
        if let Err(e) = self.settle(a, measured, victim) {
            self.fatal(e);
        }
    }

    /// A scored migrant joins the population (replacing `victim`): record, event.
    pub(super) fn settle(
        &mut self,
        a: Arrival,
        fitness: f64,
        victim: Option<IndividualId>,
    ) -> Result<(), StateError> {
        if let Some(victim) = victim {
            if self.population.kill(victim).is_ok() {
                self.kill(victim)?;
            }
        }
        let id = a.id;
        let record = Record {
            id,
            genome: a.summary.genome.clone(),
            fitness: Some(fitness),
            test_accuracy: None,
            status: Status::Alive,
            parent: None,
            mutations: a.summary.mutations.clone(),
            born_at_ms: now_ms(),
            died_at_ms: None,
            flops: a.summary.flops,
            node: a.summary.island.clone(),
            origin: Some(Origin {
                island: a.summary.island.clone(),
                id: a.summary.id,
            }),
            phases: None,
        };
        self.state.add(&record)?;
        // It has a record now: the arrival note has done its job.
        self.models.settle_arrival(id)?;
        if let Err(e) = self.population.add(id, Some(fitness)) {
            return Err(StateError::Conflict {
                id,
                reason: e.to_string(),
            });
        }
        self.shapes
            .insert(id, shape_of(&record.genome, &self.config.evolution.limits));
        self.records.insert(id, record);
        self.touched.insert(id, now_ms());
        let event = Event::Migration {
            at_ms: now_ms(),
            direction: Direction::In,
            id,
            peer: a.peer.clone(),
            remote_id: a.summary.id,
            fitness,
            claimed: Some(a.summary.fitness),
            checksum: a.checksum.clone(),
        };
        self.state.append(&event)?;
        self.record_migration(&event);
        self.reporter.line(&format!(
            "migration: #{id} (val {} here, {} claimed) arrived from {} (its #{})",
            percent(Some(fitness)),
            percent(Some(a.summary.fitness)),
            a.peer,
            a.summary.id
        ));
        self.announce();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn a_population_under_its_size_admits_whatever_the_policy() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for policy in [
            Admission::Grow,
            Admission::ReplaceWorst,
            Admission::ReplaceRandom,
        ] {
            assert_eq!(
                admission(policy, false, &[(1, 0.9)], 0.1, &mut rng),
                Admit::Join
            );
        }
    }

    #[test]
    fn a_full_population_admits_as_its_policy_says() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let members = [(1, 0.5), (2, 0.3), (3, 0.3), (4, 0.8)];
        let worst = |fitness| {
            admission(
                Admission::ReplaceWorst,
                true,
                &members,
                fitness,
                &mut ChaCha8Rng::seed_from_u64(0),
            )
        };
        // The worst, ties to the lower id, and only by a better migrant.
        assert_eq!(worst(0.31), Admit::Replace(2));
        assert_eq!(worst(0.3), Admit::Refuse);
        assert_eq!(
            admission(Admission::Grow, true, &members, 1.0, &mut rng),
            Admit::Refuse
        );
        assert_eq!(
            admission(Admission::ReplaceRandom, true, &[], 1.0, &mut rng),
            Admit::Refuse
        );
        assert_eq!(
            admission(Admission::ReplaceWorst, true, &[], 1.0, &mut rng),
            Admit::Refuse
        );
        let mut replaced = std::collections::BTreeSet::new();
        for _ in 0..200 {
            match admission(Admission::ReplaceRandom, true, &members, 0.0, &mut rng) {
                Admit::Replace(id) => {
                    replaced.insert(id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(replaced.len(), 4);
    }
}
