//! The other islands: what gossip says of them ([`Island`], the experiment's best) and
//! what this island announces; the network's events as the shard takes them.

use super::Shard;
use crate::config::FitnessSettings;
use crate::network::{Command, NetEvent};
use crate::population::IndividualId;
use crate::state::now_ms;
use crate::view::{IslandBest, PeerView};
use protocol::wire::{Announcement, Request, Response, Summary};

/// What gossip told of another island.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Island {
    /// Its live members.
    pub(super) population: u32,
    /// Individuals it has trained.
    pub(super) trained: u64,
    /// Its best, as it announced it.
    pub(super) best: Option<Summary>,
    /// When it was last heard of, Unix milliseconds.
    pub(super) last_contact_ms: u64,
}

impl Island {
    /// What an announcement heard at `now_ms` says of the island.
    pub(super) fn heard(a: &Announcement, now_ms: u64) -> Island {
        Island {
            population: a.population,
            trained: a.trained,
            best: a.best.clone(),
            last_contact_ms: now_ms,
        }
    }

    /// Its best, as the endpoint shows it.
    fn best_view(&self) -> Option<IslandBest> {
        self.best.as_ref().map(|b| IslandBest {
            island: b.island.clone(),
            id: b.id,
            fitness: b.fitness,
        })
    }
}

/// One point of an island's curve: what an announcement said when it was heard.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CurvePoint {
    /// When it was heard, Unix milliseconds.
    pub at_ms: u64,
    /// The island's best fitness then.
    pub best: Option<f64>,
    /// The FLOPs it had spent.
    pub flops: f64,
}

/// Most points kept of one island's curve; beyond, the older half is thinned.
pub const MAX_CURVE_POINTS: usize = 2000;

/// How long a curve goes without a point when its best does not change, milliseconds.
pub const CURVE_QUIET_MS: u64 = 10_000;

/// Adds `p` to an island's curve when it says something new: a first point, another
/// best, or (FLOPs spent) a quiet spell of [`CURVE_QUIET_MS`]. A curve over
/// [`MAX_CURVE_POINTS`] loses every other point of its older half, so that it stays
/// small however long the run and keeps its recent detail.
pub fn extend_curve(curve: &mut Vec<CurvePoint>, p: CurvePoint) {
    let new = match curve.last() {
        None => true,
        Some(last) => {
            last.best != p.best
                || (p.at_ms >= last.at_ms.saturating_add(CURVE_QUIET_MS) && p.flops != last.flops)
        }
    };
    if !new {
        return;
    }
    curve.push(p);
    if curve.len() > MAX_CURVE_POINTS {
        let half = curve.len() / 2;
        let older: Vec<CurvePoint> = curve[..half].iter().step_by(2).copied().collect();
        curve.splice(..half, older);
    }
}

/// The best of the experiment: of `ours` (this island's best) and the best of every
/// island gossip has told of, the highest fitness (NaN never wins over a number).
pub fn experiment_best(
    ours: Option<IslandBest>,
    theirs: impl IntoIterator<Item = IslandBest>,
) -> Option<IslandBest> {
    ours.into_iter()
        .chain(theirs)
        .filter(|b| b.fitness.is_finite())
        .max_by(|a, b| a.fitness.total_cmp(&b.fitness))
}

impl Shard {
    /// The best individual of the experiment that gossip has told of, ours included.
    pub(super) fn best_of_experiment(&self) -> Option<IslandBest> {
        let ours = self.population.best().and_then(|m| {
            let f = m.fitness.filter(|f| f.is_finite())?;
            Some(IslandBest {
                island: self.node_id.clone(),
                id: m.id,
                fitness: f,
            })
        });
        experiment_best(ours, self.islands.values().filter_map(Island::best_view))
    }

    pub(super) fn peers_view(&self) -> Vec<PeerView> {
        let mut names: std::collections::BTreeSet<&String> = self.connected.iter().collect();
        names.extend(self.islands.keys());
        names
            .into_iter()
            .map(|name| {
                let island = self.islands.get(name);
                PeerView {
                    peer_id: name.clone(),
                    connected: self.connected.contains(name),
                    population: island.map(|i| i.population),
                    trained: island.map(|i| i.trained),
                    best: island.and_then(Island::best_view),
                    last_contact_ms: island.map(|i| i.last_contact_ms),
                }
            })
            .collect()
    }

    /// What gossip carries of one of our individuals.
    pub(super) fn summary(&self, id: IndividualId) -> Option<Summary> {
        let r = self.records.get(&id)?;
        let fitness = r.fitness.filter(|f| (0.0..=1.0).contains(f))?;
        Some(Summary {
            id,
            island: self.node_id.clone(),
            genome: r.genome.clone(),
            fitness,
            parent: r.parent,
            mutations: r.mutations.clone(),
            flops: r.flops,
            born_at_ms: r.born_at_ms,
        })
    }

    /// Tells the experiment how this island stands.
    pub(super) fn announce(&self) {
        let Some(network) = &self.network else {
            return;
        };
        let best_id = self.population.best().map(|m| m.id);
        let best = best_id.and_then(|id| self.summary(id));
        let newborn = self
            .last_born
            .filter(|id| Some(*id) != best_id)
            .and_then(|id| self.summary(id));
        network.send(Command::Announce(Box::new(Announcement {
            experiment: self.experiment_id.clone(),
            island: self.node_id.clone(),
            sent_at_ms: now_ms(),
            population: self.population.alive_count() as u32,
            trained: self.records.len() as u64,
            flops: self.total_flops,
            best,
            newborn,
        })));
    }

    pub(super) fn on_net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::Listening(addr) => {
                self.reporter.line(&format!("listening on {addr}"));
                self.reporter
                    .json(serde_json::json!({"event": "listening", "address": addr}));
                self.listen_addrs.push(addr);
            }
            NetEvent::Connected(peer) => {
                self.connected.insert(peer);
            }
            NetEvent::Disconnected(peer) => {
                self.connected.remove(&peer);
                self.compatible.remove(&peer);
            }
            NetEvent::Compatible(peer) => {
                self.compatible.insert(peer.clone());
                self.reporter
                    .line(&format!("peer {peer} joined the experiment"));
                self.announce();
                if self.fresh && !self.pulled {
                    self.pull(peer);
                }
            }
            NetEvent::Incompatible {
                peer,
                theirs,
                bootstrap,
            } => {
                let ours = FitnessSettings {
                    data_digest: self.data_digest.clone(),
                    ..self.config.fitness_settings()
                };
                let differences = serde_json::from_str::<FitnessSettings>(&theirs)
                    .map(|t| ours.differences(&t).join("; "))
                    .unwrap_or_else(|_| "unreadable settings".into());
                let text = format!(
                    "peer {peer} runs the experiment with other fitness settings \
                     (ours vs theirs: {differences})"
                );
                if bootstrap {
                    self.finish(
                        "refused to join".into(),
                        Some(format!(
                            "{text}: this node's config differs from the experiment's"
                        )),
                    );
                } else {
                    self.reporter.line(&format!("{text}: disconnected"));
                }
            }
            NetEvent::Announcement(a) => {
                if a.island == self.node_id {
                    return;
                }
                let now = now_ms();
                let point = CurvePoint {
                    at_ms: now,
                    best: a.best.as_ref().map(|b| b.fitness),
                    flops: a.flops,
                };
                extend_curve(
                    self.island_curves.entry(a.island.clone()).or_default(),
                    point,
                );
                self.islands
                    .insert(a.island.clone(), Island::heard(&a, now));
            }
            NetEvent::Request { id, peer, request } => {
                let response = match *request {
                    Request::Hello { .. } => Response::Refused {
                        reason: "hellos are answered by the network".into(),
                    },
                    Request::Migrate { migrants, .. } => self.admit_migrants(&peer, migrants),
                    // Answered once its emigrants are read, off this thread.
                    Request::Pull { count, .. } => {
                        return self.answer_pull(id, peer, count as usize);
                    }
                };
                if let Some(n) = &self.network {
                    n.send(Command::Respond {
                        id,
                        response: Box::new(response),
                    });
                }
            }
            NetEvent::Penalized { peer, reason } => {
                self.penalized += 1;
                self.reporter
                    .line(&format!("peer {peer} disconnected: {reason}"));
            }
            NetEvent::Log(text) => self.reporter.line(&text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(at_ms: u64, best: f64, flops: f64) -> CurvePoint {
        CurvePoint {
            at_ms,
            best: Some(best),
            flops,
        }
    }

    #[test]
    fn a_curve_keeps_what_changed_and_stays_small() {
        let mut c = Vec::new();
        extend_curve(&mut c, point(0, 0.3, 1.0));
        // Same best, soon after: nothing new.
        extend_curve(&mut c, point(1_000, 0.3, 2.0));
        assert_eq!(c.len(), 1);
        // Another best: kept at once.
        extend_curve(&mut c, point(2_000, 0.4, 3.0));
        // A quiet spell with FLOPs spent: kept; without: not.
        extend_curve(&mut c, point(12_000, 0.4, 9.0));
        extend_curve(&mut c, point(30_000, 0.4, 9.0));
        assert_eq!(
            c.iter().map(|p| p.at_ms).collect::<Vec<_>>(),
            vec![0, 2_000, 12_000]
        );
        // However many bests, it stays under the cap and keeps the newest.
        let mut c = Vec::new();
        for i in 0..10_000u64 {
            extend_curve(&mut c, point(i, i as f64, i as f64));
            assert!(c.len() <= MAX_CURVE_POINTS);
        }
        assert_eq!(c.last().map(|p| p.at_ms), Some(9_999));
        assert_eq!(c[0].at_ms, 0);
        assert!(c.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    fn best(island: &str, fitness: f64) -> IslandBest {
        IslandBest {
            island: island.into(),
            id: 1,
            fitness,
        }
    }

    #[test]
    fn the_experiment_s_best_is_the_best_of_every_island_heard_of() {
        let got = experiment_best(Some(best("us", 0.5)), [best("a", 0.7), best("b", 0.6)]);
        assert_eq!(got.map(|b| b.island), Some("a".to_string()));
        let got = experiment_best(Some(best("us", 0.8)), [best("a", 0.7)]);
        assert_eq!(got.map(|b| b.island), Some("us".to_string()));
        let got = experiment_best(None, [best("a", f64::NAN), best("b", 0.1)]);
        assert_eq!(got.map(|b| b.island), Some("b".to_string()));
        assert!(experiment_best(None, []).is_none());
    }
}
