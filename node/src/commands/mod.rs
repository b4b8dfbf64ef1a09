//! One module per command group of `evo`.

pub mod bench;
pub mod data;
pub mod doctor;
pub mod evaluate;
pub mod export;
pub mod genome;
pub mod report;
pub mod run;
pub mod search;
pub mod status;
pub mod train;
