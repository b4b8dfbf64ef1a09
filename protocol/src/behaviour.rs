//! The libp2p behaviour of an evo node and the swarm that carries it: TCP (or the
//! in-memory transport, for tests of many nodes in one process) with noise and yamux,
//! optionally behind a pre-shared key (a private network: only its holders connect);
//! identify, ping, Kademlia for discovery, mDNS on a LAN (optional), gossipsub on one
//! topic per experiment, and request-response for hellos and migrations.

use crate::codec::{ExchangeCodec, PROTOCOL};
use crate::wire::{MAX_ANNOUNCEMENT_BYTES, MAX_MIGRATION_BYTES};
use genome::Limits;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{
    gossipsub, identify, kad, mdns, noise, ping, request_response, tcp, yamux, StreamProtocol,
    Swarm, SwarmBuilder, Transport,
};
use std::time::Duration;
use thiserror::Error;

/// The protocol name of identify.
pub const IDENTIFY_PROTOCOL: &str = "/evo/id/1";
/// The Kademlia protocol name (evo nodes form their own DHT, apart from IPFS's).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/evo/kad/1");

/// Why the swarm could not be built.
#[derive(Debug, Error)]
#[error("building the libp2p swarm: {0}")]
pub struct SwarmError(pub String);

/// How to build a node's swarm.
#[derive(Debug, Clone)]
pub struct SwarmOptions {
    /// The pre-shared key of a private network, if any.
    pub psk: Option<[u8; 32]>,
    /// Discover peers on the LAN with mDNS.
    pub mdns: bool,
    /// Use the in-memory transport (`/memory/N` addresses) instead of TCP.
    pub memory: bool,
    /// Limits every received genome must respect.
    pub limits: Limits,
    /// How often gossipsub runs its heartbeat.
    pub heartbeat: Duration,
    /// How long a request may take (a migration of large weights takes a while).
    pub request_timeout: Duration,
}

impl Default for SwarmOptions {
    fn default() -> Self {
        SwarmOptions {
            psk: None,
            mdns: false,
            memory: false,
            limits: Limits::default(),
            heartbeat: Duration::from_millis(500),
            request_timeout: Duration::from_secs(120),
        }
    }
}

pub use composed::{EvoBehaviour, EvoBehaviourEvent};

/// The behaviour and the event enum its derive generates (one variant per field, named
/// as the field's type says; the generated items carry no documentation of their own).
mod composed {
    #![allow(missing_docs)]
    use super::*;

    /// Everything an evo node speaks.
    #[derive(NetworkBehaviour)]
    pub struct EvoBehaviour {
        /// Announcements of islands.
        pub gossipsub: gossipsub::Behaviour,
        /// Hellos and migrations.
        pub exchange: request_response::Behaviour<ExchangeCodec>,
        /// Discovery through bootstrap peers.
        pub kad: kad::Behaviour<kad::store::MemoryStore>,
        /// Discovery on the LAN.
        pub mdns: Toggle<mdns::tokio::Behaviour>,
        /// Peers' listen addresses and protocols.
        pub identify: identify::Behaviour,
        /// Liveness.
        pub ping: ping::Behaviour,
    }
}

/// The gossipsub topic of an experiment.
pub fn topic(experiment: &str) -> gossipsub::IdentTopic {
    gossipsub::IdentTopic::new(format!("evo/{experiment}/announcements"))
}

fn behaviour(key: &Keypair, options: &SwarmOptions) -> Result<EvoBehaviour, SwarmError> {
    let err = |what: &str, e: String| SwarmError(format!("{what}: {e}"));
    let peer_id = key.public().to_peer_id();
    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(MAX_ANNOUNCEMENT_BYTES + 4096)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .heartbeat_interval(options.heartbeat)
        .build()
        .map_err(|e| err("gossipsub config", format!("{e:?}")))?;
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )
    .map_err(|e| err("gossipsub", e.to_string()))?;
    let exchange = request_response::Behaviour::with_codec(
        ExchangeCodec {
            limits: options.limits,
            max_bytes: MAX_MIGRATION_BYTES,
        },
        [(PROTOCOL, request_response::ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(options.request_timeout),
    );
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad =
        kad::Behaviour::with_config(peer_id, kad::store::MemoryStore::new(peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if options.mdns {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)
                .map_err(|e| err("mdns", e.to_string()))?,
        )
    } else {
        None
    };
    let identify = identify::Behaviour::new(identify::Config::new(
        IDENTIFY_PROTOCOL.to_string(),
        key.public(),
    ));
    Ok(EvoBehaviour {
        gossipsub,
        exchange,
        kad,
        mdns: Toggle::from(mdns),
        identify,
        ping: ping::Behaviour::new(ping::Config::new()),
    })
}

/// The pre-shared-key handshake of a private network on a raw connection, when there is
/// a key; the connection unchanged otherwise.
async fn private<S>(
    socket: S,
    psk: Option<PreSharedKey>,
) -> std::io::Result<futures::future::Either<libp2p::pnet::PnetOutput<S>, S>>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin + Send + 'static,
{
    match psk {
        Some(psk) => PnetConfig::new(psk)
            .handshake(socket)
            .await
            .map(futures::future::Either::Left)
            .map_err(std::io::Error::other),
        None => Ok(futures::future::Either::Right(socket)),
    }
}

/// Builds the swarm of a node with identity `key`.
pub fn build_swarm(
    key: Keypair,
    options: &SwarmOptions,
) -> Result<Swarm<EvoBehaviour>, SwarmError> {
    let err = |e: String| SwarmError(e);
    let psk = options.psk.map(PreSharedKey::new);
    let idle = |c: libp2p::swarm::Config| c.with_idle_connection_timeout(Duration::from_secs(60));
    let opts = options.clone();
    let memory = options.memory;
    let swarm = SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(
            move |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let base = if memory {
                    either::Either::Left(MemoryTransport::default())
                } else {
                    either::Either::Right(tcp::tokio::Transport::new(tcp::Config::default()))
                };
                Ok(base
                    .and_then(move |socket, _| private(socket, psk))
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise::Config::new(key)?)
                    .multiplex(yamux::Config::default()))
            },
        )
        .map_err(|e| err(e.to_string()))?
        .with_behaviour(
            |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                Ok(behaviour(key, &opts)?)
            },
        )
        .map_err(|e| err(e.to_string()))?
        .with_swarm_config(idle)
        .build();
    Ok(swarm)
}
