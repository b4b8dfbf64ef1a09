//! The trainer: turns any valid genome into a candle model, trains it with SGD and
//! evaluates it, and reads the image data sets it learns from.
//!
//! It knows genomes (the `genome` crate) and tensors (candle), nothing of the network.
//! [`network`] builds the model, [`weights`] holds its named tensors (initialization and
//! inheritance), [`optim`] updates them, [`batch`] assembles augmented batches, [`train`]
//! runs training and evaluation ([`collapse`] tells a network that died in it), [`individual`] saves and loads trained models, [`individual_training`] takes one individual from genome to saved model (after the probes of its rate, augmentation and width: [`rate_probe`], [`augment_probe`], [`width_probe`]), [`bench`]
//! measures speed, [`doctor`] checks every op on a device against a reference, [`data`]
//! reads data sets and [`fetch`] downloads them.

pub mod augment_probe;
pub mod batch;
pub mod bench;
pub mod collapse;
pub mod data;
pub mod device;
pub mod doctor;
pub mod error;
pub mod fetch;
pub mod individual;
pub mod individual_training;
pub mod morph;
pub mod network;
pub mod ops;
pub mod optim;
pub mod profile;
pub mod rate_probe;
pub mod threads;
pub mod train;
pub mod weights;
pub mod width_probe;

/// The candle types that cross this crate's interface (tensors of a saved model, devices).
pub use candle_core::{Device, Tensor};
pub use error::{Result, TrainError};
pub use network::Network;
pub use train::{Cancel, Schedule, Task, TrainConfig, TrainOutcome};
