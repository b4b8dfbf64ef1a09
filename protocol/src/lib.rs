//! Wire messages between evolution nodes and the libp2p behaviour that carries them.
//!
//! Not written yet: the gossip and migration protocol is the subject of a later issue.
//! Genomes already have a bounded, validated wire encoding in `genome::codec`.
