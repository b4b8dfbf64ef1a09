//! Thirty islands in one process over libp2p's in-memory transport: each is a real shard
//! with a real training worker (no stand-in: the trainer is real, but the data set is a
//! tiny synthetic one of 8x8 images and each individual trains for 2 steps, so that
//! thirty nodes fit one test). Every node joins through a random earlier node. Once every
//! node has finished its individuals, every node must learn the experiment-wide best
//! within a bounded time; the test prints that time and the gossip traffic per node
//! (`cargo test -p node --test scale -- --nocapture`).

// A failed unwrap is the test failing.
#![allow(clippy::unwrap_used)]

use node::config::ExperimentConfig;
use node::launch::{start, Networking, NodeSetup};
use node::messages::GetStatus;
use node::population::Population;
use node::report::{OutputMode, Reporter};
use node::shard::ShardSetup;
use node::state::StateDir;
use protocol::behaviour::SwarmOptions;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::time::{Duration, Instant};
use trainer::data::{Dataset, Split};
use trainer::{Device, Task};

const NODES: usize = 30;

/// 8x8 RGB images whose class is the slightly brighter channel, under heavy noise (so
/// that briefly trained individuals differ in accuracy).
fn split(n: usize, seed: u64) -> Split {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut images = Vec::with_capacity(n * 192);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 3) as u32;
        for c in 0..3u32 {
            for _ in 0..64 {
                let base = if c == class { 110 } else { 100 };
                images.push(base + rng.random_range(0..100u8));
            }
        }
        labels.push(class);
    }
    Split { images, labels }
}

fn config(state: &Path) -> ExperimentConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/quick-cifar10.toml");
    let mut c = ExperimentConfig::load(&path).unwrap();
    for o in [
        "data.name=colours".to_string(),
        "data.validation_images=30".into(),
        "training.steps=2".into(),
        "training.batch=10".into(),
        "training.log_every=0".into(),
        "evolution.population_size=4".into(),
        "evolution.initial_population=2".into(),
        "stop.max_individuals=6".into(),
        "migration.every=0".into(),
        format!("node.state_dir={}", state.display()),
    ] {
        c.apply_override_str(&o).unwrap();
    }
    c.validate().unwrap();
    c
}

#[test]
fn thirty_islands_learn_the_experiment_wide_best() {
    let dir = tempfile::tempdir().unwrap();
    let dataset: &'static Dataset = Box::leak(Box::new(Dataset {
        name: "colours".into(),
        classes: vec!["r".into(), "g".into(), "b".into()],
        height: 8,
        width: 8,
        channels: 3,
        train: split(150, 1),
        test: split(30, 2),
    }));
    let task: &'static Task<'static> = Box::leak(Box::new(Task::new(dataset, 30, 0).unwrap()));
    let input = genome::InputShape {
        height: 8,
        width: 8,
        channels: 3,
    };
    let base_port = rand::rng().random_range(1_000_000u64..2_000_000);
    let system = actix_rt::System::new();
    system.block_on(async move {
        let mut shards = Vec::new();
        // The handles live as long as the test: their runs end with it.
        let mut nodes = Vec::new();
        let mut addresses: Vec<String> = Vec::new();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for i in 0..NODES {
            let config = config(&dir.path().join(format!("n{i}")));
            let state = StateDir::create(&config.state_dir(), &config).unwrap();
            let key = libp2p::identity::Keypair::generate_ed25519();
            let peer_id = key.public().to_peer_id();
            let identity = node::network::Identity {
                experiment: node::shard::experiment_id(&config),
                fingerprint: config.fitness_fingerprint(),
                settings_json: config.fitness_settings().canonical(),
                limits: config.evolution.limits,
            };
            let mutation_weights = config.evolution.weights().unwrap();
            let port = base_port + i as u64;
            let bootstrap: Vec<libp2p::Multiaddr> = if i == 0 {
                Vec::new()
            } else {
                vec![addresses[rng.random_range(0..i)].parse().unwrap()]
            };
            // Started as `evo run` starts a node, with no HTTP endpoint.
            let node = start(NodeSetup {
                shard: ShardSetup {
                    state,
                    population: Population::new(4, config.evolution.strategy()),
                    config,
                    records: Vec::new(),
                    next_id: 0,
                    wall_before_ms: 0,
                    node_id: peer_id.to_string(),
                    input,
                    classes: 3,
                    workers: 1,
                    data_digest: None,
                    reporter: Reporter::new(OutputMode::Quiet, 1),
                    waiting: Vec::new(),
                    mutation_weights,
                    memory_budgets: vec![None],
                },
                task,
                devices: vec![Device::Cpu],
                http: None,
                network: Some(Networking {
                    key,
                    options: SwarmOptions {
                        memory: true,
                        ..Default::default()
                    },
                    identity,
                    listen: vec![format!("/memory/{port}").parse().unwrap()],
                    bootstrap,
                }),
            })
            .unwrap();
            shards.push(node.shard.clone());
            nodes.push(node);
            addresses.push(format!("/memory/{port}/p2p/{peer_id}"));
        }

        // Every node trains its individuals, then stops training (its network goes on).
        let start = Instant::now();
        loop {
            let mut done = 0;
            for s in &shards {
                if s.send(GetStatus).await.unwrap().stopping.is_some() {
                    done += 1;
                }
            }
            if done == NODES {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "only {done} of {NODES} nodes finished training"
            );
            actix_rt::time::sleep(Duration::from_millis(200)).await;
        }
        let trained_at = Instant::now();
        let mut own = Vec::new();
        for s in &shards {
            own.push(s.send(GetStatus).await.unwrap().best_fitness.unwrap_or(0.0));
        }
        let best = own.iter().cloned().fold(f64::MIN, f64::max);
        // Nodes that can only know the best through gossip.
        let learners = own.iter().filter(|f| **f < best).count();
        assert!(learners > 0, "every node found the best itself: {own:?}");
        // Every node learns of the experiment-wide best.
        let bound = Duration::from_secs(60);
        loop {
            let mut knowing = 0;
            for s in &shards {
                let st = s.send(GetStatus).await.unwrap();
                if st.experiment_best.is_some_and(|b| b.fitness >= best) {
                    knowing += 1;
                }
            }
            if knowing == NODES {
                break;
            }
            assert!(
                trained_at.elapsed() < bound,
                "after {bound:?} only {knowing} of {NODES} nodes know the best ({best})"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let converged = trained_at.elapsed();
        let total = start.elapsed();
        let (mut out, mut inn, mut peers) = (0u64, 0u64, 0usize);
        for s in &shards {
            let st = s.send(GetStatus).await.unwrap();
            out += st.gossip_bytes_out;
            inn += st.gossip_bytes_in;
            peers += st.connected_peers;
        }
        eprintln!(
            "{NODES} nodes ({learners} without the best themselves): every node knew the \
             best ({best:.3}) {:.2} s after the last finished training ({:.1} s in all); gossip payload per node: {:.1} KiB out, \
             {:.1} KiB in ({:.1} KiB/s in); {:.1} connected peers per node",
            converged.as_secs_f64(),
            total.as_secs_f64(),
            out as f64 / NODES as f64 / 1024.0,
            inn as f64 / NODES as f64 / 1024.0,
            inn as f64 / NODES as f64 / 1024.0 / total.as_secs_f64(),
            peers as f64 / NODES as f64,
        );
        actix_rt::System::current().stop();
    });
}
