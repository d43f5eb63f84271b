//! Every backward rule against central finite differences: one-operator graphs with random
//! shapes and attributes, transformed, run in ONNX Runtime, and compared along the gradient
//! and random directions. float64 where ONNX Runtime's CPU provider has the operator in
//! double (tolerance [`F64_TOLERANCE`]), float32 otherwise ([`F32_TOLERANCE`]).

mod common;

use common::gradcheck::{
    F32_TOLERANCE, F64_TOLERANCE, OpCase, Operand, Precision, Rng, Tolerance, check_op,
};
use dicom_xai::onnx::proto::AttributeProto;
use ndarray::ArrayD;

use Precision::{F32, F64};

/// Random configurations per operator.
const TRIALS: u64 = 4;

/// Runs `make` for `TRIALS` seeds and checks each case.
fn each_trial(op: &str, tolerance: Tolerance, make: impl Fn(&mut Rng, u64) -> OpCase) {
    for trial in 0..TRIALS {
        let mut rng = Rng::new(trial * 7919 + op.len() as u64);
        let case = make(&mut rng, trial);
        let report = check_op(&case, tolerance, &mut rng);
        eprintln!(
            "{op} {}: worst relative error {:.2e}, {} backward nodes",
            case.label, report.worst, report.backward_nodes
        );
    }
}

fn shape(rng: &mut Rng, rank: usize, low: i64, high: i64) -> Vec<usize> {
    (0..rank).map(|_| rng.int(low, high) as usize).collect()
}

/// Values away from 0 by at least `margin` (keeps kinks and poles out of the difference).
fn away_from_zero(rng: &mut Rng, shape: &[usize], margin: f64) -> ArrayD<f64> {
    rng.normal_array(shape)
        .mapv(|v| if v >= 0.0 { v + margin } else { v - margin })
}

fn positive(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    rng.normal_array(shape).mapv(|v| v.abs() + 0.5)
}

fn unary(op: &'static str, precision: Precision, values: fn(&mut Rng, &[usize]) -> ArrayD<f64>) {
    let tolerance = match precision {
        F64 => F64_TOLERANCE,
        F32 => F32_TOLERANCE,
    };
    each_trial(op, tolerance, |rng, trial| {
        let rank = rng.int(1, 4) as usize;
        let s = shape(rng, rank, 1, 5);
        let x = values(rng, &s);
        let mut case = OpCase::new(format!("{s:?}"), op, precision).operand(Operand::Wrt(x));
        if trial % 2 == 1 {
            case = case.symbolic_batch();
        }
        case
    });
}

fn any(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
    rng.normal_array(s)
}

fn nonzero(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
    away_from_zero(rng, s, 0.05)
}

#[test]
fn relu() {
    unary("Relu", F64, nonzero);
}

#[test]
fn sigmoid_tanh_exp_neg() {
    for op in ["Sigmoid", "Tanh", "Exp", "Neg"] {
        unary(op, F64, any);
    }
}

#[test]
fn sqrt_log_reciprocal_abs() {
    unary("Sqrt", F64, positive);
    unary("Log", F64, positive);
    unary("Reciprocal", F64, nonzero);
    unary("Abs", F64, nonzero);
}

#[test]
fn erf() {
    unary("Erf", F32, any);
}

#[test]
fn leaky_relu() {
    each_trial("LeakyRelu", F32_TOLERANCE, |rng, _| {
        let s = shape(rng, 3, 1, 5);
        OpCase::new(format!("{s:?}"), "LeakyRelu", F32)
            .operand(Operand::Wrt(away_from_zero(rng, &s, 0.05)))
            .attribute(AttributeProto::float("alpha", rng.pick(&[0.01, 0.2, 1.5])))
    });
}

#[test]
fn gelu_exact_and_tanh() {
    for approximate in ["none", "tanh"] {
        each_trial("Gelu", F32_TOLERANCE, |rng, _| {
            let s = shape(rng, 3, 1, 6);
            OpCase::new(format!("{approximate} {s:?}"), "Gelu", F32)
                .operand(Operand::Wrt(rng.normal_array(&s).mapv(|v| 2.0 * v)))
                .attribute(AttributeProto::string("approximate", approximate))
                .opset(20)
        });
    }
}

#[test]
fn softmax_and_log_softmax() {
    for op in ["Softmax", "LogSoftmax"] {
        each_trial(op, F64_TOLERANCE, |rng, _| {
            let rank = rng.int(2, 4) as usize;
            let s = shape(rng, rank, 2, 5);
            let axis = rng.int(-(rank as i64), rank as i64 - 1);
            OpCase::new(format!("{s:?} axis {axis}"), op, F64)
                .operand(Operand::Wrt(rng.normal_array(&s)))
                .attribute(AttributeProto::int("axis", axis))
        });
    }
}

#[test]
fn clip() {
    each_trial("Clip", F64_TOLERANCE, |rng, trial| {
        let s = shape(rng, 3, 2, 5);
        // keep values off the bounds ±0.5
        let x = rng.normal_array(&s).mapv(|v| {
            if (v.abs() - 0.5).abs() < 0.05 {
                v * 1.3
            } else {
                v
            }
        });
        let mut case = OpCase::new(format!("{s:?}"), "Clip", F64).operand(Operand::Wrt(x));
        case = match trial % 3 {
            0 => case
                .operand(Operand::Constant(ArrayD::from_elem(vec![], -0.5)))
                .operand(Operand::Constant(ArrayD::from_elem(vec![], 0.5))),
            1 => case.operand(Operand::Constant(ArrayD::from_elem(vec![], -0.5))),
            _ => case
                .operand(Operand::Omitted)
                .operand(Operand::Constant(ArrayD::from_elem(vec![], 0.5))),
        };
        case
    });
}

/// Two broadcast-compatible shapes: some axes of one are 1, and one may have fewer axes.
fn broadcast_pair(rng: &mut Rng) -> (Vec<usize>, Vec<usize>) {
    let rank = rng.int(1, 4) as usize;
    let full = shape(rng, rank, 2, 4);
    let mut a = full.clone();
    let mut b = full.clone();
    for i in 0..rank {
        match rng.int(0, 3) {
            0 => a[i] = 1,
            1 => b[i] = 1,
            _ => {}
        }
    }
    let drop = rng.int(0, rank as i64 - 1) as usize;
    if rng.int(0, 1) == 1 {
        b.drain(..drop);
    } else {
        a.drain(..drop);
    }
    (a, b)
}

#[test]
fn add_sub_mul_div_with_broadcasting() {
    for op in ["Add", "Sub", "Mul", "Div"] {
        each_trial(op, F64_TOLERANCE, |rng, _| {
            let (a, b) = broadcast_pair(rng);
            let rhs = if op == "Div" {
                away_from_zero(rng, &b, 0.5)
            } else {
                rng.normal_array(&b)
            };
            OpCase::new(format!("{a:?} {op} {b:?}"), op, F64)
                .operand(Operand::Wrt(rng.normal_array(&a)))
                .operand(Operand::Wrt(rhs))
        });
    }
}

#[test]
fn the_same_tensor_twice() {
    // Mul(x, x): both contributions must add up (2x)
    each_trial("Mul", F64_TOLERANCE, |rng, _| {
        let s = shape(rng, 2, 2, 4);
        OpCase::new(format!("x*x {s:?}"), "Mul", F64)
            .operand(Operand::Wrt(rng.normal_array(&s)))
            .operand(Operand::Repeat(0))
    });
}

#[test]
fn broadcast_against_a_symbolic_batch() {
    each_trial("Mul", F64_TOLERANCE, |rng, _| {
        let s = shape(rng, 3, 2, 4);
        let mut weights = s.clone();
        weights[0] = 1;
        weights[2] = 1;
        OpCase::new(format!("{s:?} * {weights:?}"), "Mul", F64)
            .operand(Operand::Wrt(rng.normal_array(&s)))
            .operand(Operand::Wrt(rng.normal_array(&weights)))
            .symbolic_batch()
    });
}

#[test]
fn pow_with_constant_and_variable_exponent() {
    each_trial("Pow", F64_TOLERANCE, |rng, trial| {
        let s = shape(rng, 2, 2, 4);
        let base = positive(rng, &s);
        let case = OpCase::new(format!("{s:?}"), "Pow", F64).operand(Operand::Wrt(base));
        if trial % 2 == 0 {
            case.operand(Operand::Constant(ArrayD::from_elem(
                vec![],
                rng.pick(&[2.0, 0.5, -1.5, 3.0]),
            )))
        } else {
            case.operand(Operand::Wrt(rng.normal_array(&s)))
        }
    });
}

#[test]
fn sum_of_three() {
    each_trial("Sum", F64_TOLERANCE, |rng, _| {
        let (a, b) = broadcast_pair(rng);
        OpCase::new(format!("{a:?} {b:?}"), "Sum", F64)
            .operand(Operand::Wrt(rng.normal_array(&a)))
            .operand(Operand::Wrt(rng.normal_array(&b)))
            .operand(Operand::Wrt(rng.normal_array(&a)))
    });
}

#[test]
fn where_data_sides() {
    each_trial("Where", F64_TOLERANCE, |rng, _| {
        let (a, b) = broadcast_pair(rng);
        let full: Vec<usize> = {
            let rank = a.len().max(b.len());
            let pad = |s: &Vec<usize>| {
                let mut p = vec![1; rank - s.len()];
                p.extend(s);
                p
            };
            pad(&a)
                .iter()
                .zip(pad(&b))
                .map(|(x, y)| (*x).max(y))
                .collect()
        };
        let condition = ArrayD::from_shape_fn(full.clone(), |_| rng.uniform() > 0.5);
        OpCase::new(format!("{a:?} {b:?}"), "Where", F64)
            .operand(Operand::Bools(condition))
            .operand(Operand::Wrt(rng.normal_array(&a)))
            .operand(Operand::Wrt(rng.normal_array(&b)))
    });
}

#[test]
fn matmul_batched_broadcast_and_rank_one() {
    each_trial("MatMul", F64_TOLERANCE, |rng, trial| {
        let (m, k, n) = (
            rng.int(1, 4) as usize,
            rng.int(1, 4) as usize,
            rng.int(1, 4) as usize,
        );
        let (a, b): (Vec<usize>, Vec<usize>) = match trial {
            0 => (vec![m, k], vec![k, n]),
            1 => (vec![2, 3, m, k], vec![3, k, n]),
            2 => (vec![k], vec![2, k, n]),
            _ => (vec![2, m, k], vec![k]),
        };
        OpCase::new(format!("{a:?} x {b:?}"), "MatMul", F64)
            .operand(Operand::Wrt(rng.normal_array(&a)))
            .operand(Operand::Wrt(rng.normal_array(&b)))
    });
    // weights shared over a symbolic batch, as in a ViT's linear layers
    each_trial("MatMul", F64_TOLERANCE, |rng, _| {
        OpCase::new("[N,5,3] x [3,4]", "MatMul", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 5, 3])))
            .operand(Operand::Wrt(rng.normal_array(&[3, 4])))
            .symbolic_batch()
    });
}

#[test]
fn gemm_all_transposes() {
    each_trial("Gemm", F64_TOLERANCE, |rng, trial| {
        let (m, k, n) = (
            rng.int(1, 4) as usize,
            rng.int(1, 4) as usize,
            rng.int(1, 4) as usize,
        );
        let (trans_a, trans_b) = (trial & 1, (trial >> 1) & 1);
        let a = if trans_a == 1 { vec![k, m] } else { vec![m, k] };
        let b = if trans_b == 1 { vec![n, k] } else { vec![k, n] };
        let c = match trial {
            0 => vec![n],
            1 => vec![m, 1],
            2 => vec![m, n],
            _ => vec![],
        };
        OpCase::new(
            format!("transA {trans_a} transB {trans_b} C {c:?}"),
            "Gemm",
            F64,
        )
        .operand(Operand::Wrt(rng.normal_array(&a)))
        .operand(Operand::Wrt(rng.normal_array(&b)))
        .operand(Operand::Wrt(rng.normal_array(&c)))
        .attribute(AttributeProto::int("transA", trans_a as i64))
        .attribute(AttributeProto::int("transB", trans_b as i64))
        .attribute(AttributeProto::float("alpha", 0.7))
        .attribute(AttributeProto::float("beta", 1.3))
    });
}

/// A random 2-D convolution geometry: (input [N,C,H,W], weights, attributes).
fn conv_geometry(rng: &mut Rng, trial: u64) -> (Vec<usize>, Vec<usize>, Vec<AttributeProto>) {
    let group = rng.pick(&[1, 1, 2, 3]) as usize;
    let c = group * rng.int(1, 2) as usize;
    let m = group * rng.int(1, 2) as usize;
    let k = [rng.int(1, 3), rng.int(1, 3)];
    let strides = [rng.int(1, 3), rng.int(1, 3)];
    let dilations = [rng.int(1, 2), rng.int(1, 2)];
    let h = rng.int(5, 9) as usize;
    let w = rng.int(5, 9) as usize;
    let mut attributes = vec![
        AttributeProto::ints("kernel_shape", k),
        AttributeProto::ints("strides", strides),
        AttributeProto::ints("dilations", dilations),
        AttributeProto::int("group", group as i64),
    ];
    match trial % 3 {
        0 => attributes.push(AttributeProto::ints(
            "pads",
            [rng.int(0, 2), rng.int(0, 1), rng.int(0, 2), rng.int(0, 1)],
        )),
        1 => attributes.push(AttributeProto::string(
            "auto_pad",
            rng.pick(&["SAME_UPPER", "SAME_LOWER"]),
        )),
        _ => {}
    }
    (
        vec![2, c, h, w],
        vec![m, c / group, k[0] as usize, k[1] as usize],
        attributes,
    )
}

#[test]
fn conv_any_group_stride_pad_dilation() {
    each_trial("Conv", F32_TOLERANCE, |rng, trial| {
        let (x, w, attributes) = conv_geometry(rng, trial);
        let m = w[0];
        let mut case = OpCase::new(format!("x {x:?} w {w:?}"), "Conv", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&w)));
        if trial % 2 == 0 {
            case = case.operand(Operand::Wrt(rng.normal_array(&[m])));
        }
        case.attributes = attributes;
        if trial == 3 {
            case = case.symbolic_batch();
        }
        case
    });
}

#[test]
fn conv_strided_stems_whose_transposed_pads_differ() {
    // DenseNet's and ResNet's stem (7x7, stride 2, pad 3 on an even size): the transposed
    // convolution needs one row fewer at the end than at the start; it is written with
    // symmetric pads and output_padding, the form ONNX Runtime's CUDA provider runs
    each_trial("Conv", F32_TOLERANCE, |rng, trial| {
        let size = [12, 13, 16, 10][trial as usize % 4];
        let (k, pad) = if trial % 2 == 0 { (7, 3) } else { (3, 1) };
        let x = [1, 2, size, size + 2];
        let w = [3, 2, k, k];
        OpCase::new(format!("x {x:?} k{k} s2 p{pad}"), "Conv", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&w)))
            .attribute(AttributeProto::ints("kernel_shape", [k as i64, k as i64]))
            .attribute(AttributeProto::ints("strides", [2, 2]))
            .attribute(AttributeProto::ints("pads", [pad, pad, pad, pad]))
    });
}

#[test]
fn conv_stride_one_as_a_flipped_convolution() {
    // stride 1 takes the Conv path (pads up to the kernel's extent) or, with larger pads,
    // falls back to ConvTranspose
    each_trial("Conv", F32_TOLERANCE, |rng, trial| {
        let group = [1, 2, 3, 1][trial as usize % 4];
        let c = group * rng.int(1, 3) as usize;
        let m = group * rng.int(1, 3) as usize;
        let k = [rng.int(1, 3), rng.int(1, 3)];
        let dilation = [rng.int(1, 2), rng.int(1, 2)];
        let pad_limit = if trial == 3 { 4 } else { 1 };
        let pads = [
            rng.int(0, pad_limit),
            rng.int(0, pad_limit),
            rng.int(0, pad_limit),
            rng.int(0, pad_limit),
        ];
        let (x, w) = (
            vec![2, c, rng.int(6, 9) as usize, rng.int(6, 9) as usize],
            vec![m, c / group, k[0] as usize, k[1] as usize],
        );
        OpCase::new(format!("x {x:?} w {w:?} pads {pads:?}"), "Conv", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&w)))
            .attribute(AttributeProto::ints("kernel_shape", k))
            .attribute(AttributeProto::ints("dilations", dilation))
            .attribute(AttributeProto::int("group", group as i64))
            .attribute(AttributeProto::ints("pads", pads))
    });
}

#[test]
fn conv_transpose() {
    each_trial("ConvTranspose", F32_TOLERANCE, |rng, trial| {
        let group = rng.pick(&[1, 2]) as usize;
        let c = group * rng.int(1, 2) as usize;
        let m = group * rng.int(1, 2) as usize;
        let k = [rng.int(1, 3), rng.int(1, 3)];
        let strides = [rng.int(1, 2), rng.int(1, 2)];
        let x = vec![2, c, rng.int(3, 6) as usize, rng.int(3, 6) as usize];
        let w = vec![c, m / group, k[0] as usize, k[1] as usize];
        let mut case = OpCase::new(format!("x {x:?} w {w:?}"), "ConvTranspose", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&w)))
            .attribute(AttributeProto::ints("kernel_shape", k))
            .attribute(AttributeProto::ints("strides", strides))
            .attribute(AttributeProto::int("group", group as i64));
        if trial % 2 == 1 {
            case = case.attribute(AttributeProto::ints("pads", [0, 1, 1, 0]));
        }
        case
    });
}

#[test]
fn max_pool_overlapping_windows() {
    each_trial("MaxPool", F64_TOLERANCE, |rng, trial| {
        let x = vec![
            2,
            rng.int(1, 3) as usize,
            rng.int(5, 9) as usize,
            rng.int(5, 9) as usize,
        ];
        let k = rng.int(2, 3);
        let s = rng.int(1, 2);
        let mut case = OpCase::new(format!("{x:?} k{k} s{s}"), "MaxPool", F64)
            // distinct values: no ties inside a window
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .attribute(AttributeProto::ints("kernel_shape", [k, k]))
            .attribute(AttributeProto::ints("strides", [s, s]));
        match trial {
            0 => case = case.attribute(AttributeProto::ints("pads", [1, 1, 1, 1])),
            1 => case = case.attribute(AttributeProto::int("ceil_mode", 1)),
            2 => case = case.attribute(AttributeProto::ints("dilations", [2, 1])),
            _ => case = case.symbolic_batch(),
        }
        case
    });
}

#[test]
fn max_pool_with_its_own_indices_output() {
    each_trial("MaxPool", F64_TOLERANCE, |rng, _| {
        OpCase::new("[1,2,6,6] k3 s2 p1 two outputs", "MaxPool", F64)
            .operand(Operand::Wrt(rng.normal_array(&[1, 2, 6, 6])))
            .attribute(AttributeProto::ints("kernel_shape", [3, 3]))
            .attribute(AttributeProto::ints("strides", [2, 2]))
            .attribute(AttributeProto::ints("pads", [1, 1, 1, 1]))
            .outputs(2)
    });
}

#[test]
fn average_pool_tiling_padded_and_ceil() {
    each_trial("AveragePool", F32_TOLERANCE, |rng, trial| {
        let c = rng.int(1, 3) as usize;
        let (x, attributes) = match trial {
            // DenseNet's transitions: 2x2 windows tiling the input
            0 => (
                vec![2, c, 6, 8],
                vec![
                    AttributeProto::ints("kernel_shape", [2, 2]),
                    AttributeProto::ints("strides", [2, 2]),
                ],
            ),
            1 => (
                vec![2, c, 7, 6],
                vec![
                    AttributeProto::ints("kernel_shape", [3, 3]),
                    AttributeProto::ints("strides", [2, 2]),
                    AttributeProto::ints("pads", [1, 1, 1, 1]),
                    AttributeProto::int("count_include_pad", 0),
                ],
            ),
            2 => (
                vec![2, c, 7, 6],
                vec![
                    AttributeProto::ints("kernel_shape", [3, 2]),
                    AttributeProto::ints("strides", [2, 2]),
                    AttributeProto::ints("pads", [1, 0, 1, 1]),
                    AttributeProto::int("count_include_pad", 1),
                ],
            ),
            _ => (
                vec![2, c, 7, 7],
                vec![
                    AttributeProto::ints("kernel_shape", [2, 2]),
                    AttributeProto::ints("strides", [2, 2]),
                    AttributeProto::int("ceil_mode", 1),
                ],
            ),
        };
        let mut case = OpCase::new(format!("{x:?} trial {trial}"), "AveragePool", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)));
        case.attributes = attributes;
        if trial == 0 {
            case = case.symbolic_batch();
        }
        case
    });
}

#[test]
fn global_average_pool() {
    each_trial("GlobalAveragePool", F32_TOLERANCE, |rng, trial| {
        let x = shape(rng, 4, 2, 5);
        let case = OpCase::new(format!("{x:?}"), "GlobalAveragePool", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)));
        if trial % 2 == 0 {
            case.symbolic_batch()
        } else {
            case
        }
    });
}

#[test]
fn batch_normalization_inference() {
    each_trial("BatchNormalization", F64_TOLERANCE, |rng, trial| {
        let c = rng.int(1, 4) as usize;
        let x = if trial % 2 == 0 {
            vec![2, c, 3, 4]
        } else {
            vec![3, c]
        };
        OpCase::new(format!("{x:?}"), "BatchNormalization", F64)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&[c])))
            .operand(Operand::Constant(rng.normal_array(&[c])))
            .operand(Operand::Constant(rng.normal_array(&[c])))
            .operand(Operand::Constant(positive(rng, &[c])))
            .attribute(AttributeProto::float("epsilon", 1e-3))
    });
}

#[test]
fn layer_normalization() {
    each_trial("LayerNormalization", F32_TOLERANCE, |rng, trial| {
        let x = shape(rng, 3, 2, 6);
        let axis = if trial % 2 == 0 { -1 } else { 1 };
        let normalised: Vec<usize> = if axis == -1 {
            vec![x[2]]
        } else {
            x[1..].to_vec()
        };
        let case = OpCase::new(format!("{x:?} axis {axis}"), "LayerNormalization", F32)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&normalised)))
            .operand(Operand::Constant(rng.normal_array(&normalised)))
            .attribute(AttributeProto::int("axis", axis))
            .attribute(AttributeProto::float("epsilon", 1e-5));
        if trial == 2 {
            case.symbolic_batch()
        } else {
            case
        }
    });
}

#[test]
fn layer_normalization_in_double() {
    each_trial("LayerNormalization", F64_TOLERANCE, |rng, _| {
        let x = shape(rng, 3, 2, 6);
        OpCase::new(format!("{x:?} stash double"), "LayerNormalization", F64)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Constant(rng.normal_array(&[x[2]])))
            .attribute(AttributeProto::int("stash_type", 11))
    });
}

#[test]
fn reduce_sum_and_mean() {
    for (op, opset) in [("ReduceSum", 17), ("ReduceMean", 17), ("ReduceMean", 18)] {
        each_trial(op, F64_TOLERANCE, |rng, trial| {
            let x = shape(rng, 4, 2, 4);
            let axes: Vec<i64> = match trial {
                0 => vec![-1, -2],
                1 => vec![1],
                2 => vec![0, 3],
                _ => vec![],
            };
            let keepdims = (trial % 2) as i64;
            let mut case = OpCase::new(format!("{x:?} axes {axes:?} keepdims {keepdims}"), op, F64)
                .operand(Operand::Wrt(rng.normal_array(&x)))
                .attribute(AttributeProto::int("keepdims", keepdims))
                .opset(opset);
            let as_input = op == "ReduceSum" || opset >= 18;
            if !axes.is_empty() {
                if as_input {
                    case = case.operand(Operand::Ints(axes.clone(), vec![axes.len()]));
                } else {
                    case = case.attribute(AttributeProto::ints("axes", axes.clone()));
                }
            }
            case
        });
    }
}

#[test]
fn reshape_flatten_squeeze_unsqueeze() {
    each_trial("Reshape", F64_TOLERANCE, |rng, trial| {
        let case = OpCase::new("[2,3,4] -> [2,-1]", "Reshape", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3, 4])))
            .operand(Operand::Ints(vec![0, -1], vec![2]));
        if trial % 2 == 0 {
            case.symbolic_batch()
        } else {
            case
        }
    });
    each_trial("Flatten", F64_TOLERANCE, |rng, trial| {
        OpCase::new(format!("axis {}", trial % 3), "Flatten", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3, 2, 2])))
            .attribute(AttributeProto::int("axis", (trial % 3) as i64))
    });
    each_trial("Squeeze", F64_TOLERANCE, |rng, _| {
        OpCase::new("[2,1,3,1]", "Squeeze", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 1, 3, 1])))
            .operand(Operand::Ints(vec![1, -1], vec![2]))
    });
    each_trial("Unsqueeze", F64_TOLERANCE, |rng, _| {
        OpCase::new("[2,3] axes 0,3", "Unsqueeze", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3])))
            .operand(Operand::Ints(vec![0, 3], vec![2]))
    });
}

#[test]
fn transpose_expand_identity_dropout_cast() {
    each_trial("Transpose", F64_TOLERANCE, |rng, trial| {
        let case = OpCase::new("perm", "Transpose", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3, 4, 5])));
        if trial % 2 == 0 {
            case.attribute(AttributeProto::ints("perm", [0, 2, 3, 1]))
        } else {
            case
        }
    });
    each_trial("Expand", F64_TOLERANCE, |rng, _| {
        OpCase::new("[3,1] -> [2,3,4]", "Expand", F64)
            .operand(Operand::Wrt(rng.normal_array(&[3, 1])))
            .operand(Operand::Ints(vec![2, 3, 4], vec![3]))
    });
    each_trial("Identity", F64_TOLERANCE, |rng, _| {
        OpCase::new("[4]", "Identity", F64).operand(Operand::Wrt(rng.normal_array(&[4])))
    });
    each_trial("Dropout", F64_TOLERANCE, |rng, _| {
        OpCase::new("[2,3] inference", "Dropout", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3])))
    });
    each_trial("Cast", F64_TOLERANCE, |rng, _| {
        OpCase::new("double to double", "Cast", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 3])))
            .attribute(AttributeProto::int("to", 11))
    });
}

#[test]
fn concat_and_split() {
    each_trial("Concat", F64_TOLERANCE, |rng, trial| {
        let axis = (trial % 3) as usize;
        let mut a = vec![2, 3, 4];
        let mut b = a.clone();
        a[axis] = 1 + rng.int(0, 2) as usize;
        b[axis] = 1 + rng.int(0, 2) as usize;
        OpCase::new(format!("{a:?} ++ {b:?} axis {axis}"), "Concat", F64)
            .operand(Operand::Wrt(rng.normal_array(&a)))
            .operand(Operand::Constant(rng.normal_array(&b)))
            .operand(Operand::Wrt(rng.normal_array(&a)))
            .attribute(AttributeProto::int(
                "axis",
                axis as i64 - if trial == 3 { 3 } else { 0 },
            ))
    });
    each_trial("Split", F64_TOLERANCE, |rng, trial| {
        // only output 0 reaches the score: the others get zero adjoints
        OpCase::new("[2,6,3] into 1,2,3", "Split", F64)
            .operand(Operand::Wrt(rng.normal_array(&[2, 6, 3])))
            .operand(Operand::Ints(vec![1, 2, 3], vec![3]))
            .attribute(AttributeProto::int("axis", 1))
            .outputs(3)
            .opset(if trial % 2 == 0 { 13 } else { 18 })
    });
}

#[test]
fn slice_unit_steps() {
    each_trial("Slice", F64_TOLERANCE, |rng, trial| {
        let x = vec![4, 5, 6];
        let (starts, ends, axes): (Vec<i64>, Vec<i64>, Vec<i64>) = match trial {
            0 => (vec![1], vec![3], vec![0]),
            1 => (vec![-4, 0], vec![i64::MAX, -1], vec![2, 1]),
            2 => (vec![0, 2, 1], vec![2, 4, 5], vec![0, 1, 2]),
            _ => (vec![1], vec![100], vec![-2]),
        };
        let n = starts.len();
        OpCase::new(
            format!("starts {starts:?} ends {ends:?} axes {axes:?}"),
            "Slice",
            F64,
        )
        .operand(Operand::Wrt(rng.normal_array(&x)))
        .operand(Operand::Ints(starts, vec![n]))
        .operand(Operand::Ints(ends, vec![n]))
        .operand(Operand::Ints(axes, vec![n]))
    });
}

#[test]
fn gather_scalar_and_tensor_indices() {
    each_trial("Gather", F64_TOLERANCE, |rng, trial| {
        let x = vec![4, 5, 3];
        let axis = (trial % 3) as i64;
        let size = x[axis as usize] as i64;
        let (indices, shape): (Vec<i64>, Vec<usize>) = match trial {
            0 => (vec![2], vec![]),
            1 => (vec![-1], vec![]),
            // repeated indices must add up
            2 => (vec![0, 2, 0, -1], vec![2, 2]),
            _ => (vec![1, 1, 3], vec![3]),
        };
        let indices = indices
            .into_iter()
            .map(|i| i.clamp(-size, size - 1))
            .collect();
        OpCase::new(format!("axis {axis} indices {shape:?}"), "Gather", F64)
            .operand(Operand::Wrt(rng.normal_array(&x)))
            .operand(Operand::Ints(indices, shape))
            .attribute(AttributeProto::int("axis", axis))
    });
}

#[test]
fn pad_constant_with_negative_pads() {
    each_trial("Pad", F64_TOLERANCE, |rng, trial| {
        let pads: Vec<i64> = match trial {
            0 => vec![0, 1, 2, 0, 2, 1],
            1 => vec![1, -1, 0, 0, 2, -2],
            2 => vec![0, 0, 0, 1, 1, 1],
            _ => vec![-1, 0, 1, 0, 0, 1],
        };
        OpCase::new(format!("pads {pads:?}"), "Pad", F64)
            .operand(Operand::Wrt(rng.normal_array(&[3, 4, 5])))
            .operand(Operand::Ints(pads, vec![6]))
            .operand(Operand::Constant(ArrayD::from_elem(vec![], 0.25)))
    });
}
