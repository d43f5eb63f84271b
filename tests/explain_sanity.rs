//! Model-randomisation sanity check (Adebayo et al., 2018): an explanation that depends on
//! what the model learnt must change when the learnt weights are replaced by random ones.
//! The trained VGG16's weights (convolutions and dense layers) are randomised in cascade from
//! the top (the classifier, then down through the last block, then every layer); the rank
//! correlation between the maps of the trained and the fully randomised model must fall.
//! Saliency and Grad-CAM must fall far; gradient x input keeps much of the input's own
//! structure (Adebayo et al. saw the same), so its bound is looser: it must still move.

mod common;

use std::path::Path;

use dicom_xai::autodiff::GradientCache;
use dicom_xai::explain::quality::rank_correlation;
use dicom_xai::explain::{MethodSet, method_by_name};
use dicom_xai::model::preprocess::{self, resize_bilinear};
use dicom_xai::model::{Classifier, Manifest};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::Array2;

/// With every weight randomised, the rank correlation of saliency and Grad-CAM maps with the
/// trained model's (on a 32 x 32 grid) stays below this.
const RANDOMISED_CORRELATION: f32 = 0.5;
/// Gradient x input multiplies by the input itself: it must still fall below this.
const INPUT_WEIGHTED_CORRELATION: f32 = 0.9;

const METHODS: &[&str] = &["saliency", "gradcam", "gradxinput"];

fn maps(
    manifest: Manifest,
    runtime: &Runtime,
    cache: &Path,
    grey: &Array2<f32>,
) -> Vec<Array2<f32>> {
    let model = Classifier::load(runtime, manifest, 4)
        .expect("the model")
        .with_gradient_cache(GradientCache::new(cache.to_path_buf()));
    let input = preprocess::model_input(grey.view(), &model.manifest().input);
    METHODS
        .iter()
        .map(|name| {
            let method = method_by_name(name, &MethodSet::default()).expect("available");
            // the class the trained model predicts, for every variant: the same question
            let map = method.explain(&model, input.view(), 0).expect("a map");
            resize_bilinear(map.heat.view(), 32, 32)
        })
        .collect()
}

#[test]
fn gradient_maps_change_when_the_learnt_weights_are_randomised() {
    let study = common::generate_study("test");
    let files = study.dicom_files();
    let slice = &files[files.len() / 2];
    let dicom = dicom_xai::dicom::file::open(slice, dicom_xai::dicom::file::Depth::Full)
        .expect("the slice");
    let frames = dicom_xai::dicom::pixels::decode(&dicom).expect("decodes");
    let grey = dicom_xai::dicom::voi::unit_grey(&dicom, &frames, 0).expect("grey");

    let original =
        Manifest::load(&common::root().join("onnx/manifests/vgg16-kaggle.toml")).expect("manifest");
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    let dir = tempfile::tempdir().expect("temporary folder");
    let cache = dir.path().join("cache");
    let trained = maps(original.clone(), &runtime, &cache, &grey);
    for count in [1, 4, usize::MAX] {
        let (variant, layers) = common::randomise_top_layers(&original, count, dir.path());
        assert!(layers >= 16, "13 convolutions and the dense layers");
        let randomised_maps = maps(variant, &runtime, &cache, &grey);
        for ((name, a), b) in METHODS.iter().zip(&trained).zip(&randomised_maps) {
            let correlation = rank_correlation(a.view(), b.view()).unwrap_or(0.0);
            let layers = if count == usize::MAX {
                "all".to_string()
            } else {
                count.to_string()
            };
            eprintln!("{name}: last {layers} layers random: rank correlation {correlation:.3}");
            if count == usize::MAX {
                let bound = if *name == "gradxinput" {
                    INPUT_WEIGHTED_CORRELATION
                } else {
                    RANDOMISED_CORRELATION
                };
                assert!(
                    correlation < bound,
                    "{name}: the map barely changed with every weight random ({correlation:.3})"
                );
            }
        }
    }
}
