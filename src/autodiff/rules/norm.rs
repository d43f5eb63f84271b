//! Normalisation. BatchNormalization in inference mode is an affine map per channel;
//! LayerNormalization's backward uses the normalised input and inverse standard deviation
//! from a unit-scale duplicate of the forward node (one fused kernel, no recomputation by
//! hand). Scales and biases are constants here: gradients with respect to them are refused.

use ndarray::{ArrayD, IxDyn};

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr, normalise_axis};
use crate::onnx::proto::{AttributeProto, DataType};

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("BatchNormalization", batch_normalization)
            .inputs(&[0])
            .outputs(&[0]),
        Rule::new("LayerNormalization", layer_normalization)
            .inputs(&[0])
            .outputs(&[0]),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// y = (x − mean)/√(var + ε)·scale + bias, per channel (axis 1): dX = g·scale/√(var + ε).
fn batch_normalization(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    if attr::int(n.node, "training_mode", 0) != 0
        || n.node.output.iter().skip(1).any(|o| !o.is_empty())
    {
        return Err(
            "training-mode BatchNormalization (batch statistics) is not supported; \
                    export the model in eval mode"
                .into(),
        );
    }
    let (x, scale, variance) = (n.input(0), n.input(1), n.input(4));
    let epsilon = f64::from(attr::float(n.node, "epsilon", 1e-5));
    let epsilon = e.scalar(epsilon, variance)?;
    let shifted = e.op("Add", &[variance, &epsilon], vec![]);
    let deviation = e.op("Sqrt", &[&shifted], vec![]);
    let factor = e.op("Div", &[scale, &deviation], vec![]);
    let rank = e.rank(x)?;
    let factor = if rank > 2 {
        let mut shape = vec![-1];
        shape.extend(std::iter::repeat_n(1, rank - 2));
        let shape = e.ints(&shape);
        e.op("Reshape", &[&factor, &shape], vec![])
    } else {
        factor
    };
    let x_type = e.elem_type(x)?;
    let factor = if e.elem_type(scale)? == x_type {
        factor
    } else {
        e.op(
            "Cast",
            &[&factor],
            vec![AttributeProto::int("to", x_type as i64)],
        )
    };
    Ok(n.only_first(e.op("Mul", &[g, &factor], vec![])))
}

/// Over the normalised axes [axis, rank): with x̂ the normalised input, r the inverse
/// standard deviation and ĝ = g·scale, dX = r·(ĝ − mean ĝ − x̂·mean(ĝ·x̂)).
fn layer_normalization(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    if n.outputs.iter().skip(1).any(Option::is_some) {
        return Err(
            "gradients through LayerNormalization's Mean or InvStdDev outputs are not \
                    supported"
                .into(),
        );
    }
    let (x, scale) = (n.input(0), n.input(1));
    let rank = e.rank(x)?;
    let axis = normalise_axis(attr::int(n.node, "axis", -1), rank)?;
    let dims = e.dims(x)?;
    let count: i64 = dims[axis..]
        .iter()
        .map(|d| d.fixed())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| String::from("the normalised axes must have fixed sizes"))?
        .iter()
        .product();
    let scale_dims = e.fixed_dims(scale, "LayerNormalization scale")?;
    let unit: Vec<usize> = scale_dims.iter().map(|&d| d as usize).collect();
    let ones = e.constant("unit_scale", &ArrayD::from_elem(IxDyn(&unit), 1.0), scale)?;
    let x_type = e.elem_type(x)?;
    // ONNX Runtime implements the Mean and InvStdDev outputs in float only (a double stash
    // is accepted for Y alone), so the duplicate stashes float and its outputs are cast
    let stash_type = DataType::Float as i64;
    let mut attributes: Vec<AttributeProto> = n
        .node
        .attribute
        .iter()
        .filter(|a| matches!(a.name(), "axis" | "epsilon"))
        .cloned()
        .collect();
    attributes.push(AttributeProto::int("stash_type", stash_type));
    let outputs = e.op_n("LayerNormalization", &[x, &ones], attributes, 3);
    let (normalised, inverse_deviation) = (&outputs[0], &outputs[2]);
    let inverse_deviation = if stash_type == x_type as i64 {
        inverse_deviation.clone()
    } else {
        e.op(
            "Cast",
            &[inverse_deviation],
            vec![AttributeProto::int("to", x_type as i64)],
        )
    };
    let axes: Vec<i64> = (axis as i64..rank as i64).collect();
    let mean_factor = e.scalar(1.0 / count as f64, x)?;
    let scaled = e.op("Mul", &[g, scale], vec![]);
    let sum = e.reduce_sum(&scaled, &axes, true);
    let mean = e.op("Mul", &[&sum, &mean_factor], vec![]);
    let projected = e.op("Mul", &[&scaled, normalised], vec![]);
    let sum = e.reduce_sum(&projected, &axes, true);
    let mean_projection = e.op("Mul", &[&sum, &mean_factor], vec![]);
    let along = e.op("Mul", &[normalised, &mean_projection], vec![]);
    let centred = e.op("Sub", &[&scaled, &mean], vec![]);
    let centred = e.op("Sub", &[&centred, &along], vec![]);
    Ok(n.only_first(e.op("Mul", &[&centred, &inverse_deviation], vec![])))
}
