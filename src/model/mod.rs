//! Models: manifests, preprocessing and batched classification, on the sessions of
//! [`crate::runtime`].
//!
//! - [`manifest`]: the model manifest of docs/design.md section 4.
//! - [`preprocess`]: windowed slice to model input (Pillow-exact bilinear resize).
//! - [`features`]: the feature tensor as a channels x rows x columns grid.
//! - [`classifier`]: a loaded model: checksum, graph checks, batched prediction.
//! - [`probe`]: gradients and inner tensors for explanation methods, through derived models
//!   (run by `probing`).

pub mod classifier;
pub mod features;
pub mod manifest;
pub mod preprocess;
pub mod probe;
mod probing;

pub use classifier::{Classifier, ModelError, Precision};
pub use manifest::{LabelCode, Manifest};
pub use probe::{Probe, ProbeRun};
