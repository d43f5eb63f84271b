//! Tensor shapes: the ones the graph declares, and the ones ONNX Runtime computes.
//!
//! Declared shapes come from graph inputs, outputs, `value_info`, initializers and
//! `Constant` nodes. Where a graph declares nothing (tf2onnx, for one, writes no
//! `value_info`), [`Model::probe_shapes`] runs the model once on a given input with the
//! wanted tensors added as graph outputs and reads their actual shapes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::ArrayD;
use ort::value::TensorRef;

use super::model::Model;
use super::proto::{DataType, TensorShapeProto, ValueInfoProto, tensor_shape_proto::dimension};
use super::tensor;
use super::{NoSuchTensorSnafu, OnnxError, ProbeSnafu, RuntimeSnafu};
use crate::runtime::Runtime;

/// One axis of a declared shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A fixed size.
    Known(i64),
    /// A named size (e.g. the batch `N`), equal wherever the same name appears.
    Symbol(String),
    /// Neither a size nor a name.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Known(n) => write!(f, "{n}"),
            Dim::Symbol(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

impl Dim {
    /// The size, when known.
    pub fn known(&self) -> Option<i64> {
        match self {
            Dim::Known(n) => Some(*n),
            _ => None,
        }
    }
}

/// The dimensions of a shape message.
pub fn dims_of(shape: &TensorShapeProto) -> Vec<Dim> {
    shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(dimension::Value::DimValue(v)) => Dim::Known(*v),
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbol(p.clone()),
            _ => Dim::Unknown,
        })
        .collect()
}

/// The shape a value info declares for a dense tensor (`None`: not a tensor, or rank unknown).
pub fn value_info_shape(info: &ValueInfoProto) -> Option<Vec<Dim>> {
    info.tensor_type()?.shape.as_ref().map(dims_of)
}

/// Fully known sizes, or `None` if any axis is symbolic or unknown.
pub fn all_known(dims: &[Dim]) -> Option<Vec<i64>> {
    dims.iter().map(Dim::known).collect()
}

impl Model {
    /// Every shape the graph declares, by tensor name. Where several places declare the same
    /// tensor, initializers and `Constant` values win over value infos, and graph inputs and
    /// outputs over `value_info`.
    pub fn declared_shapes(&self) -> HashMap<String, Vec<Dim>> {
        let graph = self.graph();
        let mut shapes = HashMap::new();
        for info in graph
            .value_info
            .iter()
            .chain(&graph.output)
            .chain(&graph.input)
        {
            if let Some(dims) = value_info_shape(info) {
                shapes.insert(info.name().to_string(), dims);
            }
        }
        for node in &graph.node {
            if let (Some(output), Some(dims)) = (node.output.first(), constant_shape(node)) {
                shapes.insert(output.clone(), dims);
            }
        }
        for t in &graph.initializer {
            shapes.insert(
                t.name().to_string(),
                t.dims.iter().map(|&d| Dim::Known(d)).collect(),
            );
        }
        for s in &graph.sparse_initializer {
            if let Some(values) = &s.values {
                shapes.insert(
                    values.name().to_string(),
                    s.dims.iter().map(|&d| Dim::Known(d)).collect(),
                );
            }
        }
        shapes
    }

    /// The declared shape of one tensor (see [`Model::declared_shapes`]).
    pub fn declared_shape(&self, name: &str) -> Option<Vec<Dim>> {
        if let Some(t) = self.initializer(name) {
            return Some(t.dims.iter().map(|&d| Dim::Known(d)).collect());
        }
        if let Some(dims) = self.node_by_output(name).and_then(constant_shape) {
            return Some(dims);
        }
        self.declared_value_info(name).and_then(value_info_shape)
    }

    /// The graph input, output or `value_info` entry describing `name`.
    fn declared_value_info(&self, name: &str) -> Option<&ValueInfoProto> {
        let graph = self.graph();
        graph
            .input
            .iter()
            .chain(&graph.output)
            .chain(&graph.value_info)
            .find(|i| i.name() == name)
    }

    /// The element type the graph declares for `name` (initializers, `Constant` values,
    /// graph inputs and outputs, `value_info`).
    pub fn declared_type(&self, name: &str) -> Option<DataType> {
        if let Some(t) = self.initializer(name) {
            return Some(t.data_type());
        }
        if let Some(t) = self.node_by_output(name).and_then(tensor::constant_value) {
            return Some(t.data_type());
        }
        self.declared_value_info(name)
            .and_then(|i| i.tensor_type())
            .map(|t| t.elem_type())
    }

    /// The actual shapes of `tensors` when the model runs on `inputs` (name, array), from one
    /// ONNX Runtime run of a copy of the model with those tensors added as graph outputs. The
    /// copy goes to a temporary file (ONNX Runtime sessions load from files here) that is
    /// removed afterwards. Graph inputs report the given array's shape and initializers their
    /// dimensions, without running anything for them. Errors name the model file.
    pub fn probe_shapes(
        &self,
        runtime: &Runtime,
        inputs: &[(&str, ArrayD<f32>)],
        tensors: &[&str],
    ) -> Result<HashMap<String, Vec<i64>>, OnnxError> {
        let mut shapes = HashMap::new();
        let mut wanted = Vec::new();
        for &name in tensors {
            if let Some((_, array)) = inputs.iter().find(|(n, _)| *n == name) {
                shapes.insert(
                    name.to_string(),
                    array.shape().iter().map(|&d| d as i64).collect(),
                );
            } else if let Some(t) = self.initializer(name) {
                shapes.insert(name.to_string(), t.dims.clone());
            } else if self.node_index_by_output(name).is_some() {
                wanted.push(name);
            } else {
                return NoSuchTensorSnafu {
                    path: self.path(),
                    tensor: name,
                }
                .fail();
            }
        }
        if wanted.is_empty() {
            return Ok(shapes);
        }
        let mut probe = self.clone();
        let outputs = &mut probe.graph_mut().output;
        for &name in &wanted {
            if !outputs.iter().any(|o| o.name() == name) {
                // no type: ONNX Runtime infers it from the producing node
                outputs.push(ValueInfoProto {
                    name: Some(name.to_string()),
                    ..ValueInfoProto::default()
                });
            }
        }
        let file = TempFile::new();
        probe.save(&file.0)?;
        let fail = |message: String| {
            ProbeSnafu {
                path: self.path(),
                message,
            }
            .build()
        };
        let mut loaded = runtime.session(&file.0).map_err(|source| {
            RuntimeSnafu {
                path: self.path(),
                message: source.to_string(),
            }
            .build()
        })?;
        let mut values = Vec::with_capacity(inputs.len());
        for (name, array) in inputs {
            let tensor = TensorRef::from_array_view(array)
                .map_err(|e| fail(format!("input {name:?}: {e}")))?;
            values.push((name.to_string(), tensor));
        }
        let results = loaded
            .session
            .run(values)
            .map_err(|e| fail(format!("run failed: {e}")))?;
        for name in wanted {
            let value = results
                .get(name)
                .ok_or_else(|| fail(format!("ONNX Runtime did not return {name:?}")))?;
            let shape = value
                .dtype()
                .tensor_shape()
                .ok_or_else(|| fail(format!("{name:?} is not a tensor")))?;
            shapes.insert(name.to_string(), shape.to_vec());
        }
        Ok(shapes)
    }
}

/// The shape of a `Constant` node's value.
fn constant_shape(node: &super::proto::NodeProto) -> Option<Vec<Dim>> {
    if node.op_type() != "Constant" || !node.in_default_domain() {
        return None;
    }
    let attribute = node.attribute.first()?;
    let dims = match attribute.name() {
        "value" => attribute.t.as_ref()?.dims.clone(),
        "sparse_value" => attribute.sparse_tensor.as_ref()?.dims.clone(),
        "value_float" | "value_int" | "value_string" => Vec::new(),
        "value_floats" => vec![attribute.floats.len() as i64],
        "value_ints" => vec![attribute.ints.len() as i64],
        "value_strings" => vec![attribute.strings.len() as i64],
        _ => return None,
    };
    Some(dims.into_iter().map(Dim::Known).collect())
}

/// A temporary file path, removed on drop (ONNX Runtime sessions load from files here).
pub(crate) struct TempFile(pub(crate) PathBuf);

impl TempFile {
    pub(crate) fn new() -> TempFile {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        TempFile(std::env::temp_dir().join(format!(
            "dicom-xai-probe-{}-{}.onnx",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
