//! Models: manifests, preprocessing and batched classification, on the sessions of
//! [`crate::runtime`].
//!
//! - [`manifest`]: the model manifest of DESIGN.md 4.3.
//! - [`preprocess`]: windowed slice to model input (Pillow-exact bilinear resize).
//! - [`classifier`]: a loaded model: checksum, graph checks, batched prediction.
//! - [`probe`]: gradients and inner tensors for explanation methods, through derived models.

pub mod classifier;
pub mod manifest;
pub mod preprocess;
pub mod probe;

pub use classifier::{Classifier, ModelError};
pub use manifest::Manifest;
pub use probe::{Probe, ProbeRun};
