//! The node's HTTP endpoint (actix-web, on its own worker thread): `GET /status`,
//! `/population` (`?all=true` adds the dead), `/individuals/{id}`, `/individuals/{id}/dot`,
//! `/peers` and `/metrics` (Prometheus text). Every answer comes from the shard actor, which never
//! trains, so the endpoint answers while every worker trains.

use crate::messages::{
    GetIndividual, GetMetrics, GetMigrations, GetPeers, GetPopulation, GetStatus,
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

async fn index() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body(
        "evo node\n\
         GET /status               the node at a glance (JSON)\n\
         GET /population[?all=true] live individuals and those in training (JSON)\n\
         GET /individuals/{id}     genome, lineage and DOT (JSON)\n\
         GET /individuals/{id}/dot the genome in Graphviz DOT\n\
         GET /peers                peers and the islands gossip told of (JSON)\n\
         GET /migrations           individuals sent and received (JSON)\n\
         GET /metrics              Prometheus metrics\n",
    )
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
            .route("/status", web::get().to(status))
            .route("/population", web::get().to(population))
            .route("/individuals/{id}", web::get().to(individual))
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
