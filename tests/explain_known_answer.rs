//! Explanation methods on a known-answer model (`tests/support/make_cam_model.py`): its
//! "lesion" logit reads one box of the input only, through a convolution, a pooled feature
//! tensor and a mask. The test image brightens that box and a decoy box nobody looks at.
//! Element-wise methods must put their mass on the evidence and none on the decoy; the
//! channel-weighted CAMs (Grad-CAM, Grad-CAM++) must find the bright structures. NHWC and
//! non-square inputs, and maps brought back to slices of another size, keep their place.

mod common;

use dicom_xai::autodiff::GradientCache;
use dicom_xai::explain::gradient::IntegratedGradients;
use dicom_xai::explain::occlusion::{Baseline, Occlusion};
use dicom_xai::explain::{Method, MethodSet, method_by_name, to_slice};
use dicom_xai::model::runtime::RuntimeOptions;
use dicom_xai::model::{Classifier, Manifest, Runtime};
use ndarray::{Array2, Array3, s};

/// Element-wise methods: share of the map's mass on the evidence box (with a margin for
/// the 3x3 convolution and the 4x4 feature cells), at least.
const EVIDENCE_SHARE: f32 = 0.9;
/// ... and on the decoy, at most.
const DECOY_SHARE: f32 = 0.02;
/// Channel-weighted CAMs: share on the two bright boxes, at least.
const BRIGHT_SHARE: f32 = 0.9;

/// A box: rows start..end, columns start..end.
#[derive(Debug, Clone, Copy)]
struct PixelBox(usize, usize, usize, usize);

impl PixelBox {
    fn grown(self, margin: usize, height: usize, width: usize) -> PixelBox {
        PixelBox(
            self.0.saturating_sub(margin),
            (self.1 + margin).min(height),
            self.2.saturating_sub(margin),
            (self.3 + margin).min(width),
        )
    }

    fn share(self, heat: &Array2<f32>) -> f32 {
        let total: f32 = heat.sum();
        heat.slice(s![self.0..self.1, self.2..self.3]).sum() / total.max(f32::MIN_POSITIVE)
    }

    fn scaled(self, rows: f32, columns: f32) -> PixelBox {
        PixelBox(
            (self.0 as f32 * rows) as usize,
            (self.1 as f32 * rows) as usize,
            (self.2 as f32 * columns) as usize,
            (self.3 as f32 * columns) as usize,
        )
    }
}

struct KnownAnswer {
    _dir: tempfile::TempDir,
    model: Classifier,
    evidence: PixelBox,
    decoy: PixelBox,
    height: usize,
    width: usize,
}

fn known_answer(layout: &str, height: usize, width: usize) -> KnownAnswer {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = common::run_support_script(
        "make_cam_model.py",
        &[
            dir.path().as_os_str(),
            "--layout".as_ref(),
            layout.as_ref(),
            "--height".as_ref(),
            height.to_string().as_ref(),
            "--width".as_ref(),
            width.to_string().as_ref(),
        ],
    );
    let boxes: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON boxes");
    let pixel_box = |key: &str| {
        let v: Vec<usize> = boxes[key]
            .as_array()
            .expect("a box")
            .iter()
            .map(|x| x.as_u64().expect("an integer") as usize)
            .collect();
        PixelBox(v[0], v[1], v[2], v[3])
    };
    let manifest = Manifest::load(&dir.path().join("cam.toml")).expect("manifest");
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    let model = Classifier::load(&runtime, manifest, 16)
        .expect("the known-answer model")
        .with_gradient_cache(GradientCache::new(dir.path().join("gradients")));
    KnownAnswer {
        evidence: pixel_box("evidence"),
        decoy: pixel_box("decoy"),
        _dir: dir,
        model,
        height,
        width,
    }
}

impl KnownAnswer {
    /// The test image in the model's layout: `background`, and 0.9 in both boxes.
    fn image(&self, background: f32) -> Array3<f32> {
        let mut grey = Array2::<f32>::from_elem((self.height, self.width), background);
        for b in [self.evidence, self.decoy] {
            grey.slice_mut(s![b.0..b.1, b.2..b.3]).fill(0.9);
        }
        let nhwc = self.model.manifest().input.layout == dicom_xai::model::manifest::Layout::Nhwc;
        if nhwc {
            grey.insert_axis(ndarray::Axis(2))
        } else {
            grey.insert_axis(ndarray::Axis(0))
        }
    }

    fn explain(&self, method: &dyn Method, image: &Array3<f32>) -> Array2<f32> {
        let map = method
            .explain(&self.model, image.view(), 0)
            .unwrap_or_else(|e| panic!("{}: {e}", method.name()));
        assert_eq!(
            map.heat.dim(),
            (self.height, self.width),
            "{}",
            method.name()
        );
        assert!(
            map.heat.iter().all(|v| *v >= 0.0),
            "{}: negative heat",
            method.name()
        );
        map.heat
    }
}

/// The fine occlusion of the known-answer tests: 8 x 8 patches every 4 pixels, black fill.
fn fine_occlusion() -> Occlusion {
    Occlusion {
        patch: 8,
        stride: 4,
        baseline: Baseline::Zero,
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
    let evidence = case.evidence.scaled(2.0, 2.0).grown(4, 96, 160);
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
