//! Explanations of the shipped trained models (DenseNet169, ViT-B/16) on held-out test
//! images of the committed evaluation subset (tests/fixtures/eval-subset):
//!
//! - the ViT's four CAMs are non-empty on at least 95% of the subset (its CAM tensor is the
//!   last block's first LayerNorm output, whose patch tokens reach the class token);
//! - Grad-CAM equals the peer library's (pytorch-grad-cam on the same layer of the same
//!   weights, from the same model inputs) with Pearson correlation of at least 0.99;
//! - the model-randomisation sanity check (Adebayo et al., 2018): with the learnt weights
//!   replaced by random ones from the top layer down, every gradient method's map changes;
//!   those that pass the check fall below [`PASSES`], and those measured to fail it (named
//!   in docs/models.md) must still move;
//! - both models name the sparse autoencoder shipped for them, and the `sae` method maps its
//!   concepts without any site set-up.

mod common;

use std::path::{Path, PathBuf};

use dicom_xai::autodiff::GradientCache;
use dicom_xai::dicom::slices::load_grey;
use dicom_xai::explain::gradient::{IntegratedGradients, SmoothGrad};
use dicom_xai::explain::quality::{is_empty_map, rank_correlation};
use dicom_xai::explain::{MethodSet, method_by_name};
use dicom_xai::model::preprocess::{self, resize_bilinear};
use dicom_xai::model::{Classifier, Manifest, Probe};
use dicom_xai::runtime::Runtime;
use ndarray::{Array2, Array3, Axis};

/// Share of the subset on which each ViT CAM must give a map that is not empty.
const NON_EMPTY_SHARE: f64 = 0.95;
/// Pearson correlation with pytorch-grad-cam's Grad-CAM, per image.
const PEER_PEARSON: f64 = 0.99;
/// Mean rank correlation (on a 32 x 32 grid, over the slices) between a map of the trained
/// model and the map of the model with every weight layer randomised (the end of Adebayo et
/// al.'s cascade, from the top down) below which a method passes the sanity check: the map
/// keeps less than a third of its ranking's variance (0.6² = 0.36) once nothing learnt is left.
const PASSES: f32 = 0.6;
/// Methods that fail the check on a model, measured and named in docs/models.md, must still
/// move below this: gradient x input and integrated gradients multiply by the input and keep
/// its structure (0.89 to 0.91 here; Adebayo et al. saw the same), and the ViT's input
/// gradients keep its patch grid (saliency 0.74).
const STILL_MOVES: f32 = 0.95;
/// The bound of `method` on `arch`.
fn randomisation_bound(arch: &str, method: &str) -> f32 {
    match (arch, method) {
        (_, "gradxinput" | "intgrad") | ("vit_b_16", "saliency") => STILL_MOVES,
        _ => PASSES,
    }
}

const CAMS: &[&str] = &["gradcam", "gradcampp", "layercam", "hirescam"];
const GRADIENT_METHODS: &[&str] = &[
    "gradcam",
    "gradcampp",
    "layercam",
    "hirescam",
    "saliency",
    "smoothgrad",
    "intgrad",
    "gradxinput",
];

fn manifest(arch: &str) -> Manifest {
    common::shipped_manifest(arch)
}

fn load(runtime: &Runtime, manifest: Manifest, cache: Option<&Path>) -> Classifier {
    let model = Classifier::load(runtime, manifest, 8).expect("the model");
    match cache {
        Some(cache) => model.with_gradient_cache(GradientCache::new(cache.to_path_buf())),
        None => model,
    }
}

fn input_of(model: &Classifier, image: &Path) -> Array3<f32> {
    let grey = load_grey(image).expect("the image");
    preprocess::model_input(grey.view(), &model.manifest().input)
}

fn predicted(model: &Classifier, input: &Array3<f32>) -> usize {
    let probabilities = model
        .predict(input.view().insert_axis(Axis(0)))
        .expect("classified");
    dicom_xai::model::classifier::argmax(probabilities.row(0).iter().copied())
}

#[test]
fn vit_cams_are_non_empty_on_the_evaluation_subset() {
    let runtime = common::cpu_runtime();
    let model = load(&runtime, manifest("vit_b_16"), None);
    let methods: Vec<_> = CAMS
        .iter()
        .map(|name| method_by_name(name, &MethodSet::default()).expect("available"))
        .collect();
    // every second image: all 160 gave four maps when measured (docs/models.md), and half
    // of them keeps the suite affordable on two cores
    let images = common::eval_subset(2);
    assert_eq!(images.len(), 80);
    let mut non_empty = vec![0usize; CAMS.len()];
    for image in &images {
        let input = input_of(&model, image);
        let class = predicted(&model, &input);
        for (count, method) in non_empty.iter_mut().zip(&methods) {
            let map = method.explain(&model, input.view(), class).expect("a map");
            *count += usize::from(!is_empty_map(map.heat.view()));
        }
    }
    for (name, count) in CAMS.iter().zip(&non_empty) {
        let share = *count as f64 / images.len() as f64;
        eprintln!("vit_b_16 {name}: non-empty on {count} of {}", images.len());
        assert!(
            share >= NON_EMPTY_SHARE,
            "vit_b_16 {name}: non-empty on only {count} of {} images",
            images.len()
        );
    }
}

fn checkpoint(arch: &str) -> PathBuf {
    let name = format!("{arch}-brain-tumor-fp16.pth");
    [
        common::root().join("checkpoints").join(&name),
        common::root().join("assets/checkpoints").join(&name),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .unwrap_or_else(|| panic!("{name}: run `make setup` (it assembles the shipped checkpoints)"))
}

#[test]
fn gradcam_matches_pytorch_grad_cam_on_the_trained_models() {
    let runtime = common::cpu_runtime();
    let work = tempfile::tempdir().expect("temporary folder");
    let images = common::eval_subset(27);
    for arch in ["densenet169", "vit_b_16"] {
        let model = load(&runtime, manifest(arch), None);
        let method = method_by_name("gradcam", &MethodSet::default()).expect("available");
        let inputs: Vec<Array3<f32>> = images.iter().map(|i| input_of(&model, i)).collect();
        let classes: Vec<usize> = inputs.iter().map(|i| predicted(&model, i)).collect();
        let ours: Vec<Array2<f32>> = inputs
            .iter()
            .zip(&classes)
            .map(|(input, &class)| {
                method
                    .explain(&model, input.view(), class)
                    .expect("a map")
                    .heat
            })
            .collect();
        let views: Vec<_> = inputs.iter().map(|i| i.view()).collect();
        let batch = preprocess::batch(&views);
        let inputs_path = work.path().join(format!("{arch}-inputs.npy"));
        ndarray_npy::write_npy(&inputs_path, &batch).expect("inputs written");
        let peer_path = work.path().join(format!("{arch}-peer.npy"));
        let classes_arg = classes
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",");
        common::run_support_script(
            "peer_cam.py",
            &[
                arch.as_ref(),
                checkpoint(arch).as_os_str(),
                inputs_path.as_os_str(),
                classes_arg.as_ref(),
                peer_path.as_os_str(),
            ],
        );
        let peer: ndarray::Array3<f32> = ndarray_npy::read_npy(&peer_path).expect("peer maps");
        for ((image, map), theirs) in images.iter().zip(&ours).zip(peer.outer_iter()) {
            let theirs: Vec<f32> = theirs.iter().copied().collect();
            let mine: Vec<f32> = map.iter().copied().collect();
            let r = common::pearson(&mine, &theirs);
            eprintln!("{arch} {}: Pearson {r:.4}", image.display());
            assert!(
                r >= PEER_PEARSON,
                "{arch} {}: Grad-CAM Pearson {r:.4} with pytorch-grad-cam",
                image.display()
            );
        }
    }
}

/// Every gradient method's map of `input` for `class`, on a 32 x 32 grid.
fn gradient_maps(model: &Classifier, input: &Array3<f32>, class: usize) -> Vec<Array2<f32>> {
    // fewer samples and steps than a site's defaults: the sanity check asks whether the
    // map follows the weights, not for the smoothest map
    let methods = MethodSet {
        smoothgrad: SmoothGrad {
            samples: 4,
            ..SmoothGrad::default()
        },
        intgrad: IntegratedGradients { steps: 8 },
        ..MethodSet::default()
    };
    GRADIENT_METHODS
        .iter()
        .map(|name| {
            let method = method_by_name(name, &methods).expect("available");
            let map = method.explain(model, input.view(), class).expect("a map");
            resize_bilinear(map.heat.view(), 32, 32)
        })
        .collect()
}

#[test]
fn gradient_maps_change_when_the_learnt_weights_are_randomised() {
    let runtime = common::cpu_runtime();
    let work = tempfile::tempdir().expect("temporary folder");
    let cache = work.path().join("cache");
    let images = common::eval_subset(53);
    for arch in ["densenet169", "vit_b_16"] {
        let original = manifest(arch);
        let trained = load(&runtime, original.clone(), None);
        let (variant, layers) = common::randomise_top_layers(&original, usize::MAX, work.path());
        let randomised = load(&runtime, variant, Some(&cache));
        for model in [&trained, &randomised] {
            model.plan_probes([Probe::InputGradient, Probe::FeatureGradient]);
        }
        let mut sums = vec![0.0f32; GRADIENT_METHODS.len()];
        for image in &images {
            let input = input_of(&trained, image);
            // the class the trained model predicts, for both: the same question
            let class = predicted(&trained, &input);
            let before = gradient_maps(&trained, &input, class);
            let after = gradient_maps(&randomised, &input, class);
            for ((sum, a), b) in sums.iter_mut().zip(&before).zip(&after) {
                *sum += rank_correlation(a.view(), b.view()).unwrap_or(0.0);
            }
        }
        for (name, sum) in GRADIENT_METHODS.iter().zip(&sums) {
            let mean = sum / images.len() as f32;
            let bound = randomisation_bound(arch, name);
            eprintln!(
                "{arch} {name}: all {layers} weight layers random: mean rank correlation \
                 {mean:.3} (bound {bound})"
            );
            assert!(
                mean < bound,
                "{arch} {name}: the map barely changed with the learnt weights random \
                 ({mean:.3} >= {bound})"
            );
        }
    }
}

#[test]
fn the_shipped_models_explain_with_their_sparse_autoencoders_out_of_the_box() {
    let runtime = common::cpu_runtime();
    let method = method_by_name("sae", &MethodSet::default()).expect("available");
    for arch in ["densenet169", "vit_b_16"] {
        let manifest = manifest(arch);
        let sae =
            manifest.explain.sae.clone().unwrap_or_else(|| {
                panic!("{arch}: the manifest names no SAE (make setup ships one)")
            });
        assert!(sae.is_file(), "{}", sae.display());
        let model = load(&runtime, manifest, None);
        for image in common::eval_subset(80) {
            let input = input_of(&model, &image);
            let class = predicted(&model, &input);
            let map = method
                .explain(&model, input.view(), class)
                .expect("an SAE map");
            assert!(
                !is_empty_map(map.heat.view()),
                "{arch} {}: the SAE map is empty",
                image.display()
            );
            assert!(
                !map.parts.is_empty(),
                "{arch}: the leading concepts are named"
            );
        }
    }
}
