//! Starting a node: [`start`] turns what `evo run` (or a test) prepared into a running
//! node inside the current actix system (the shard, its training workers, the HTTP
//! endpoint and the libp2p event loop) and returns a [`Node`], the handle that stops it
//! and waits for the end of its run. Everything that can fail before this (the config,
//! the state directory, the data set) is the caller's to check first.

use crate::messages::{AttachNetwork, Shutdown};
use crate::network::Identity;
use crate::shard::{RunEnd, Shard, ShardSetup};
use crate::worker::{Run, Worker};
use actix::{Actor, Addr, SyncArbiter};
use futures::channel::oneshot;
use libp2p::Multiaddr;
use protocol::behaviour::{build_swarm, SwarmOptions};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use thiserror::Error;
use trainer::{Device, Task};

/// How a node meets its peers.
pub struct Networking {
    /// Its libp2p identity (kept in the state directory).
    pub key: libp2p::identity::Keypair,
    /// The transport and behaviour settings (pre-shared key, mDNS, memory transport).
    pub options: SwarmOptions,
    /// What it tells peers of its experiment, to be checked in a hello.
    pub identity: Identity,
    /// The addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to join through.
    pub bootstrap: Vec<Multiaddr>,
}

/// Everything a node starts from.
pub struct NodeSetup {
    /// What the shard starts from (its `workers` is how many training workers start).
    pub shard: ShardSetup,
    /// The data the workers train and score on; it lives as long as the process.
    pub task: &'static Task<'static>,
    /// Where the workers train: worker `i` on device `i` modulo their number (at least
    /// one device).
    pub devices: Vec<Device>,
    /// The HTTP endpoint's socket, bound already (`None`: no endpoint).
    pub http: Option<TcpListener>,
    /// How it meets its peers (`None`: alone, offline).
    pub network: Option<Networking>,
}

/// Why a node could not start, or ended without a word.
#[derive(Debug, Error)]
pub enum NodeError {
    /// The HTTP endpoint could not start.
    #[error("starting the HTTP endpoint: {0}")]
    Http(#[source] std::io::Error),
    /// The swarm or its event loop could not start.
    #[error("starting the network: {0}")]
    Network(String),
    /// The shard stopped without saying how its run ended.
    #[error("the shard stopped without a word")]
    Vanished,
}

/// A running node.
pub struct Node {
    /// The shard actor: ask it for its status, or stop it.
    pub shard: Addr<Shard>,
    ended: oneshot::Receiver<RunEnd>,
    http: Option<actix_web::dev::ServerHandle>,
}

/// Starts a node inside the current actix system: the shard, `setup.shard.workers`
/// training workers on their own threads, the HTTP endpoint, and the network's event
/// loop (its events reach the shard on a bounded channel).
pub fn start(setup: NodeSetup) -> Result<Node, NodeError> {
    let (done, ended) = oneshot::channel();
    let workers = setup.shard.workers;
    let shard = Shard::new(setup.shard, done).start();
    let http = match setup.http {
        Some(listener) => {
            let server = crate::http::server(listener, shard.clone()).map_err(NodeError::Http)?;
            let handle = server.handle();
            actix_rt::spawn(server);
            Some(handle)
        }
        None => None,
    };
    let task = setup.task;
    let devices = if setup.devices.is_empty() {
        vec![Device::Cpu]
    } else {
        setup.devices
    };
    let counter = Arc::new(AtomicUsize::new(0));
    let pool = {
        let shard = shard.clone();
        SyncArbiter::start(workers, move || {
            let index = counter.fetch_add(1, Ordering::SeqCst);
            let device = devices[index % devices.len()].clone();
            Worker::new(index, shard.clone(), task, device)
        })
    };
    for _ in 0..workers {
        pool.do_send(Run);
    }
    if let Some(n) = setup.network {
        let swarm =
            build_swarm(n.key, &n.options).map_err(|e| NodeError::Network(e.to_string()))?;
        let (network, event_loop, events) =
            crate::network::start(swarm, n.identity, &n.listen, &n.bootstrap)
                .map_err(|e| NodeError::Network(format!("{e:#}")))?;
        shard.do_send(AttachNetwork { network, events });
        actix_rt::spawn(event_loop.run());
    }
    Ok(Node { shard, ended, http })
}

impl Node {
    /// Asks the node to stop cleanly, as Ctrl-C does (a node with peers hands off its
    /// best first).
    pub fn stop(&self, reason: impl Into<String>) {
        self.shard.do_send(Shutdown {
            reason: reason.into(),
        });
    }

    /// Waits for the end of the run, then stops the HTTP endpoint.
    pub async fn ended(self) -> Result<RunEnd, NodeError> {
        let end = self.ended.await.map_err(|_| NodeError::Vanished)?;
        if let Some(http) = self.http {
            http.stop(false).await;
        }
        Ok(end)
    }
}
