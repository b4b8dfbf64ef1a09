//! The evolution node: what `evo run` is made of, as a library so that its parts can be
//! tested on their own.
//!
//! - [`config`] reads the experiment config; [`state`] keeps the state directory.
//! - [`population`] decides who dies and who reproduces; [`budget`] how long a child
//!   trains, [`time_cap`] when one too slow is abandoned; [`finale`] when and what the final training trains; [`memory_budget`] how
//!   many train at once on a device.
//! - [`shard`] is the actor that owns this node's individuals, [`worker`] the actors that
//!   train them, [`messages`] what they (and the HTTP endpoint) send each other.
//! - [`network`] is the libp2p event loop; [`http`] the status endpoint and [`view`] what
//!   it serves; [`report`] what a person watching sees.
//! - [`launch`] starts a node from its parts and gives a handle on it.
//! - [`search_bench`] is the arithmetic of `evo bench search`, [`experiment_report`] that
//!   of `evo report`; [`plots`] draws their charts.

pub mod budget;
pub mod config;
pub mod experiment_report;
pub mod finale;
pub mod http;
pub mod launch;
pub mod memory_budget;
pub mod messages;
pub mod network;
pub mod plots;
pub mod population;
pub mod report;
pub mod search_bench;
pub mod shard;
pub mod state;
pub mod time_cap;
pub mod view;
pub mod worker;
