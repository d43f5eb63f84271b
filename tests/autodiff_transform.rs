//! What the transform does with whole graphs (docs/design.md section 11): gradients accumulate over a
//! tensor's consumers, shape and integer paths are skipped, branches that do not reach the
//! score cost nothing, intermediate tensors can be differentiated, and every refusal names
//! the node or tensor. Values are checked against central differences in float64.

mod common;

use common::gradcheck::{F64_TOLERANCE, Precision, Rng, Runner, check_model, runtime};
use dicom_xai::autodiff::{
    AutodiffError, GRAD_PREFIX, GRAD_SEED, GradRequest, default_score, gradient_model,
};
use dicom_xai::onnx::Model;
use dicom_xai::onnx::proto::{
    AttributeProto, DataType, GraphProto, ModelProto, NodeProto, OperatorSetIdProto,
    ValueInfoProto, tensor_shape_proto::Dimension,
};
use dicom_xai::onnx::tensor::{Storage, from_array};
use ndarray::{ArrayD, IxDyn};

/// A small float64 graph built node by node.
struct Graph {
    proto: GraphProto,
    opset: i64,
}

impl Graph {
    fn new(opset: i64) -> Graph {
        Graph {
            proto: GraphProto {
                name: Some("transform test".into()),
                ..GraphProto::default()
            },
            opset,
        }
    }

    /// A double input with a symbolic batch axis and fixed other axes.
    fn input(mut self, name: &str, rest: &[i64]) -> Graph {
        let mut dims = vec![Dimension::symbol("N")];
        dims.extend(rest.iter().map(|&d| Dimension::known(d)));
        self.proto
            .input
            .push(ValueInfoProto::tensor_dims(name, DataType::Double, dims));
        self
    }

    fn ints(mut self, name: &str, values: &[i64]) -> Graph {
        let array =
            ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).expect("a vector");
        self.proto
            .initializer
            .push(from_array(name, &array, Storage::Raw));
        self
    }

    fn weights(mut self, name: &str, value: &ArrayD<f64>) -> Graph {
        self.proto
            .initializer
            .push(from_array(name, value, Storage::Raw));
        self
    }

    fn node(mut self, op: &str, name: &str, inputs: &[&str], outputs: &[&str]) -> Graph {
        self.proto.node.push(NodeProto::new(
            op,
            name,
            inputs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            outputs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ));
        self
    }

    fn attribute(mut self, attribute: AttributeProto) -> Graph {
        if let Some(node) = self.proto.node.last_mut() {
            node.attribute.push(attribute);
        }
        self
    }

    fn output(mut self, name: &str) -> Graph {
        self.proto.output.push(ValueInfoProto::tensor_dims(
            name,
            DataType::Double,
            Vec::new(),
        ));
        // shapes of outputs are left to ONNX Runtime
        if let Some(last) = self.proto.output.last_mut()
            && let Some(t) = last.r#type.as_mut()
            && let Some(dicom_xai::onnx::proto::type_proto::Value::TensorType(tensor)) =
                t.value.as_mut()
        {
            tensor.shape = None;
        }
        self
    }

    fn model(self, label: &str) -> Model {
        let proto = ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto::new("", self.opset)],
            producer_name: Some("dicom-xai tests".into()),
            graph: Some(self.proto),
            ..ModelProto::default()
        };
        Model::from_proto(proto, format!("<{label}>")).expect("a model")
    }
}

fn values(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    rng.normal_array(shape)
}

fn transform_error(model: &Model, request: &GradRequest) -> AutodiffError {
    match gradient_model(runtime(), model, request) {
        Ok(_) => panic!(
            "{}: the transform should have refused",
            model.path().display()
        ),
        Err(e) => e,
    }
}

#[test]
fn gradients_accumulate_over_every_consumer_of_a_tensor() {
    // x feeds Relu, Sigmoid and Mul (twice: once directly, once through Relu)
    let model = Graph::new(17)
        .input("x", &[3, 4])
        .node("Relu", "relu", &["x"], &["a"])
        .node("Sigmoid", "sigmoid", &["x"], &["b"])
        .node("Mul", "mul", &["x", "a"], &["c"])
        .node("Add", "add", &["b", "c"], &["y"])
        .output("y")
        .model("fan-out");
    let mut rng = Rng::new(1);
    let x = values(&mut rng, &[2, 3, 4]);
    let request = GradRequest::new(["x"]).with_score("y");
    let report = check_model(
        "fan-out",
        &model,
        &request,
        &[("x".into(), x)],
        Precision::F64,
        F64_TOLERANCE,
        &mut rng,
    );
    assert!(report.worst <= F64_TOLERANCE.relative);
}

#[test]
fn shape_computations_are_skipped_and_run_time_shapes_follow_the_batch() {
    // Reshape's target shape is computed from x's own shape: Shape -> Gather -> Concat
    let model = Graph::new(17)
        .input("x", &[3, 4])
        .ints("zero", &[0])
        .ints("rest", &[12])
        .node("Shape", "shape", &["x"], &["s"])
        .node("Gather", "batch", &["s", "zero"], &["n"])
        .node("Concat", "target", &["n", "rest"], &["t"])
        .attribute(AttributeProto::int("axis", 0))
        .node("Reshape", "flatten", &["x", "t"], &["f"])
        .node("Tanh", "tanh", &["f"], &["y"])
        .output("y")
        .model("shape path");
    let mut rng = Rng::new(2);
    let request = GradRequest::new(["x"]).with_score("y");
    let gradient = gradient_model(runtime(), &model, &request).expect("the transform");
    for node in &gradient.model.graph().node[model.graph().node.len()..] {
        for forward in ["shape", "batch", "target"] {
            assert!(
                !node.name().starts_with(&format!("{forward}.grad")),
                "the shape computation {forward} got a backward node {}",
                node.name()
            );
        }
    }
    // the batch was 2 and 3 when shapes were learnt; run at 5
    let x = values(&mut rng, &[5, 3, 4]);
    check_model(
        "shape path",
        &model,
        &request,
        &[("x".into(), x)],
        Precision::F64,
        F64_TOLERANCE,
        &mut rng,
    );
}

#[test]
fn integer_paths_carry_no_gradient() {
    // y = x + double(int64(3x)): the rounded path is piecewise constant
    let model = Graph::new(17)
        .input("x", &[4])
        .weights("three", &ArrayD::from_elem(IxDyn(&[]), 3.0))
        .node("Mul", "scale", &["x", "three"], &["s"])
        .node("Cast", "to_int", &["s"], &["i"])
        .attribute(AttributeProto::int("to", DataType::Int64 as i64))
        .node("Cast", "to_double", &["i"], &["d"])
        .attribute(AttributeProto::int("to", DataType::Double as i64))
        .node("Add", "add", &["x", "d"], &["y"])
        .output("y")
        .model("integer path");
    let request = GradRequest::new(["x"]).with_score("y");
    let gradient = gradient_model(runtime(), &model, &request).expect("the transform");
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut runner = Runner::new(&gradient.model, dir.path(), "g.onnx", Precision::F64);
    let mut rng = Rng::new(3);
    let x = values(&mut rng, &[2, 4]);
    let seed = values(&mut rng, &[2, 4]);
    let grad = runner
        .run(&[("x", &x), (GRAD_SEED, &seed)], &["grad:x"])
        .remove(0);
    assert_eq!(grad, seed, "d/dx (x + const) = seed");
}

#[test]
fn branches_that_do_not_reach_the_score_cost_nothing() {
    let model = Graph::new(17)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["y"])
        .node("Sigmoid", "other_branch", &["x"], &["z"])
        .node("Sin", "no_rule_off_the_path", &["z"], &["w"])
        .output("y")
        .output("w")
        .model("branches");
    let request = GradRequest::new(["x"]).with_score("y");
    let gradient = gradient_model(runtime(), &model, &request).expect("the transform");
    let emitted = &gradient.model.graph().node[model.graph().node.len()..];
    assert!(
        emitted
            .iter()
            .all(|n| n.name().starts_with("tanh.grad") || n.name() == "grad:x"),
        "only Tanh is differentiated, got {:?}",
        emitted.iter().map(|n| n.name()).collect::<Vec<_>>()
    );
    // every original output is kept, and the --wrt tensor is an output under its own name
    let outputs: Vec<&str> = gradient.model.outputs().iter().map(|o| o.name()).collect();
    for name in ["y", "w", "x", "grad:x"] {
        assert!(
            outputs.contains(&name),
            "output {name} missing from {outputs:?}"
        );
    }
}

#[test]
fn an_intermediate_tensor_can_be_differentiated() {
    // y = h * h with h = tanh(x): d/dh = 2 h seed
    let model = Graph::new(17)
        .input("x", &[3])
        .node("Tanh", "tanh", &["x"], &["h"])
        .node("Mul", "square", &["h", "h"], &["y"])
        .output("y")
        .model("intermediate");
    let request = GradRequest::new(["h", "x"]).with_score("y");
    let gradient = gradient_model(runtime(), &model, &request).expect("the transform");
    let dir = tempfile::tempdir().expect("temporary folder");
    let mut runner = Runner::new(&gradient.model, dir.path(), "g.onnx", Precision::F64);
    let mut rng = Rng::new(4);
    let x = values(&mut rng, &[2, 3]);
    let seed = values(&mut rng, &[2, 3]);
    let out = runner.run(
        &[("x", &x), (GRAD_SEED, &seed)],
        &["h", &format!("{GRAD_PREFIX}h"), "grad:x"],
    );
    let h = x.mapv(f64::tanh);
    assert!(
        (&out[0] - &h).iter().all(|d| d.abs() < 1e-12),
        "h is an output"
    );
    let expected_h = &h * 2.0 * &seed;
    assert!(
        (&out[1] - &expected_h).iter().all(|d| d.abs() < 1e-12),
        "grad:h = 2 h seed"
    );
    let expected_x = &expected_h * &h.mapv(|t| 1.0 - t * t);
    assert!(
        (&out[2] - &expected_x).iter().all(|d| d.abs() < 1e-12),
        "grad:x by the chain rule"
    );
}

#[test]
fn an_operator_without_a_rule_on_the_path_is_an_error_naming_the_node() {
    let model = Graph::new(17)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["t"])
        .node("Sin", "the_sine", &["t"], &["y"])
        .output("y")
        .model("no rule");
    let error = transform_error(&model, &GradRequest::new(["x"]).with_score("y"));
    assert!(matches!(error, AutodiffError::NoRule { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("\"the_sine\"") && message.contains("(Sin)"),
        "{message}"
    );
    assert!(
        message.contains("<no rule>"),
        "the message names the model: {message}"
    );
}

#[test]
fn fused_opset_23_attention_is_refused_with_the_way_out() {
    let model = Graph::new(23)
        .input("q", &[2, 5, 8])
        .input("k", &[2, 5, 8])
        .input("v", &[2, 5, 8])
        .node("Attention", "block0_attention", &["q", "k", "v"], &["y"])
        .output("y")
        .model("attention");
    let error = transform_error(&model, &GradRequest::new(["q"]).with_score("y"));
    let message = error.to_string();
    assert!(matches!(error, AutodiffError::NoRule { .. }), "{message}");
    assert!(
        message.contains("block0_attention") && message.contains("opset 22 or lower"),
        "{message}"
    );
}

#[test]
fn opsets_before_13_are_refused() {
    let model = Graph::new(12)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["y"])
        .output("y")
        .model("opset 12");
    let error = transform_error(&model, &GradRequest::new(["x"]).with_score("y"));
    assert!(matches!(error, AutodiffError::Opset { .. }), "{error}");
    assert!(error.to_string().contains("13"), "{error}");
}

#[test]
fn bad_requests_name_the_tensor() {
    let model = Graph::new(17)
        .input("x", &[4])
        .input("unused", &[4])
        .weights("w", &ArrayD::from_elem(IxDyn(&[4]), 2.0))
        .node("Mul", "mul", &["x", "w"], &["y"])
        .output("y")
        .model("requests");
    let cases = [
        (
            GradRequest::new(["nope"]).with_score("y"),
            "\"nope\"",
            "no graph input",
        ),
        (
            GradRequest::new(["w"]).with_score("y"),
            "\"w\"",
            "initializer",
        ),
        (
            GradRequest::new(["x", "x"]).with_score("y"),
            "\"x\"",
            "named twice",
        ),
        (
            GradRequest::new(["x"]).with_score("missing"),
            "\"missing\"",
            "no graph input",
        ),
        (
            GradRequest::new(["unused"]).with_score("y"),
            "\"unused\"",
            "does not depend",
        ),
        (
            GradRequest::new(Vec::<String>::new()).with_score("y"),
            "--wrt",
            "no tensor",
        ),
    ];
    for (request, tensor, reason) in cases {
        let error = transform_error(&model, &request);
        let message = error.to_string();
        assert!(
            matches!(error, AutodiffError::BadRequest { .. }),
            "{message}"
        );
        assert!(
            message.contains(tensor) && message.contains(reason),
            "{message}"
        );
    }
}

#[test]
fn the_default_score_is_the_input_of_a_final_softmax() {
    let ending_in_softmax = Graph::new(17)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["logits"])
        .node("Softmax", "softmax", &["logits"], &["probabilities"])
        .attribute(AttributeProto::int("axis", -1))
        .output("probabilities")
        .model("softmax");
    assert_eq!(
        default_score(&ending_in_softmax).expect("a score"),
        "logits"
    );
    let plain = Graph::new(17)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["logits"])
        .output("logits")
        .model("plain");
    assert_eq!(default_score(&plain).expect("a score"), "logits");
}

#[test]
fn the_grad_command_writes_the_model_and_exits_2_on_a_bad_request() {
    let model = Graph::new(17)
        .input("x", &[4])
        .node("Tanh", "tanh", &["x"], &["y"])
        .output("y")
        .model("cli");
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("model.onnx");
    model.save(&path).expect("save");
    let out = dir.path().join("gradient.onnx");
    let summary = common::grad_summary(&path, &["x"], &out);
    assert_eq!(summary["outputs"], serde_json::json!(["grad:x"]));
    let written = Model::load(&out).expect("the gradient model loads");
    let seed = written
        .inputs()
        .into_iter()
        .find(|i| i.name() == GRAD_SEED)
        .expect("grad_seed input")
        .clone();
    assert!(seed.tensor_type().is_some());

    let never = dir.path().join("never.onnx");
    let bad = common::grad_command(&path, &["nope"], &never);
    assert_eq!(bad.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("\"nope\"") && stderr.contains("model.onnx"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("never.onnx").exists(),
        "nothing written on failure"
    );
}
