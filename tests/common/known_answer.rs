//! The known-answer model of `tests/support/make_cam_model.py` for explanation tests: its
//! "lesion" logit reads one evidence box of the input only; a decoy box as bright is read
//! by nothing.

use std::path::Path;

use dicom_xai::autodiff::GradientCache;
use dicom_xai::explain::Method;
use dicom_xai::model::manifest::Layout;
use dicom_xai::model::{Classifier, Manifest};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::{Array2, Array3, Axis, s};

/// A box of pixels: rows start..end, columns start..end.
#[derive(Debug, Clone, Copy)]
pub struct PixelBox(pub usize, pub usize, pub usize, pub usize);

impl PixelBox {
    /// The box grown by `margin` on every side, within `height` x `width`.
    pub fn grown(self, margin: usize, height: usize, width: usize) -> PixelBox {
        PixelBox(
            self.0.saturating_sub(margin),
            (self.1 + margin).min(height),
            self.2.saturating_sub(margin),
            (self.3 + margin).min(width),
        )
    }

    /// The share of the map's mass inside the box.
    pub fn share(self, heat: &Array2<f32>) -> f32 {
        let total: f32 = heat.sum();
        heat.slice(s![self.0..self.1, self.2..self.3]).sum() / total.max(f32::MIN_POSITIVE)
    }
}

/// The model, its folder and where its boxes are.
pub struct KnownAnswer {
    /// The folder of `cam.onnx`, `cam.toml` and the gradient cache.
    pub dir: tempfile::TempDir,
    /// The loaded model, batch size 16.
    pub model: Classifier,
    /// The box the lesion logit reads.
    pub evidence: PixelBox,
    /// The box nothing reads.
    pub decoy: PixelBox,
    /// Input height.
    pub height: usize,
    /// Input width.
    pub width: usize,
}

/// Loads a model manifest with batch size 16, gradient models kept in `cache`.
pub fn load_classifier(manifest: &Path, cache: &Path) -> Classifier {
    let manifest = Manifest::load(manifest).expect("manifest");
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    Classifier::load(&runtime, manifest, 16)
        .expect("the known-answer model")
        .with_gradient_cache(GradientCache::new(cache.to_path_buf()))
}

/// Builds the model for a `layout` ("NCHW" or "NHWC") input of `height` x `width`.
pub fn known_answer(layout: &str, height: usize, width: usize) -> KnownAnswer {
    let dir = tempfile::tempdir().expect("temporary folder");
    let output = super::run_support_script(
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
    let model = load_classifier(&dir.path().join("cam.toml"), &dir.path().join("gradients"));
    KnownAnswer {
        evidence: pixel_box("evidence"),
        decoy: pixel_box("decoy"),
        dir,
        model,
        height,
        width,
    }
}

impl KnownAnswer {
    /// The test image in the model's layout: `background`, and 0.9 in both boxes.
    pub fn image(&self, background: f32) -> Array3<f32> {
        let mut grey = Array2::<f32>::from_elem((self.height, self.width), background);
        for b in [self.evidence, self.decoy] {
            grey.slice_mut(s![b.0..b.1, b.2..b.3]).fill(0.9);
        }
        match self.model.manifest().input.layout {
            Layout::Nhwc => grey.insert_axis(Axis(2)),
            Layout::Nchw => grey.insert_axis(Axis(0)),
        }
    }

    /// The map of `method` for the lesion class, checked for size and sign.
    pub fn explain(&self, method: &dyn Method, image: &Array3<f32>) -> Array2<f32> {
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
