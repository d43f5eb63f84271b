//! Broadcasting arithmetic. Each operand's gradient is summed back over the axes it was
//! broadcast along (`Emitter::unbroadcast`); a tensor used twice (`Mul(x, x)`) gets both
//! contributions from the transform.

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult};
use crate::onnx::proto::AttributeProto;

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("Add", add),
        Rule::new("Sub", sub),
        Rule::new("Mul", mul),
        Rule::new("Div", div),
        Rule::new("Pow", pow),
        Rule::new("Sum", sum),
        Rule::new("Where", where_).inputs(&[1, 2]),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// `value` (shaped like the node's output) summed back to input `i`'s shape.
fn to_input(e: &mut Emitter, n: &NodeGrads, value: &str, i: usize) -> RuleResult<String> {
    let full = e.dims(n.output(0))?;
    e.unbroadcast(value, full, n.input(i))
}

fn add(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let mut grads = vec![None, None];
    for (i, slot) in grads.iter_mut().enumerate() {
        if n.needs(i) {
            *slot = Some(to_input(e, n, g, i)?);
        }
    }
    Ok(grads)
}

fn sub(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let mut grads = vec![None, None];
    if n.needs(0) {
        grads[0] = Some(to_input(e, n, g, 0)?);
    }
    if n.needs(1) {
        let reduced = to_input(e, n, g, 1)?;
        grads[1] = Some(e.op("Neg", &[&reduced], vec![]));
    }
    Ok(grads)
}

fn mul(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let mut grads = vec![None, None];
    for (i, other) in [(0, 1), (1, 0)] {
        if n.needs(i) {
            let product = e.op("Mul", &[g, n.input(other)], vec![]);
            grads[i] = Some(to_input(e, n, &product, i)?);
        }
    }
    Ok(grads)
}

/// y = a / b: da = g / b, db = −g·y / b.
fn div(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (b, y) = (n.input(1), n.output(0));
    let mut grads = vec![None, None];
    if n.needs(0) {
        let quotient = e.op("Div", &[g, b], vec![]);
        grads[0] = Some(to_input(e, n, &quotient, 0)?);
    }
    if n.needs(1) {
        let gy = e.op("Mul", &[g, y], vec![]);
        let quotient = e.op("Div", &[&gy, b], vec![]);
        let reduced = to_input(e, n, &quotient, 1)?;
        grads[1] = Some(e.op("Neg", &[&reduced], vec![]));
    }
    Ok(grads)
}

/// y = x^p: dx = g·p·x^(p−1), dp = g·y·ln x.
fn pow(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (x, p, y) = (n.input(0), n.input(1), n.output(0));
    let mut grads = vec![None, None];
    if n.needs(0) {
        let x_type = e.elem_type(x)?;
        let exponent = if e.elem_type(p)? == x_type {
            p.to_string()
        } else {
            e.op("Cast", &[p], vec![AttributeProto::int("to", x_type as i64)])
        };
        let one = e.scalar(1.0, x)?;
        let lowered = e.op("Sub", &[&exponent, &one], vec![]);
        let power = e.op("Pow", &[x, &lowered], vec![]);
        let slope = e.op("Mul", &[&power, &exponent], vec![]);
        let product = e.op("Mul", &[g, &slope], vec![]);
        grads[0] = Some(to_input(e, n, &product, 0)?);
    }
    if n.needs(1) {
        let log = e.op("Log", &[x], vec![]);
        let gy = e.op("Mul", &[g, y], vec![]);
        let product = e.op("Mul", &[&gy, &log], vec![]);
        grads[1] = Some(to_input(e, n, &product, 1)?);
    }
    Ok(grads)
}

fn sum(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let mut grads = vec![None; n.node.input.len()];
    for (i, slot) in grads.iter_mut().enumerate() {
        if n.needs(i) {
            *slot = Some(to_input(e, n, g, i)?);
        }
    }
    Ok(grads)
}

/// y = where(c, a, b): da = g where c, db = g elsewhere.
fn where_(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let condition = n.input(0);
    let zero = e.scalar(0.0, n.output(0))?;
    let mut grads = vec![None, None, None];
    if n.needs(1) {
        let selected = e.op("Where", &[condition, g, &zero], vec![]);
        grads[1] = Some(to_input(e, n, &selected, 1)?);
    }
    if n.needs(2) {
        let selected = e.op("Where", &[condition, &zero, g], vec![]);
        grads[2] = Some(to_input(e, n, &selected, 2)?);
    }
    Ok(grads)
}
