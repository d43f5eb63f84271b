//! Gradient models of whole exported classifiers against PyTorch autograd.
//!
//! For each export of `make setup` (DenseNet169 and ViT-B/16 from the legacy and the dynamo
//! exporter, timm's ViT-B/16), `dicom-xai grad` differentiates the logits with respect to the
//! input, the manifest's feature tensor and the attention probabilities of the first and last
//! block; `onnx/reference.py` computes the same gradients with PyTorch autograd on the same
//! weights and input, and `tests/support/compare_gradients.py` runs our model with
//! onnxruntime-python and measures the difference. The tf2onnx VGG16 has no PyTorch twin: its
//! input gradient is checked by central differences.

mod common;

use std::path::{Path, PathBuf};

use common::gradcheck::{Precision, Rng, Runner, dot, norm};
use dicom_xai::autodiff::{GRAD_PREFIX, GRAD_SEED};
use dicom_xai::model::manifest::Manifest;
use dicom_xai::onnx::Model;
use dicom_xai::onnx::proto::{DataType, ValueInfoProto, tensor_shape_proto::Dimension};
use ndarray::ArrayD;
use serde_json::Value;

/// Tensors reached without crossing a max or a ReLU kink between them and the score (ViT
/// everywhere; DenseNet's feature tensor): float32 rounding only.
const SMOOTH_REL_L2: f64 = 1e-4;
/// DenseNet's input gradient crosses 169 layers of ReLU and a max pool: float32 differences
/// in the forward flip a few kinks and ties, which moves a few pixels' gradients.
const KINKED_REL_L2: f64 = 1e-2;
/// ... while the map as a whole stays the same.
const KINKED_COSINE: f64 = 0.9999;
/// Logits and forward tensors of the gradient model against PyTorch's forward.
const FORWARD_REL_L2: f64 = 1e-4;

/// The export of `variant` under assets/models, with its manifest.
fn export(variant: &str, arch: &str) -> (PathBuf, Manifest) {
    let manifest_path = common::asset(&format!("models/{variant}/{arch}.toml"));
    let manifest = Manifest::load(&manifest_path)
        .unwrap_or_else(|e| panic!("{}: {e}", manifest_path.display()));
    (manifest_path, manifest)
}

/// Runs the project's Python on `script` with `args`; the standard output.
fn python(script: &Path, args: &[&std::ffi::OsStr]) -> String {
    String::from_utf8_lossy(&common::run_python(script, args).stdout).into_owned()
}

/// One measured tensor of compare_gradients.py.
fn measured<'a>(report: &'a Value, key: &str) -> &'a Value {
    let entry = &report["compared"][key];
    assert!(
        entry.is_object(),
        "{key} was not compared (missing: {})",
        report["missing"]
    );
    entry
}

fn rel_l2(report: &Value, key: &str) -> f64 {
    measured(report, key)["rel_l2"].as_f64().expect("rel_l2")
}

fn cosine(report: &Value, key: &str) -> f64 {
    measured(report, key)["cosine"].as_f64().expect("cosine")
}

/// `dicom-xai grad` on the export, PyTorch's reference, and their comparison.
fn compare_with_pytorch(variant: &str, arch: &str) -> Value {
    let (manifest_path, manifest) = export(variant, arch);
    let dir = tempfile::tempdir().expect("temporary folder");
    let gradient = dir.path().join("gradient.onnx");
    let feature = manifest
        .explain
        .feature_tensor
        .clone()
        .expect("feature_tensor");
    let mut wrt = vec!["input".to_string(), feature];
    let blocks = [
        0,
        manifest.explain.attention_tensors.len().saturating_sub(1),
    ];
    if !manifest.explain.attention_tensors.is_empty() {
        assert_eq!(
            manifest.explain.attention_tensors.len(),
            12,
            "{variant}: 12 blocks"
        );
        wrt.extend(
            blocks
                .iter()
                .map(|&b| manifest.explain.attention_tensors[b].clone()),
        );
    }
    let wrt: Vec<&str> = wrt.iter().map(String::as_str).collect();
    let summary = common::grad_summary(&manifest.onnx, &wrt, &gradient);
    assert_eq!(summary["score"], "logits", "{variant}: default score");
    eprintln!(
        "{variant}: transform {:.2} s, {} forward nodes, {} backward nodes",
        summary["seconds"].as_f64().unwrap_or(f64::NAN),
        summary["forward_nodes"],
        summary["backward_nodes"]
    );

    let reference = dir.path().join("reference.npz");
    let blocks = format!("{},{}", blocks[0], blocks[1]);
    python(
        &common::root().join("onnx/reference.py"),
        &[
            "--arch".as_ref(),
            arch.as_ref(),
            "--seed".as_ref(),
            "0".as_ref(),
            "--batch".as_ref(),
            "2".as_ref(),
            "--input-seed".as_ref(),
            "7".as_ref(),
            "--blocks".as_ref(),
            blocks.as_ref(),
            "--manifest".as_ref(),
            manifest_path.as_os_str(),
            "--out".as_ref(),
            reference.as_os_str(),
        ],
    );
    let stdout = python(
        &common::root().join("tests/support/compare_gradients.py"),
        &[gradient.as_os_str(), reference.as_os_str()],
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("compare prints JSON");
    eprintln!("{variant}: {report}");
    assert_eq!(report["checker"], "ok", "{variant}: onnx.checker");
    assert_eq!(
        report["domains"],
        serde_json::json!([""]),
        "{variant}: only default-domain operators"
    );
    assert_eq!(
        report["cuda_refused"],
        serde_json::json!([]),
        "{variant}: nodes the CUDA provider refuses (they would run on the CPU)"
    );
    assert!(
        report["missing"].as_array().is_some_and(Vec::is_empty),
        "{variant}: outputs missing from the gradient model: {}",
        report["missing"]
    );
    for key in ["logits", "feature"] {
        assert!(
            rel_l2(&report, key) <= FORWARD_REL_L2,
            "{variant}: forward {key} differs from PyTorch"
        );
    }
    assert!(
        rel_l2(&report, "grad_feature") <= SMOOTH_REL_L2,
        "{variant}: grad at the feature tensor differs from PyTorch autograd"
    );
    report
}

fn assert_vit(report: &Value, variant: &str) {
    for key in ["grad_input", "grad_attention_0", "grad_attention_11"] {
        assert!(
            rel_l2(report, key) <= SMOOTH_REL_L2,
            "{variant}: {key} differs from PyTorch autograd (rel L2 {})",
            rel_l2(report, key)
        );
    }
    for key in ["attention_0", "attention_11"] {
        assert!(rel_l2(report, key) <= FORWARD_REL_L2, "{variant}: {key}");
    }
}

fn assert_densenet(report: &Value, variant: &str) {
    let (error, cos) = (rel_l2(report, "grad_input"), cosine(report, "grad_input"));
    assert!(
        error <= KINKED_REL_L2 && cos >= KINKED_COSINE,
        "{variant}: grad_input differs from PyTorch autograd (rel L2 {error}, cosine {cos})"
    );
}

#[test]
fn densenet169_legacy_export_matches_pytorch_autograd() {
    let report = compare_with_pytorch("densenet169-legacy", "densenet169");
    assert_densenet(&report, "densenet169-legacy");
}

#[test]
fn densenet169_dynamo_export_matches_pytorch_autograd() {
    let report = compare_with_pytorch("densenet169-dynamo", "densenet169");
    assert_densenet(&report, "densenet169-dynamo");
}

#[test]
fn vit_b_16_legacy_export_matches_pytorch_autograd() {
    let report = compare_with_pytorch("vit_b_16-legacy", "vit_b_16");
    assert_vit(&report, "vit_b_16-legacy");
}

#[test]
fn vit_b_16_dynamo_export_matches_pytorch_autograd() {
    let report = compare_with_pytorch("vit_b_16-dynamo", "vit_b_16");
    assert_vit(&report, "vit_b_16-dynamo");
}

#[test]
fn timm_vit_base_patch16_224_matches_pytorch_autograd() {
    let report = compare_with_pytorch("vit_base_patch16_224-dynamo", "vit_base_patch16_224");
    assert_vit(&report, "vit_base_patch16_224-dynamo");
}

/// float32 central differences of a 138M-parameter network: the step must leave rounding
/// (1e-7 of the score) far behind and stay inside one ReLU pattern.
const VGG16_FD_RELATIVE: f64 = 2e-2;
/// The step along the unit gradient direction, in input units ([0, 1] pixels).
const VGG16_FD_STEP: f64 = 1e-2;

#[test]
fn vgg16_input_gradient_matches_central_differences() {
    let path = common::root().join("onnx/manifests/vgg16-kaggle.toml");
    let manifest = Manifest::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dir = tempfile::tempdir().expect("temporary folder");
    let gradient = dir.path().join("gradient.onnx");
    let summary = common::grad_summary(&manifest.onnx, &["input"], &gradient);
    // the model ends in a Softmax: the default score is its input, the pre-softmax logits
    let score = summary["score"].as_str().expect("score name").to_string();
    assert_ne!(score, "dense_3", "the score is the Softmax's input");

    // the forward model with the score as an output too
    let mut model = Model::load(&manifest.onnx).expect("the VGG16 model");
    model.graph_mut().output.push(ValueInfoProto::tensor_dims(
        &score,
        DataType::Float,
        vec![Dimension::symbol("N"), Dimension::known(4)],
    ));
    let forward_path = dir.path().join("forward.onnx");
    model.save(&forward_path).expect("save");
    let mut forward = Runner::open(&forward_path, Precision::F32);
    let mut backward = Runner::open(&gradient, Precision::F32);

    let mut rng = Rng::new(240);
    let image = ArrayD::from_shape_fn(vec![1, 240, 240, 3], |_| rng.uniform());
    let logits = forward.run(&[("input", &image)], &[&score]).remove(0);
    // seed the predicted class, as Grad-CAM does
    let predicted = (0..4)
        .max_by(|&a, &b| logits[[0, a]].total_cmp(&logits[[0, b]]))
        .expect("four classes");
    let mut seed = ArrayD::zeros(vec![1, 4]);
    seed[[0, predicted]] = 1.0;
    let grad_name = format!("{GRAD_PREFIX}input");
    let g = backward
        .run(&[("input", &image), (GRAD_SEED, &seed)], &[&grad_name])
        .remove(0);
    assert!(norm(&g) > 0.0, "the input gradient is zero");
    let direction = &g / norm(&g);
    let mut logit_at = |x: &ArrayD<f64>| forward.run(&[("input", x)], &[&score])[0][[0, predicted]];
    let plus = logit_at(&(&image + &(&direction * VGG16_FD_STEP)));
    let minus = logit_at(&(&image - &(&direction * VGG16_FD_STEP)));
    let difference = (plus - minus) / (2.0 * VGG16_FD_STEP);
    let analytic = dot(&g, &direction);
    let error = (analytic - difference).abs() / analytic.abs();
    eprintln!(
        "vgg16: d logit / d input along the gradient {analytic:.6e}, central {difference:.6e}"
    );
    assert!(
        error <= VGG16_FD_RELATIVE,
        "vgg16: analytic {analytic:.6e} vs central difference {difference:.6e}: relative error \
         {error:.3e}"
    );
}
