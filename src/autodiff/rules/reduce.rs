//! Reductions: the gradient of a sum is spread back over the reduced axes; a mean also
//! divides by the number of elements reduced.

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr, normalise_axis};

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("ReduceSum", reduce_sum).inputs(&[0]),
        Rule::new("ReduceMean", reduce_mean).inputs(&[0]),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// The reduced axes (normalised, sorted), `None` for "no reduction".
fn reduced_axes(e: &Emitter, n: &NodeGrads) -> RuleResult<Option<Vec<usize>>> {
    let rank = e.rank(n.input(0))?;
    let listed = match attr::ints(n.node, "axes") {
        Some(axes) => axes,
        None if !n.input(1).is_empty() => e.int_values(n.input(1), "the reduction axes")?,
        None => Vec::new(),
    };
    if listed.is_empty() {
        if attr::int(n.node, "noop_with_empty_axes", 0) != 0 {
            return Ok(None);
        }
        return Ok(Some((0..rank).collect()));
    }
    let mut axes = listed
        .iter()
        .map(|&a| normalise_axis(a, rank))
        .collect::<RuleResult<Vec<_>>>()?;
    axes.sort_unstable();
    axes.dedup();
    Ok(Some(axes))
}

/// g with the reduced axes restored (as size 1) and expanded to the input's shape.
fn spread(e: &mut Emitter, n: &NodeGrads, g: &str, axes: &[usize]) -> RuleResult<String> {
    let restored = if attr::int(n.node, "keepdims", 1) != 0 {
        g.to_string()
    } else {
        let axes: Vec<i64> = axes.iter().map(|&a| a as i64).collect();
        let axes = e.ints(&axes);
        e.op("Unsqueeze", &[g, &axes], vec![])
    };
    let shape = e.shape_of(n.input(0))?;
    Ok(e.op("Expand", &[&restored, &shape], vec![]))
}

fn reduce_sum(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let Some(axes) = reduced_axes(e, n)? else {
        return Ok(n.only_first(g.to_string()));
    };
    Ok(n.only_first(spread(e, n, g, &axes)?))
}

fn reduce_mean(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let Some(axes) = reduced_axes(e, n)? else {
        return Ok(n.only_first(g.to_string()));
    };
    let dims = e.dims(x)?;
    let count: i64 = axes
        .iter()
        .map(|&a| dims[a].fixed())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| String::from("a mean over the batch axis is not supported"))?
        .iter()
        .product();
    let scale = e.scalar(1.0 / count as f64, x)?;
    let scaled = e.op("Mul", &[g, &scale], vec![]);
    Ok(n.only_first(spread(e, n, &scaled, &axes)?))
}
