//! Joining, splitting, slicing, gathering and padding. Gradients go back to the positions
//! they came from: `Split` undoes `Concat` and vice versa; a slice or a pad is undone by the
//! opposite `Pad` (ONNX pads may be negative, which crops); gathered rows are scattered back
//! with `ScatterND(reduction = "add")`, so repeated indices add up.

use ndarray::{ArrayD, IxDyn};

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr, normalise_axis};
use crate::onnx::proto::AttributeProto;
use crate::onnx::tensor::{self, Storage};

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("Concat", concat),
        Rule::new("Split", split).inputs(&[0]),
        Rule::new("Slice", slice).inputs(&[0]),
        Rule::new("Gather", gather).inputs(&[0]),
        Rule::new("Pad", pad).inputs(&[0]),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// The size of `tensor` along `axis`, which must be fixed.
fn fixed_size(e: &Emitter, tensor: &str, axis: usize) -> RuleResult<i64> {
    e.dims(tensor)?
        .get(axis)
        .and_then(|d| d.fixed())
        .ok_or_else(|| format!("the size of {tensor:?} along axis {axis} must be fixed"))
}

fn concat(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let inputs = n.node.input.len();
    if inputs == 1 {
        return Ok(n.only_first(g.to_string()));
    }
    let rank = e.rank(n.output(0))?;
    let axis = normalise_axis(attr::int(n.node, "axis", 0), rank)?;
    let sizes = (0..inputs)
        .map(|i| fixed_size(e, n.input(i), axis))
        .collect::<RuleResult<Vec<_>>>()?;
    let sizes = e.ints(&sizes);
    let parts = e.op_n(
        "Split",
        &[g, &sizes],
        vec![AttributeProto::int("axis", axis as i64)],
        inputs,
    );
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| n.needs(i).then_some(part))
        .collect())
}

fn split(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let rank = e.rank(n.input(0))?;
    let axis = normalise_axis(attr::int(n.node, "axis", 0), rank)?;
    let mut parts = Vec::with_capacity(n.node.output.len());
    for (o, adjoint) in n.outputs.iter().enumerate() {
        parts.push(match adjoint {
            Some(g) => g.clone(),
            None => e.zeros_like(n.output(o))?,
        });
    }
    let inputs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let joined = e.op(
        "Concat",
        &inputs,
        vec![AttributeProto::int("axis", axis as i64)],
    );
    Ok(n.only_first(joined))
}

/// Pads `g` by `begin`/`end` per axis of a rank-`rank` tensor (negative values crop).
fn pad_by(e: &mut Emitter, g: &str, begin: &[i64], end: &[i64]) -> String {
    let mut pads = begin.to_vec();
    pads.extend_from_slice(end);
    let pads = e.ints(&pads);
    e.op(
        "Pad",
        &[g, &pads],
        vec![AttributeProto::string("mode", "constant")],
    )
}

/// Slice with unit steps: dX = g padded back to the input's extent.
fn slice(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let rank = e.rank(x)?;
    let starts = e.int_values(n.input(1), "Slice starts")?;
    let ends = e.int_values(n.input(2), "Slice ends")?;
    let axes = match n.input(3) {
        "" => (0..starts.len() as i64).collect(),
        t => e.int_values(t, "Slice axes")?,
    };
    let steps = match n.input(4) {
        "" => vec![1; starts.len()],
        t => e.int_values(t, "Slice steps")?,
    };
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps differ in length".into());
    }
    let mut begin = vec![0; rank];
    let mut end = vec![0; rank];
    for i in 0..starts.len() {
        let axis = normalise_axis(axes[i], rank)?;
        if steps[i] != 1 {
            return Err(format!(
                "Slice with step {} on axis {axis} is not supported (only unit steps)",
                steps[i]
            ));
        }
        let size = fixed_size(e, x, axis)?;
        let clamp = |v: i64| {
            let v = if v < 0 { v + size } else { v };
            v.clamp(0, size)
        };
        let (start, stop) = (clamp(starts[i]), clamp(ends[i]));
        if stop <= start {
            return Ok(n.only_first(e.zeros_like(x)?));
        }
        begin[axis] = start;
        end[axis] = size - stop;
    }
    Ok(n.only_first(pad_by(e, g, &begin, &end)))
}

/// Pad (constant mode): dX = g with the padding removed (and cropped parts restored as zeros).
fn pad(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let mode = attr::string(n.node, "mode", "constant");
    if mode != "constant" {
        return Err(format!(
            "Pad mode {mode:?} is not supported (only \"constant\")"
        ));
    }
    let rank = e.rank(x)?;
    let pads = e.int_values(n.input(1), "Pad pads")?;
    let axes: Vec<usize> = match n.input(3) {
        "" => (0..rank).collect(),
        t => e
            .int_values(t, "Pad axes")?
            .into_iter()
            .map(|a| normalise_axis(a, rank))
            .collect::<RuleResult<_>>()?,
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()));
    }
    let mut begin = vec![0; rank];
    let mut end = vec![0; rank];
    for (i, &axis) in axes.iter().enumerate() {
        begin[axis] = -pads[i];
        end[axis] = -pads[axes.len() + i];
    }
    Ok(n.only_first(pad_by(e, g, &begin, &end)))
}

/// Gather with constant indices along `axis`.
fn gather(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let rank = e.rank(x)?;
    let axis = normalise_axis(attr::int(n.node, "axis", 0), rank)?;
    let size = fixed_size(e, x, axis)?;
    let indices_name = n.input(1);
    let values = e.int_values(indices_name, "Gather indices")?;
    let index_dims = e.fixed_dims(indices_name, "Gather indices")?;
    let values = values
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + size } else { i };
            if (0..size).contains(&j) {
                Ok(j)
            } else {
                Err(format!("index {i} is outside axis {axis} of size {size}"))
            }
        })
        .collect::<RuleResult<Vec<_>>>()?;

    if index_dims.is_empty() {
        // one index: the gradient is one slab, padded back into place
        let index = values[0];
        let axes = e.ints(&[axis as i64]);
        let restored = e.op("Unsqueeze", &[g, &axes], vec![]);
        let mut begin = vec![0; rank];
        let mut end = vec![0; rank];
        begin[axis] = index;
        end[axis] = size - index - 1;
        return Ok(n.only_first(pad_by(e, &restored, &begin, &end)));
    }

    // several indices: move the gathered axis first and scatter-add the gathered rows
    let q = index_dims.len();
    let mut to_front: Vec<i64> = vec![axis as i64];
    to_front.extend((0..rank as i64).filter(|&a| a != axis as i64));
    let mut from_front = vec![0; rank];
    for (i, &a) in to_front.iter().enumerate() {
        from_front[a as usize] = i as i64;
    }
    // g's axes: data[:axis] + indices + data[axis+1:]; put the index axes first
    let mut g_perm: Vec<i64> = (axis as i64..(axis + q) as i64).collect();
    g_perm.extend(0..axis as i64);
    g_perm.extend((axis + q) as i64..(rank + q - 1) as i64);
    let updates = e.op(
        "Transpose",
        &[g],
        vec![AttributeProto::ints("perm", g_perm)],
    );
    let zeros = e.zeros_like(x)?;
    let zeros = e.op(
        "Transpose",
        &[&zeros],
        vec![AttributeProto::ints("perm", to_front)],
    );
    let mut shape: Vec<usize> = index_dims.iter().map(|&d| d as usize).collect();
    shape.push(1);
    let positions =
        ArrayD::from_shape_vec(IxDyn(&shape), values).map_err(|err| format!("indices: {err}"))?;
    let positions_name = e.fresh("indices");
    e.add_initializer(tensor::from_array(
        &positions_name,
        &positions,
        Storage::Raw,
    ));
    let scattered = e.op(
        "ScatterND",
        &[&zeros, &positions_name, &updates],
        vec![AttributeProto::string("reduction", "add")],
    );
    Ok(n.only_first(e.op(
        "Transpose",
        &[&scattered],
        vec![AttributeProto::ints("perm", from_front)],
    )))
}
