//! The quality checks of explanations: the brain mask against the true brain of a realistic
//! MR phantom (MNI152 anatomy wrapped in CSF, skull and scalp by
//! `tests/support/make_series.py`) and its plausibility on the real T1, T2 and FLAIR slices of
//! the evaluation subset, the in-brain fraction of maps on and off the brain, and the
//! faithfulness curves on the known-answer model.

mod common;

use std::path::Path;

use dicom_xai::anatomy::{brain_mask, distance_to_outside};
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::explain::quality::in_brain_fraction;
use ndarray::{Array2, Array3, Axis};
use ndarray_npy::read_npy;

/// Dice overlap of our mask with the true intracranial space, on the slices that cut the
/// brain across (true area at least `SECTION_SHARE` of the largest): measured 0.95-0.97
/// (0.86-0.96 before the three-class threshold).
const MIN_DICE: f32 = 0.85;
/// Slices that graze the vertex or the skull base cut the scalp tangentially, where no
/// threshold tells scalp from brain; they are left out.
const SECTION_SHARE: f32 = 0.6;
/// Share of our mask lying more than 4 pixels (4 mm) outside the true brain: scalp, skull.
/// Measured at most 0.0104, on the lowest section, where the three-class threshold keeps a
/// little more of the scalp than a two-class one did (and finds the brain on T2 slices,
/// which a two-class one did not).
const MAX_OUTSIDE_SHARE: f32 = 0.015;

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

/// The head of a real slice, computed here independently of the library: every pixel the
/// image border cannot reach through background (grey level at most `HEAD_BACKGROUND`).
fn head(grey: &Array2<f32>) -> Array2<bool> {
    let (rows, columns) = grey.dim();
    let mut outside = Array2::from_elem((rows, columns), false);
    let mut stack: Vec<(usize, usize)> = (0..rows)
        .flat_map(|r| [(r, 0), (r, columns - 1)])
        .chain((0..columns).flat_map(|c| [(0, c), (rows - 1, c)]))
        .collect();
    while let Some((r, c)) = stack.pop() {
        if outside[[r, c]] || grey[[r, c]] > HEAD_BACKGROUND {
            continue;
        }
        outside[[r, c]] = true;
        if r > 0 {
            stack.push((r - 1, c));
        }
        if r + 1 < rows {
            stack.push((r + 1, c));
        }
        if c > 0 {
            stack.push((r, c - 1));
        }
        if c + 1 < columns {
            stack.push((r, c + 1));
        }
    }
    outside.mapv(|o| !o)
}

/// Background of the subset's slices: black air, JPEG noise included.
const HEAD_BACKGROUND: f32 = 0.08;
/// A plausible brain covers this share of the head: the intracranial space without scalp
/// and skull (about 0.6 to 0.9 on axial slices through the brain).
const PLAUSIBLE_SHARE: std::ops::RangeInclusive<f32> = 0.45..=0.98;
/// Share of the subset's slices whose mask must be plausible: measured 150 of 160 (sagittal
/// slices and slices on a grey background fail); the two-class threshold managed 130, keeping
/// an eye or the ventricles as "the brain" on T2 slices.
const MIN_PLAUSIBLE: f64 = 0.9;

#[test]
fn the_brain_mask_is_plausible_on_real_t1_t2_and_flair_slices() {
    let images = common::eval_subset(1);
    assert_eq!(images.len(), 160);
    let mut implausible = Vec::new();
    for image in &images {
        let grey = dicom_xai::dicom::slices::load_grey(image).expect("the slice");
        let head_area = head(&grey).iter().filter(|&&h| h).count() as f32;
        let mask_area = brain_mask(grey.view()).iter().filter(|&&m| m).count() as f32;
        let share = mask_area / head_area.max(1.0);
        if !PLAUSIBLE_SHARE.contains(&share) {
            implausible.push(format!("{}: {share:.3}", image.display()));
        }
    }
    eprintln!("implausible masks:\n{}", implausible.join("\n"));
    let plausible = 1.0 - implausible.len() as f64 / images.len() as f64;
    assert!(
        plausible >= MIN_PLAUSIBLE,
        "{} of {} masks implausible:\n{}",
        implausible.len(),
        images.len(),
        implausible.join("\n")
    );
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

/// The faithfulness curves against their closed form on the toy model, whose lesion
/// probability is sigmoid(8 x the mean of one 16 x 16 region): every point of every curve is
/// computed here from the definition (Petsiuk et al.: the most important pixels blacked out,
/// or revealed on black, in `steps` equal parts), with the random order of the same seed.
#[test]
fn faithfulness_curves_equal_their_closed_form_and_share_the_random_order_per_slice() {
    use dicom_xai::explain::quality::{Faithfulness, SliceCheck};
    use dicom_xai::noise::NoiseSource;

    const STEPS: usize = 4;
    const SIDE: usize = 64;
    const REGION: (usize, usize, usize, usize) = (20, 36, 36, 52);
    /// float32 sums of 256 pixels and a sigmoid, against f64 here.
    const AUC_TOLERANCE: f32 = 1e-5;

    let dir = tempfile::tempdir().expect("temporary folder");
    common::run_support_script("make_toy_model.py", &[dir.path().as_os_str()]);
    let model = common::known_answer::load_classifier(
        &dir.path().join("toy.toml"),
        &dir.path().join("gradients"),
    );
    // a textured image, brighter in the region
    let grey = Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
        let inside = (REGION.0..REGION.1).contains(&r) && (REGION.2..REGION.3).contains(&c);
        0.3 + 0.2 * ((r * 7 + c * 3) % 11) as f32 / 10.0 + if inside { 0.3 } else { 0.0 }
    });
    let input: Array3<f32> = grey.clone().insert_axis(Axis(0));
    let probability = |image: &Array2<f32>| -> f64 {
        let region = image.slice(ndarray::s![REGION.0..REGION.1, REGION.2..REGION.3]);
        let mean = region.iter().map(|&v| f64::from(v)).sum::<f64>() / region.len() as f64;
        1.0 / (1.0 + (-8.0 * mean).exp())
    };
    // deletion and insertion AUCs of `order` (most important first), from the definition
    let expected = |order: &[usize]| -> (f32, f32) {
        let pixels = SIDE * SIDE;
        let curve = |deleting: bool| -> f32 {
            let points: Vec<f64> = (0..=STEPS)
                .map(|step| {
                    let mut changed = vec![false; pixels];
                    for &p in &order[..pixels * step / STEPS] {
                        changed[p] = true;
                    }
                    let image = Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
                        if changed[r * SIDE + c] == deleting {
                            0.0
                        } else {
                            grey[[r, c]]
                        }
                    });
                    probability(&image)
                })
                .collect();
            (points.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f64>() / STEPS as f64) as f32
        };
        (curve(true), curve(false))
    };
    let order_of = |heat: &Array2<f32>| -> Vec<usize> {
        let flat: Vec<f32> = heat.iter().copied().collect();
        let mut order: Vec<usize> = (0..flat.len()).collect();
        order.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
        order
    };
    let mut random: Vec<usize> = (0..SIDE * SIDE).collect();
    let mut noise = NoiseSource::new(0);
    for i in (1..random.len()).rev() {
        let j = (noise.uniform() * (i + 1) as f64) as usize;
        random.swap(i, j.min(i));
    }
    let (random_deletion, random_insertion) = expected(&random);

    // a faithful map (on the region) and an unfaithful one (the region last)
    let on_region = Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
        let (dr, dc) = (r as f32 - 27.5, c as f32 - 43.5);
        (-(dr * dr + dc * dc) / 60.0).exp()
    });
    let away = Array2::from_shape_fn((SIDE, SIDE), |(r, c)| {
        let (dr, dc) = (r as f32 - 27.5, c as f32 - 43.5);
        (dr * dr + dc * dc).sqrt()
    });
    let mut slice = SliceCheck::new(Array2::from_elem((SIDE, SIDE), true));
    let mut passes = Vec::new();
    for heat in [&on_region, &away] {
        let measured =
            Faithfulness::measure(&model, input.view(), heat.view(), 0, STEPS, &mut slice)
                .expect("measured");
        let (deletion, insertion) = expected(&order_of(heat));
        for (name, got, want) in [
            ("deletion", measured.deletion_auc, deletion),
            ("insertion", measured.insertion_auc, insertion),
            (
                "random deletion",
                measured.random_deletion_auc,
                random_deletion,
            ),
            (
                "random insertion",
                measured.random_insertion_auc,
                random_insertion,
            ),
        ] {
            assert!(
                (got - want).abs() <= AUC_TOLERANCE,
                "{name}: {got} against the closed form {want}"
            );
        }
        passes.push(measured.passes);
    }
    // the map on the region beats random on both curves; the corner blob on neither
    let first = Faithfulness::measure(&model, input.view(), on_region.view(), 0, STEPS, &mut slice)
        .expect("measured");
    assert!(!first.unfaithful(), "{first:?}");
    let corner = Faithfulness::measure(&model, input.view(), away.view(), 0, STEPS, &mut slice)
        .expect("measured");
    assert!(corner.unfaithful(), "{corner:?}");
    // the slice's first map pays for the shared ends (input, black) and the random order;
    // every later map only for its own inner points
    assert_eq!(
        passes,
        [2 * (STEPS - 1) + 2 + 2 * (STEPS - 1), 2 * (STEPS - 1)]
    );
}
