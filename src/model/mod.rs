//! Models: ONNX Runtime, manifests, preprocessing and batched classification.
//!
//! - [`runtime`]: load ONNX Runtime, build sessions on the configured execution providers.
//! - [`manifest`]: the model manifest of DESIGN.md 4.3.
//! - [`preprocess`]: windowed slice to model input (Pillow-exact bilinear resize).
//! - [`checksum`]: SHA-256 of model files, remembered by file identity.
//! - `cuda_libraries` (with the `cuda` feature): CUDA and cuDNN loaded from the
//!   onnxruntime-gpu wheel's NVIDIA packages before the CUDA provider.
//! - [`classifier`]: a loaded model: checksum, graph checks, batched prediction.
//! - [`probe`]: gradients and inner tensors for explanation methods, through derived models.

pub mod checksum;
pub mod classifier;
#[cfg(feature = "cuda")]
pub mod cuda_libraries;
pub mod manifest;
pub mod preprocess;
pub mod probe;
pub mod runtime;

pub use classifier::{Classifier, ModelError};
pub use manifest::Manifest;
pub use probe::{Probe, ProbeRun};
pub use runtime::{Runtime, RuntimeOptions};
