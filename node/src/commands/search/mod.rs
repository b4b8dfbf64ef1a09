//! `evo bench search`: the search benchmark. Runs K seeds of a config for M minutes,
//! several at once, each pinned to cores of its own (`taskset`, `--node.threads`); can
//! train hand-picked reference nets for the same wall time on the same number of cores,
//! and run N islands per seed (each node on cores of its own); prints the best
//! validation accuracy every checkpoint, then per run the test accuracy of its best,
//! individuals trained, FLOPs and the share of wall time its workers spent training;
//! writes `summary.json` and `best-accuracy.svg` into its output folder.

mod summary;

use anyhow::{bail, Context, Result};
use clap::Args;
use genome::{InputShape, ReferenceNet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use summary::{summarize, trace_of};
use trainer::data::LoadOptions;

/// Options of `evo bench search`.
#[derive(Args)]
pub struct SearchArgs {
    /// The experiment config to benchmark.
    #[arg(long)]
    config: PathBuf,
    /// The data set folder.
    #[arg(long)]
    data: PathBuf,
    /// Where the runs, `summary.json` and the plot go (must not exist yet, or be empty).
    #[arg(long)]
    out: PathBuf,
    /// Wall-time minutes of each run.
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seeds to run: experiment seeds first-seed .. first-seed + seeds.
    #[arg(long, default_value_t = 4)]
    seeds: u64,
    /// The first experiment seed.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Cores (and training threads) of each run; each island gets this many too.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The cores to use (default: all of this machine's).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Also train this reference net (linear, small, mid, large) for the same minutes on
    /// the same cores per run, from scratch (repeatable): what a person would pick.
    #[arg(long)]
    reference: Vec<ReferenceNet>,
    /// The learning-rate schedule of the reference nets (constant or cosine; default:
    /// the config's `training.schedule`). Over a time budget the cosine follows the time.
    #[arg(long)]
    reference_schedule: Option<String>,
    /// Also run this many islands per seed (nodes joined over loopback, each on
    /// --threads cores of its own), beside the one-node runs.
    #[arg(long, default_value_t = 0)]
    islands: usize,
    /// Run the islands only for the first this many seeds (default: every seed).
    #[arg(long)]
    island_seeds: Option<u64>,
    /// Skip the one-node evolution runs (e.g. to add references to a benchmark).
    #[arg(long)]
    no_evolution: bool,
    /// A name for this arm in the output (default: the config's file name).
    #[arg(long)]
    label: Option<String>,
    /// Seconds between progress lines.
    #[arg(long, default_value_t = 60.0)]
    checkpoint: f64,
    /// The first TCP port for the runs' HTTP endpoints, each run taking the next one; 0
    /// (the default) lets each run bind a free port, which nothing can take in between.
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Keep the jobs already finished in --out (a run whose log ends with its summary, a
    /// reference whose result is written) and run only the others.
    #[arg(long)]
    resume: bool,
    /// Give each one-node run a fresh random node identity. By default a run's identity
    /// is derived from its seed (`evo run --identity-seed`), so that runs of one seed
    /// make the same choices until their configs or timings part and two arms pair up.
    #[arg(long)]
    fresh_identity: bool,
    /// Config overrides for every run, KEY=VALUE (as `evo run` takes them).
    #[arg(value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// What one job of the benchmark is.
#[derive(Debug, Clone)]
enum JobKind {
    /// One node evolving, with this experiment seed.
    Evolution(u64),
    /// `n` islands evolving together, with this experiment seed.
    Islands(u64, usize),
    /// A reference net trained for the wall time.
    Reference(ReferenceNet),
}

impl JobKind {
    fn name(&self) -> String {
        match self {
            JobKind::Evolution(s) => format!("evolution-seed-{s}"),
            JobKind::Islands(s, n) => format!("islands{n}-seed-{s}"),
            JobKind::Reference(net) => format!("reference-{}", net.name()),
        }
    }

    fn nodes(&self) -> usize {
        match self {
            JobKind::Islands(_, n) => *n,
            _ => 1,
        }
    }
}

/// A job that is running: its processes and the cores it holds.
struct Running {
    kind: JobKind,
    children: Vec<Child>,
    cores: Vec<usize>,
    dirs: Vec<PathBuf>,
    started: Instant,
}

/// A finished job's folders.
struct Done {
    kind: JobKind,
    dirs: Vec<PathBuf>,
}

/// Runs `evo bench search`.
pub fn run(args: SearchArgs) -> Result<()> {
    if args.minutes <= 0.0 || !args.minutes.is_finite() {
        bail!("--minutes must be positive");
    }
    if args.threads == 0 {
        bail!("--threads must be at least 1");
    }
    if args.islands == 1 {
        bail!("--islands takes 2 or more (0: none)");
    }
    let cores = if args.cores.is_empty() {
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect()
    } else {
        args.cores.clone()
    };
    let needed = args.threads * args.islands.max(1);
    if needed > cores.len() {
        bail!(
            "a job needs {needed} cores (--threads {} x {} nodes) but {} are available",
            args.threads,
            args.islands.max(1),
            cores.len()
        );
    }
    // Fail early on a config evo run would refuse.
    node::config::ExperimentConfig::load_with_overrides(&args.config, &args.overrides)
        .with_context(|| format!("reading {}", args.config.display()))?;
    if !args.resume && args.out.exists() && std::fs::read_dir(&args.out)?.next().is_some() {
        bail!(
            "{} exists and is not empty (--resume keeps what finished)",
            args.out.display()
        );
    }
    std::fs::create_dir_all(args.out.join("runs"))?;
    // Every run reads one frozen copy, so that editing the config meanwhile changes
    // nothing.
    let frozen = args.out.join("config.toml");
    if !(args.resume && frozen.exists()) {
        std::fs::copy(&args.config, &frozen)
            .with_context(|| format!("copying {}", args.config.display()))?;
    }
    let label = args.label.clone().unwrap_or_else(|| {
        args.config
            .file_stem()
            .map_or("config".into(), |s| s.to_string_lossy().into_owned())
    });
    let args = SearchArgs {
        config: frozen,
        label: Some(label),
        ..args
    };
    let pin = which("taskset");
    if !pin {
        eprintln!("warning: taskset not found: runs are not pinned to cores");
    }
    let evo = std::env::current_exe().context("finding the evo binary")?;
    let label = args.label.clone().unwrap_or_default();

    let mut queue: Vec<JobKind> = Vec::new();
    let seeds: Vec<u64> = (args.first_seed..args.first_seed + args.seeds).collect();
    for &s in &seeds {
        if !args.no_evolution {
            queue.push(JobKind::Evolution(s));
        }
        let island_seed = args
            .island_seeds
            .is_none_or(|k| s < args.first_seed.saturating_add(k));
        if args.islands >= 2 && island_seed {
            queue.push(JobKind::Islands(s, args.islands));
        }
    }
    queue.extend(args.reference.iter().copied().map(JobKind::Reference));
    let mut done: Vec<Done> = Vec::new();
    if args.resume {
        queue.retain(|kind| match finished_before(&args, kind) {
            Some(dirs) => {
                eprintln!("keeping {}, finished before", kind.name());
                done.push(Done {
                    kind: kind.clone(),
                    dirs,
                });
                false
            }
            None => true,
        });
    }
    eprintln!(
        "search benchmark {label}: {} job(s) of {} minutes, {} core(s) per node, cores {:?}",
        queue.len(),
        args.minutes,
        args.threads,
        cores
    );

    let mut free = cores.clone();
    let mut running: Vec<Running> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut port = args.port;
    let mut last_report = Instant::now();
    queue.reverse();
    while !queue.is_empty() || !running.is_empty() {
        // Start, in order, every job that fits in the free cores.
        while let Some(pos) = queue
            .iter()
            .rposition(|k| k.nodes() * args.threads <= free.len())
        {
            let kind = queue.remove(pos);
            let taken: Vec<usize> = free.drain(..kind.nodes() * args.threads).collect();
            let job = start(&args, &evo, pin, &kind, &taken, &mut port)?;
            eprintln!("started {} on cores {:?}", kind.name(), taken);
            running.push(job);
        }
        std::thread::sleep(Duration::from_millis(500));
        // Collect what ended.
        let mut i = 0;
        while i < running.len() {
            let outcome = finished(&mut running[i]);
            if matches!(outcome, Ok(false)) {
                i += 1;
                continue;
            }
            let mut job = running.remove(i);
            free.extend(&job.cores);
            free.sort_unstable();
            match outcome {
                Ok(_) => {
                    eprintln!(
                        "{} ended after {:.1} minutes",
                        job.kind.name(),
                        job.started.elapsed().as_secs_f64() / 60.0
                    );
                    done.push(Done {
                        kind: job.kind,
                        dirs: job.dirs,
                    });
                }
                Err(e) => {
                    // One failed job costs only itself: its islands are stopped, the
                    // other jobs go on.
                    for c in &mut job.children {
                        let _ = c.kill();
                        let _ = c.wait();
                    }
                    eprintln!("{} failed: {e:#}", job.kind.name());
                    failed.push(job.kind.name());
                }
            }
        }
        if last_report.elapsed().as_secs_f64() >= args.checkpoint && !running.is_empty() {
            last_report = Instant::now();
            progress(&running);
        }
    }
    summarize(&args, &label, &done)?;
    if !failed.is_empty() {
        bail!("{} job(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// The folders of `kind` if it finished in an earlier benchmark run in the same --out.
fn finished_before(args: &SearchArgs, kind: &JobKind) -> Option<Vec<PathBuf>> {
    let runs = args.out.join("runs");
    let name = kind.name();
    let ended = |state: &Path| {
        std::fs::read_to_string(state.with_extension("log"))
            .is_ok_and(|t| t.lines().any(|l| l.contains("\"event\":\"summary\"")))
    };
    match kind {
        JobKind::Evolution(_) => {
            let state = runs.join(&name);
            ended(&state).then(|| vec![state])
        }
        JobKind::Islands(_, n) => {
            let dirs: Vec<PathBuf> = (0..*n)
                .map(|i| runs.join(&name).join(format!("node-{i}")))
                .collect();
            dirs.iter().all(|d| ended(d)).then_some(dirs)
        }
        JobKind::Reference(_) => {
            let result = runs.join(format!("{name}.json.log"));
            std::fs::read_to_string(&result)
                .is_ok_and(|t| serde_json::from_str::<serde_json::Value>(t.trim()).is_ok())
                .then(|| vec![result])
        }
    }
}

/// Whether `program` is on the PATH.
fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

/// A command for `program`, pinned to `cores` when `pin`.
fn pinned(program: &Path, pin: bool, cores: &[usize]) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
        c.arg("-c").arg(list.join(",")).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// A log file for a process's output.
fn log_file(path: &Path) -> Result<Stdio> {
    Ok(std::fs::File::create(path)
        .with_context(|| format!("creating {}", path.display()))?
        .into())
}

/// The `evo run` command of one node.
fn run_command(
    args: &SearchArgs,
    evo: &Path,
    pin: bool,
    cores: &[usize],
    seed: u64,
    state: &Path,
    port: u16,
) -> Command {
    let mut c = pinned(evo, pin, cores);
    c.arg("run")
        .arg("--config")
        .arg(&args.config)
        .arg("--data")
        .arg(&args.data)
        .arg("--state-dir")
        .arg(state)
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--max-minutes")
        .arg(format!("{:?}", args.minutes))
        .arg("--http")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--json-log")
        .arg(format!("node.threads={}", args.threads))
        .args(&args.overrides)
        .stdin(Stdio::null());
    c
}

fn start(
    args: &SearchArgs,
    evo: &Path,
    pin: bool,
    kind: &JobKind,
    cores: &[usize],
    port: &mut u16,
) -> Result<Running> {
    let runs = args.out.join("runs");
    let name = kind.name();
    let mut children = Vec::new();
    let mut dirs = Vec::new();
    match kind {
        JobKind::Evolution(seed) => {
            let state = runs.join(&name);
            let mut c = run_command(args, evo, pin, cores, *seed, &state, next_port(port));
            c.arg("--offline");
            if !args.fresh_identity {
                c.arg("--identity-seed").arg(seed.to_string());
            }
            c.stdout(log_file(&state.with_extension("log"))?)
                .stderr(log_file(&runs.join(format!("{name}.err")))?);
            children.push(c.spawn().context("starting evo run")?);
            dirs.push(state);
        }
        JobKind::Islands(seed, n) => {
            let mut bootstrap: Option<String> = None;
            for i in 0..*n {
                let state = runs.join(&name).join(format!("node-{i}"));
                std::fs::create_dir_all(runs.join(&name))?;
                let node_cores = &cores[i * args.threads..(i + 1) * args.threads];
                let http = next_port(port);
                let mut c = run_command(args, evo, pin, node_cores, *seed, &state, http);
                c.arg("--listen").arg("/ip4/127.0.0.1/tcp/0");
                if let Some(addr) = &bootstrap {
                    c.arg("--bootstrap").arg(addr);
                }
                c.stdout(log_file(&state.with_extension("log"))?)
                    .stderr(log_file(&runs.join(&name).join(format!("node-{i}.err")))?);
                let mut child = c.spawn().context("starting evo run")?;
                if bootstrap.is_none() {
                    bootstrap = Some(listen_address(&state.with_extension("log"), &mut child)?);
                }
                children.push(child);
                dirs.push(state);
            }
        }
        JobKind::Reference(net) => {
            let genome_path = runs.join(format!("{name}.json"));
            let dataset_shape = data_shape(&args.data)?;
            let genome = net.genome(dataset_shape.0, dataset_shape.1);
            std::fs::write(&genome_path, genome.to_json())?;
            let config =
                node::config::ExperimentConfig::load_with_overrides(&args.config, &args.overrides)?;
            let t = &config.training;
            // The net gets the runs' wall time less what scoring it takes at the end.
            let seconds = (args.minutes * 60.0 - 10.0).max(1.0);
            let mut c = pinned(evo, pin, cores);
            c.arg("train")
                .arg("--genome")
                .arg(&genome_path)
                .arg("--data")
                .arg(&args.data)
                .arg("--steps")
                .arg(u64::MAX.to_string())
                .arg("--seconds")
                .arg(format!("{seconds:?}"))
                .arg("--batch")
                .arg(t.batch.to_string())
                .arg("--momentum")
                .arg(format!("{:?}", t.momentum))
                .arg("--weight-decay")
                .arg(format!("{:?}", t.weight_decay))
                .arg("--gradient-clip")
                .arg(format!("{:?}", t.gradient_clip))
                .arg("--warmup")
                .arg(format!("{:?}", t.warmup))
                .arg("--collapse-retry")
                .arg(format!("{:?}", t.collapse_retry))
                .arg("--validation")
                .arg(config.data.validation_images.to_string())
                .arg("--split-seed")
                .arg(config.data.split_seed.to_string())
                .arg("--threads")
                .arg(args.threads.to_string())
                .arg("--quiet")
                .stdin(Stdio::null())
                .stdout(log_file(&runs.join(format!("{name}.json.log")))?)
                .stderr(log_file(&runs.join(format!("{name}.err")))?);
            if !t.augment.enabled {
                c.arg("--no-augment");
            }
            let schedule = match &args.reference_schedule {
                Some(s) => s.clone(),
                None => match t.schedule {
                    trainer::Schedule::Constant => "constant".into(),
                    trainer::Schedule::Cosine => "cosine".into(),
                },
            };
            c.arg("--schedule").arg(schedule);
            children.push(c.spawn().context("starting evo train")?);
            dirs.push(runs.join(format!("{name}.json.log")));
        }
    }
    Ok(Running {
        kind: kind.clone(),
        children,
        cores: cores.to_vec(),
        dirs,
        started: Instant::now(),
    })
}

/// The input shape and class count of the data set at `path`.
fn data_shape(path: &Path) -> Result<(InputShape, u32)> {
    let d = trainer::data::load(path, &LoadOptions::default())
        .with_context(|| format!("loading {}", path.display()))?;
    Ok((
        InputShape {
            height: d.height,
            width: d.width,
            channels: d.channels,
        },
        d.num_classes() as u32,
    ))
}

/// The HTTP port for the next run: `port`, and the one after it next time; 0 stays 0
/// (each run binds a free port).
fn next_port(port: &mut u16) -> u16 {
    let this = *port;
    if this != 0 {
        *port = port.saturating_add(1);
    }
    this
}

/// The full listen address of the node writing its JSON log to `log`, once it has one
/// (its first `listening` event); an error if the node exits first or none comes within
/// two minutes.
fn listen_address(log: &Path, node: &mut std::process::Child) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(addr) = first_listen_address(&text) {
            return Ok(addr);
        }
        if let Some(exit) = node.try_wait()? {
            bail!(
                "the first island exited ({exit}) before it listened; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    bail!(
        "the first island never said where it listens (its log: {})",
        log.display()
    )
}

/// The address of the first `listening` event in a node's JSON log (lines that are not
/// JSON, or a last line still being written, are skipped).
fn first_listen_address(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "listening")
        .and_then(|e| e["address"].as_str().map(str::to_string))
}

/// Whether every process of `job` has exited (an error for one that failed).
fn finished(job: &mut Running) -> Result<bool> {
    let mut all = true;
    for c in &mut job.children {
        match c.try_wait()? {
            Some(status) if !status.success() => {
                bail!(
                    "{} exited with {status}: see its .err file",
                    job.kind.name()
                )
            }
            Some(_) => {}
            None => all = false,
        }
    }
    Ok(all)
}

/// One progress line: each running search's best validation accuracy so far.
fn progress(running: &[Running]) {
    let mut parts = Vec::new();
    for job in running {
        let minutes = job.started.elapsed().as_secs_f64() / 60.0;
        if matches!(job.kind, JobKind::Reference(_)) {
            parts.push(format!("{} {minutes:.1} min", job.kind.name()));
            continue;
        }
        let best = trace_of(&job.dirs)
            .ok()
            .and_then(|t| t.best_at(f64::INFINITY));
        parts.push(format!(
            "{} {minutes:.1} min {}",
            job.kind.name(),
            best.map_or("-".into(), |b| format!("{:.2}%", 100.0 * b))
        ));
    }
    eprintln!("{}", parts.join(" | "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_count_up_from_a_given_one_and_zero_stays_zero() {
        let mut port = 18_700;
        assert_eq!(next_port(&mut port), 18_700);
        assert_eq!(next_port(&mut port), 18_701);
        let mut any = 0;
        assert_eq!(next_port(&mut any), 0);
        assert_eq!(next_port(&mut any), 0);
        let mut last = u16::MAX;
        assert_eq!(next_port(&mut last), u16::MAX);
    }

    #[test]
    fn the_listen_address_is_the_first_listening_event() {
        let log = concat!(
            "{\"event\":\"started\"}\n",
            "not json\n",
            "{\"event\":\"listening\",\"address\":\"/ip4/127.0.0.1/tcp/4001/p2p/12D3KooA\"}\n",
            "{\"event\":\"listening\",\"address\":\"/ip4/10.0.0.2/tcp/4001/p2p/12D3KooA\"}\n",
            "{\"event\":\"listen",
        );
        assert_eq!(
            first_listen_address(log).as_deref(),
            Some("/ip4/127.0.0.1/tcp/4001/p2p/12D3KooA")
        );
        assert_eq!(first_listen_address("{\"event\":\"listen"), None);
        assert_eq!(first_listen_address(""), None);
    }
}
