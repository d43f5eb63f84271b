//! Explanation methods on a known-answer model (`tests/support/make_cam_model.py`): its
//! "lesion" logit reads one box of the input only, through a convolution, a pooled feature
//! tensor and a mask. The test image brightens that box and a decoy box nobody looks at.
//! Element-wise methods must put their mass on the evidence and none on the decoy; the
//! channel-weighted CAMs (Grad-CAM, Grad-CAM++) must find the bright structures. NHWC and
//! non-square inputs, and maps brought back to slices of another size, keep their place.

mod common;

use common::known_answer::{KnownAnswer, PixelBox, known_answer};
use dicom_xai::explain::gradient::IntegratedGradients;
use dicom_xai::explain::occlusion::{Baseline, Occlusion};
use dicom_xai::explain::{MethodSet, method_by_name, to_slice};

/// Element-wise methods: share of the map's mass on the evidence box (with a margin for
/// the 3x3 convolution and the 4x4 feature cells), at least.
const EVIDENCE_SHARE: f32 = 0.9;
/// ... and on the decoy, at most.
const DECOY_SHARE: f32 = 0.02;
/// Channel-weighted CAMs: share on the two bright boxes, at least.
const BRIGHT_SHARE: f32 = 0.9;

/// The box scaled to a slice `rows` x `columns` times the model input's size.
fn scaled(b: PixelBox, rows: f32, columns: f32) -> PixelBox {
    PixelBox(
        (b.0 as f32 * rows) as usize,
        (b.1 as f32 * rows) as usize,
        (b.2 as f32 * columns) as usize,
        (b.3 as f32 * columns) as usize,
    )
}

/// The fine occlusion of the known-answer tests: 8 x 8 patches every 4 pixels, black fill.
fn fine_occlusion() -> Occlusion {
    Occlusion {
        patch: 8,
        stride: 4,
        baseline: Baseline::Zero,
        ..Occlusion::default()
    }
}

const ELEMENT_WISE: &[&str] = &[
    "hirescam",
    "layercam",
    "saliency",
    "smoothgrad",
    "intgrad",
    "gradxinput",
    "occlusion",
];

fn methods() -> MethodSet {
    MethodSet {
        occlusion: fine_occlusion(),
        ..MethodSet::default()
    }
}

fn assert_element_wise(case: &KnownAnswer, label: &str) {
    let image = case.image(0.1);
    // 4-pixel feature cells and bilinear upsampling spread CAMs by up to one cell
    let evidence = case.evidence.grown(4, case.height, case.width);
    for name in ELEMENT_WISE {
        let method = method_by_name(name, &methods()).expect("available");
        let heat = case.explain(method.as_ref(), &image);
        let (on_evidence, on_decoy) = (evidence.share(&heat), case.decoy.share(&heat));
        eprintln!("{label} {name}: evidence {on_evidence:.3}, decoy {on_decoy:.3}");
        assert!(
            on_evidence >= EVIDENCE_SHARE,
            "{label} {name}: only {on_evidence:.3} of the mass on the evidence"
        );
        assert!(
            on_decoy <= DECOY_SHARE,
            "{label} {name}: {on_decoy:.3} of the mass on the decoy"
        );
    }
}

#[test]
fn element_wise_methods_find_the_evidence_and_ignore_the_decoy() {
    assert_element_wise(&known_answer("NCHW", 64, 64), "NCHW 64x64");
}

#[test]
fn nhwc_and_non_square_inputs_keep_the_evidence_in_place() {
    let case = known_answer("NHWC", 48, 80);
    assert_element_wise(&case, "NHWC 48x80");
    // brought back to a slice twice the size, the map stays on the evidence
    let method = method_by_name("saliency", &methods()).expect("available");
    let heat = case.explain(method.as_ref(), &case.image(0.1));
    let slice = to_slice(heat.view(), 96, 160);
    let evidence = scaled(case.evidence, 2.0, 2.0).grown(4, 96, 160);
    assert!(evidence.share(&slice) >= EVIDENCE_SHARE);
}

#[test]
fn channel_weighted_cams_find_the_bright_structures() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.0);
    for name in ["gradcam", "gradcampp"] {
        let method = method_by_name(name, &methods()).expect("available");
        let heat = case.explain(method.as_ref(), &image);
        let bright =
            case.evidence.grown(4, 64, 64).share(&heat) + case.decoy.grown(4, 64, 64).share(&heat);
        eprintln!("{name}: bright structures {bright:.3}");
        assert!(
            bright >= BRIGHT_SHARE,
            "{name}: {bright:.3} on the bright boxes"
        );
    }
}

#[test]
fn integrated_gradients_are_complete_on_a_piecewise_linear_model() {
    let case = known_answer("NCHW", 64, 64);
    let attributions = IntegratedGradients { steps: 8 }
        .attributions(&case.model, case.image(0.1).view(), 0)
        .expect("attributions");
    assert!(attributions.score_difference > 0.1);
    assert!(
        attributions.completeness_error() < 1e-3,
        "Σ attributions {} vs logit difference {}",
        attributions.total,
        attributions.score_difference
    );
}

#[test]
fn methods_without_their_tensors_say_which_manifest_key_is_missing() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.1);
    for name in ["rollout", "attn-grad"] {
        let method = method_by_name(name, &methods()).expect("available");
        let error = method
            .explain(&case.model, image.view(), 0)
            .expect_err("no attention tensors");
        let message = error.to_string();
        assert!(
            message.contains("attention_tensors") && message.contains("cam.toml"),
            "{name}: {message}"
        );
    }
}

#[test]
fn smoothgrad_is_deterministic_for_a_seed() {
    let case = known_answer("NCHW", 64, 64);
    let image = case.image(0.1);
    let method = method_by_name("smoothgrad", &methods()).expect("available");
    let first = case.explain(method.as_ref(), &image);
    let second = case.explain(method.as_ref(), &image);
    assert_eq!(first, second);
}

/// A map's settings (`ModelMap::settings`: its parameters without what the method measured)
/// are the same for every input: derived series UIDs come from them, so anything that varies
/// from slice to slice there would give each slice a series of its own.
#[test]
fn a_maps_settings_do_not_depend_on_the_input() {
    let case = known_answer("NCHW", 64, 64);
    let (dim, bright) = (case.image(0.1), case.image(0.4));
    let mut measured_something = 0;
    for name in ELEMENT_WISE
        .iter()
        .chain(&["gradcam", "gradcampp", "rise", "scorecam"])
    {
        let method = method_by_name(name, &methods()).expect("available");
        let one = method
            .explain(&case.model, dim.view(), 0)
            .expect("explained");
        let other = method
            .explain(&case.model, bright.view(), 0)
            .expect("explained");
        assert_eq!(one.settings(), other.settings(), "{name}");
        if one.parameters != other.parameters {
            measured_something += 1;
        }
    }
    // occlusion, integrated gradients, smoothgrad, RISE and Score-CAM record what they
    // measured (class probabilities, completeness, noise scale): the check is not vacuous
    assert!(measured_something >= 4, "{measured_something}");
}
