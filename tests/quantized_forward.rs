//! The 8-bit copy of a model (`onnx::quantize`, `precision = "int8"` of occlusion and RISE):
//!
//! - on a small graph built here (a 3-D `MatMul`, a second one sharing its input, a `Gemm`
//!   with a transposed weight and a bias, a product of two activations, a weight also read
//!   by another node, a weight read by two products), every output of the copy run in ONNX
//!   Runtime stays within the bound that the quantization steps give, computed element by
//!   element in f64;
//! - on the shipped trained models, the copy classifies the evaluation subset as the model
//!   does and its occlusion maps match the model's (Pearson [`MAP_PEARSON`]) on held-out
//!   images, as do RISE's and Score-CAM's with the same masks; the ViT's matrix products are all quantized,
//!   DenseNet169's convolutions are not.

mod common;

use std::path::Path;

use dicom_xai::autodiff::GradientCache;
use dicom_xai::dicom::slices::load_grey;
use dicom_xai::explain::Method;
use dicom_xai::explain::occlusion::Occlusion;
use dicom_xai::explain::rise::Rise;
use dicom_xai::explain::scorecam::ScoreCam;
use dicom_xai::model::classifier::argmax;
use dicom_xai::model::preprocess;
use dicom_xai::model::{Classifier, Manifest, Precision};
use dicom_xai::onnx::Model;
use dicom_xai::onnx::proto::{
    AttributeProto, DataType, GraphProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
    tensor_shape_proto::Dimension,
};
use dicom_xai::onnx::quantize::{WEIGHT_LIMIT, quantize_weights};
use dicom_xai::onnx::tensor::{self, Storage};
use dicom_xai::runtime::Runtime;
use ndarray::{Array2, Array3, ArrayD, Axis, IxDyn};

/// Pearson correlation of an occlusion map on the 8-bit copy with the model's own, at least
/// (measured 0.998 to 1.000 for ViT-B/16 on 8 test images of the public split).
const MAP_PEARSON: f64 = 0.99;
/// Pearson correlation of a RISE or Score-CAM map on the copy with the model's own, with the
/// same masks.
const SAME_MASKS_PEARSON: f64 = 0.95;
/// Share of the evaluation subset the copy must classify as the model does.
const SAME_CLASS_SHARE: f64 = 0.97;
/// The largest difference of a class probability between the copy and the model.
const PROBABILITY_DIFFERENCE: f32 = 0.1;

/// A seeded uniform sequence in [-1, 1) (splitmix64), enough for test data.
struct Values(u64);
impl Values {
    fn next(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn array(&mut self, shape: &[usize], scale: f32) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.next() * scale)
    }
}

/// The small graph of the module documentation, its weights by name.
fn small_graph(dir: &Path) -> (std::path::PathBuf, Vec<(&'static str, ArrayD<f32>)>) {
    let mut values = Values(7);
    let weights = vec![
        ("W1", values.array(&[8, 6], 0.8)),
        ("W3", values.array(&[8, 4], 0.1)),
        ("W2", values.array(&[5, 8], 2.0)),
        ("c", values.array(&[5], 1.0)),
        ("W4", values.array(&[4, 3], 0.5)),
    ];
    let symbolic = |dims: &[i64]| {
        std::iter::once(Dimension::symbol("N"))
            .chain(dims.iter().map(|&d| Dimension::known(d)))
            .collect::<Vec<_>>()
    };
    let graph = GraphProto {
        name: Some("products".into()),
        node: vec![
            NodeProto::new("MatMul", "h", ["x", "W1"], ["h"]),
            NodeProto::new("MatMul", "k", ["x", "W3"], ["k"]),
            NodeProto::new("Gemm", "g", ["y", "W2", "c"], ["g"])
                .with_attribute(AttributeProto::int("transB", 1)),
            NodeProto::new("Transpose", "ht", ["h"], ["ht"])
                .with_attribute(AttributeProto::ints("perm", [0, 2, 1])),
            NodeProto::new("MatMul", "s", ["h", "ht"], ["s"]),
            NodeProto::new("Add", "o", ["W1", "W1"], ["o"]),
            NodeProto::new("MatMul", "t", ["k", "W4"], ["t"]),
            NodeProto::new("Relu", "kr", ["k"], ["kr"]),
            NodeProto::new("MatMul", "u", ["kr", "W4"], ["u"]),
        ],
        initializer: weights
            .iter()
            .map(|(name, w)| tensor::from_array(name, w, Storage::Raw))
            .collect(),
        input: vec![
            ValueInfoProto::tensor_dims("x", DataType::Float, symbolic(&[3, 8])),
            ValueInfoProto::tensor_dims("y", DataType::Float, symbolic(&[8])),
        ],
        output: ["h", "k", "g", "s", "o", "t", "u"]
            .iter()
            .map(|name| ValueInfoProto {
                name: Some((*name).to_string()),
                ..ValueInfoProto::default()
            })
            .collect(),
        ..GraphProto::default()
    };
    let proto = common::opset17_model(graph);
    let path = dir.join("products.onnx");
    Model::from_proto(proto, &path)
        .expect("model")
        .save(&path)
        .expect("saved");
    (path, weights)
}

fn count(model: &Model, op_type: &str) -> usize {
    model
        .graph()
        .node
        .iter()
        .filter(|n| n.op_type() == op_type)
        .count()
}

/// Every output of `path` for inputs `x` and `y`, by name.
fn run(runtime: &Runtime, path: &Path, x: &ArrayD<f32>, y: &ArrayD<f32>) -> Vec<ArrayD<f32>> {
    let mut loaded = runtime.session(path).expect("session");
    let outputs = loaded
        .session
        .run(ort::inputs![
            "x" => ort::value::TensorRef::from_array_view(x.view()).expect("x"),
            "y" => ort::value::TensorRef::from_array_view(y.view()).expect("y"),
        ])
        .expect("run");
    ["h", "k", "g", "s", "o"]
        .iter()
        .map(|name| {
            outputs[*name]
                .try_extract_array::<f32>()
                .expect("float")
                .to_owned()
        })
        .collect()
}

/// `a` (`[M, K]`) times `w` (`[K, N]`) in f64, with the bound of the copy's error per
/// element: the activations are rounded to steps of their tensor's range / 255 and the
/// weights to steps of their column's largest magnitude / 63, each off by half a step at
/// most, so |a w - a' w'| <= sum_k |a_k| dw_n / 2 + |w_kn| da / 2 + da dw_n / 4.
fn product_and_bound(a: &Array2<f32>, w: &Array2<f32>) -> (Array2<f64>, Array2<f64>) {
    let (low, high) = a
        .iter()
        .fold((0.0f32, 0.0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let da = f64::from(high - low) / 255.0;
    let dw: Vec<f64> = w
        .axis_iter(Axis(1))
        .map(|c| f64::from(c.iter().fold(0.0f32, |m, v| m.max(v.abs()))) / f64::from(WEIGHT_LIMIT))
        .collect();
    let (m, k, n) = (a.nrows(), a.ncols(), w.ncols());
    let mut exact = Array2::<f64>::zeros((m, n));
    let mut bound = Array2::<f64>::zeros((m, n));
    for i in 0..m {
        for j in 0..n {
            for t in 0..k {
                let (av, wv) = (f64::from(a[[i, t]]), f64::from(w[[t, j]]));
                exact[[i, j]] += av * wv;
                bound[[i, j]] += av.abs() * dw[j] / 2.0 + wv.abs() * da / 2.0 + da * dw[j] / 4.0;
            }
        }
    }
    (exact, bound)
}

fn assert_within(name: &str, actual: &ArrayD<f32>, exact: &Array2<f64>, bound: &Array2<f64>) {
    let actual = actual
        .view()
        .into_shape_with_order(exact.dim())
        .expect("shape");
    let mut worst = 0.0f64;
    for ((index, &e), &b) in exact.indexed_iter().zip(bound.iter()) {
        // float32 accumulation and the bias add on top of the bound
        let error = (f64::from(actual[index]) - e).abs();
        assert!(
            error <= b + 1e-5 * (1.0 + e.abs()),
            "{name}{index:?}: {} against {e}, bound {b}",
            actual[index]
        );
        worst = worst.max(error / b.max(1e-12));
    }
    eprintln!("{name}: worst error {worst:.2} of its bound");
}

#[test]
fn products_of_the_copy_stay_within_the_quantization_bound() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, weights) = small_graph(dir.path());
    let mut model = Model::load(&path).expect("load");
    let done = quantize_weights(&mut model).expect("quantized");
    assert_eq!(done.quantized, vec!["h", "k", "g", "t", "u"]);
    assert_eq!(
        done.kept, 1,
        "the product of two activations stays in float"
    );
    assert_eq!(count(&model, "MatMulInteger"), 5);
    assert_eq!(
        count(&model, "DynamicQuantizeLinear"),
        4,
        "x is quantized once for its two products (and y, k, kr once each)"
    );
    let int8_weights = model
        .graph()
        .initializer
        .iter()
        .filter(|t| t.data_type() == DataType::Int8)
        .count();
    assert_eq!(int8_weights, 4, "W4, read by t and u, is quantized once");
    let kept: Vec<&str> = model
        .graph()
        .initializer
        .iter()
        .map(|t| t.name())
        .filter(|n| ["W1", "W2", "W3", "W4", "c"].contains(n))
        .collect();
    assert_eq!(
        kept,
        vec!["W1", "c"],
        "W1 is still read by o, c by the bias"
    );
    let copy = dir.path().join("products-int8.onnx");
    model.save(&copy).expect("saved");

    let runtime = common::cpu_runtime();
    let mut values = Values(11);
    let x = values.array(&[2, 3, 8], 1.5);
    let y = values.array(&[2, 8], 0.7);
    let float = run(&runtime, &path, &x, &y);
    let int8 = run(&runtime, &copy, &x, &y);
    let weight = |name: &str| -> Array2<f32> {
        let w = &weights.iter().find(|(n, _)| *n == name).expect("weight").1;
        w.clone().into_dimensionality().expect("matrix")
    };
    let x2 = x.clone().into_shape_with_order((6, 8)).expect("rows of x");
    let y2: Array2<f32> = y.clone().into_dimensionality().expect("matrix");
    let (h, h_bound) = product_and_bound(&x2, &weight("W1"));
    assert_within("h", &int8[0], &h, &h_bound);
    let (k, k_bound) = product_and_bound(&x2, &weight("W3"));
    assert_within("k", &int8[1], &k, &k_bound);
    let (mut g, g_bound) = product_and_bound(&y2, &weight("W2").reversed_axes().to_owned());
    let bias = &weights[3].1;
    for mut row in g.rows_mut() {
        for (v, b) in row.iter_mut().zip(bias.iter()) {
            *v += f64::from(*b);
        }
    }
    assert_within("g", &int8[2], &g, &g_bound);
    // the float products are the model's own
    assert_eq!(int8[4], float[4], "o reads the float W1");
    let quantized_h = int8[0].clone();
    assert_ne!(quantized_h, float[0], "h really was quantized");
}

#[test]
fn a_model_without_constant_weights_is_left_as_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (path, _) = small_graph(dir.path());
    let mut model = Model::load(&path).expect("load");
    // opset 10 has no DynamicQuantizeLinear: nothing is quantized
    model.proto_mut().opset_import = vec![OperatorSetIdProto::new("", 10)];
    let before = model.to_bytes();
    let done = quantize_weights(&mut model).expect("not quantized");
    assert!(done.quantized.is_empty());
    assert_eq!(done.kept, 6);
    assert_eq!(model.to_bytes(), before);
}

fn trained(arch: &str) -> Manifest {
    common::shipped_manifest(arch)
}

fn map_pearson(a: &Array2<f32>, b: &Array2<f32>) -> f64 {
    common::pearson(
        &a.iter().copied().collect::<Vec<_>>(),
        &b.iter().copied().collect::<Vec<_>>(),
    )
}

/// The copy of `arch` classifies every 8th image of the subset as the model does, and its
/// occlusion map on `maps` held-out images matches the model's.
fn check_trained(arch: &str, maps: usize) {
    let runtime = common::cpu_runtime();
    let cache = tempfile::tempdir().expect("cache");
    let model = Classifier::load(&runtime, trained(arch), 8)
        .expect("model")
        .with_gradient_cache(GradientCache::new(cache.path().to_path_buf()));
    let images = common::eval_subset(8);
    let inputs: Vec<Array3<f32>> = images
        .iter()
        .map(|image| {
            let grey = load_grey(image).expect("image");
            preprocess::model_input(grey.view(), &model.manifest().input)
        })
        .collect();
    let views: Vec<_> = inputs.iter().map(|i| i.view()).collect();
    let batch = preprocess::batch(&views);
    let float = model.predict(batch.view()).expect("float");
    let int8 = model
        .predict_at(Precision::Int8, batch.view())
        .expect("int8");
    let same = (0..images.len())
        .filter(|&n| argmax(float.row(n).iter().copied()) == argmax(int8.row(n).iter().copied()))
        .count();
    let largest = float
        .iter()
        .zip(&int8)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!(
        "{arch}: same class on {same} of {} images, largest probability difference {largest:.4}",
        images.len()
    );
    assert!(same as f64 >= SAME_CLASS_SHARE * images.len() as f64);
    assert!(largest <= PROBABILITY_DIFFERENCE);
    assert!(
        model.providers().contains_key("forward-int8"),
        "{:?}",
        model.providers()
    );

    let exact = Occlusion::default();
    let cheap = Occlusion {
        precision: Precision::Int8,
        ..Occlusion::default()
    };
    for (image, input) in images
        .iter()
        .zip(&inputs)
        .step_by(images.len() / maps)
        .take(maps)
    {
        let class = argmax(
            model
                .predict(input.view().insert_axis(Axis(0)))
                .expect("class")
                .row(0)
                .iter()
                .copied(),
        );
        let started = std::time::Instant::now();
        let reference = exact
            .explain(&model, input.view(), class)
            .expect("float map");
        let float_seconds = started.elapsed().as_secs_f64();
        let started = std::time::Instant::now();
        let map = cheap
            .explain(&model, input.view(), class)
            .expect("int8 map");
        let int8_seconds = started.elapsed().as_secs_f64();
        let r = map_pearson(&reference.heat, &map.heat);
        eprintln!(
            "{arch} {}: occlusion Pearson {r:.4}, {float_seconds:.1} s float, {int8_seconds:.1} s int8",
            image.display()
        );
        assert_eq!(map.parameters["precision"], "int8");
        assert_eq!(reference.parameters["precision"], "float32");
        assert_ne!(
            map.heat, reference.heat,
            "{arch}: occlusion ran on the copy"
        );
        assert!(r >= MAP_PEARSON, "{arch} {}: Pearson {r}", image.display());
    }

    // RISE and Score-CAM read the same switch: the same masks on the copy give the same map
    let input = &inputs[0];
    let class = argmax(float.row(0).iter().copied());
    // the name, the method on the model and on the copy, and a score each measures
    let pairs: [SameMasks; 2] = [
        (
            "RISE (32 masks)",
            Box::new(Rise {
                masks: 32,
                ..Rise::default()
            }),
            Box::new(Rise {
                masks: 32,
                precision: Precision::Int8,
                ..Rise::default()
            }),
            "mean_score",
        ),
        (
            "Score-CAM (32 channels)",
            Box::new(ScoreCam {
                max_channels: 32,
                ..ScoreCam::default()
            }),
            Box::new(ScoreCam {
                max_channels: 32,
                precision: Precision::Int8,
            }),
            "black_probability",
        ),
    ];
    for (name, exact, cheap, measured) in pairs {
        let reference = exact
            .explain(&model, input.view(), class)
            .expect("float map");
        let map = cheap
            .explain(&model, input.view(), class)
            .expect("int8 map");
        assert_eq!(map.parameters["precision"], "int8");
        assert_ne!(
            map.parameters[measured], reference.parameters[measured],
            "{arch} {name}: {measured} measured on the copy"
        );
        if map.heat.iter().all(|&v| v == 0.0) && reference.heat.iter().all(|&v| v == 0.0) {
            // no channel or mask raises the class: both maps are empty, as they should agree
            eprintln!("{arch}: {name}: both maps empty");
            continue;
        }
        let r = map_pearson(&reference.heat, &map.heat);
        eprintln!("{arch}: {name} Pearson {r:.4}");
        assert!(r >= SAME_MASKS_PEARSON, "{arch} {name}: Pearson {r}");
    }
}

/// A perturbation method's name, the method on the model and on its copy, and a score both
/// measure.
type SameMasks = (&'static str, Box<dyn Method>, Box<dyn Method>, &'static str);

/// The 8-bit copy of the shipped `arch`, built by the gradient cache in a folder of its own.
fn quantized_copy(arch: &str) -> Model {
    let cache = tempfile::tempdir().expect("cache");
    let built = GradientCache::new(cache.path().to_path_buf())
        .get_or_build_quantized(&trained(arch).onnx)
        .expect("built");
    Model::load(&built.path).expect("copy")
}

#[test]
fn vit_copy_quantizes_every_weight_product_and_keeps_the_maps() {
    let copy = quantized_copy("vit_b_16");
    // 12 blocks x (attention in-projection, out-projection, two MLP layers) + the head
    assert_eq!(count(&copy, "MatMulInteger"), 49);
    assert_eq!(count(&copy, "Gemm"), 0);
    assert_eq!(
        count(&copy, "MatMul"),
        24,
        "the attention products of two activations stay"
    );
    check_trained("vit_b_16", 1);
}

#[test]
fn densenet_copy_keeps_its_convolutions_and_its_maps() {
    let copy = quantized_copy("densenet169");
    assert_eq!(count(&copy, "MatMulInteger"), 1, "the classifier only");
    assert_eq!(count(&copy, "ConvInteger"), 0);
    assert!(count(&copy, "Conv") > 100);
    check_trained("densenet169", 1);
}
