//! Element-wise nonlinearities and Softmax.
//!
//! Rules read the forward output where it determines the derivative (Relu's mask, Sigmoid,
//! Tanh, Sqrt, Exp, Softmax), so the input need not stay alive for the backward pass.

use std::f64::consts::PI;

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr};

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("Relu", relu),
        Rule::new("LeakyRelu", leaky_relu),
        Rule::new("Sigmoid", sigmoid),
        Rule::new("Tanh", tanh),
        Rule::new("Erf", erf),
        Rule::new("Gelu", gelu),
        Rule::new("Softmax", softmax),
        Rule::new("LogSoftmax", log_softmax),
        Rule::new("Clip", clip).inputs(&[0]),
        Rule::new("Sqrt", sqrt),
        Rule::new("Exp", exp),
        Rule::new("Log", log),
        Rule::new("Neg", neg),
        Rule::new("Abs", abs),
        Rule::new("Reciprocal", reciprocal),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// dX = g where y > 0 (Relu'(0) = 0, as PyTorch).
fn relu(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let zero = e.scalar(0.0, y)?;
    let mask = e.op("Greater", &[y, &zero], vec![]);
    let dx = e.op("Where", &[&mask, g, &zero], vec![]);
    Ok(n.only_first(dx))
}

/// dX = g where x > 0, alpha·g elsewhere.
fn leaky_relu(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let alpha = f64::from(attr::float(n.node, "alpha", 0.01));
    let zero = e.scalar(0.0, x)?;
    let alpha = e.scalar(alpha, x)?;
    let mask = e.op("Greater", &[x, &zero], vec![]);
    let scaled = e.op("Mul", &[g, &alpha], vec![]);
    let dx = e.op("Where", &[&mask, g, &scaled], vec![]);
    Ok(n.only_first(dx))
}

/// dX = g·y·(1 − y).
fn sigmoid(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let one = e.scalar(1.0, y)?;
    let complement = e.op("Sub", &[&one, y], vec![]);
    let slope = e.op("Mul", &[y, &complement], vec![]);
    Ok(n.only_first(e.op("Mul", &[g, &slope], vec![])))
}

/// dX = g·(1 − y²).
fn tanh(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let one = e.scalar(1.0, y)?;
    let square = e.op("Mul", &[y, y], vec![]);
    let slope = e.op("Sub", &[&one, &square], vec![]);
    Ok(n.only_first(e.op("Mul", &[g, &slope], vec![])))
}

/// dX = g·(2/√π)·exp(−x²).
fn erf(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let square = e.op("Mul", &[x, x], vec![]);
    let minus = e.scalar(-1.0, x)?;
    let exponent = e.op("Mul", &[&square, &minus], vec![]);
    let bell = e.op("Exp", &[&exponent], vec![]);
    let factor = e.scalar(2.0 / PI.sqrt(), x)?;
    let slope = e.op("Mul", &[&bell, &factor], vec![]);
    Ok(n.only_first(e.op("Mul", &[g, &slope], vec![])))
}

/// Gelu (opset 20): exact, dX = g·(Φ(x) + x·φ(x)); tanh approximation, the derivative of
/// 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
fn gelu(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let approximate = attr::string(n.node, "approximate", "none");
    let half = e.scalar(0.5, x)?;
    let one = e.scalar(1.0, x)?;
    let square = e.op("Mul", &[x, x], vec![]);
    let slope = match approximate.as_str() {
        "none" => {
            let root_half = e.scalar(std::f64::consts::FRAC_1_SQRT_2, x)?;
            let scaled = e.op("Mul", &[x, &root_half], vec![]);
            let erf = e.op("Erf", &[&scaled], vec![]);
            let shifted = e.op("Add", &[&erf, &one], vec![]);
            let cdf = e.op("Mul", &[&shifted, &half], vec![]);
            let minus_half = e.scalar(-0.5, x)?;
            let exponent = e.op("Mul", &[&square, &minus_half], vec![]);
            let bell = e.op("Exp", &[&exponent], vec![]);
            let norm = e.scalar(1.0 / (2.0 * PI).sqrt(), x)?;
            let pdf = e.op("Mul", &[&bell, &norm], vec![]);
            let x_pdf = e.op("Mul", &[x, &pdf], vec![]);
            e.op("Add", &[&cdf, &x_pdf], vec![])
        }
        "tanh" => {
            // u = c·(x + a·x³), y = 0.5·x·(1 + tanh u);
            // dy/dx = 0.5·(1 + t) + 0.5·x·(1 − t²)·c·(1 + 3a·x²)
            let c = (2.0 / PI).sqrt();
            let a = 0.044_715;
            let cubic = e.scalar(a, x)?;
            let ax2 = e.op("Mul", &[&square, &cubic], vec![]);
            let inner = e.op("Add", &[&ax2, &one], vec![]);
            let poly = e.op("Mul", &[x, &inner], vec![]);
            let c_const = e.scalar(c, x)?;
            let u = e.op("Mul", &[&poly, &c_const], vec![]);
            let t = e.op("Tanh", &[&u], vec![]);
            let one_plus_t = e.op("Add", &[&one, &t], vec![]);
            let first = e.op("Mul", &[&one_plus_t, &half], vec![]);
            let t2 = e.op("Mul", &[&t, &t], vec![]);
            let sech2 = e.op("Sub", &[&one, &t2], vec![]);
            let three_a = e.scalar(3.0 * a, x)?;
            let ax2_3 = e.op("Mul", &[&square, &three_a], vec![]);
            let du = e.op("Add", &[&ax2_3, &one], vec![]);
            let du = e.op("Mul", &[&du, &c_const], vec![]);
            let half_x = e.op("Mul", &[x, &half], vec![]);
            let second = e.op("Mul", &[&half_x, &sech2], vec![]);
            let second = e.op("Mul", &[&second, &du], vec![]);
            e.op("Add", &[&first, &second], vec![])
        }
        other => return Err(format!("unknown Gelu approximation {other:?}")),
    };
    Ok(n.only_first(e.op("Mul", &[g, &slope], vec![])))
}

/// Softmax (opset ≥ 13, one axis): dX = y·(g − Σ_axis g·y).
fn softmax(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let axis = attr::int(n.node, "axis", -1);
    let gy = e.op("Mul", &[g, y], vec![]);
    let sum = e.reduce_sum(&gy, &[axis], true);
    let centred = e.op("Sub", &[g, &sum], vec![]);
    Ok(n.only_first(e.op("Mul", &[y, &centred], vec![])))
}

/// LogSoftmax: dX = g − softmax(x)·Σ_axis g, with softmax = exp(y).
fn log_softmax(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let axis = attr::int(n.node, "axis", -1);
    let probabilities = e.op("Exp", &[y], vec![]);
    let sum = e.reduce_sum(g, &[axis], true);
    let spread = e.op("Mul", &[&probabilities, &sum], vec![]);
    Ok(n.only_first(e.op("Sub", &[g, &spread], vec![])))
}

/// Clip: g where min ≤ x ≤ max (bounds included, as PyTorch's clamp).
fn clip(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    if n.node.attribute("min").is_some() || n.node.attribute("max").is_some() {
        return Err("Clip with min/max attributes is opset < 11".into());
    }
    let mut mask: Option<String> = None;
    for (port, op) in [(1, "GreaterOrEqual"), (2, "LessOrEqual")] {
        let bound = n.input(port);
        if bound.is_empty() {
            continue;
        }
        let inside = e.op(op, &[x, bound], vec![]);
        mask = Some(match mask {
            Some(previous) => e.op("And", &[&previous, &inside], vec![]),
            None => inside,
        });
    }
    let dx = match mask {
        Some(mask) => {
            let zero = e.scalar(0.0, x)?;
            e.op("Where", &[&mask, g, &zero], vec![])
        }
        None => g.to_string(),
    };
    Ok(n.only_first(dx))
}

/// dX = g·0.5/y.
fn sqrt(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let half = e.scalar(0.5, y)?;
    let scaled = e.op("Mul", &[g, &half], vec![]);
    Ok(n.only_first(e.op("Div", &[&scaled, y], vec![])))
}

/// dX = g·y.
fn exp(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    Ok(n.only_first(e.op("Mul", &[g, n.output(0)], vec![])))
}

/// dX = g/x.
fn log(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    Ok(n.only_first(e.op("Div", &[g, n.input(0)], vec![])))
}

/// dX = −g.
fn neg(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    Ok(n.only_first(e.op("Neg", &[g], vec![])))
}

/// dX = g·sign(x) (0 at 0, as PyTorch).
fn abs(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let sign = e.op("Sign", &[n.input(0)], vec![]);
    Ok(n.only_first(e.op("Mul", &[g, &sign], vec![])))
}

/// dX = −g·y².
fn reciprocal(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let y = n.output(0);
    let square = e.op("Mul", &[y, y], vec![]);
    let product = e.op("Mul", &[g, &square], vec![]);
    Ok(n.only_first(e.op("Neg", &[&product], vec![])))
}
