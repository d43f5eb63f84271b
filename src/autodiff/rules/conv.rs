//! Convolutions. The gradient of a convolution with respect to its input is the transposed
//! convolution with the same weights, and vice versa; padding is made explicit from the
//! actual sizes, so `auto_pad` and the rows a strided convolution never reads come out right.
//! Weights are constants in the models we explain: a gradient with respect to them is refused.
//!
//! For stride 1 (DenseNet's and ResNet's 1x1 and 3x3 layers) the transposed convolution is
//! also a plain convolution with the kernel flipped and its in/out channels swapped per
//! group, padded by extent - 1 - pad. ONNX Runtime runs Conv far faster than ConvTranspose
//! (its blocked NCHWc kernels; 2.5-4x on DenseNet's 3x3 layers), and the weight reshuffle is
//! built from the weight initializer with Transpose and Slice, which session creation folds
//! into a constant.

use super::{NodeGrads, Rule};
use crate::autodiff::emit::{Emitter, RuleResult, attr};
use crate::onnx::proto::AttributeProto;

/// The rules of this family.
pub fn rules() -> Vec<Rule> {
    vec![
        Rule::new("Conv", conv),
        Rule::new("ConvTranspose", conv_transpose),
    ]
}

type Grads = RuleResult<Vec<Option<String>>>;

/// The geometry of one convolution, per spatial axis.
struct Geometry {
    kernel: Vec<i64>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    group: i64,
}

impl Geometry {
    fn of(e: &Emitter, n: &NodeGrads) -> RuleResult<Geometry> {
        let w = e.fixed_dims(n.input(1), "convolution weights")?;
        if w.len() < 3 {
            return Err(format!("weights of rank {} (at least 3 expected)", w.len()));
        }
        let spatial = w.len() - 2;
        let kernel = attr::ints(n.node, "kernel_shape").unwrap_or_else(|| w[2..].to_vec());
        let ones = vec![1; spatial];
        let strides = attr::ints(n.node, "strides").unwrap_or_else(|| ones.clone());
        let dilations = attr::ints(n.node, "dilations").unwrap_or(ones);
        if kernel.len() != spatial || strides.len() != spatial || dilations.len() != spatial {
            return Err(
                "kernel_shape, strides and dilations disagree with the weights' rank".into(),
            );
        }
        Ok(Geometry {
            kernel,
            strides,
            dilations,
            group: attr::int(n.node, "group", 1),
        })
    }

    /// The extent of the dilated kernel on axis `i`.
    fn extent(&self, i: usize) -> i64 {
        (self.kernel[i] - 1) * self.dilations[i] + 1
    }

    fn attributes(&self, pads: Vec<i64>) -> Vec<AttributeProto> {
        vec![
            AttributeProto::ints("kernel_shape", self.kernel.clone()),
            AttributeProto::ints("strides", self.strides.clone()),
            AttributeProto::ints("dilations", self.dilations.clone()),
            AttributeProto::int("group", self.group),
            AttributeProto::ints("pads", pads),
        ]
    }
}

/// The spatial sizes of a forward tensor (all fixed).
fn spatial(e: &Emitter, tensor: &str) -> RuleResult<Vec<i64>> {
    let dims = e.dims(tensor)?;
    dims.iter()
        .skip(2)
        .map(|d| d.fixed())
        .collect::<Option<Vec<i64>>>()
        .ok_or_else(|| format!("the spatial size of {tensor:?} must be fixed"))
}

/// Explicit begin and end pads of a convolution, resolving `auto_pad`.
pub(crate) fn conv_pads(
    n: &NodeGrads,
    input: &[i64],
    kernel_extent: impl Fn(usize) -> i64,
    strides: &[i64],
) -> RuleResult<(Vec<i64>, Vec<i64>)> {
    let spatial = input.len();
    let auto_pad = attr::string(n.node, "auto_pad", "NOTSET");
    match auto_pad.as_str() {
        "NOTSET" => {
            let pads = attr::ints(n.node, "pads").unwrap_or_else(|| vec![0; 2 * spatial]);
            if pads.len() != 2 * spatial {
                return Err(format!(
                    "pads has {} values for {spatial} spatial axes",
                    pads.len()
                ));
            }
            Ok((pads[..spatial].to_vec(), pads[spatial..].to_vec()))
        }
        "VALID" => Ok((vec![0; spatial], vec![0; spatial])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut begin = Vec::with_capacity(spatial);
            let mut end = Vec::with_capacity(spatial);
            for i in 0..spatial {
                let out = (input[i] + strides[i] - 1) / strides[i];
                let total = ((out - 1) * strides[i] + kernel_extent(i) - input[i]).max(0);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    begin.push(small);
                    end.push(total - small);
                } else {
                    begin.push(total - small);
                    end.push(small);
                }
            }
            Ok((begin, end))
        }
        other => Err(format!("unknown auto_pad {other:?}")),
    }
}

/// The transposed convolution that maps a gradient of size `output` back onto an input of
/// size `input`: begin pads unchanged; the end pad shrinks by the rows never read, or
/// `output_padding` adds them back. Pads come out symmetric wherever `output_padding` can
/// make up the difference (it must stay under the stride): ONNX Runtime's CUDA provider
/// refuses a ConvTranspose with asymmetric pads (DenseNet's 7x7 stride-2 stem on 224 pixels
/// needs 3 rows before and 2 after), and runs it on the CPU with copies around it. An end pad
/// raised by k with k more rows of `output_padding` crops the same rows: both count from the
/// end of the full transposed output.
pub(crate) fn transpose_pads(
    input: &[i64],
    output: &[i64],
    begin: &[i64],
    strides: &[i64],
    extent: impl Fn(usize) -> i64,
) -> (Vec<i64>, Vec<i64>) {
    let mut pads = begin.to_vec();
    let mut end = Vec::with_capacity(input.len());
    let mut output_padding = Vec::with_capacity(input.len());
    for i in 0..input.len() {
        let t = strides[i] * (output[i] - 1) + extent(i) - begin[i] - input[i];
        let (mut end_pad, mut padding) = (t.max(0), (-t).max(0));
        let missing = begin[i] - end_pad;
        if missing > 0 && padding + missing < strides[i] {
            end_pad += missing;
            padding += missing;
        }
        end.push(end_pad);
        output_padding.push(padding);
    }
    pads.extend(end);
    (pads, output_padding)
}

/// Conv: dX = ConvTranspose(g, W) with matching geometry; dB = Σ g over all but channels.
fn conv(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (x, w, y) = (n.input(0), n.input(1), n.output(0));
    if n.needs(1) {
        return Err(
            "the gradient with respect to convolution weights is not supported (the \
                    weights must be constants)"
                .into(),
        );
    }
    let geometry = Geometry::of(e, n)?;
    let mut grads = vec![None; n.node.input.len()];
    if n.needs(0) {
        let input = spatial(e, x)?;
        let output = spatial(e, y)?;
        let (begin, _) = conv_pads(n, &input, |i| geometry.extent(i), &geometry.strides)?;
        let (pads, output_padding) =
            transpose_pads(&input, &output, &begin, &geometry.strides, |i| {
                geometry.extent(i)
            });
        let correlation = stride_one_correlation(e, n, &geometry, &input, &output, &begin)?;
        grads[0] = Some(match correlation {
            Some(dx) => dx,
            None => {
                let mut attributes = geometry.attributes(pads);
                if output_padding.iter().any(|&p| p != 0) {
                    attributes.push(AttributeProto::ints("output_padding", output_padding));
                }
                e.op("ConvTranspose", &[g, w], attributes)
            }
        });
    }
    if n.needs(2) {
        let rank = e.rank(y)?;
        let mut axes = vec![0];
        axes.extend(2..rank as i64);
        grads[2] = Some(e.reduce_sum(g, &axes, false));
    }
    Ok(grads)
}

/// dX of a stride-1 convolution as Conv(g, flipped and channel-swapped W), or `None` when
/// the convolution is strided or its padding exceeds the kernel's extent (the correlation
/// would need negative pads).
fn stride_one_correlation(
    e: &mut Emitter,
    n: &NodeGrads,
    geometry: &Geometry,
    input: &[i64],
    output: &[i64],
    begin: &[i64],
) -> RuleResult<Option<String>> {
    if geometry.strides.iter().any(|&s| s != 1) {
        return Ok(None);
    }
    let spatial_rank = input.len();
    let mut pads = Vec::with_capacity(2 * spatial_rank);
    let mut ends = Vec::with_capacity(spatial_rank);
    for i in 0..spatial_rank {
        let extent = geometry.extent(i);
        // the forward's end pad, from the sizes: output = input + begin + end - extent + 1
        let end = output[i] - 1 + extent - input[i] - begin[i];
        let (new_begin, new_end) = (extent - 1 - begin[i], extent - 1 - end);
        if new_begin < 0 || new_end < 0 {
            return Ok(None);
        }
        pads.push(new_begin);
        ends.push(new_end);
    }
    pads.extend(ends);
    let (g, w) = (n.grad()?, n.input(1));
    let dims = e.fixed_dims(w, "convolution weights")?;
    let (out_channels, in_per_group) = (dims[0], dims[1]);
    let group = geometry.group.max(1);
    let rank = dims.len() as i64;
    let spatial_axes: Vec<i64> = (2..rank).collect();
    let swapped = if group == 1 {
        let mut perm = vec![1, 0];
        perm.extend(spatial_axes.iter().copied());
        e.op("Transpose", &[w], vec![AttributeProto::ints("perm", perm)])
    } else {
        // [g, out/g, in/g, k...] -> [g, in/g, out/g, k...] -> [in, out/g, k...]
        let mut grouped = vec![group, out_channels / group, in_per_group];
        grouped.extend_from_slice(&dims[2..]);
        let grouped_shape = e.ints(&grouped);
        let split = e.op("Reshape", &[w, &grouped_shape], vec![]);
        let mut perm = vec![0, 2, 1];
        perm.extend((3..rank + 1).collect::<Vec<i64>>());
        let moved = e.op(
            "Transpose",
            &[&split],
            vec![AttributeProto::ints("perm", perm)],
        );
        let mut merged = vec![group * in_per_group, out_channels / group];
        merged.extend_from_slice(&dims[2..]);
        let merged_shape = e.ints(&merged);
        e.op("Reshape", &[&moved, &merged_shape], vec![])
    };
    let flip_starts = e.ints(&vec![-1; spatial_axes.len()]);
    let flip_ends = e.ints(&vec![i64::MIN; spatial_axes.len()]);
    let flip_axes = e.ints(&spatial_axes);
    let flip_steps = e.ints(&vec![-1; spatial_axes.len()]);
    let flipped = e.op(
        "Slice",
        &[&swapped, &flip_starts, &flip_ends, &flip_axes, &flip_steps],
        vec![],
    );
    Ok(Some(e.op(
        "Conv",
        &[g, &flipped],
        geometry.attributes(pads),
    )))
}

/// ConvTranspose: dX = Conv(g, W) with the same strides, dilations, group and pads.
fn conv_transpose(e: &mut Emitter, n: &NodeGrads) -> Grads {
    let g = n.grad()?;
    let (x, w, y) = (n.input(0), n.input(1), n.output(0));
    if n.needs(1) {
        return Err(
            "the gradient with respect to convolution weights is not supported (the \
                    weights must be constants)"
                .into(),
        );
    }
    let geometry = Geometry::of(e, n)?;
    let mut grads = vec![None; n.node.input.len()];
    if n.needs(0) {
        let input = spatial(e, x)?;
        let output = spatial(e, y)?;
        let spatial_rank = input.len();
        let output_padding =
            attr::ints(n.node, "output_padding").unwrap_or_else(|| vec![0; spatial_rank]);
        let auto_pad = attr::string(n.node, "auto_pad", "NOTSET");
        let explicit = attr::ints(n.node, "pads");
        let pads = if auto_pad == "NOTSET" && n.node.attribute("output_shape").is_none() {
            explicit.unwrap_or_else(|| vec![0; 2 * spatial_rank])
        } else {
            // the padding that produced the actual output size, split as the specification says
            let mut begin = Vec::with_capacity(spatial_rank);
            let mut end = Vec::with_capacity(spatial_rank);
            for i in 0..spatial_rank {
                let total = geometry.strides[i] * (input[i] - 1)
                    + output_padding.get(i).copied().unwrap_or(0)
                    + geometry.extent(i)
                    - output[i];
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    begin.push(small);
                    end.push(total - small);
                } else {
                    begin.push(total - small);
                    end.push(small);
                }
            }
            begin.extend(end);
            begin
        };
        grads[0] = Some(e.op("Conv", &[g, w], geometry.attributes(pads)));
    }
    if n.needs(2) {
        let rank = e.rank(y)?;
        let mut axes = vec![0];
        axes.extend(2..rank as i64);
        grads[2] = Some(e.reduce_sum(g, &axes, false));
    }
    Ok(grads)
}
