//! Gradient checking for the autodiff tests: one-operator graphs built in code, ONNX Runtime
//! sessions over `ndarray` values in float32 or float64, and central finite differences of
//! the seeded score Σ seed·y along chosen directions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

use dicom_xai::autodiff::{GRAD_PREFIX, GRAD_SEED, GradRequest, GradientModel, gradient_model};
use dicom_xai::onnx::Model;
use dicom_xai::onnx::proto::{
    AttributeProto, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
    TypeProto, ValueInfoProto, tensor_shape_proto::Dimension, type_proto,
};
use dicom_xai::onnx::tensor::{Storage, from_array};
use dicom_xai::runtime::{Runtime, RuntimeOptions};
use ndarray::{ArrayD, IxDyn};
use ort::value::{DynValue, Tensor};

/// The process-wide ONNX Runtime (CPU), from the project's `.venv`.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::init(RuntimeOptions::default())
            .unwrap_or_else(|e| panic!("ONNX Runtime (run `make setup`): {e}"))
    })
}

/// Floating-point precision of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// float64: ONNX Runtime's CPU provider has the operator in double.
    F64,
    /// float32: it has not (Conv, ConvTranspose, Erf...).
    F32,
}

impl Precision {
    /// The ONNX element type.
    pub fn data_type(self) -> DataType {
        match self {
            Precision::F64 => DataType::Double,
            Precision::F32 => DataType::Float,
        }
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce from the seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A uniform value in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        bits as f64 / (1u64 << 53) as f64
    }

    /// A standard normal value (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// An integer in `low..=high`.
    pub fn int(&mut self, low: i64, high: i64) -> i64 {
        low + (self.uniform() * (high - low + 1) as f64) as i64
    }

    /// Standard normal values of a shape.
    pub fn normal_array(&mut self, shape: &[usize]) -> ArrayD<f64> {
        ArrayD::from_shape_fn(IxDyn(shape), |_| self.normal())
    }

    /// One of `choices`.
    pub fn pick<T: Clone>(&mut self, choices: &[T]) -> T {
        let i = (self.uniform() * choices.len() as f64) as usize;
        choices[i.min(choices.len() - 1)].clone()
    }
}

/// One input of a one-operator graph.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A graph input to differentiate with respect to, with its value.
    Wrt(ArrayD<f64>),
    /// A float constant (weights), in the graph's precision.
    Constant(ArrayD<f64>),
    /// An int64 constant (shapes, axes, indices).
    Ints(Vec<i64>, Vec<usize>),
    /// A boolean constant (conditions).
    Bools(ArrayD<bool>),
    /// An omitted optional input.
    Omitted,
    /// The same tensor as operand `i` (a tensor read twice by one node).
    Repeat(usize),
}

/// A one-operator graph and what to check on it.
#[derive(Debug, Clone)]
pub struct OpCase {
    /// A label for messages.
    pub label: String,
    /// The op type.
    pub op_type: String,
    /// Its inputs.
    pub operands: Vec<Operand>,
    /// Its attributes.
    pub attributes: Vec<AttributeProto>,
    /// How many outputs the node has (the first is the score).
    pub outputs: usize,
    /// The precision of the graph.
    pub precision: Precision,
    /// The opset to declare.
    pub opset: i64,
    /// Declare axis 0 of the first input symbolic (the batch of an image input), to exercise
    /// run-time shapes in the backward graph; other inputs broadcast against it.
    pub symbolic_batch: bool,
}

impl OpCase {
    /// A case at opset 17.
    pub fn new(label: impl Into<String>, op_type: &str, precision: Precision) -> OpCase {
        OpCase {
            label: label.into(),
            op_type: op_type.to_string(),
            operands: Vec::new(),
            attributes: Vec::new(),
            outputs: 1,
            precision,
            opset: 17,
            symbolic_batch: false,
        }
    }

    /// Adds an operand.
    pub fn operand(mut self, operand: Operand) -> OpCase {
        self.operands.push(operand);
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, attribute: AttributeProto) -> OpCase {
        self.attributes.push(attribute);
        self
    }

    /// Sets the number of node outputs.
    pub fn outputs(mut self, outputs: usize) -> OpCase {
        self.outputs = outputs;
        self
    }

    /// Sets the opset.
    pub fn opset(mut self, opset: i64) -> OpCase {
        self.opset = opset;
        self
    }

    /// Declares a symbolic batch axis.
    pub fn symbolic_batch(mut self) -> OpCase {
        self.symbolic_batch = true;
        self
    }

    /// The names of the differentiated inputs, with their values.
    pub fn wrt(&self) -> Vec<(String, ArrayD<f64>)> {
        self.operands
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match o {
                Operand::Wrt(value) => Some((format!("x{i}"), value.clone())),
                _ => None,
            })
            .collect()
    }

    /// The forward model.
    pub fn model(&self) -> Model {
        let elem = self.precision.data_type();
        let mut graph = GraphProto {
            name: Some(format!("one {}", self.op_type)),
            ..GraphProto::default()
        };
        let mut node_inputs = Vec::new();
        for (i, operand) in self.operands.iter().enumerate() {
            let name = format!("x{i}");
            match operand {
                Operand::Wrt(value) => {
                    let dims = value
                        .shape()
                        .iter()
                        .enumerate()
                        .map(|(axis, &d)| {
                            if i == 0 && axis == 0 && self.symbolic_batch {
                                Dimension::symbol("N")
                            } else {
                                Dimension::known(d as i64)
                            }
                        })
                        .collect();
                    graph
                        .input
                        .push(ValueInfoProto::tensor_dims(&name, elem, dims));
                }
                Operand::Constant(value) => {
                    graph
                        .initializer
                        .push(float_tensor(&name, value, self.precision))
                }
                Operand::Ints(values, shape) => {
                    let array = ArrayD::from_shape_vec(IxDyn(shape), values.clone())
                        .expect("int constant shape");
                    graph
                        .initializer
                        .push(from_array(&name, &array, Storage::Raw));
                }
                Operand::Bools(values) => {
                    graph.initializer.push(TensorProto {
                        dims: values.shape().iter().map(|&d| d as i64).collect(),
                        data_type: Some(DataType::Bool as i32),
                        name: Some(name.clone()),
                        raw_data: Some(values.iter().map(|&b| u8::from(b)).collect()),
                        ..TensorProto::default()
                    });
                }
                Operand::Omitted => {
                    node_inputs.push(String::new());
                    continue;
                }
                Operand::Repeat(j) => {
                    node_inputs.push(format!("x{j}"));
                    continue;
                }
            }
            node_inputs.push(name);
        }
        let outputs: Vec<String> = (0..self.outputs).map(|i| format!("y{i}")).collect();
        let mut node = NodeProto::new(&self.op_type, "op", node_inputs, outputs.clone());
        node.attribute = self.attributes.clone();
        graph.node.push(node);
        // the score output, typed by element only (ONNX Runtime infers its shape)
        graph.output.push(ValueInfoProto {
            name: Some(outputs[0].clone()),
            r#type: Some(TypeProto {
                value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                    elem_type: Some(elem as i32),
                    shape: None,
                })),
                denotation: None,
            }),
            ..ValueInfoProto::default()
        });
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto::new("", self.opset)],
            producer_name: Some("dicom-xai tests".into()),
            graph: Some(graph),
            ..ModelProto::default()
        };
        Model::from_proto(proto, format!("<one {} ({})>", self.op_type, self.label))
            .expect("a model")
    }
}

/// A float initializer in the given precision.
pub fn float_tensor(name: &str, value: &ArrayD<f64>, precision: Precision) -> TensorProto {
    match precision {
        Precision::F64 => from_array(name, value, Storage::Raw),
        Precision::F32 => from_array(name, &value.mapv(|v| v as f32), Storage::Raw),
    }
}

/// A session over a model file, fed and read as f64 arrays whatever the precision.
pub struct Runner {
    session: ort::session::Session,
    precision: Precision,
}

impl Runner {
    /// Saves `model` to `dir` and opens it.
    pub fn new(model: &Model, dir: &Path, file: &str, precision: Precision) -> Runner {
        let path = dir.join(file);
        model.save(&path).expect("save the model");
        Runner::open(&path, precision)
    }

    /// Opens a model file.
    pub fn open(path: &Path, precision: Precision) -> Runner {
        let loaded = runtime()
            .session(path)
            .unwrap_or_else(|e| panic!("ONNX Runtime refused {}: {e}", path.display()));
        Runner {
            session: loaded.session,
            precision,
        }
    }

    /// Runs with named inputs; returns the named outputs.
    pub fn run(&mut self, inputs: &[(&str, &ArrayD<f64>)], outputs: &[&str]) -> Vec<ArrayD<f64>> {
        let mut feeds: Vec<(String, DynValue)> = Vec::new();
        for (name, value) in inputs {
            let dyn_value = match self.precision {
                Precision::F64 => Tensor::from_array((*value).clone())
                    .expect("tensor")
                    .into_dyn(),
                Precision::F32 => Tensor::from_array(value.mapv(|v| v as f32))
                    .expect("tensor")
                    .into_dyn(),
            };
            feeds.push((name.to_string(), dyn_value));
        }
        let results = self
            .session
            .run(feeds)
            .unwrap_or_else(|e| panic!("run failed: {e}"));
        outputs
            .iter()
            .map(|name| {
                let value = results
                    .get(*name)
                    .unwrap_or_else(|| panic!("no output {name:?}"));
                match self.precision {
                    Precision::F64 => value
                        .try_extract_array::<f64>()
                        .expect("f64 output")
                        .to_owned(),
                    Precision::F32 => value
                        .try_extract_array::<f32>()
                        .expect("f32 output")
                        .mapv(f64::from),
                }
            })
            .collect()
    }
}

/// Σ a·b.
pub fn dot(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    a.iter().zip(b.iter()).map(|(x, y)| x * y).sum()
}

/// ‖a‖₂.
pub fn norm(a: &ArrayD<f64>) -> f64 {
    dot(a, a).sqrt()
}

/// Tolerances of one check: |⟨g, d⟩ − FD| ≤ `relative`·max(|FD|, ‖g‖·‖d‖·`floor`).
#[derive(Debug, Clone, Copy)]
pub struct Tolerance {
    /// Step of the central difference, relative to the input's RMS.
    pub step: f64,
    /// Allowed relative error.
    pub relative: f64,
}

/// float64 graphs: the difference error is O(h²) ≈ 1e-10, rounding ≈ 1e-16/h.
pub const F64_TOLERANCE: Tolerance = Tolerance {
    step: 1e-5,
    relative: 1e-6,
};

/// float32 graphs, direction along the gradient (derivative = ‖g‖): rounding of the score
/// (≈1e-7 relative) divided by the step dominates.
pub const F32_TOLERANCE: Tolerance = Tolerance {
    step: 1e-2,
    relative: 5e-3,
};

/// The result of one gradient check.
#[derive(Debug)]
pub struct CheckReport {
    /// Worst relative error over the directions tried.
    pub worst: f64,
    /// Backward nodes emitted.
    pub backward_nodes: usize,
}

/// Builds the gradient model of `case`, then compares ⟨grad, d⟩ with central differences of
/// Σ seed·y along the normalised gradient and two random directions, for every
/// differentiated input. Panics with the case's label on failure.
pub fn check_op(case: &OpCase, tolerance: Tolerance, rng: &mut Rng) -> CheckReport {
    let names: Vec<String> = case.wrt().iter().map(|(n, _)| n.clone()).collect();
    let request = GradRequest::new(names).with_score("y0");
    check_model(
        &case.label,
        &case.model(),
        &request,
        &case.wrt(),
        case.precision,
        tolerance,
        rng,
    )
}

/// The check of [`check_op`] on any model: `inputs` are the values of every graph input, and
/// the graph inputs `request.wrt` are differentiated (its score must be a graph output).
pub fn check_model(
    label: &str,
    model: &Model,
    request: &GradRequest,
    inputs: &[(String, ArrayD<f64>)],
    precision: Precision,
    tolerance: Tolerance,
    rng: &mut Rng,
) -> CheckReport {
    let dir = tempfile::tempdir().expect("temp dir");
    let names = &request.wrt;
    let gradient: GradientModel = gradient_model(runtime(), model, request)
        .unwrap_or_else(|e| panic!("{label}: transform failed: {e}"));
    let score_name = gradient.score.clone();
    assert_only_default_domain(&gradient.model, label);
    let mut forward = Runner::new(model, dir.path(), "forward.onnx", precision);
    let mut backward = Runner::new(&gradient.model, dir.path(), "gradient.onnx", precision);
    let feeds: Vec<(&str, &ArrayD<f64>)> = inputs.iter().map(|(n, v)| (n.as_str(), v)).collect();
    let y = forward.run(&feeds, &[&score_name]).remove(0);
    let seed = rng.normal_array(y.shape());
    let score = |runner: &mut Runner, values: &[(String, ArrayD<f64>)]| {
        let feeds: Vec<(&str, &ArrayD<f64>)> =
            values.iter().map(|(n, v)| (n.as_str(), v)).collect();
        dot(&runner.run(&feeds, &[&score_name])[0], &seed)
    };
    let mut all_feeds = feeds.clone();
    all_feeds.push((GRAD_SEED, &seed));
    let grad_names: Vec<String> = names.iter().map(|n| format!("{GRAD_PREFIX}{n}")).collect();
    let grad_refs: Vec<&str> = grad_names.iter().map(String::as_str).collect();
    let grads = backward.run(&all_feeds, &grad_refs);
    let mut worst: f64 = 0.0;
    for (name, g) in names.iter().zip(&grads) {
        let value = &inputs
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{label}: no value for input {name}"))
            .1;
        assert_eq!(
            g.shape(),
            value.shape(),
            "{label}: grad:{name} has the wrong shape"
        );
        assert!(
            g.iter().all(|v| v.is_finite()),
            "{label}: grad:{name} is not finite"
        );
        let scale = (dot(value, value) / value.len().max(1) as f64)
            .sqrt()
            .max(1e-3);
        let h = tolerance.step * scale;
        let mut directions = Vec::new();
        if norm(g) > 0.0 {
            directions.push(g / norm(g));
        }
        for _ in 0..2 {
            let d = rng.normal_array(value.shape());
            directions.push(&d / norm(&d));
        }
        for (which, d) in directions.iter().enumerate() {
            let shifted = |sign: f64| -> Vec<(String, ArrayD<f64>)> {
                inputs
                    .iter()
                    .map(|(n, v)| {
                        if n == name {
                            (n.clone(), v + &(d * (sign * h)))
                        } else {
                            (n.clone(), v.clone())
                        }
                    })
                    .collect()
            };
            let plus = score(&mut forward, &shifted(1.0));
            let minus = score(&mut forward, &shifted(-1.0));
            let difference = (plus - minus) / (2.0 * h);
            let analytic = dot(g, d);
            // random directions can be nearly orthogonal to g: measure against ‖g‖ then
            let reference = if which == 0 { analytic.abs() } else { norm(g) };
            let error = (analytic - difference).abs() / reference.max(1e-12);
            if reference > 1e-12 {
                worst = worst.max(error);
            }
            assert!(
                error <= tolerance.relative || reference <= 1e-12,
                "{label}: d/d{name} along direction {which}: analytic {analytic:.9e}, central \
                 difference {difference:.9e} (step {h:.2e}), relative error {error:.3e} > {}",
                tolerance.relative
            );
        }
    }
    CheckReport {
        worst,
        backward_nodes: gradient.backward_nodes,
    }
}

/// Asserts that every node of `model` is a default-domain ONNX operator.
pub fn assert_only_default_domain(model: &Model, label: &str) {
    for node in &model.graph().node {
        assert!(
            matches!(node.domain(), "" | "ai.onnx"),
            "{label}: node {:?} ({}) is in domain {:?}",
            node.name(),
            node.op_type(),
            node.domain()
        );
    }
}

/// Outputs of a gradient model by name, for whole-model checks.
pub fn outputs_by_name(names: &[&str], values: Vec<ArrayD<f64>>) -> HashMap<String, ArrayD<f64>> {
    names.iter().map(|n| n.to_string()).zip(values).collect()
}
