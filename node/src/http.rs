//! The node's HTTP endpoint (actix-web, on its own worker thread): the dashboard at
//! `GET /` (and its chart library under `/assets/`), `/status`, `/population`
//! (`?all=true` adds the dead), `/history` (`?since=MS`), `/individuals/{id}` with
//! `/lineage`, `/graph.svg` and `/dot`, `/peers`, `/migrations` and `/metrics`
//! (Prometheus text); `/api` lists them. Every answer comes from the shard actor, which never
//! trains, so the endpoint answers while every worker trains.

use crate::messages::{
    GetHistory, GetIndividual, GetLineage, GetMetrics, GetMigrations, GetPeers, GetPopulation,
    GetStatus,
};
use crate::shard::Shard;
use actix::Addr;
use actix_web::{web, App, HttpResponse, HttpServer};
use serde::Deserialize;
use std::net::TcpListener;

type ShardData = web::Data<Addr<Shard>>;

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain")
        .body("the node is stopping\n")
}

/// The dashboard: one page, its scripts and styles inline or served from the binary.
const DASHBOARD: &str = include_str!("../assets/dashboard.html");
/// uPlot, the chart library the dashboard draws with (MIT; `assets/uplot/LICENSE`).
const UPLOT_JS: &str = include_str!("../assets/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../assets/uplot/uPlot.min.css");

/// What the endpoint serves, for a person or a script that asks `GET /api`.
const API: &str = "evo node\n\
     GET /                          the dashboard (a page that refreshes itself)\n\
     GET /status                    the node at a glance (JSON)\n\
     GET /population[?all=true]     live individuals and those in training (JSON)\n\
     GET /history[?since=MS]        every individual as a compact row, the islands' curves (JSON)\n\
     GET /individuals/{id}          genome, lineage and DOT (JSON)\n\
     GET /individuals/{id}/lineage  the individual and its ancestors (JSON)\n\
     GET /individuals/{id}/graph.svg  the architecture drawn (SVG)\n\
     GET /individuals/{id}/dot      the genome in Graphviz DOT\n\
     GET /peers                     peers and the islands gossip told of (JSON)\n\
     GET /migrations                individuals sent and received (JSON)\n\
     GET /metrics                   Prometheus metrics\n";

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(DASHBOARD)
}

async fn api() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(API)
}

async fn uplot_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "max-age=86400"))
        .body(UPLOT_JS)
}

async fn uplot_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header(("Cache-Control", "max-age=86400"))
        .body(UPLOT_CSS)
}

async fn status(shard: ShardData) -> HttpResponse {
    match shard.send(GetStatus).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(_) => unavailable(),
    }
}

/// Query of `GET /population`.
#[derive(Deserialize)]
struct PopulationQuery {
    #[serde(default)]
    all: bool,
}

async fn population(shard: ShardData, query: web::Query<PopulationQuery>) -> HttpResponse {
    match shard.send(GetPopulation { all: query.all }).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(_) => unavailable(),
    }
}

fn bad_id(raw: &str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("text/plain")
        .body(format!("not an individual id: {raw:?}\n"))
}

fn not_found(id: u64) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body(format!("no individual {id} on this node\n"))
}

async fn individual(shard: ShardData, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = path.parse::<u64>() else {
        return bad_id(&path);
    };
    match shard.send(GetIndividual(id)).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => not_found(id),
        Err(_) => unavailable(),
    }
}

async fn individual_dot(shard: ShardData, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = path.parse::<u64>() else {
        return bad_id(&path);
    };
    match shard.send(GetIndividual(id)).await {
        Ok(Some(v)) => HttpResponse::Ok()
            .content_type("text/vnd.graphviz")
            .body(v.dot),
        Ok(None) => not_found(id),
        Err(_) => unavailable(),
    }
}

async fn individual_svg(shard: ShardData, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = path.parse::<u64>() else {
        return bad_id(&path);
    };
    match shard.send(GetIndividual(id)).await {
        Ok(Some(v)) => {
            // Drawn here, on the endpoint's thread, not on the shard's; a layout that
            // fails is an error for this request alone.
            let genome = v.record.genome;
            let analysis = genome.analyze(&genome::Limits::default()).ok();
            let drawn = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                genome.to_svg(analysis.as_ref())
            }));
            match drawn {
                Ok(svg) => HttpResponse::Ok().content_type("image/svg+xml").body(svg),
                Err(_) => HttpResponse::InternalServerError()
                    .content_type("text/plain")
                    .body(format!("individual {id} could not be drawn\n")),
            }
        }
        Ok(None) => not_found(id),
        Err(_) => unavailable(),
    }
}

async fn lineage(shard: ShardData, path: web::Path<String>) -> HttpResponse {
    let Ok(id) = path.parse::<u64>() else {
        return bad_id(&path);
    };
    match shard.send(GetLineage(id)).await {
        Ok(Some(v)) => HttpResponse::Ok().json(v),
        Ok(None) => not_found(id),
        Err(_) => unavailable(),
    }
}

/// Query of `GET /history`.
#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    since: u64,
}

async fn history(shard: ShardData, query: web::Query<HistoryQuery>) -> HttpResponse {
    match shard
        .send(GetHistory {
            since_ms: query.since,
        })
        .await
    {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(_) => unavailable(),
    }
}

async fn migrations(shard: ShardData) -> HttpResponse {
    match shard.send(GetMigrations).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(_) => unavailable(),
    }
}

async fn peers(shard: ShardData) -> HttpResponse {
    match shard.send(GetPeers).await {
        Ok(v) => HttpResponse::Ok().json(v),
        Err(_) => unavailable(),
    }
}

async fn metrics(shard: ShardData) -> HttpResponse {
    match shard.send(GetMetrics).await {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(_) => unavailable(),
    }
}

/// The server on `listener` (already bound, so a port in use is found before anything
/// else starts), answering from `shard`. Spawn it on the running actix system.
pub fn server(
    listener: TcpListener,
    shard: Addr<Shard>,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(shard);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/", web::get().to(index))
            .route("/api", web::get().to(api))
            .route("/assets/uplot.js", web::get().to(uplot_js))
            .route("/assets/uplot.css", web::get().to(uplot_css))
            .route("/status", web::get().to(status))
            .route("/population", web::get().to(population))
            .route("/history", web::get().to(history))
            .route("/individuals/{id}", web::get().to(individual))
            .route("/individuals/{id}/lineage", web::get().to(lineage))
            .route("/individuals/{id}/graph.svg", web::get().to(individual_svg))
            .route("/individuals/{id}/dot", web::get().to(individual_dot))
            .route("/metrics", web::get().to(metrics))
            .route("/peers", web::get().to(peers))
            .route("/migrations", web::get().to(migrations))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run())
}
