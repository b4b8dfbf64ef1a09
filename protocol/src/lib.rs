//! Wire messages between evolution nodes (and, later, the libp2p behaviour that carries
//! them). It knows genomes, nothing of actors or training.
//!
//! [`wire`]: the gossip announcement, the requests and responses of migration and
//! joining, and their bounded, versioned, validated encoding.

pub mod wire;
