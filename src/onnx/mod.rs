//! ONNX models as data: reading, inspecting, editing and writing `.onnx` files in Rust,
//! the ground the gradient transform (`autodiff/`) stands on.
//!
//! - [`proto`]: the ONNX protobuf messages (every message and field of `onnx-ml.proto` as
//!   of `onnx` 1.23 / IR 14), derived with `prost` from the specification's field numbers.
//!   A model read and written again is the same model; one written by Python's `onnx` comes
//!   back byte for byte (see [`proto`] for the one exception).
//! - [`model`]: [`Model`]: [`Model::load`], [`Model::from_bytes`], [`Model::save`] (atomic),
//!   [`Model::to_bytes`]; the default opset, real inputs, outputs, initializers, producer and
//!   consumers of a tensor ([`GraphIndex`] for many questions), and
//!   [`Model::check_topological_order`].
//! - [`tensor`]: initializers and `Constant` values to and from `ndarray` arrays (FLOAT,
//!   DOUBLE, INT32, INT64; `raw_data` or the typed fields).
//! - [`attr`]: node attributes with the specification's defaults.
//! - [`quantize`]: dynamic 8-bit quantization of the constant-weight matrix products, the
//!   cheaper copy of a model that the perturbation methods may run.
//! - [`shape`]: shapes the graph declares ([`Model::declared_shapes`]) and shapes ONNX
//!   Runtime computes for tensors the graph does not describe ([`Model::probe_shapes`]),
//!   and declared element types ([`Model::declared_type`]).
//!
//! Not supported (yet): tensors with external data (`data_location = EXTERNAL`, the > 2 GiB
//! layout) and segments are read and written through untouched but cannot be converted to
//! arrays; the graph helpers look at the main graph only, not at the subgraphs of `If`,
//! `Loop` and `Scan`; other element types (FLOAT16, BFLOAT16, 8-bit, BOOL, STRING) are kept
//! but not converted.
//!
//! Every error names the file and, where there is one, the node (its name, or `#index`) and
//! its op type, or the tensor.
//!
//! ## Example: read a weight, add a graph output, save
//!
//! ```no_run
//! use dicom_xai::onnx::{Model, proto::ValueInfoProto};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut model = Model::load("vgg16.onnx")?;
//! model.check_topological_order()?;
//! println!("opset {:?}", model.opset_version());
//! let relu = model.node_by_output("functional_1/block5_conv3_1/Relu:0").ok_or("no relu")?;
//! let conv_out = relu.input[0].clone();
//! let conv = model.node_by_output(&conv_out).ok_or("no conv")?;
//! let weights = model.initializer_f32(&conv.input[1])?.ok_or("no weights")?;
//! println!("{} ({}): weights {:?}", conv.name(), conv.op_type(), weights.shape());
//! model.graph_mut().output.push(ValueInfoProto {
//!     name: Some(conv_out),
//!     ..ValueInfoProto::default()
//! });
//! model.save("vgg16-features.onnx")?;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

use snafu::Snafu;

pub mod attr;
pub mod model;
pub mod proto;
pub mod quantize;
pub mod shape;
pub mod tensor;

pub use model::{GraphIndex, Model};
pub use shape::Dim;
pub use tensor::TensorError;

/// Why a model could not be read, written or analysed. Every message starts with the file.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum OnnxError {
    /// The file system refused the read.
    #[snafu(display("{}: cannot read ONNX model: {source}", path.display()))]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not protobuf (another format, or a truncated file).
    #[snafu(display(
        "{}: not an ONNX model, or a truncated one (protobuf decoding failed: {source})",
        path.display()
    ))]
    Decode {
        /// The file.
        path: PathBuf,
        /// What the decoder reported.
        source: prost::DecodeError,
    },
    /// The bytes decode, but lack what every ONNX model has.
    #[snafu(display("{}: not an ONNX model (no {missing})", path.display()))]
    NotOnnx {
        /// The file.
        path: PathBuf,
        /// What is missing.
        missing: &'static str,
    },
    /// The model could not be written.
    #[snafu(display("{}: cannot write ONNX model: {source}", path.display()))]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A node reads a tensor that nothing defines.
    #[snafu(display(
        "{}: node {node:?} ({op_type}) reads tensor {input:?}, which no node, graph input or \
         initializer produces",
        path.display()
    ))]
    UndefinedInput {
        /// The file.
        path: PathBuf,
        /// The node's name (or `#index`).
        node: String,
        /// Its op type.
        op_type: String,
        /// The undefined tensor.
        input: String,
    },
    /// A node reads a tensor that a later node produces.
    #[snafu(display(
        "{}: node {node:?} ({op_type}) reads tensor {input:?} before node {producer:?} \
         produces it: the nodes are not in topological order",
        path.display()
    ))]
    NotTopological {
        /// The file.
        path: PathBuf,
        /// The node's name (or `#index`).
        node: String,
        /// Its op type.
        op_type: String,
        /// The tensor.
        input: String,
        /// The later node producing it.
        producer: String,
    },
    /// A graph output that nothing defines.
    #[snafu(display(
        "{}: graph output {output:?} is produced by no node, graph input or initializer",
        path.display()
    ))]
    UndefinedOutput {
        /// The file.
        path: PathBuf,
        /// The output's name.
        output: String,
    },
    /// A tensor name that the graph does not know.
    #[snafu(display("{}: no tensor {tensor:?} in the graph", path.display()))]
    NoSuchTensor {
        /// The file.
        path: PathBuf,
        /// The name asked for.
        tensor: String,
    },
    /// A tensor could not be converted.
    #[snafu(display("{}: {source}", path.display()))]
    Tensor {
        /// The file.
        path: PathBuf,
        /// The tensor problem (it names the tensor).
        source: TensorError,
    },
    /// ONNX Runtime could not load the probe copy of the model.
    #[snafu(display("{}: ONNX Runtime refused the shape-probe copy: {message}", path.display()))]
    Runtime {
        /// The original model file.
        path: PathBuf,
        /// ONNX Runtime's reason.
        message: String,
    },
    /// The shape-probe run failed.
    #[snafu(display("{}: shape probe failed: {message}", path.display()))]
    Probe {
        /// The original model file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}
