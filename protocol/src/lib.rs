//! Wire messages between evolution nodes (and, later, the libp2p behaviour that carries
//! them). It knows genomes, nothing of actors or training.
//!
//! [`behaviour`]: the swarm (transports, gossipsub, request-response, Kademlia, mDNS,
//! identify, ping); [`codec`]: length-prefixed frames for request-response; [`key`]: the pre-shared key as its file holds it; [`wire`]: the gossip announcement, the requests and responses of migration and
//! joining, and their bounded, versioned, validated encoding.

pub mod behaviour;
pub mod codec;
pub mod key;
pub mod wire;
