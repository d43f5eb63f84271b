//! Dynamic 8-bit quantization of the matrix products whose weights are constants: a cheaper
//! copy of a model for the perturbation methods (occlusion, RISE, Score-CAM), which run the
//! forward model tens to hundreds of times per slice and only compare its outputs with each
//! other.
//!
//! Every `MatMul` whose second input is a FLOAT initializer of rank 2 (`[K, N]`), and every
//! `Gemm` with such a weight (`alpha` 1, `beta` 1, `A` not transposed), becomes
//!
//! ```text
//! DynamicQuantizeLinear(A)            -> A8 (uint8), a_scale, a_zero   (once per tensor A)
//! MatMulInteger(A8, W8, a_zero)       -> int32
//! Cast(float) * (a_scale * w_scale)   -> the node's output             (+ C for a Gemm)
//! ```
//!
//! The weights are quantized per output column, symmetrically, to 7 bits (`[-63, 63]`,
//! zero point 0): on x86 CPUs without VNNI, ONNX Runtime multiplies uint8 by int8 with an
//! instruction that saturates when two 8-bit products are added in 16 bits; with 7-bit
//! weights that sum stays in range, so the map is the same on every CPU. The activations are
//! quantized per tensor at run time over their own range (`DynamicQuantizeLinear`), so
//! nothing is calibrated and no data is needed.
//!
//! Convolutions stay in float: ONNX Runtime's integer convolution is no faster than its
//! float one on the CPU (DenseNet169 measured: 17.4 against 18.9 ms an image even with
//! static quantization), while a transformer's matrix products are most of its work
//! (ViT-B/16: 41 against 88 to 96 ms an image). A model with no such product comes back
//! unchanged.

use std::collections::{HashMap, HashSet};

use std::path::Path;

use ndarray::{Array2, Axis, Ix2};

use super::attr;
use super::model::node_label;
use super::proto::{AttributeProto, DataType, NodeProto, TensorProto};
use super::tensor::{self, Storage};
use super::{Model, OnnxError};

/// The largest magnitude of a quantized weight (7 bits, symmetric).
pub const WEIGHT_LIMIT: f32 = 63.0;

/// The lowest default-domain opset with `DynamicQuantizeLinear`.
const MIN_OPSET: i64 = 11;

/// What [`quantize_weights`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quantization {
    /// The matrix products quantized, by node label.
    pub quantized: Vec<String>,
    /// The matrix products left in float (their weight is not a constant matrix, or a
    /// `Gemm` scales or transposes `A`).
    pub kept: usize,
}

/// Quantizes `model`'s constant-weight matrix products in place (see the module
/// documentation); a model whose opset predates `DynamicQuantizeLinear` keeps them all.
pub fn quantize_weights(model: &mut Model) -> Result<Quantization, OnnxError> {
    let mut outcome = Quantization::default();
    if model.opset_version().unwrap_or(0) < MIN_OPSET {
        outcome.kept = model.graph().node.iter().filter(|n| is_product(n)).count();
        return Ok(outcome);
    }
    let path = model.path().to_path_buf();
    let graph_inputs: HashSet<String> = model
        .graph()
        .input
        .iter()
        .map(|i| i.name().to_string())
        .collect();
    let mut taken: HashSet<String> = model
        .graph()
        .node
        .iter()
        .flat_map(|n| n.output.iter().cloned())
        .chain(
            model
                .graph()
                .initializer
                .iter()
                .map(|t| t.name().to_string()),
        )
        .chain(graph_inputs.iter().cloned())
        .collect();
    let old_nodes = std::mem::take(&mut model.graph_mut().node);
    let mut nodes = Vec::with_capacity(old_nodes.len());
    let mut initializers: Vec<TensorProto> = Vec::new();
    // per activation tensor: the outputs of its one DynamicQuantizeLinear
    let mut quantized_inputs: HashMap<String, [String; 3]> = HashMap::new();
    let mut weights_read: HashSet<String> = HashSet::new();
    // per weight (and whether a Gemm transposes it): its integers and scales
    let mut quantized_weights: HashMap<(String, bool), [String; 2]> = HashMap::new();
    for (index, node) in old_nodes.into_iter().enumerate() {
        let Some(weight) = quantizable(model, &node, &graph_inputs) else {
            if is_product(&node) {
                outcome.kept += 1;
            }
            nodes.push(node);
            continue;
        };
        let label = node_label(index, &node);
        let mut fresh = |what: &str| {
            let mut name = format!("{label}.int8.{what}");
            while !taken.insert(name.clone()) {
                name.push('_');
            }
            name
        };
        let activation = node.input[0].clone();
        let [a8, a_scale, a_zero] = match quantized_inputs.get(&activation) {
            Some(outputs) => outputs.clone(),
            None => {
                let outputs = [fresh("input"), fresh("input_scale"), fresh("input_zero")];
                nodes.push(NodeProto::new(
                    "DynamicQuantizeLinear",
                    fresh("quantize_input"),
                    [activation.as_str()],
                    outputs.clone(),
                ));
                quantized_inputs.insert(activation.clone(), outputs.clone());
                outputs
            }
        };
        // a weight read by several products (tied weights) is quantized once
        let key = (weight.name.clone(), weight.transposed);
        let [w8_name, w_scale_name] = match quantized_weights.get(&key) {
            Some(names) => names.clone(),
            None => {
                let (w8, w_scale) = quantize_columns(&weight_matrix(model, &weight, &path)?);
                let names = [fresh("weight"), fresh("weight_scale")];
                initializers.push(int8_tensor(&names[0], &w8));
                initializers.push(tensor::from_array(&names[1], &w_scale, Storage::Raw));
                quantized_weights.insert(key, names.clone());
                names
            }
        };
        weights_read.insert(weight.name.clone());

        let product = fresh("product");
        nodes.push(NodeProto::new(
            "MatMulInteger",
            fresh("matmul"),
            [a8.as_str(), w8_name.as_str(), a_zero.as_str()],
            [product.as_str()],
        ));
        let as_float = fresh("product_float");
        nodes.push(
            NodeProto::new(
                "Cast",
                fresh("cast"),
                [product.as_str()],
                [as_float.as_str()],
            )
            .with_attribute(AttributeProto::int("to", DataType::Float as i64)),
        );
        let scale = fresh("scale");
        nodes.push(NodeProto::new(
            "Mul",
            fresh("scales"),
            [a_scale.as_str(), w_scale_name.as_str()],
            [scale.as_str()],
        ));
        let output = node.output[0].clone();
        let bias = node.input.get(2).filter(|c| !c.is_empty());
        let scaled = match bias {
            Some(_) => fresh("scaled"),
            None => output.clone(),
        };
        nodes.push(NodeProto::new(
            "Mul",
            fresh("rescale"),
            [as_float.as_str(), scale.as_str()],
            [scaled.as_str()],
        ));
        if let Some(bias) = bias {
            nodes.push(NodeProto::new(
                "Add",
                fresh("bias"),
                [scaled.as_str(), bias.as_str()],
                [output.as_str()],
            ));
        }
        outcome.quantized.push(label);
    }
    let graph = model.graph_mut();
    graph.node = nodes;
    // a float weight no remaining node reads is dropped: the copy is smaller and loads faster
    let still_read: HashSet<&str> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .chain(graph.output.iter().map(|o| o.name()))
        .collect();
    let unused: HashSet<String> = weights_read
        .into_iter()
        .filter(|w| !still_read.contains(w.as_str()))
        .collect();
    graph.initializer.retain(|t| !unused.contains(t.name()));
    graph.initializer.extend(initializers);
    Ok(outcome)
}

/// A product's constant weight: the initializer, and whether a `Gemm` reads it transposed.
struct Weight {
    name: String,
    transposed: bool,
}

/// Whether `node` is a matrix product of the default domain.
fn is_product(node: &NodeProto) -> bool {
    matches!(node.op_type(), "MatMul" | "Gemm") && node.in_default_domain()
}

/// The weight of `node` when it is a product this module quantizes.
fn quantizable(model: &Model, node: &NodeProto, graph_inputs: &HashSet<String>) -> Option<Weight> {
    if !is_product(node) || node.input.len() < 2 || node.output.len() != 1 {
        return None;
    }
    let transposed = match node.op_type() {
        "MatMul" => false,
        _ if attr::int(node, "transA", 0) == 0
            && attr::float(node, "alpha", 1.0) == 1.0
            && attr::float(node, "beta", 1.0) == 1.0 =>
        {
            attr::int(node, "transB", 0) != 0
        }
        _ => return None,
    };
    let name = &node.input[1];
    // an initializer that is also a graph input can be replaced when the model runs
    if graph_inputs.contains(name) {
        return None;
    }
    let tensor = model.initializer(name)?;
    (tensor::data_type(tensor) == DataType::Float && tensor.dims.len() == 2).then(|| Weight {
        name: name.clone(),
        transposed,
    })
}

/// The values of `weight`, as `[K, N]`.
fn weight_matrix(model: &Model, weight: &Weight, path: &Path) -> Result<Array2<f32>, OnnxError> {
    let values = model
        .initializer_f32(&weight.name)?
        .ok_or_else(|| OnnxError::NoSuchTensor {
            path: path.to_path_buf(),
            tensor: weight.name.clone(),
        })?;
    let dims: Vec<i64> = values.shape().iter().map(|&d| d as i64).collect();
    let values = values
        .into_dimensionality::<Ix2>()
        .map_err(|e| OnnxError::Tensor {
            path: path.to_path_buf(),
            source: tensor::TensorError::BadDims {
                tensor: format!("{} ({e})", weight.name),
                dims,
            },
        })?;
    Ok(if weight.transposed {
        values.reversed_axes().as_standard_layout().into_owned()
    } else {
        values
    })
}

/// `weight` (`[K, N]`) as 7-bit integers and one scale per column: `w ~ q * scale`.
/// An all-zero column gets scale 1.
pub fn quantize_columns(weight: &Array2<f32>) -> (Array2<i8>, ndarray::Array1<f32>) {
    let scales = weight.map_axis(Axis(0), |column| {
        let largest = column.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        if largest > 0.0 && largest.is_finite() {
            largest / WEIGHT_LIMIT
        } else {
            1.0
        }
    });
    let quantized = Array2::from_shape_fn(weight.dim(), |(k, n)| {
        (weight[[k, n]] / scales[n])
            .round()
            .clamp(-WEIGHT_LIMIT, WEIGHT_LIMIT) as i8
    });
    (quantized, scales)
}

/// An INT8 initializer (raw little-endian bytes, row-major).
fn int8_tensor(name: &str, values: &Array2<i8>) -> TensorProto {
    TensorProto {
        dims: values.shape().iter().map(|&d| d as i64).collect(),
        data_type: Some(DataType::Int8 as i32),
        name: Some(name.to_string()),
        raw_data: Some(values.iter().map(|&v| v as u8).collect()),
        ..TensorProto::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn columns_are_scaled_to_seven_bits_each() {
        let weight = array![[0.5f32, -2.0, 0.0], [-0.2, 1.2, 0.0]];
        let (q, scales) = quantize_columns(&weight);
        assert_eq!(scales.to_vec(), vec![0.5 / 63.0, 2.0 / 63.0, 1.0]);
        assert_eq!(q, array![[63i8, -63, 0], [-25, 38, 0]]);
        // the error of a weight is at most half a step of its column
        for ((k, n), w) in weight.indexed_iter() {
            let back = f32::from(q[[k, n]]) * scales[n];
            assert!((back - w).abs() <= scales[n] / 2.0 + 1e-7, "{w} -> {back}");
        }
    }
}
