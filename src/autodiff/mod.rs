//! Reverse-mode differentiation of ONNX models as a graph transform.
//!
//! ONNX Runtime's inference build computes no gradients, and PyTorch cannot export them. This
//! module turns a forward ONNX graph into one that also computes vector-Jacobian products,
//! written with **standard ONNX operators only**, so gradients run wherever ONNX Runtime runs
//! (CPU, CUDA). The gradient-based explanation methods stand on it.
//!
//! The contract (docs/design.md section 11): the gradient model keeps every input and output
//! of the original, adds the input `grad_seed` (`[N, K]`, the score's shape), outputs each
//! requested tensor `T` under its own name and `grad:T` = d(Σ grad_seed · score) / dT.
//!
//! - [`GradRequest`]: which tensors to differentiate with respect to (graph inputs or any
//!   intermediate), and the score (by default the input of a final `Softmax`, else the first
//!   output).
//! - [`gradient_model`]: the transform. It analyses which tensors depend on the requested ones
//!   and which the score depends on, emits backward nodes only where both hold, sums the
//!   contributions of tensors with several consumers, and skips non-differentiable paths
//!   (`Shape`, integer tensors, `Gather` indices, ...). A node on the path whose operator has no
//!   rule is an error naming the node and its op type, never a silent zero.
//! - [`rules`]: the backward rules, one file per operator family, in one table.
//! - [`facts`]: the shapes, element types and small integer values the rules need, learnt by
//!   running the model in ONNX Runtime at two batch sizes (so the batch dimension stays
//!   dynamic in the output).
//! - [`cache`]: gradient models kept on disk, keyed by the model's hash and the request, so a
//!   site pays for the transform once.
//!
//! Supported: default-domain opsets 13 to 22 (the output is raised to at least 16 for
//! `ScatterElements` with `reduction = "add"`); float and double tensors. Opset 23 exports
//! fuse attention into the `Attention` operator, whose probabilities then no longer exist as a
//! tensor: such a node on the gradient path is refused with a message naming the opset.
//!
//! ## Example
//!
//! ```no_run
//! use dicom_xai::autodiff::{GradRequest, gradient_model};
//! use dicom_xai::runtime::{Runtime, RuntimeOptions};
//! use dicom_xai::onnx::Model;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::init(RuntimeOptions::default())?;
//! let model = Model::load("densenet169.onnx")?;
//! let request = GradRequest::new(["input"]);
//! let gradient = gradient_model(&runtime, &model, &request)?;
//! println!("{} backward nodes", gradient.backward_nodes);
//! gradient.model.save("densenet169.grad.onnx")?;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

use snafu::Snafu;

use crate::onnx::OnnxError;

pub mod cache;
mod emit;
pub mod facts;
pub mod rules;
mod transform;

pub use cache::GradientCache;
pub use transform::{
    GRAD_PREFIX, GRAD_SEED, GradRequest, GradientModel, default_score, gradient_model,
};

/// Why a gradient model could not be built. Every message names the model file, and the node
/// (name and op type) or tensor concerned.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum AutodiffError {
    /// Reading, analysing or writing the model failed.
    #[snafu(display("{source}"))]
    Onnx {
        /// The model problem (it names the file).
        source: Box<OnnxError>,
    },
    /// A node on the gradient path has an operator without a backward rule.
    #[snafu(display(
        "{}: node {node:?} ({op_type}) lies on the gradient path but {op_type} has no backward \
         rule{hint}",
        path.display()
    ))]
    NoRule {
        /// The model file.
        path: PathBuf,
        /// The node's name (or `#index`).
        node: String,
        /// Its op type (with the domain when not the default one).
        op_type: String,
        /// More help, for operators we know about (starts with a separator, or is empty).
        hint: String,
    },
    /// A rule exists, but not for this use of the operator (attributes, inputs).
    #[snafu(display("{}: node {node:?} ({op_type}): {reason}", path.display()))]
    Unsupported {
        /// The model file.
        path: PathBuf,
        /// The node's name (or `#index`).
        node: String,
        /// Its op type.
        op_type: String,
        /// What is not supported, and why.
        reason: String,
    },
    /// The request names a tensor the graph does not have, or one that cannot be used.
    #[snafu(display("{}: {what} {tensor:?}: {reason}", path.display()))]
    BadRequest {
        /// The model file.
        path: PathBuf,
        /// "--wrt tensor" or "--score tensor".
        what: &'static str,
        /// The tensor.
        tensor: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The model's opset is outside what the transform supports.
    #[snafu(display("{}: {reason}", path.display()))]
    Opset {
        /// The model file.
        path: PathBuf,
        /// Which opset, and what is supported.
        reason: String,
    },
    /// Running the model to learn shapes failed.
    #[snafu(display("{}: cannot learn tensor shapes: {message}", path.display()))]
    Facts {
        /// The model file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The on-disk cache could not be used.
    #[snafu(display("gradient model cache {}: {message}", path.display()))]
    Cache {
        /// The cache file or folder.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

impl From<OnnxError> for AutodiffError {
    fn from(source: OnnxError) -> Self {
        AutodiffError::Onnx {
            source: Box::new(source),
        }
    }
}
