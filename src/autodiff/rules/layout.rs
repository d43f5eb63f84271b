//! Operators that move or relabel elements without arithmetic: the gradient is moved back
//! (reshape to the input's shape, inverse permutation, sum over expanded axes) or passed on.

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr};
use crate::onnx::proto::{AttributeProto, DataType, NodeProto};

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("Reshape", reshape).inputs(&[0]),
        Rule::new("Flatten", reshape),
        Rule::new("Squeeze", reshape).inputs(&[0]),
        Rule::new("Unsqueeze", reshape).inputs(&[0]),
        Rule::new("Transpose", transpose),
        Rule::new("Expand", expand).inputs(&[0]),
        Rule::new("Identity", identity),
        Rule::new("Dropout", dropout).inputs(&[0]).outputs(&[0]),
        Rule::new("Cast", cast).when(casts_to_float),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

fn reshape(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    Ok(n.only_first(e.reshape_like(g, n.input(0))?))
}

fn transpose(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let rank = e.rank(n.input(0))?;
    let perm = attr::ints(n.node, "perm").unwrap_or_else(|| (0..rank as i64).rev().collect());
    let mut inverse = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        let slot = inverse
            .get_mut(p as usize)
            .ok_or_else(|| format!("perm {perm:?} is not a permutation"))?;
        *slot = i as i64;
    }
    Ok(n.only_first(e.op(
        "Transpose",
        &[g],
        vec![AttributeProto::ints("perm", inverse)],
    )))
}

fn expand(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let full = e.dims(n.output(0))?;
    Ok(n.only_first(e.unbroadcast(g, full, n.input(0))?))
}

fn identity(_: &mut Emitter, n: &NodeGrads) -> Grads {
    Ok(n.only_first(n.grad()?.to_string()))
}

/// Inference-mode Dropout is the identity; training mode is refused.
fn dropout(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let training = n.input(2);
    if !training.is_empty() {
        let on = e
            .int_values(training, "Dropout's training_mode")
            .map(|v| v.iter().any(|&t| t != 0))
            .unwrap_or(true);
        if on {
            return Err("training-mode Dropout is random; export the model in eval mode".into());
        }
    }
    identity(e, n)
}

/// Casts between float types pass the gradient back in the input's type.
fn cast(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x_type = e.elem_type(n.input(0))?;
    if !is_float(x_type) {
        return Err(format!("cast from {x_type:?}, which carries no gradient"));
    }
    if e.elem_type(n.output(0))? == x_type {
        return Ok(n.only_first(g.to_string()));
    }
    Ok(n.only_first(e.op("Cast", &[g], vec![AttributeProto::int("to", x_type as i64)])))
}

fn is_float(t: DataType) -> bool {
    matches!(
        t,
        DataType::Float | DataType::Double | DataType::Float16 | DataType::Bfloat16
    )
}

fn casts_to_float(node: &NodeProto) -> bool {
    let to = attr::int(node, "to", 0);
    DataType::try_from(to as i32).is_ok_and(is_float)
}
