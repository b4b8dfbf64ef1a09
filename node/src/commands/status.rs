//! `evo status`: a running node's status, read from its HTTP endpoint, as a readable
//! summary (or the raw JSON with `--json`).

use anyhow::{Context, Result};
use clap::Args;
use node::view::StatusView;
use std::time::Duration;

/// Options of `evo status`.
#[derive(Args)]
pub struct StatusArgs {
    /// The node's HTTP endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    http: String,
    /// Print the status JSON as the node sent it.
    #[arg(long)]
    json: bool,
}

/// Runs `evo status`.
pub fn run(args: StatusArgs) -> Result<()> {
    let base = if args.http.contains("://") {
        args.http.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", args.http.trim_end_matches('/'))
    };
    let url = format!("{base}/status");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let body = agent
        .get(&url)
        .call()
        .with_context(|| format!("asking {url} (is an evo node running there? see --http)"))?
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_string()
        .with_context(|| format!("reading the answer of {url}"))?;
    if args.json {
        println!("{body}");
        return Ok(());
    }
    let s: StatusView = serde_json::from_str(&body)
        .with_context(|| format!("{url} did not answer with an evo status"))?;
    print!("{}", render(&s));
    Ok(())
}

fn percent(f: Option<f64>) -> String {
    f.map_or("-".into(), |f| format!("{:.2}%", 100.0 * f))
}

/// The status as lines of text.
pub fn render(s: &StatusView) -> String {
    let mut out = format!(
        "node        {}\nexperiment  {} ({})\nstate       {}\n\
         population  {} of {} ({} in training)\ntrained     {} individuals, {} died, {} failed\n\
         best        {} (individual {})\nflops       {:.3e}\nuptime      {:.0} s (run: {:.1} min)\n\
         workers     {} busy, {} idle\n",
        s.node_id,
        s.experiment,
        s.experiment_id,
        s.state_dir,
        s.population_size,
        s.target_size,
        s.in_training,
        s.individuals_trained,
        s.deaths,
        s.failures,
        percent(s.best_fitness),
        s.best_individual.map_or("-".into(), |i| i.to_string()),
        s.total_flops,
        s.uptime_s,
        s.run_minutes,
        s.workers_busy,
        s.workers_idle,
    );
    for w in &s.workers {
        match w.individual {
            Some(id) => out.push_str(&format!(
                "  worker {}  {} #{id} step {}/{} loss {}\n",
                w.index,
                w.state,
                w.step,
                w.steps,
                w.loss.map_or("-".into(), |l| format!("{l:.3}"))
            )),
            None => out.push_str(&format!("  worker {}  {}\n", w.index, w.state)),
        }
    }
    if let Some(peer) = &s.peer_id {
        out.push_str(&format!(
            "peer id     {peer}\npeers       {} connected, {} islands known, {} penalized\n",
            s.connected_peers, s.islands_known, s.penalized_peers
        ));
        for a in &s.listen_addrs {
            out.push_str(&format!("listening   {a}\n"));
        }
        if let Some(b) = &s.experiment_best {
            out.push_str(&format!(
                "experiment  best {} (individual {} of {})\n",
                percent(Some(b.fitness)),
                b.id,
                b.island
            ));
        }
    }
    if let Some(why) = &s.stopping {
        out.push_str(&format!("stopping    {why}\n"));
    }
    out
}
