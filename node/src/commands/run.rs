//! `evo run`: start an experiment, or resume one from its state directory, and evolve
//! until a stop condition of the config is met or the node is stopped (Ctrl-C, SIGTERM).
//!
//! Everything that can be wrong is checked before anything is written: the config, the
//! HTTP address (bound first, so a port in use is an error at once), the device, the
//! state directory (every file, before it is repaired) and the data set (loaded before a
//! new state directory is created).

use anyhow::{bail, Context, Result};
use clap::Args;
use genome::{Genome, InputShape};
use node::config::{ExperimentConfig, FitnessSettings};
use node::launch::{Networking, NodeSetup};
use node::messages::Shutdown;
use node::population::Population;
use node::report::{OutputMode, Reporter};
use node::shard::{RunEnd, Shard, ShardSetup};
use node::state::{Event, StateDir, ARRIVAL_FILE};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use trainer::data::LoadOptions;
use trainer::Task;

/// Options of `evo run`. Any config key can also be given as a flag by its dotted name
/// (`--training.steps 100`, `--evolution.population_size=50`) or as `KEY=VALUE`.
#[derive(Args)]
pub struct RunArgs {
    /// The experiment config (TOML); without it, the config frozen in --state-dir.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The data set folder (sets data.path).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The state directory (sets node.state_dir; default state/<experiment name>). An
    /// existing one is resumed.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Address of the HTTP endpoint (sets node.http).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Training workers: a number, or auto to choose from the machine (sets
    /// node.workers).
    #[arg(long, value_name = "N|auto")]
    workers: Option<String>,
    /// Device: cpu, cuda (every GPU), cuda:N or a list cuda:0,cuda:1 (sets node.device).
    #[arg(long)]
    device: Option<String>,
    /// Stop after this many minutes of wall time, earlier sessions included (sets
    /// stop.max_wall_minutes).
    #[arg(long)]
    max_minutes: Option<f64>,
    /// The experiment's seed (sets experiment.seed; only for a new run).
    #[arg(long)]
    seed: Option<u64>,
    /// Listen for peers on this multiaddr (repeatable; default: all interfaces, a random
    /// TCP port). The full address is printed at start and shown by `GET /status`.
    #[arg(long, value_name = "MULTIADDR")]
    listen: Vec<String>,
    /// Join the experiment through this peer (repeatable): a full address ending in
    /// `/p2p/<peer id>`, as another node prints it.
    #[arg(long, value_name = "MULTIADDR")]
    bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS.
    #[arg(long)]
    mdns: bool,
    /// The experiment's pre-shared key, a file of 64 hex digits (or a go-ipfs
    /// `swarm.key`): only nodes holding it can connect.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    /// Run alone: no libp2p networking.
    #[arg(long, conflicts_with_all = ["listen", "bootstrap", "mdns", "key_file"])]
    offline: bool,
    /// With --offline, a new state directory's node identity is derived from this number
    /// instead of drawn at random: the node id enters the node's random choices, so two
    /// offline runs of one config, seed and identity seed on one worker and thread make
    /// the same choices (e.g. the arms of a benchmark). A resumed run keeps its identity.
    #[arg(long, requires = "offline", value_name = "N")]
    identity_seed: Option<u64>,
    /// Print only errors and the final summary.
    #[arg(long, conflicts_with = "json_log")]
    quiet: bool,
    /// Print every event as a JSON line on stdout (and nothing else there).
    #[arg(long)]
    json_log: bool,
    /// Config overrides, KEY=VALUE (e.g. training.steps=100).
    #[arg(value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Rewrites `--a.b VALUE` and `--a.b=VALUE` (a config key given as a flag) into the
/// `a.b=VALUE` overrides `evo run` takes, so that clap sees them as positional values.
pub fn dotted_flags(args: Vec<String>) -> Vec<String> {
    let is_run = args.get(1).is_some_and(|a| a == "run");
    if !is_run {
        return args;
    }
    let mut out = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    let mut dotted = Vec::new();
    while let Some(arg) = iter.next() {
        match arg.strip_prefix("--") {
            Some(flag) if flag.contains('.') && !flag.starts_with('.') => {
                if flag.contains('=') {
                    dotted.push(flag.to_string());
                } else {
                    let value = iter.next().unwrap_or_default();
                    dotted.push(format!("{flag}={value}"));
                }
            }
            _ => out.push(arg),
        }
    }
    out.extend(dotted);
    out
}

/// The effective configuration: `base` with the flags and overrides applied, in that
/// order, then validated.
fn effective_config(mut config: ExperimentConfig, args: &RunArgs) -> Result<ExperimentConfig> {
    let mut overrides: Vec<(String, String)> = Vec::new();
    if let Some(d) = &args.data {
        overrides.push(("data.path".into(), d.display().to_string()));
    }
    if let Some(d) = &args.state_dir {
        overrides.push(("node.state_dir".into(), d.display().to_string()));
    }
    if let Some(h) = &args.http {
        overrides.push(("node.http".into(), h.to_string()));
    }
    if let Some(w) = &args.workers {
        overrides.push(("node.workers".into(), w.clone()));
    }
    if let Some(d) = &args.device {
        overrides.push(("node.device".into(), d.clone()));
    }
    if let Some(m) = args.max_minutes {
        overrides.push(("stop.max_wall_minutes".into(), format!("{m:?}")));
    }
    if let Some(s) = args.seed {
        overrides.push(("experiment.seed".into(), s.to_string()));
    }
    for (key, value) in overrides {
        config
            .apply_override(&key, &value)
            .with_context(|| format!("setting {key} from its flag"))?;
    }
    for o in &args.overrides {
        config.apply_override_str(o)?;
    }
    config.validate()?;
    Ok(config)
}

/// Runs `evo run`.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let mode = if args.quiet {
        OutputMode::Quiet
    } else if args.json_log {
        OutputMode::Json
    } else {
        OutputMode::Human
    };
    // The config: the file given, else the one frozen in the state directory.
    let frozen_dir = args
        .state_dir
        .clone()
        .filter(|d| d.join(node::state::CONFIG_FILE).is_file());
    let base = match (&args.config, &frozen_dir) {
        (Some(path), _) => ExperimentConfig::load(path)?,
        (None, Some(dir)) => ExperimentConfig::load(&dir.join(node::state::CONFIG_FILE))
            .with_context(|| format!("reading the config of the run in {}", dir.display()))?,
        (None, None) => bail!(
            "no config: give --config FILE (e.g. --config configs/quick-cifar10.toml), or \
             --state-dir DIR of an existing run to resume it"
        ),
    };
    let config = effective_config(base, &args)?;
    let state_path = config.state_dir();
    let resuming = state_path.join(node::state::CONFIG_FILE).is_file();
    if resuming && args.seed.is_some() {
        bail!(
            "--seed applies to a new run only; {} is resumed with its own seed",
            state_path.display()
        );
    }

    // The HTTP port first: a port in use stops us before anything is touched.
    let listener = TcpListener::bind(config.node.http).with_context(|| {
        format!(
            "cannot listen on {} for the HTTP endpoint (is another evo node running? \
             choose another address with --http ADDR)",
            config.node.http
        )
    })?;
    let http_addr = listener.local_addr().unwrap_or(config.node.http);
    let devices = trainer::device::open_all(&config.node.device)
        .with_context(|| format!("opening the device {:?}", config.node.device))?;
    // Before anything trains or loads: the pool is built once.
    let threads_configured = trainer::threads::configure(config.node.threads);
    let threads = trainer::threads::count();
    let network_plan = NetworkPlan::from_args(&args)?;

    // An existing state directory is opened (and checked) before the data set is read;
    // a new one is created only once the data set is known to be good.
    let resumed = if resuming {
        let resumed = StateDir::open(&state_path)
            .with_context(|| format!("opening the state directory {}", state_path.display()))?;
        resumed.state.check_compatible(&config).with_context(|| {
            format!(
                "the config differs from the one {} was started with",
                state_path.display()
            )
        })?;
        Some(resumed)
    } else {
        None
    };
    let data_path = &config.data.path;
    if !data_path.exists() {
        bail!(
            "no data set at {}: download CIFAR-10 with `evo data fetch cifar10 --dir data` \
             (it unpacks to data/cifar-10-batches-bin), or pass --data DIR",
            data_path.display()
        );
    }
    let load_start = std::time::Instant::now();
    let options = LoadOptions {
        label_mode: config.data.labels.label_mode(),
        ..LoadOptions::default()
    };
    let dataset = trainer::data::load(data_path, &options)
        .with_context(|| format!("loading the data set at {}", data_path.display()))?;
    let input = InputShape {
        height: dataset.height,
        width: dataset.width,
        channels: dataset.channels,
    };
    let classes = dataset.num_classes() as u32;
    Genome::initial(input, classes)
        .analyze(&config.evolution.limits)
        .context("the data set's images or classes are outside evolution.limits")?;
    let data_summary = format!(
        "{} in {:.1} s",
        dataset.describe(),
        load_start.elapsed().as_secs_f64()
    );
    // The data set and task live as long as the process: the workers borrow them.
    let dataset: &'static trainer::data::Dataset = Box::leak(Box::new(dataset));
    let task = Task::new(
        dataset,
        config.data.validation_images,
        config.data.split_seed,
    )
    .context("holding out the validation images")?;
    let task: &'static Task<'static> = Box::leak(Box::new(task));

    let strategy = config.evolution.strategy();
    let (state, records, population, next_id, wall_before_ms, waiting) = match resumed {
        Some(r) => {
            let population = r
                .population(config.evolution.population_size, strategy)
                .context("rebuilding the population")?;
            // A migrant that was waiting to be scored is scored now; any other folder
            // without a record is an unfinished training, removed.
            let mut waiting = Vec::new();
            for id in r.orphans.iter().chain(&r.lost) {
                if r.state.individual_dir(*id).join(ARRIVAL_FILE).exists() {
                    match r.state.models().load_arrival(*id) {
                        Ok(a) => {
                            waiting.push(a);
                            continue;
                        }
                        Err(e) => eprintln!("the migrant waiting as #{id} is dropped: {e}"),
                    }
                }
                r.state
                    .discard(*id)
                    .with_context(|| format!("removing the unfinished individual {id}"))?;
            }
            for q in &r.quarantined {
                eprintln!(
                    "individual #{id} was damaged and is in quarantine ({}): {}{}",
                    q.path.display(),
                    q.reason,
                    match q.damage {
                        node::state::Damage::Record => "; it is left out",
                        node::state::Damage::Model => "; it counts as dead",
                    },
                    id = q.id,
                );
            }
            let mut state = r.state;
            state.append(&Event::Resumed {
                at_ms: node::state::now_ms(),
                lost: r.lost.clone(),
            })?;
            if mode == OutputMode::Human {
                eprintln!(
                    "resuming {}: {} individuals ({} alive), {} trainings lost in flight, \
                     {} migrants waiting to be scored, {} damaged individuals quarantined{}",
                    state_path.display(),
                    r.records.len(),
                    population.alive_count(),
                    r.lost.len(),
                    waiting.len(),
                    r.quarantined.len(),
                    r.torn_tail
                        .as_ref()
                        .map(|t| format!(", a torn last event line ({} bytes) cut off", t.bytes))
                        .unwrap_or_default()
                );
            }
            (state, r.records, population, r.next_id, r.wall_ms, waiting)
        }
        None => {
            let state = StateDir::create(&state_path, &config).with_context(|| {
                format!("creating the state directory {}", state_path.display())
            })?;
            let population = Population::new(config.evolution.population_size, strategy);
            (state, Vec::new(), population, 0, 0, Vec::new())
        }
    };
    let population = population.with_cheaper_within(config.evolution.tournament_cheaper_within);
    // The key a new state directory gets: derived from --identity-seed, or random.
    let new_key = match args.identity_seed {
        Some(seed) => libp2p::identity::Keypair::ed25519_from_bytes(seeded_identity_bytes(seed))
            .context("deriving the node identity from --identity-seed")?,
        None => libp2p::identity::Keypair::generate_ed25519(),
    };
    let key = libp2p::identity::Keypair::from_protobuf_encoding(
        &state.node_key(|| new_key.to_protobuf_encoding().unwrap_or_default())?,
    )
    .with_context(|| {
        format!(
            "{} is not a libp2p identity key",
            state_path.join(node::state::NODE_KEY_FILE).display()
        )
    })?;
    let node_id = key.public().to_peer_id().to_string();
    // Peers compare the data actually loaded, not only its name.
    let fitness = FitnessSettings {
        data_digest: Some(dataset.digest()),
        ..config.fitness_settings()
    };
    let identity = node::network::Identity {
        experiment: node::shard::experiment_id(&config),
        fingerprint: fitness.fingerprint(),
        settings_json: fitness.canonical(),
        limits: config.evolution.limits,
    };
    // Each device's memory budget; the workers are spread over the devices in turn.
    let memory_budgets: Vec<Option<u64>> = devices
        .iter()
        .map(|d| {
            node::memory_budget::budget_bytes(
                config.node.memory_gib,
                trainer::device::memory_gib(d),
            )
        })
        .collect();
    let workers = config.node.workers.resolve(
        &config.node.device,
        threads,
        devices.first().and_then(trainer::device::memory_gib),
        config.evolution.population_size,
    ) * if config.node.workers == node::config::Workers::Auto {
        devices.len()
    } else {
        1
    };
    let device_names = devices
        .iter()
        .map(trainer::device::describe)
        .collect::<Vec<_>>()
        .join(", ");
    if mode == OutputMode::Human {
        eprintln!("data: {data_summary}");
        eprintln!(
            "node {node_id}: experiment {} ({} selection, population {}), state {}, \
             {workers} worker(s) on {} ({threads} CPU threads{})",
            config.experiment.name,
            match config.evolution.selection {
                node::config::Selection::Tournament => "tournament",
                node::config::Selection::Aging => "aging",
            },
            config.evolution.population_size,
            state_path.display(),
            device_names,
            if threads_configured {
                ""
            } else {
                ", node.threads came too late"
            },
        );
    }
    if mode != OutputMode::Json {
        // Said even when quiet: it is where to watch the run.
        eprintln!("dashboard: {}", dashboard_url(http_addr));
    }
    let mutation_weights = config
        .evolution
        .weights()
        .context("reading evolution.mutation_weights")?;
    let network = match network_plan {
        Some(plan) => Some(Networking {
            options: plan.options(identity.limits),
            key,
            identity,
            listen: plan.listen,
            bootstrap: plan.bootstrap,
        }),
        None => None,
    };
    let setup = NodeSetup {
        shard: ShardSetup {
            state,
            config,
            records,
            population,
            next_id,
            wall_before_ms,
            node_id,
            input,
            classes,
            workers,
            data_digest: fitness.data_digest.clone(),
            reporter: Reporter::new(mode, workers),
            waiting,
            mutation_weights,
            memory_budgets,
        },
        task,
        devices,
        http: Some(listener),
        network,
    };
    let system = actix_rt::System::new();
    let end: Result<RunEnd> = system.block_on(async move {
        let node = node::launch::start(setup)?;
        actix_rt::spawn(watch_signals(node.shard.clone()));
        Ok(node.ended().await?)
    });
    let end = end?;
    summarize(&end, mode, &state_path);
    Ok(match end.error {
        Some(_) => ExitCode::FAILURE,
        None => ExitCode::SUCCESS,
    })
}

/// The dashboard's address for a node whose endpoint listens on `addr` (an unspecified
/// address such as 0.0.0.0 is reached on the loopback).
fn dashboard_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => "127.0.0.1".to_string(),
            SocketAddr::V6(_) => "[::1]".to_string(),
        }
    } else {
        match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        }
    };
    format!("http://{host}:{}/", addr.port())
}

/// The 32 bytes of the ed25519 secret key `--identity-seed` derives from `seed`
/// (splitmix64 steps from it, little-endian): the same seed always gives the same key.
fn seeded_identity_bytes(seed: u64) -> [u8; 32] {
    let mut z = seed;
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        chunk.copy_from_slice(&node::shard::splitmix64_mix(z).to_le_bytes());
    }
    out
}

/// Where and how the node meets its peers (`None` when `--offline`).
struct NetworkPlan {
    listen: Vec<libp2p::Multiaddr>,
    bootstrap: Vec<libp2p::Multiaddr>,
    mdns: bool,
    psk: Option<[u8; 32]>,
}

impl NetworkPlan {
    fn from_args(args: &RunArgs) -> Result<Option<NetworkPlan>> {
        if args.offline {
            return Ok(None);
        }
        let parse = |flag: &str, s: &String| -> Result<libp2p::Multiaddr> {
            s.parse()
                .with_context(|| format!("{flag} {s:?} is not a multiaddr"))
        };
        let mut listen = args
            .listen
            .iter()
            .map(|s| parse("--listen", s))
            .collect::<Result<Vec<_>>>()?;
        if listen.is_empty() {
            listen.push(parse("--listen", &"/ip4/0.0.0.0/tcp/0".to_string())?);
        }
        let bootstrap = args
            .bootstrap
            .iter()
            .map(|s| parse("--bootstrap", s))
            .collect::<Result<Vec<_>>>()?;
        for b in &bootstrap {
            if !matches!(b.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
                bail!("--bootstrap {b} must end in /p2p/<peer id> (as the other node prints it)");
            }
        }
        let psk = match &args.key_file {
            Some(path) => Some(read_psk(path)?),
            None => None,
        };
        Ok(Some(NetworkPlan {
            listen,
            bootstrap,
            mdns: args.mdns,
            psk,
        }))
    }

    fn options(&self, limits: genome::Limits) -> protocol::behaviour::SwarmOptions {
        protocol::behaviour::SwarmOptions {
            psk: self.psk,
            mdns: self.mdns,
            limits,
            ..Default::default()
        }
    }
}

/// Reads a pre-shared key: 64 hex digits, alone or as the last line of a go-ipfs
/// `swarm.key` (`/key/swarm/psk/1.0.0/`, `/base16/`, the digits).
fn read_psk(path: &Path) -> Result<[u8; 32]> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the key file {}", path.display()))?;
    protocol::key::parse_key(&bytes)
        .map_err(|e| anyhow::anyhow!("{} does not hold a key: {e}", path.display()))
}

/// Turns SIGINT and SIGTERM into a [`Shutdown`]; a second signal exits at once.
async fn watch_signals(shard: actix::Addr<Shard>) {
    #[cfg(unix)]
    {
        use actix_rt::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        let name = tokio_select(&mut int, &mut term).await;
        shard.do_send(Shutdown {
            reason: format!("stopped by {name}"),
        });
        let _ = tokio_select(&mut int, &mut term).await;
        eprintln!("second signal: exiting now");
        std::process::exit(130);
    }
    #[cfg(not(unix))]
    {
        if actix_rt::signal::ctrl_c().await.is_ok() {
            shard.do_send(Shutdown {
                reason: "stopped by Ctrl-C".into(),
            });
        }
        let _ = actix_rt::signal::ctrl_c().await;
        std::process::exit(130);
    }
}

/// Waits for either signal and names it.
#[cfg(unix)]
async fn tokio_select(
    int: &mut actix_rt::signal::unix::Signal,
    term: &mut actix_rt::signal::unix::Signal,
) -> &'static str {
    use futures::future::{select, Either};
    let a = Box::pin(int.recv());
    let b = Box::pin(term.recv());
    match select(a, b).await {
        Either::Left(_) => "SIGINT",
        Either::Right(_) => "SIGTERM",
    }
}

fn summarize(end: &RunEnd, mode: OutputMode, state: &Path) {
    let s = &end.status;
    let summary = serde_json::json!({
        "event": "summary",
        "reason": end.reason,
        "error": end.error,
        "individuals_trained": s.individuals_trained,
        "population_size": s.population_size,
        "best_individual": s.best_individual,
        "best_fitness": s.best_fitness,
        "total_flops": s.total_flops,
        "flops_per_s": s.flops_per_s,
        "seconds_by_phase": s.seconds_by_phase,
        "training_share": s.training_share,
        "workers": s.workers.len(),
        "run_minutes": s.run_minutes,
        "state_dir": state.display().to_string(),
    });
    match mode {
        OutputMode::Json => println!("{summary}"),
        OutputMode::Human | OutputMode::Quiet => {
            if let Some(e) = &end.error {
                eprintln!("error: {e}");
            }
            eprintln!(
                "run ended ({}): {} individuals trained, best #{} at {} validation accuracy, \
                 {:.3e} FLOPs ({:.2} GFLOP/s), {:.1} minutes, {:.0}% of the workers' time \
                 training (build {:.0} s, train {:.0} s, validate {:.0} s, save {:.0} s); \
                 export the best with `evo export --state-dir {} --out DIR`",
                end.reason,
                s.individuals_trained,
                s.best_individual
                    .map_or("-".to_string(), |id| id.to_string()),
                s.best_fitness
                    .map_or("-".to_string(), |f| format!("{:.2}%", 100.0 * f)),
                s.total_flops,
                s.flops_per_s / 1e9,
                s.run_minutes,
                100.0 * s.training_share,
                s.seconds_by_phase.build,
                s.seconds_by_phase.train,
                s.seconds_by_phase.validate,
                s.seconds_by_phase.save,
                state.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_seed_gives_one_valid_key_per_seed() {
        let id = |seed| {
            libp2p::identity::Keypair::ed25519_from_bytes(seeded_identity_bytes(seed))
                .map(|k| k.public().to_peer_id())
                .unwrap()
        };
        assert_eq!(id(0), id(0));
        assert_eq!(id(7), id(7));
        assert_ne!(id(0), id(1));
        assert_ne!(seeded_identity_bytes(1), seeded_identity_bytes(2));
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dotted_flags_become_overrides() {
        assert_eq!(
            dotted_flags(strings(&[
                "evo",
                "run",
                "--training.steps",
                "7",
                "--config",
                "c.toml",
                "--evolution.population_size=9",
                "data.name=x",
            ])),
            strings(&[
                "evo",
                "run",
                "--config",
                "c.toml",
                "data.name=x",
                "training.steps=7",
                "evolution.population_size=9",
            ])
        );
        // Other commands are left alone.
        let other = strings(&["evo", "train", "--a.b", "1"]);
        assert_eq!(dotted_flags(other.clone()), other);
    }
}
