//! Occlusion on a known-answer model: the class depends on one 16 x 16 region of the input
//! only, so the evidence must be found there and nowhere else; the map brought back to a
//! slice of another size keeps its place.

mod common;

use dicom_xai::explain::occlusion::{Baseline, Occlusion};
use dicom_xai::explain::{Method, to_slice};
use dicom_xai::model::{Classifier, Manifest};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::{Array2, Array3, s};

const REGION: (usize, usize, usize, usize) = (20, 36, 36, 52);

fn toy_model() -> (tempfile::TempDir, Classifier) {
    made_model(&[])
}

/// The model `make_toy_model.py DIR ARGUMENTS...` writes, loaded.
fn made_model(arguments: &[&str]) -> (tempfile::TempDir, Classifier) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = vec![dir.path().as_os_str()];
    all.extend(arguments.iter().map(std::ffi::OsStr::new));
    common::run_support_script("make_toy_model.py", &all);
    let manifest = Manifest::load(&dir.path().join("toy.toml")).unwrap();
    let runtime = Runtime::init(RuntimeOptions {
        intra_threads: 2,
        ..RuntimeOptions::default()
    })
    .unwrap();
    let model = Classifier::load(&runtime, manifest, 16).unwrap();
    (dir, model)
}

/// A uniform grey input of the toy model's size.
fn uniform_input() -> Array3<f32> {
    Array3::<f32>::from_elem((1, 64, 64), 0.5)
}

/// Occlusion fine enough to outline the 16 x 16 region: 8 x 8 patches every 4 pixels.
fn fine_occlusion(baseline: Baseline) -> Occlusion {
    Occlusion {
        patch: 8,
        stride: 4,
        baseline,
        ..Occlusion::default()
    }
}

#[test]
fn occlusion_finds_the_planted_region_and_nothing_else() {
    let (_dir, model) = toy_model();
    let input = uniform_input();
    let occlusion = fine_occlusion(Baseline::Zero);
    let map = occlusion.explain(&model, input.view(), 0).unwrap();
    assert_eq!(map.heat.dim(), (64, 64));
    assert_eq!(map.passes, 15 * 15 + 1);

    let (r0, r1, c0, c1) = REGION;
    let total: f32 = map.heat.sum();
    assert!(total > 0.0);
    // a patch changes the score only if it overlaps the region: outside the region grown by
    // one patch there is no evidence at all
    let p = occlusion.patch;
    for ((r, c), v) in map.heat.indexed_iter() {
        let near = r + p > r0 && r < r1 + p - 1 && c + p > c0 && c < c1 + p - 1;
        assert!(
            near || *v == 0.0,
            "evidence {v} at ({r}, {c}), far from the region"
        );
    }
    let inside: f32 = map.heat.slice(s![r0..r1, c0..c1]).sum();
    assert!(
        inside / total > 0.6,
        "only {:.2} of the evidence inside the region",
        inside / total
    );
    let (peak, _) =
        map.heat.indexed_iter().fold(
            ((0, 0), f32::MIN),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        );
    assert!(
        (r0..r1).contains(&peak.0) && (c0..c1).contains(&peak.1),
        "peak at {peak:?}"
    );

    // explaining the other class (whose logit is constant) finds evidence against nothing:
    // hiding the region raises it, and rises are not evidence
    let against = occlusion.explain(&model, input.view(), 1).unwrap();
    assert!(against.heat.iter().all(|v| *v == 0.0));
}

#[test]
fn a_mean_baseline_on_a_uniform_image_hides_nothing() {
    let (_dir, model) = toy_model();
    let input = uniform_input();
    let occlusion = fine_occlusion(Baseline::Mean);
    let map = occlusion.explain(&model, input.view(), 0).unwrap();
    assert!(
        map.heat.iter().all(|v| v.abs() < 1e-6),
        "filling with the mean changes nothing"
    );
}

#[test]
fn maps_come_back_to_the_slice_in_place() {
    let (_dir, model) = toy_model();
    let input = uniform_input();
    let occlusion = fine_occlusion(Baseline::Zero);
    let map = occlusion.explain(&model, input.view(), 0).unwrap();
    // a 256 x 256 source slice: the model saw it at a quarter of the size
    let heat: Array2<f32> = to_slice(map.heat.view(), 256, 256);
    let (r0, r1, c0, c1) = REGION;
    let inside: f32 = heat.slice(s![r0 * 4..r1 * 4, c0 * 4..c1 * 4]).sum();
    assert!(inside / heat.sum() > 0.6);
    assert!(heat.iter().all(|v| *v >= 0.0 && v.is_finite()));
}

/// A 224 x 224 known-answer model whose class depends on the 16 x 16 region at `lesion`.
fn planted_model(lesion: (usize, usize)) -> (tempfile::TempDir, Classifier) {
    let (row, column) = (lesion.0.to_string(), lesion.1.to_string());
    made_model(&["4", "--size", "224", "--lesion", &row, &column])
}

/// Textured background (grey 0.2 to 0.4, a fixed pattern) with a bright 16 x 16 lesion.
fn planted_input(lesion: (usize, usize)) -> Array3<f32> {
    Array3::from_shape_fn((1, 224, 224), |(_, r, c)| {
        let inside =
            (lesion.0..lesion.0 + 16).contains(&r) && (lesion.1..lesion.1 + 16).contains(&c);
        if inside {
            0.9
        } else {
            0.3 + 0.1 * ((r * 7 + c * 13) as f32 * 0.37).sin()
        }
    })
}

/// Issue 21's known answer: with the default parameters at least half of the map's mass lies
/// within 16 pixels of the planted lesion, wherever the lesion sits against the patch grid.
#[test]
fn default_occlusion_keeps_half_its_mass_within_16_pixels_of_the_lesion() {
    const NEAR: usize = 16;
    // on the grid, between grid lines, at the edges and corners of the input
    for lesion in [(96, 48), (100, 57), (0, 0), (208, 131), (13, 200)] {
        let (_dir, model) = planted_model(lesion);
        let map = Occlusion::default()
            .explain(&model, planted_input(lesion).view(), 0)
            .unwrap();
        let distance = |i: usize, lo: usize| {
            if i < lo {
                lo - i
            } else {
                i.saturating_sub(lo + 15)
            }
        };
        let near: f32 = map
            .heat
            .indexed_iter()
            .filter(|((r, c), _)| distance(*r, lesion.0).max(distance(*c, lesion.1)) <= NEAR)
            .map(|(_, v)| *v)
            .sum();
        let total = map.heat.sum();
        assert!(total > 0.0, "lesion at {lesion:?}: an empty map");
        println!(
            "lesion at {lesion:?}: {:.3} of the mass within {NEAR} px ({} passes)",
            near / total,
            map.passes
        );
        assert!(
            near / total >= 0.5,
            "lesion at {lesion:?}: only {:.3} of the mass within {NEAR} px",
            near / total
        );
    }
}
