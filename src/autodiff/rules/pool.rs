//! Pooling. MaxPool sends each output's gradient to the input element its window picked,
//! found through the `Indices` output of a duplicate MaxPool and summed with
//! `ScatterElements(reduction = "add")`, so overlapping windows (DenseNet's 3×3 stride-2 stem)
//! are exact. `MaxUnpool` would assign rather than add and is never used.
//! AveragePool spreads each output's gradient evenly over its window: a reshape-and-expand
//! when windows tile the input, else a grouped transposed convolution with per-position
//! divisors (`count_include_pad`, `ceil_mode`).

use ndarray::{ArrayD, IxDyn};

use super::conv::{conv_pads, transpose_pads};
use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr};
use crate::onnx::proto::AttributeProto;

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("MaxPool", max_pool).outputs(&[0]),
        Rule::new("AveragePool", average_pool),
        Rule::new("GlobalAveragePool", global_average_pool),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// The attributes that define a pooling window, copied to the duplicate node.
const WINDOW_ATTRIBUTES: [&str; 6] = [
    "auto_pad",
    "ceil_mode",
    "dilations",
    "kernel_shape",
    "pads",
    "strides",
];

fn max_pool(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let indices = match n.node.output.get(1) {
        Some(i) if !i.is_empty() && attr::int(n.node, "storage_order", 0) == 0 => i.clone(),
        _ => {
            let attributes = n
                .node
                .attribute
                .iter()
                .filter(|a| WINDOW_ATTRIBUTES.contains(&a.name()))
                .cloned()
                .collect();
            e.op_n("MaxPool", &[x], attributes, 2).remove(1)
        }
    };
    let count = match e.fact(x)?.fixed_dims() {
        Some(dims) => e.ints(&[dims.iter().product()]),
        None => {
            let size = e.op("Size", &[x], vec![]);
            let one = e.ints(&[1]);
            e.op("Reshape", &[&size, &one], vec![])
        }
    };
    let zeros = e.filled(&count, 0.0, x)?;
    let flat = e.ints(&[-1]);
    let flat_indices = e.op("Reshape", &[&indices, &flat], vec![]);
    let flat_grad = e.op("Reshape", &[g, &flat], vec![]);
    let scattered = e.op(
        "ScatterElements",
        &[&zeros, &flat_indices, &flat_grad],
        vec![
            AttributeProto::int("axis", 0),
            AttributeProto::string("reduction", "add"),
        ],
    );
    Ok(n.only_first(e.reshape_like(&scattered, x)?))
}

fn average_pool(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (x, y) = (n.input(0), n.output(0));
    let x_dims = e.dims(x)?.to_vec();
    let rank = x_dims.len();
    if rank < 3 {
        return Err(format!("input of rank {rank} (at least 3 expected)"));
    }
    let fixed = |t: &str, e: &Emitter| -> RuleResult<Vec<i64>> {
        e.dims(t)?[2..]
            .iter()
            .map(|d| d.fixed())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| format!("the spatial size of {t:?} must be fixed"))
    };
    let input = fixed(x, e)?;
    let output = fixed(y, e)?;
    let channels = x_dims[1]
        .fixed()
        .ok_or_else(|| String::from("the channel count must be fixed"))?;
    let spatial = input.len();
    let kernel = attr::ints(n.node, "kernel_shape")
        .ok_or_else(|| String::from("kernel_shape is missing"))?;
    let strides = attr::ints(n.node, "strides").unwrap_or_else(|| vec![1; spatial]);
    let dilations = attr::ints(n.node, "dilations").unwrap_or_else(|| vec![1; spatial]);
    if kernel.len() != spatial || strides.len() != spatial || dilations.len() != spatial {
        return Err("kernel_shape, strides and dilations disagree with the input's rank".into());
    }
    let extent = |i: usize| (kernel[i] - 1) * dilations[i] + 1;
    let (begin, end) = conv_pads(n, &input, extent, &strides)?;
    let include_pad = attr::int(n.node, "count_include_pad", 0) != 0;

    // Windows that tile the input exactly: repeat each gradient over its window.
    let tiles = (0..spatial).all(|i| {
        kernel[i] == strides[i]
            && dilations[i] == 1
            && begin[i] == 0
            && end[i] == 0
            && output[i] * kernel[i] == input[i]
    });
    let volume: i64 = kernel.iter().product();
    if tiles {
        let scale = e.scalar(1.0 / volume as f64, x)?;
        let scaled = e.op("Mul", &[g, &scale], vec![]);
        let mut split = vec![0, 0];
        let mut repeat = vec![1, 1];
        for i in 0..spatial {
            split.extend([output[i], 1]);
            repeat.extend([1, kernel[i]]);
        }
        let split = e.ints(&split);
        let spread = e.op("Reshape", &[&scaled, &split], vec![]);
        let repeat = e.ints(&repeat);
        let expanded = e.op("Expand", &[&spread, &repeat], vec![]);
        let mut merged = vec![0, 0];
        merged.extend(&input);
        let merged = e.ints(&merged);
        return Ok(n.only_first(e.op("Reshape", &[&expanded, &merged], vec![])));
    }

    // General windows: divide by each window's element count, then a grouped transposed
    // convolution with unit weights puts the shares back.
    let counts: Vec<Vec<f64>> = (0..spatial)
        .map(|i| {
            let (low, high) = if include_pad {
                (-begin[i], input[i] + end[i])
            } else {
                (0, input[i])
            };
            (0..output[i])
                .map(|o| {
                    let start = o * strides[i] - begin[i];
                    (0..kernel[i])
                        .filter(|j| {
                            let p = start + j * dilations[i];
                            p >= low && p < high
                        })
                        .count() as f64
                })
                .collect()
        })
        .collect();
    let uniform = counts.iter().flatten().all(|&c| c == volume as f64);
    let scaled = if uniform {
        let scale = e.scalar(1.0 / volume as f64, x)?;
        e.op("Mul", &[g, &scale], vec![])
    } else {
        let mut shape = vec![1, 1];
        shape.extend(output.iter().map(|&o| o as usize));
        let reciprocal = ArrayD::from_shape_fn(IxDyn(&shape), |index| {
            let product: f64 = (0..spatial).map(|i| counts[i][index[i + 2]]).product();
            if product > 0.0 { 1.0 / product } else { 0.0 }
        });
        let reciprocal = e.constant("divisor", &reciprocal, x)?;
        e.op("Mul", &[g, &reciprocal], vec![])
    };
    let mut weight_shape = vec![channels as usize, 1];
    weight_shape.extend(kernel.iter().map(|&k| k as usize));
    let ones = ArrayD::from_elem(IxDyn(&weight_shape), 1.0);
    let ones = e.constant("ones", &ones, x)?;
    let (pads, output_padding) = transpose_pads(&input, &output, &begin, &strides, extent);
    let mut attributes = vec![
        AttributeProto::ints("kernel_shape", kernel.clone()),
        AttributeProto::ints("strides", strides.clone()),
        AttributeProto::ints("dilations", dilations.clone()),
        AttributeProto::int("group", channels),
        AttributeProto::ints("pads", pads),
    ];
    if output_padding.iter().any(|&p| p != 0) {
        attributes.push(AttributeProto::ints("output_padding", output_padding));
    }
    Ok(n.only_first(e.op("ConvTranspose", &[&scaled, &ones], attributes)))
}

/// dX = g / (H·W…) spread over the spatial axes.
fn global_average_pool(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let x = n.input(0);
    let dims = e.dims(x)?;
    let area: i64 = dims[2..]
        .iter()
        .map(|d| d.fixed())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("the spatial size of {x:?} must be fixed"))?
        .iter()
        .product();
    let scale = e.scalar(1.0 / area as f64, x)?;
    let scaled = e.op("Mul", &[g, &scale], vec![]);
    let shape = e.shape_of(x)?;
    Ok(n.only_first(e.op("Expand", &[&scaled, &shape], vec![])))
}
