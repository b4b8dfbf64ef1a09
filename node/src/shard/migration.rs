//! Sending individuals to other islands: when a migration is due ([`migration_due`]),
//! whom to send ([`choose_emigrants`]) and where ([`destination`]), pulls by nodes that
//! join, and the hand-off of the best when this node leaves. The decisions are plain
//! functions; the shard's methods gather what they look at and act on what they say.

use super::{percent, Shard, HANDOFF_TIMEOUT, PULL_PATIENCE, PULL_RETRY, PULL_RETRY_MAX};
use crate::config::{Destination, Emigrants, MigrationSection};
use crate::messages::{MigrationAnswer, PullAnswer, PullAnswered, RetryPull};
use crate::network::Command;
use crate::population::{rank, IndividualId};
use crate::state::{now_ms, Direction, Event, ModelStore, Record, Status};
use crate::view::MigrationView;
use actix::{AsyncContext, Context};
use protocol::wire::{Migrant, Request, Response, Summary};
use rand::seq::SliceRandom;
use rand::Rng;
use std::time::Duration;

/// How long a joining node waits before pull number `attempts + 1`, after `attempts`
/// pulls that brought nothing over `elapsed` since the first: [`PULL_RETRY`] doubled
/// with each attempt up to [`PULL_RETRY_MAX`]; `None` once [`PULL_PATIENCE`] is spent.
pub fn pull_retry_delay(attempts: u32, elapsed: Duration) -> Option<Duration> {
    if elapsed >= PULL_PATIENCE {
        return None;
    }
    let doubled = PULL_RETRY.saturating_mul(1u32 << attempts.saturating_sub(1).min(16));
    Some(doubled.min(PULL_RETRY_MAX))
}

/// Up to `k` of `candidates` (id, fitness), chosen as `how` says: the best (ties to the
/// younger, the larger id), at random, or each the better of two drawn at random.
pub fn choose_emigrants(
    mut candidates: Vec<(IndividualId, f64)>,
    k: usize,
    how: Emigrants,
    rng: &mut impl Rng,
) -> Vec<IndividualId> {
    if candidates.is_empty() {
        return Vec::new();
    }
    match how {
        Emigrants::Best => {
            candidates.sort_by(|a, b| rank(Some(b.1), b.0, Some(a.1), a.0));
            candidates.truncate(k);
            candidates.into_iter().map(|c| c.0).collect()
        }
        Emigrants::Random => {
            candidates.shuffle(rng);
            candidates.truncate(k);
            candidates.into_iter().map(|c| c.0).collect()
        }
        Emigrants::Tournament => {
            let mut out = Vec::new();
            for _ in 0..k.min(candidates.len()) * 4 {
                let a = candidates[rng.random_range(0..candidates.len())];
                let b = candidates[rng.random_range(0..candidates.len())];
                let winner = if a.1 >= b.1 { a.0 } else { b.0 };
                if !out.contains(&winner) {
                    out.push(winner);
                }
                if out.len() == k {
                    break;
                }
            }
            out
        }
    }
}

/// The peer emigrants go to, of `peers` (sorted, as peer ids): one at random, or for a
/// ring the first after `me` in that order (the first of all after the last); `None`
/// when there is no peer.
pub fn destination(
    policy: Destination,
    peers: &[String],
    me: &str,
    rng: &mut impl Rng,
) -> Option<String> {
    if peers.is_empty() {
        return None;
    }
    Some(match policy {
        Destination::Random => peers[rng.random_range(0..peers.len())].clone(),
        Destination::Ring => peers
            .iter()
            .find(|p| p.as_str() > me)
            .unwrap_or(&peers[0])
            .clone(),
    })
}

/// Whether a migration is due `since` reproductions after the last one: on schedule
/// (`every`), or by a draw of `probability` (one draw per call).
pub fn migration_due(m: &MigrationSection, since: u64, rng: &mut impl Rng) -> bool {
    if m.probability > 0.0 {
        rng.random_bool(m.probability.min(1.0))
    } else {
        m.every > 0 && since >= m.every
    }
}

impl Shard {
    /// The connected peers that have shown this experiment's settings, in peer-id order.
    pub(super) fn peers_of_experiment(&self) -> Vec<String> {
        self.compatible
            .iter()
            .filter(|p| self.connected.contains(*p))
            .cloned()
            .collect()
    }

    /// After a reproduction: sends emigrants to a peer of the experiment if one is due
    /// (`migration.every` reproductions since the last, or a draw of `probability`).
    pub(super) fn maybe_migrate(&mut self) {
        if self.migrating {
            return;
        }
        let m = &self.config.migration;
        let (k, how) = (m.emigrants, m.choose);
        if migration_due(m, self.since_migration, &mut self.rng) {
            self.migrate(k, how);
        }
    }

    /// Sends `k` emigrants chosen as `how` says to a peer chosen as `migration.destination`
    /// says, unless there is none to send or nobody to send them to.
    pub(super) fn migrate(&mut self, k: usize, how: Emigrants) {
        let m = self.config.migration.clone();
        let Some(network) = self.network.clone() else {
            return;
        };
        let peers = self.peers_of_experiment();
        if peers.is_empty() {
            return;
        }
        let Some(peer) = destination(m.destination, &peers, &self.node_id, &mut self.rng) else {
            return;
        };
        let Ok(peer_id) = peer.parse::<libp2p::PeerId>() else {
            return;
        };
        let chosen: Vec<Summary> = self
            .emigrants(k, how, Some(&peer))
            .into_iter()
            .filter_map(|id| self.summary(id))
            .collect();
        if chosen.is_empty() {
            return;
        }
        self.since_migration = 0;
        self.migrating = true;
        let models = self.models.clone();
        let island = self.node_id.clone();
        let me = self.self_addr.clone();
        // Reading and hashing their weights runs off this thread.
        actix::spawn(async move {
            let read = read_emigrants(models, chosen).await;
            let result = if read.migrants.is_empty() {
                Err("none of the emigrants could be read".to_string())
            } else {
                let request = Request::Migrate {
                    island,
                    migrants: read.migrants,
                };
                network.request(peer_id, request).await
            };
            if let Some(me) = me {
                me.do_send(MigrationAnswer {
                    peer,
                    sent: read.sent,
                    unreadable: read.unreadable,
                    result,
                });
            }
        });
    }

    /// Up to `k` live, trained individuals, chosen as `how` says ([`choose_emigrants`]).
    /// For a destination `to`, those that came from it or were sent to it already are
    /// left out: it has them.
    pub(super) fn emigrants(
        &mut self,
        k: usize,
        how: Emigrants,
        to: Option<&str>,
    ) -> Vec<IndividualId> {
        let has_it = |r: &Record| {
            to.is_some_and(|peer| {
                r.origin.as_ref().is_some_and(|o| o.island == peer)
                    || self
                        .migrations
                        .iter()
                        .any(|m| m.direction == Direction::Out && m.id == r.id && m.peer == peer)
            })
        };
        let candidates: Vec<(IndividualId, f64)> = self
            .records
            .values()
            .filter(|r| r.status == Status::Alive && !has_it(r))
            .filter_map(|r| Some((r.id, r.fitness.filter(|f| (0.0..=1.0).contains(f))?)))
            .collect();
        choose_emigrants(candidates, k, how, &mut self.rng)
    }

    /// A new node asks its first peer for migrants, so that it contributes at once.
    pub(super) fn pull(&mut self, peer: String) {
        let (Some(network), Ok(peer_id)) = (self.network.clone(), peer.parse::<libp2p::PeerId>())
        else {
            return;
        };
        self.pulled = true;
        self.pull_attempts += 1;
        self.first_pull.get_or_insert_with(std::time::Instant::now);
        let count = self
            .config
            .evolution
            .initial_population
            .clamp(1, protocol::wire::MAX_MIGRANTS) as u32;
        let answer = network.request(
            peer_id,
            Request::Pull {
                island: self.node_id.clone(),
                count,
            },
        );
        self.reporter
            .line(&format!("asking {peer} for {count} migrants to start from"));
        let me = self.self_addr.clone();
        actix::spawn(async move {
            let result = answer.await;
            if let Some(me) = me {
                me.do_send(PullAnswer { peer, result });
            }
        });
    }

    /// Answers request `request` of a joining node's pull with up to `count` of our best
    /// (copies), read off this thread; [`Self::pull_answered`] logs what went.
    pub(super) fn answer_pull(&mut self, request: u64, peer: String, count: usize) {
        let Some(network) = self.network.clone() else {
            return;
        };
        if self.stopping.is_some() {
            network.send(Command::Respond {
                id: request,
                response: Box::new(Response::Refused {
                    reason: "this node is stopping".into(),
                }),
            });
            return;
        }
        let count = count.min(protocol::wire::MAX_MIGRANTS);
        let chosen: Vec<Summary> = self
            .emigrants(count, Emigrants::Best, Some(&peer))
            .into_iter()
            .filter_map(|id| self.summary(id))
            .collect();
        let models = self.models.clone();
        let me = self.self_addr.clone();
        actix::spawn(async move {
            let read = read_emigrants(models, chosen).await;
            network.send(Command::Respond {
                id: request,
                response: Box::new(Response::Migrants {
                    migrants: read.migrants,
                }),
            });
            if let Some(me) = me {
                me.do_send(PullAnswered {
                    peer,
                    sent: read.sent,
                    unreadable: read.unreadable,
                });
            }
        });
    }

    /// Our answer to a pull went: the migrations are logged.
    pub(super) fn pull_answered(
        &mut self,
        peer: String,
        sent: Vec<(IndividualId, f64, String)>,
        unreadable: Vec<(IndividualId, String)>,
    ) {
        self.report_unreadable(&unreadable);
        let n = sent.len();
        for (id, fitness, checksum) in sent {
            if !self.log_emigration(&peer, id, fitness, checksum) {
                return;
            }
        }
        self.reporter.line(&format!(
            "migration: {n} individuals sent to {peer}, which joined"
        ));
    }

    fn report_unreadable(&mut self, unreadable: &[(IndividualId, String)]) {
        for (id, e) in unreadable {
            self.reporter
                .line(&format!("individual #{id} cannot emigrate: {e}"));
        }
    }

    pub(super) fn on_pull_answer(&mut self, peer: String, result: Result<Response, String>) {
        match result {
            Ok(Response::Migrants { migrants }) if !migrants.is_empty() => {
                let n = migrants.len();
                if let Response::Admitted { ids } = self.admit_migrants(&peer, migrants) {
                    self.reporter.line(&format!(
                        "joining with {} of {n} migrants from {peer}, once scored",
                        ids.len()
                    ));
                }
            }
            Ok(Response::Migrants { .. }) => {
                // The peer has trained nothing yet: ask again a little later.
                self.retry_pull(peer);
            }
            Ok(Response::Refused { reason }) => self
                .reporter
                .line(&format!("peer {peer} sent no migrants: {reason}")),
            Ok(other) => self
                .reporter
                .line(&format!("peer {peer} answered a pull with {other:?}")),
            Err(e) => {
                // A busy or briefly unreachable peer: ask again a little later.
                self.reporter.line(&format!("pull from {peer} failed: {e}"));
                self.retry_pull(peer);
            }
        }
    }

    /// Pulls from `peer` again after [`pull_retry_delay`], unless patience is spent.
    fn retry_pull(&mut self, peer: String) {
        let elapsed = self.first_pull.map(|t| t.elapsed()).unwrap_or_default();
        let Some(delay) = pull_retry_delay(self.pull_attempts, elapsed) else {
            self.reporter.line(&format!(
                "{peer} had no migrants for us after {} pulls: starting from our own",
                self.pull_attempts
            ));
            return;
        };
        let me = self.self_addr.clone();
        actix::spawn(async move {
            actix_rt::time::sleep(delay).await;
            if let Some(me) = me {
                me.do_send(RetryPull(peer));
            }
        });
    }

    /// Leaving on a signal: stop taking work, hand the best individuals to a peer, then
    /// stop (at once if there is no peer; after `HANDOFF_TIMEOUT` at the latest).
    pub(super) fn leave(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.stopping.is_some() || self.leaving.is_some() {
            return;
        }
        let peers = self.peers_of_experiment();
        if self.network.is_none() || peers.is_empty() {
            self.finish(reason, None);
            return;
        }
        self.leaving = Some(reason);
        self.reporter
            .line("leaving: handing the best individuals to a peer");
        // Hand off now, whatever the migration schedule says.
        self.migrating = false;
        let k = self.config.migration.emigrants.max(3);
        self.migrate(k, Emigrants::Best);
        if !self.migrating {
            let reason = self.leaving.take().unwrap_or_default();
            self.finish(reason, None);
            return;
        }
        ctx.run_later(HANDOFF_TIMEOUT, |shard, _| {
            if let Some(reason) = shard.leaving.take() {
                shard.finish(format!("{reason} (the hand-off got no answer)"), None);
            }
        });
    }

    pub(super) fn on_migration_answer(
        &mut self,
        peer: String,
        sent: Vec<(IndividualId, f64, String)>,
        unreadable: Vec<(IndividualId, String)>,
        result: Result<Response, String>,
    ) {
        self.migrating = false;
        self.report_unreadable(&unreadable);
        let leaving = self.leaving.take();
        self.on_migration_result(peer, sent, result);
        if let Some(reason) = leaving {
            self.finish(reason, None);
        }
    }

    pub(super) fn on_migration_result(
        &mut self,
        peer: String,
        sent: Vec<(IndividualId, f64, String)>,
        result: Result<Response, String>,
    ) {
        match result {
            Ok(Response::Admitted { ids }) => {
                for (id, fitness, checksum) in sent {
                    if !ids.contains(&id) {
                        self.reporter
                            .line(&format!("peer {peer} did not admit #{id}"));
                        continue;
                    }
                    if !self.log_emigration(&peer, id, fitness, checksum) {
                        return;
                    }
                    self.reporter.line(&format!(
                        "migration: #{id} (val {}) sent to {peer}",
                        percent(Some(fitness))
                    ));
                }
            }
            Ok(Response::Refused { reason }) => self
                .reporter
                .line(&format!("peer {peer} refused our emigrants: {reason}")),
            Ok(other) => self
                .reporter
                .line(&format!("peer {peer} answered a migration with {other:?}")),
            Err(e) => self
                .reporter
                .line(&format!("migration to {peer} failed: {e}")),
        }
    }

    /// Logs that our #`id` went to `peer`; `false` if the log could not be written (the
    /// run is stopping then).
    fn log_emigration(
        &mut self,
        peer: &str,
        id: IndividualId,
        fitness: f64,
        checksum: String,
    ) -> bool {
        let event = Event::Migration {
            at_ms: now_ms(),
            direction: Direction::Out,
            id,
            peer: peer.to_string(),
            remote_id: id,
            fitness,
            claimed: None,
            checksum,
        };
        if let Err(e) = self.state.append(&event) {
            self.fatal(e);
            return false;
        }
        self.record_migration(&event);
        true
    }

    pub(super) fn record_migration(&mut self, event: &Event) {
        if let Event::Migration {
            at_ms,
            direction,
            id,
            peer,
            remote_id,
            fitness,
            claimed,
            checksum,
        } = event
        {
            self.migrations.push(MigrationView {
                at_ms: *at_ms,
                direction: *direction,
                id: *id,
                peer: peer.clone(),
                remote_id: *remote_id,
                fitness: *fitness,
                claimed: *claimed,
                checksum: checksum.clone(),
            });
            self.reporter.json(serde_json::json!({
                "event": "migration", "direction": direction, "id": id, "peer": peer,
                "remote_id": remote_id, "fitness": fitness, "claimed": claimed,
            }));
        }
    }
}

/// Our emigrants as read off the shard's thread.
#[derive(Default)]
struct Emigration {
    /// Ready to travel.
    migrants: Vec<Migrant>,
    /// What they are: id, fitness, weights checksum.
    sent: Vec<(IndividualId, f64, String)>,
    /// Those whose files could not be read, and why.
    unreadable: Vec<(IndividualId, String)>,
}

/// Reads the models of `chosen` (our own, so a summary's id is ours) on a blocking
/// thread and makes them migrants, their weights hashed there too.
async fn read_emigrants(models: ModelStore, chosen: Vec<Summary>) -> Emigration {
    let ids: Vec<IndividualId> = chosen.iter().map(|s| s.id).collect();
    let read = actix_rt::task::spawn_blocking(move || {
        let mut out = Emigration::default();
        for summary in chosen {
            let id = summary.id;
            match models.read_model(id) {
                Ok(files) => {
                    let m = Migrant::new(summary, files.meta_json, files.weights);
                    out.sent
                        .push((id, m.summary.fitness, hex::encode(m.checksum)));
                    out.migrants.push(m);
                }
                Err(e) => out.unreadable.push((id, e.to_string())),
            }
        }
        out
    })
    .await;
    read.unwrap_or_else(|e| Emigration {
        unreadable: ids.into_iter().map(|id| (id, e.to_string())).collect(),
        ..Emigration::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn pulls_back_off_and_end_when_patience_is_spent() {
        let s = |secs| Duration::from_secs(secs);
        let delays: Vec<_> = (1..=7)
            .map(|n| pull_retry_delay(n, s(1)).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [2, 4, 8, 10, 10, 10, 10]);
        // Many attempts neither overflow nor exceed the cap.
        assert_eq!(pull_retry_delay(u32::MAX, s(1)), Some(PULL_RETRY_MAX));
        assert_eq!(pull_retry_delay(3, PULL_PATIENCE), None);
        assert!(pull_retry_delay(3, PULL_PATIENCE - s(1)).is_some());
    }

    #[test]
    fn migrations_fall_due_on_schedule_or_by_chance() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let scheduled = MigrationSection {
            every: 3,
            ..Default::default()
        };
        let due: Vec<bool> = (0..5)
            .map(|since| migration_due(&scheduled, since, &mut rng))
            .collect();
        assert_eq!(due, [false, false, false, true, true]);
        let never = MigrationSection {
            every: 0,
            ..Default::default()
        };
        assert!(!(0..100).any(|since| migration_due(&never, since, &mut rng)));
        let by_chance = |p: f64| MigrationSection {
            every: 0,
            probability: p,
            ..Default::default()
        };
        // The count of reproductions since the last migration does not matter.
        assert!((0..100).all(|_| migration_due(&by_chance(1.0), 0, &mut rng)));
        let hits = (0..10_000)
            .filter(|_| migration_due(&by_chance(0.1), u64::MAX, &mut rng))
            .count();
        assert!((800..1200).contains(&hits), "{hits} of 10,000 at p = 0.1");
    }

    #[test]
    fn the_best_emigrate_first_ties_going_to_the_younger() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let candidates = vec![(1, 0.5), (2, 0.9), (3, 0.7), (4, 0.9)];
        assert_eq!(
            choose_emigrants(candidates.clone(), 3, Emigrants::Best, &mut rng),
            vec![4, 2, 3]
        );
        assert_eq!(
            choose_emigrants(candidates.clone(), 9, Emigrants::Best, &mut rng).len(),
            4
        );
        assert!(choose_emigrants(Vec::new(), 3, Emigrants::Best, &mut rng).is_empty());
        assert!(choose_emigrants(candidates, 0, Emigrants::Best, &mut rng).is_empty());
    }

    #[test]
    fn random_and_tournament_emigrants_are_distinct_members() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let candidates: Vec<(IndividualId, f64)> = (0..10).map(|i| (i, i as f64 / 10.0)).collect();
        for how in [Emigrants::Random, Emigrants::Tournament] {
            for _ in 0..50 {
                let mut got = choose_emigrants(candidates.clone(), 3, how, &mut rng);
                assert!(!got.is_empty() && got.len() <= 3, "{how:?}: {got:?}");
                got.sort_unstable();
                got.dedup();
                assert!(got.iter().all(|id| *id < 10));
            }
        }
        // A tournament never sends the worst of all when it can send another: the worst
        // only wins against itself.
        let mut worst = 0;
        for _ in 0..1000 {
            if choose_emigrants(candidates.clone(), 1, Emigrants::Tournament, &mut rng) == vec![0] {
                worst += 1;
            }
        }
        assert!(worst < 30, "the worst won {worst} of 1,000 tournaments");
    }

    #[test]
    fn a_ring_sends_to_the_next_peer_after_this_node() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let peers: Vec<String> = ["b", "d", "f"].iter().map(|s| s.to_string()).collect();
        let ring = |me: &str, rng: &mut ChaCha8Rng| destination(Destination::Ring, &peers, me, rng);
        assert_eq!(ring("a", &mut rng).as_deref(), Some("b"));
        assert_eq!(ring("c", &mut rng).as_deref(), Some("d"));
        assert_eq!(ring("e", &mut rng).as_deref(), Some("f"));
        assert_eq!(ring("g", &mut rng).as_deref(), Some("b"));
        assert_eq!(destination(Destination::Ring, &[], "a", &mut rng), None);
        assert_eq!(destination(Destination::Random, &[], "a", &mut rng), None);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen.insert(destination(Destination::Random, &peers, "a", &mut rng).unwrap());
        }
        assert_eq!(seen.len(), 3);
    }
}
