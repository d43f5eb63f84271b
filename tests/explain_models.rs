//! Every method that applies to a model runs on the real ones through `dicom-xai explain`:
//! the trained VGG16 (NHWC, probabilities out), DenseNet169 and ViT-B/16 (random weights,
//! NCHW, logits out), on a slice of a generated MR study; and Integrated Gradients is
//! complete on DenseNet169 at its default step count. Budgets are cut (few RISE masks,
//! few Score-CAM channels, coarse occlusion, short faithfulness curves) so the suite stays
//! affordable on two CPU cores; the methods' defaults are measured by `make bench`.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dicom_xai::autodiff::GradientCache;
use dicom_xai::explain::gradient::IntegratedGradients;
use dicom_xai::model::{Classifier, Manifest, preprocess};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::Array2;
use ndarray_npy::read_npy;
use serde_json::Value;

/// Integrated Gradients: |Σ attributions - (logit(input) - logit(black))| relative to the
/// difference, at the default 32 midpoints, on DenseNet169.
const COMPLETENESS: f32 = 0.05;

/// Every available method but the attention ones (ViT only) and `sae` (it needs a trained
/// sparse autoencoder: tests/sae.rs).
fn cnn_methods() -> Vec<&'static str> {
    dicom_xai::explain::available()
        .into_iter()
        .filter(|m| !matches!(*m, "rollout" | "attn-grad" | "sae"))
        .collect()
}

/// The slice explained: the middle slice of the generated test study (kept for the run).
fn slice() -> &'static Path {
    static SLICE: OnceLock<(common::GeneratedStudy, PathBuf)> = OnceLock::new();
    let (_, path) = SLICE.get_or_init(|| {
        let study = common::generate_study("test");
        let files = study.dicom_files();
        let middle = files[files.len() / 2].clone();
        (study, middle)
    });
    path
}

/// A site configuration naming `manifest`, with affordable budgets.
fn config(dir: &Path, manifest: &Path) -> PathBuf {
    let path = dir.join("site.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[models]]
manifest = "{}"

[quality]
faithfulness_steps = 2

[methods.occlusion]
patch = 112
stride = 112

[methods.smoothgrad]
samples = 2

[methods.intgrad]
steps = 4

[methods.rise]
masks = 8

[methods.scorecam]
max_channels = 4

[[rules]]
name = "all"
[rules.select]
modality = ["MR"]
"#,
            manifest.display()
        ),
    )
    .expect("write the configuration");
    path
}

/// Runs every method in `methods` through `dicom-xai explain` and checks its outputs.
fn explain_all(manifest: &Path, methods: &[&str]) {
    let dir = tempfile::tempdir().expect("temporary folder");
    let config = config(dir.path(), manifest);
    let image = slice();
    let rows_columns = {
        let dicom = dicom_xai::dicom::file::open(image, dicom_xai::dicom::file::Depth::Full)
            .expect("the slice");
        let frames = dicom_xai::dicom::pixels::decode(&dicom).expect("decodes");
        let grey = dicom_xai::dicom::voi::unit_grey(&dicom, &frames, 0).expect("grey");
        grey.dim()
    };
    for method in methods {
        let out = dir.path().join(method);
        let output = common::binary()
            .env("DICOM_XAI_CACHE", dir.path().join("cache"))
            .args(["explain", "--config"])
            .arg(&config)
            .arg("--model")
            .arg(manifest)
            .args(["--method", method])
            .arg(image)
            .arg("--out")
            .arg(&out)
            .output()
            .expect("run dicom-xai explain");
        assert!(
            output.status.success(),
            "{} {method}: {}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let heat: Array2<f32> = read_npy(out.join("heatmap.npy")).expect("heatmap.npy");
        assert_eq!(heat.dim(), rows_columns, "{method}: the slice's size");
        assert!(
            heat.iter().all(|v| v.is_finite() && *v >= 0.0),
            "{method}: a finite, non-negative map"
        );
        // the positive part of a random model's evidence may be empty (a CAM whose channels
        // all vote against the class); gradient magnitudes and rollout never are
        if matches!(*method, "saliency" | "smoothgrad" | "rollout") {
            assert!(heat.iter().any(|v| *v > 0.0), "{method}: an empty map");
        }
        let report: Value =
            serde_json::from_slice(&std::fs::read(out.join("explain.json")).expect("explain.json"))
                .expect("JSON");
        assert_eq!(report["method"], *method);
        let fraction = report["quality"]["in_brain_fraction"].as_f64();
        assert!(
            fraction.is_some_and(|f| (0.0..=1.0).contains(&f))
                || (fraction.is_none() && !heat.iter().any(|v| *v > 0.0)),
            "{method}: in_brain_fraction {fraction:?}"
        );
        let map_is_empty = !heat.iter().any(|v| *v > 0.0);
        assert!(
            map_is_empty || report["quality"]["deletion_auc"].is_number(),
            "{method}: no faithfulness curves"
        );
        assert!(out.join("overlay.png").is_file());
        eprintln!(
            "{} {method}: {} passes, {:.2} s, quality {}",
            manifest.display(),
            report["model_passes"],
            report["seconds"].as_f64().unwrap_or(f64::NAN),
            report["quality"]
        );
    }
}

#[test]
fn vgg16_runs_every_cnn_method() {
    explain_all(
        &common::root().join("onnx/manifests/vgg16-kaggle.toml"),
        &cnn_methods(),
    );
}

#[test]
fn densenet169_runs_every_cnn_method() {
    explain_all(
        &common::asset("models/densenet169-legacy/densenet169.toml"),
        &cnn_methods(),
    );
}

#[test]
fn vit_b_16_runs_every_method() {
    let mut methods = cnn_methods();
    methods.extend(["rollout", "attn-grad"]);
    explain_all(
        &common::asset("models/vit_b_16-dynamo/vit_b_16.toml"),
        &methods,
    );
}

#[test]
fn integrated_gradients_are_complete_on_densenet169() {
    let manifest = Manifest::load(&common::asset("models/densenet169-legacy/densenet169.toml"))
        .expect("manifest");
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    let cache = tempfile::tempdir().expect("temporary folder");
    let model = Classifier::load(&runtime, manifest, 8)
        .expect("DenseNet169")
        .with_gradient_cache(GradientCache::new(cache.path().to_path_buf()));
    let dicom = dicom_xai::dicom::file::open(slice(), dicom_xai::dicom::file::Depth::Full)
        .expect("the slice");
    let frames = dicom_xai::dicom::pixels::decode(&dicom).expect("decodes");
    let grey = dicom_xai::dicom::voi::unit_grey(&dicom, &frames, 0).expect("grey");
    let input = preprocess::model_input(grey.view(), &model.manifest().input);
    for class in 0..model.manifest().labels.len() {
        let attributions = IntegratedGradients::default()
            .attributions(&model, input.view(), class)
            .expect("attributions");
        let error = attributions.completeness_error();
        eprintln!(
            "class {class}: Σ attributions {:.5}, logit difference {:.5}, error {error:.4}",
            attributions.total, attributions.score_difference
        );
        assert!(
            error <= COMPLETENESS,
            "class {class}: Σ attributions {} vs logit difference {}",
            attributions.total,
            attributions.score_difference
        );
    }
}

/// Grad-CAM and saliency planned together share one gradient model (one cache entry, one
/// session) and one backward pass per slice, with the same maps as separate models.
#[test]
fn planned_cam_and_saliency_share_one_gradient_model_and_pass() {
    use dicom_xai::explain::{Method, MethodSet, method_by_name};
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    let dicom = dicom_xai::dicom::file::open(slice(), dicom_xai::dicom::file::Depth::Full)
        .expect("the slice");
    let frames = dicom_xai::dicom::pixels::decode(&dicom).expect("decodes");
    let grey = dicom_xai::dicom::voi::unit_grey(&dicom, &frames, 0).expect("grey");
    let methods: Vec<Box<dyn Method>> = ["gradcam", "saliency"]
        .iter()
        .map(|m| method_by_name(m, &MethodSet::default()).expect("method"))
        .collect();
    let gradient_models = |dir: &Path| {
        std::fs::read_dir(dir)
            .expect("cache folder")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "onnx"))
            })
            .count()
    };
    // per (planned): the maps of both methods on two classes, the cache entries, the runs
    let mut outcomes = Vec::new();
    for planned in [false, true] {
        let manifest = Manifest::load(&common::asset("models/densenet169-legacy/densenet169.toml"))
            .expect("manifest");
        let cache = tempfile::tempdir().expect("temporary folder");
        let model = Classifier::load(&runtime, manifest, 8)
            .expect("DenseNet169")
            .with_gradient_cache(GradientCache::new(cache.path().to_path_buf()));
        if planned {
            model.plan_probes(methods.iter().flat_map(|m| m.probes().iter().copied()));
        }
        let input = preprocess::model_input(grey.view(), &model.manifest().input);
        let mut maps = Vec::new();
        for method in &methods {
            for class in [0, 2] {
                maps.push(
                    method
                        .explain(&model, input.view(), class)
                        .expect("map")
                        .heat,
                );
            }
        }
        outcomes.push((maps, gradient_models(cache.path()), model.probe_runs()));
    }
    let (separate, shared) = (&outcomes[0], &outcomes[1]);
    assert_eq!(
        (separate.1, separate.2),
        (2, 4),
        "unplanned: a model and a run each"
    );
    assert_eq!(
        (shared.1, shared.2),
        (1, 2),
        "planned: one model, one run per slice and class"
    );
    for (k, (a, b)) in separate.0.iter().zip(&shared.0).enumerate() {
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let worst = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-4 * scale,
            "map {k}: the shared model differs by {worst} (scale {scale})"
        );
    }
}
