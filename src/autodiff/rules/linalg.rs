//! Matrix products: MatMul (batched, broadcast, rank-1 operands) and Gemm (all four
//! transpose combinations, alpha, beta, broadcast C).

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr};
use crate::autodiff::facts::DimFact;
use crate::onnx::proto::AttributeProto;

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![Rule::new("MatMul", matmul), Rule::new("Gemm", gemm)]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// `t` with its last two axes swapped.
fn swap_last(e: &mut Emitter, t: &str, rank: usize) -> String {
    let mut perm: Vec<i64> = (0..rank as i64).collect();
    perm.swap(rank - 2, rank - 1);
    e.op("Transpose", &[t], vec![AttributeProto::ints("perm", perm)])
}

fn unsqueeze(e: &mut Emitter, t: &str, axis: i64) -> String {
    let axes = e.ints(&[axis]);
    e.op("Unsqueeze", &[t, &axes], vec![])
}

/// Y = A·B with NumPy semantics: rank-1 operands are promoted (A to [1, K], B to [K, 1]) and
/// the promoted axis dropped; batch axes broadcast.
fn matmul(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (a, b, y) = (n.input(0), n.input(1), n.output(0));
    let (ra, rb) = (e.rank(a)?, e.rank(b)?);
    let y_dims = e.dims(y)?.to_vec();
    let mut grads = vec![None, None];
    if ra == 1 && rb == 1 {
        for (i, other) in [(0, b), (1, a)] {
            if n.needs(i) {
                grads[i] = Some(e.op("Mul", &[g, other], vec![]));
            }
        }
        return Ok(grads);
    }
    // Work with rank ≥ 2 operands and a gradient shaped [..., M, N].
    let g2 = match (ra, rb) {
        (1, _) => unsqueeze(e, g, -2),
        (_, 1) => unsqueeze(e, g, -1),
        _ => g.to_string(),
    };
    let batch: Vec<DimFact> = match (ra, rb) {
        (1, _) | (_, 1) => y_dims[..y_dims.len() - 1].to_vec(),
        _ => y_dims[..y_dims.len() - 2].to_vec(),
    };
    let a2 = if ra == 1 {
        unsqueeze(e, a, 0)
    } else {
        a.to_string()
    };
    let b2 = if rb == 1 {
        unsqueeze(e, b, -1)
    } else {
        b.to_string()
    };
    let (ra2, rb2) = (ra.max(2), rb.max(2));
    if n.needs(0) {
        let bt = swap_last(e, &b2, rb2);
        let product = e.op("MatMul", &[&g2, &bt], vec![]);
        grads[0] = Some(if ra == 1 {
            // [..., 1, K] → [K]
            let rank = batch.len() + 2;
            let axes: Vec<i64> = (0..rank as i64 - 1).collect();
            e.reduce_sum(&product, &axes, false)
        } else {
            let a_dims = e.dims(a)?;
            let mut full = batch.clone();
            full.extend_from_slice(&a_dims[ra - 2..]);
            e.unbroadcast(&product, &full, a)?
        });
    }
    if n.needs(1) {
        let at = swap_last(e, &a2, ra2);
        let product = e.op("MatMul", &[&at, &g2], vec![]);
        grads[1] = Some(if rb == 1 {
            // [..., K, 1] → [K]
            let rank = batch.len() + 2;
            let mut axes: Vec<i64> = (0..rank as i64 - 2).collect();
            axes.push(rank as i64 - 1);
            e.reduce_sum(&product, &axes, false)
        } else {
            let b_dims = e.dims(b)?;
            let mut full = batch.clone();
            full.extend_from_slice(&b_dims[rb - 2..]);
            e.unbroadcast(&product, &full, b)?
        });
    }
    Ok(grads)
}

/// Y = alpha·op(A)·op(B) + beta·C.
fn gemm(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (a, b, c) = (n.input(0), n.input(1), n.input(2));
    let alpha = attr::float(n.node, "alpha", 1.0);
    let beta = attr::float(n.node, "beta", 1.0);
    let trans_a = attr::int(n.node, "transA", 0) != 0;
    let trans_b = attr::int(n.node, "transB", 0) != 0;
    let gemm = |e: &mut Emitter, x: &str, y: &str, ta: bool, tb: bool| {
        let mut attributes = Vec::new();
        if alpha != 1.0 {
            attributes.push(AttributeProto::float("alpha", alpha));
        }
        if ta {
            attributes.push(AttributeProto::int("transA", 1));
        }
        if tb {
            attributes.push(AttributeProto::int("transB", 1));
        }
        e.op("Gemm", &[x, y], attributes)
    };
    let mut grads = vec![None; n.node.input.len()];
    if n.needs(0) {
        grads[0] = Some(match (trans_a, trans_b) {
            (false, _) => gemm(e, g, b, false, !trans_b),
            (true, false) => gemm(e, b, g, false, true),
            (true, true) => gemm(e, b, g, true, true),
        });
    }
    if n.needs(1) {
        grads[1] = Some(match (trans_a, trans_b) {
            (false, false) => gemm(e, a, g, true, false),
            (true, false) => gemm(e, a, g, false, false),
            (false, true) => gemm(e, g, a, true, false),
            (true, true) => gemm(e, g, a, true, true),
        });
    }
    if n.needs(2) && !c.is_empty() {
        let scaled = if beta == 1.0 {
            g.to_string()
        } else {
            let factor = e.scalar(f64::from(beta), c)?;
            e.op("Mul", &[g, &factor], vec![])
        };
        let full = e.dims(n.output(0))?;
        grads[2] = Some(e.unbroadcast(&scaled, full, c)?);
    }
    Ok(grads)
}
