//! One module per command group of `evo`.

pub mod bench;
pub mod data;
pub mod genome;
pub mod train;
