//! Models: ONNX Runtime, manifests, preprocessing and batched classification.
//!
//! - [`runtime`]: load ONNX Runtime, build sessions on the configured execution providers.
//! - [`manifest`]: the model manifest of DESIGN.md 4.3.
//! - [`preprocess`]: windowed slice to model input (Pillow-exact bilinear resize).
//! - [`classifier`]: a loaded model: checksum, graph checks, batched prediction.

pub mod classifier;
pub mod manifest;
pub mod preprocess;
pub mod runtime;

pub use classifier::{Classifier, ModelError};
pub use manifest::Manifest;
pub use runtime::{Runtime, RuntimeOptions};
