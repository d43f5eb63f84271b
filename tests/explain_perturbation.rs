//! Perturbation methods (RISE, Score-CAM) on the known-answer model of
//! `tests/support/make_cam_model.py`: the "lesion" logit reads one evidence box only, and
//! the test image brightens it and a decoy box nobody reads. RISE must put its mass on the
//! evidence and none on the decoy; Score-CAM, whose masks are the feature channels, must
//! find the bright boxes. Both are deterministic, the same in NCHW and NHWC, and refuse
//! parameters and models they cannot work with.

mod common;

use std::time::Instant;

use common::known_answer::{KnownAnswer, known_answer, load_classifier};
use dicom_xai::explain::rise::Rise;
use dicom_xai::explain::scorecam::ScoreCam;
use dicom_xai::explain::{Method, MethodSet, ModelMap, available, method_by_name};
use ndarray::{Array3, Axis};

/// RISE: share of the mass on the evidence box grown by [`RISE_MARGIN`], at least.
const RISE_EVIDENCE_SHARE: f32 = 0.8;
/// RISE: share on the decoy, at most.
const RISE_DECOY_SHARE: f32 = 0.05;
/// The margin: the 3 x 3 convolution and the masks' blur spill past the box.
const RISE_MARGIN: usize = 6;
/// Score-CAM: share on the two bright boxes (grown by one 4-pixel feature cell), at least.
const BRIGHT_SHARE: f32 = 0.8;

/// RISE for the 64 x 64 known-answer input. The map is the evidence blurred by the masks'
/// autocorrelation (about two cells each way), so the grid is scaled to the input: 8 cells
/// of 8 pixels, half the evidence box's side (7 cells average 0.82 on the grown box even
/// with 4000 masks, 0.79 at worst). The positive part of the estimator's noise falls as
/// 1/sqrt(masks): over seeds 0 to 15, 256 masks leave 0.76 on the grown box on average
/// (0.69 at worst), 2000 masks 0.86 (0.82 at worst) with at most 0.023 on the decoy;
/// 2000 passes of this model take under half a second.
fn rise(seed: u64) -> Rise {
    Rise {
        masks: 2000,
        cells: 8,
        keep: 0.5,
        seed,
        ..Rise::default()
    }
}

/// The map, with what it cost.
fn timed(case: &KnownAnswer, method: &dyn Method, image: &Array3<f32>) -> ModelMap {
    let start = Instant::now();
    let map = method
        .explain(&case.model, image.view(), 0)
        .unwrap_or_else(|e| panic!("{}: {e}", method.name()));
    eprintln!(
        "{}: {} passes, {:.3} s, {}",
        method.name(),
        map.passes,
        start.elapsed().as_secs_f64(),
        map.parameters
    );
    map
}

/// The image of `case` in the other layout (the models differ only in their layout).
fn relaid(image: &Array3<f32>) -> Array3<f32> {
    // [1, H, W] <-> [H, W, 1]
    if image.dim().0 == 1 {
        image.index_axis(Axis(0), 0).to_owned().insert_axis(Axis(2))
    } else {
        image.index_axis(Axis(2), 0).to_owned().insert_axis(Axis(0))
    }
}

fn max_difference(a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>) -> f32 {
    a.iter()
        .zip(b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn both_methods_are_available_by_name() {
    for name in ["rise", "scorecam"] {
        assert!(available().contains(&name), "{name}");
        let method = method_by_name(name, &MethodSet::default()).expect("available");
        assert_eq!(method.name(), name);
    }
}

#[test]
fn rise_finds_the_evidence_and_ignores_the_decoy() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.1);
    let map = timed(&case, &rise(0), &image);
    assert_eq!(map.passes, 2000);
    assert_eq!(map.parameters["masks"], 2000);
    assert_eq!(map.parameters["cells"], 8);
    assert_eq!(map.parameters["baseline"], "mean score");
    let heat = case.explain(&rise(0), &image);
    assert_eq!(heat, map.heat);
    let evidence = case
        .evidence
        .grown(RISE_MARGIN, case.height, case.width)
        .share(&heat);
    let decoy = case.decoy.share(&heat);
    eprintln!("rise: evidence {evidence:.3}, decoy {decoy:.4}");
    assert!(
        evidence >= RISE_EVIDENCE_SHARE,
        "only {evidence:.3} of the mass on the evidence"
    );
    assert!(
        decoy <= RISE_DECOY_SHARE,
        "{decoy:.4} of the mass on the decoy"
    );
    // the defaults: what a slice costs
    let defaults = timed(&case, &Rise::default(), &image);
    assert_eq!(defaults.passes, Rise::default().masks);
}

#[test]
fn rise_is_deterministic_for_a_seed_and_differs_for_another() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.1);
    let few = |seed| Rise {
        masks: 100,
        ..rise(seed)
    };
    let first = case.explain(&few(3), &image);
    assert_eq!(first, case.explain(&few(3), &image));
    let other = case.explain(&few(4), &image);
    assert!(max_difference(&first, &other) > 1e-3);
}

#[test]
fn rise_and_scorecam_are_the_same_in_nhwc() {
    let (nchw, nhwc) = (known_answer("NCHW", 64, 64), known_answer("NHWC", 64, 64));
    let image = nchw.image(0.1);
    let methods: [&dyn Method; 2] = [
        &Rise {
            masks: 64,
            ..rise(1)
        },
        &ScoreCam::default(),
    ];
    for method in methods {
        let a = nchw.explain(method, &image);
        let b = nhwc.explain(method, &relaid(&image));
        assert!(a.sum() > 0.0, "{}: empty map", method.name());
        let difference = max_difference(&a, &b);
        assert!(
            difference <= 1e-5 * a.iter().fold(0.0f32, |m, v| m.max(*v)),
            "{}: NCHW and NHWC differ by {difference}",
            method.name()
        );
    }
}

#[test]
fn scorecam_finds_the_bright_structures() {
    let case = known_answer("NCHW", 64, 64);
    // black background: the only channel's activation is the bright boxes
    let image = case.image(0.0);
    let map = timed(&case, &ScoreCam::default(), &image);
    // channel 1 of the feature tensor is dead (ReLU of a negated input): skipped
    assert_eq!(map.passes, 3);
    assert_eq!(map.parameters["channels_total"], 2);
    assert_eq!(map.parameters["channels_scored"], 1);
    assert_eq!(map.parameters["constant_channels_skipped"], 1);
    assert_eq!(map.target_layer.as_deref(), Some("features"));
    let (height, width) = (case.height, case.width);
    let bright = case.evidence.grown(4, height, width).share(&map.heat)
        + case.decoy.grown(4, height, width).share(&map.heat);
    eprintln!("scorecam: bright structures {bright:.3}");
    assert!(bright >= BRIGHT_SHARE, "{bright:.3} on the bright boxes");
    assert_eq!(case.explain(&ScoreCam::default(), &image), map.heat);
}

#[test]
fn scorecam_keeps_the_most_active_channels_of_a_wide_layer() {
    let case = known_answer("NCHW", 64, 64);
    let map = timed(
        &case,
        &ScoreCam {
            max_channels: 1,
            ..ScoreCam::default()
        },
        &case.image(0.0),
    );
    assert_eq!(
        map.parameters["channel_selection"],
        "largest mean activation"
    );
    // the live channel has the larger mean, so the map is the full one
    assert_eq!(map.parameters["channels_scored"], 1);
    assert_eq!(map.passes, 3);
    assert_eq!(
        map.heat,
        case.explain(&ScoreCam::default(), &case.image(0.0))
    );
}

#[test]
fn bad_parameters_are_refused_naming_the_method() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.1);
    let bad_rise = [
        Rise {
            masks: 0,
            ..Rise::default()
        },
        Rise {
            cells: 0,
            ..Rise::default()
        },
        Rise {
            cells: 65,
            ..Rise::default()
        },
        Rise {
            keep: 0.0,
            ..Rise::default()
        },
        Rise {
            keep: 1.0,
            ..Rise::default()
        },
        Rise {
            keep: f32::NAN,
            ..Rise::default()
        },
    ];
    for method in &bad_rise {
        let message = method
            .explain(&case.model, image.view(), 0)
            .expect_err("refused")
            .to_string();
        assert!(message.starts_with("rise: "), "{method:?}: {message}");
    }
    let message = ScoreCam {
        max_channels: 0,
        ..ScoreCam::default()
    }
    .explain(&case.model, image.view(), 0)
    .expect_err("refused")
    .to_string();
    assert!(
        message.starts_with("scorecam: ") && message.contains("max_channels"),
        "{message}"
    );
}

#[test]
fn scorecam_without_a_feature_tensor_names_the_manifest_key() {
    let case = known_answer("NCHW", 64, 64);
    let manifest = case.dir.path().join("cam.toml");
    let text = std::fs::read_to_string(&manifest).expect("cam.toml");
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("feature_tensor") && !l.starts_with("feature_layout"))
        .map(|l| format!("{l}\n"))
        .collect();
    let without = case.dir.path().join("no-features.toml");
    std::fs::write(&without, stripped).expect("write the manifest");
    let model = load_classifier(&without, &case.dir.path().join("gradients"));
    let message = ScoreCam::default()
        .explain(&model, case.image(0.1).view(), 0)
        .expect_err("no feature tensor")
        .to_string();
    assert!(
        message.starts_with("scorecam: ")
            && message.contains("explain.feature_tensor")
            && message.contains("no-features.toml"),
        "{message}"
    );
}
