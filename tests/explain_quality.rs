//! The quality checks of explanations: the brain mask against the true brain of a realistic
//! MR phantom (MNI152 anatomy wrapped in CSF, skull and scalp by
//! `tests/support/make_series.py`), the in-brain fraction of maps on and off the brain, and
//! the faithfulness curves on the known-answer model.

mod common;

use std::path::Path;

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::explain::quality::{brain_mask, distance_to_outside, in_brain_fraction};
use ndarray::{Array2, Array3, Axis};
use ndarray_npy::read_npy;

/// Dice overlap of our mask with the true intracranial space, on the slices that cut the
/// brain across (true area at least `SECTION_SHARE` of the largest): measured 0.86-0.96.
const MIN_DICE: f32 = 0.85;
/// Slices that graze the vertex or the skull base cut the scalp tangentially, where no
/// threshold tells scalp from brain; they are left out.
const SECTION_SHARE: f32 = 0.6;
/// Share of our mask lying more than 4 pixels (4 mm) outside the true brain: scalp, skull.
const MAX_OUTSIDE_SHARE: f32 = 0.01;

fn grey(path: &Path, frame: usize) -> Array2<f32> {
    let dicom = file::open(path, Depth::Full).expect("a phantom slice");
    let frames = pixels::decode(&dicom).expect("decodes");
    voi::unit_grey(&dicom, &frames, frame).expect("windowed")
}

fn dice(a: &Array2<bool>, b: &Array2<bool>) -> f32 {
    let both = a.iter().zip(b).filter(|(x, y)| **x && **y).count() as f32;
    let total = (a.iter().filter(|v| **v).count() + b.iter().filter(|v| **v).count()) as f32;
    2.0 * both / total.max(1.0)
}

#[test]
fn the_brain_mask_finds_the_phantom_brain_and_leaves_out_skull_and_scalp() {
    let dir = tempfile::tempdir().expect("temporary folder");
    let study = dir.path().join("study");
    let masks = dir.path().join("masks");
    let template = common::asset("mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz");
    common::run_support_script(
        "make_series.py",
        &[
            "--template".as_ref(),
            template.as_os_str(),
            "--out".as_ref(),
            study.as_os_str(),
            "--preset".as_ref(),
            "demo".as_ref(),
            "--brain-masks".as_ref(),
            masks.as_os_str(),
        ],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(study.join("manifest.json")).expect("manifest"))
            .expect("JSON");
    let series = &manifest["studies"][0]["series"][0];
    let truth: Array3<u8> =
        read_npy(masks.join(format!("series_{}.npy", series["series_number"]))).expect("masks");
    let files: std::collections::HashMap<String, String> = series["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .map(|i| {
            (
                i["sop_instance_uid"].as_str().expect("uid").to_string(),
                i["file"].as_str().expect("file").to_string(),
            )
        })
        .collect();
    let mut checked = 0;
    let mut failures = Vec::new();
    let area = |index: usize| {
        truth
            .index_axis(Axis(0), index)
            .iter()
            .filter(|v| **v != 0)
            .count()
    };
    let largest = (0..truth.dim().0).map(area).max().unwrap_or(0);
    for (index, frame) in series["ordered_frames"]
        .as_array()
        .expect("frames")
        .iter()
        .enumerate()
    {
        let uid = frame[0].as_str().expect("uid");
        let true_brain = truth.index_axis(Axis(0), index).mapv(|v| v != 0);
        if (area(index) as f32) < SECTION_SHARE * largest as f32 {
            continue;
        }
        let ours = brain_mask(grey(&study.join(&files[uid]), 0).view());
        let overlap = dice(&ours, &true_brain);
        let near = distance_to_outside(&true_brain.mapv(|v| !v)).mapv(|d| d <= 4.0);
        let outside = ours.iter().zip(&near).filter(|(m, n)| **m && !**n).count() as f32
            / ours.iter().filter(|v| **v).count().max(1) as f32;
        eprintln!("slice {index}: Dice {overlap:.3}, share outside {outside:.4}");
        if overlap < MIN_DICE || outside > MAX_OUTSIDE_SHARE {
            failures.push(format!(
                "slice {index} ({uid}): Dice {overlap:.3}, {outside:.4} of the mask outside"
            ));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 12, "only {checked} slices cut the brain across");
}

#[test]
fn in_brain_fraction_measures_where_the_mass_lies() {
    let mut mask = Array2::from_elem((10, 10), false);
    mask.slice_mut(ndarray::s![2..8, 2..8]).fill(true);
    let mut heat = Array2::<f32>::zeros((10, 10));
    heat[[5, 5]] = 3.0; // inside
    heat[[0, 0]] = 1.0; // outside
    assert_eq!(in_brain_fraction(heat.view(), &mask), Some(0.75));
    assert_eq!(
        in_brain_fraction(Array2::zeros((10, 10)).view(), &mask),
        None
    );
}
