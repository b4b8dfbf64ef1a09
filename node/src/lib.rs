//! The evolution node: what `evo run` is made of, as a library so that its parts can be
//! tested on their own.
//!
//! [`config`] reads the experiment config, [`budget`] says how long a child trains, [`finale`] when and what the final training trains, [`state`] keeps the state directory,
//! [`population`] decides who dies and who reproduces, [`shard`] is the actor that owns
//! this node's individuals, [`worker`] the actors that train them, [`http`] the status
//! endpoint, [`network`] the libp2p event loop, [`view`] what it serves, [`report`] what a person watching sees, and
//! [`search_bench`] the arithmetic of `evo bench search`.

pub mod budget;
pub mod config;
pub mod finale;
pub mod http;
pub mod network;
pub mod population;
pub mod report;
pub mod search_bench;
pub mod shard;
pub mod state;
pub mod view;
pub mod worker;
