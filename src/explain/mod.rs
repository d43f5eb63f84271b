//! Explanation methods: each maps one model input and a class to a non-negative heat map,
//! which is then brought back to the source slice's rows x columns.
//!
//! Methods work in model-input space (what the network saw) through the [`Method`] trait;
//! [`to_slice`] inverts the preprocessing resize so every map lands on the slice it explains.
//! Methods are looked up by the names of docs/design.md section 2 with [`method_by_name`].
//!
//! - [`gradient`]: `saliency`, `gradxinput`, `smoothgrad`, `intgrad` (input gradients).
//! - [`cam`]: `gradcam`, `gradcampp`, `layercam`, `hirescam` (the feature tensor).
//! - [`attention`]: `rollout`, `attn-grad` (ViT attention probabilities).
//! - [`occlusion`]: `occlusion` (forward passes only).
//! - [`rise`]: `rise` (randomly masked inputs, forward passes only).
//! - [`scorecam`]: `scorecam` (the feature tensor's channels as input masks).
//! - [`sae`]: `sae` (the concepts of a sparse autoencoder that drive the class).
//!
//! Gradients come from gradient models built by [`crate::autodiff`] and run through
//! [`Classifier::probe`]; they differentiate the class logit.

pub mod attention;
pub mod cam;
pub mod gradient;
pub mod occlusion;
pub mod params;
pub mod quality;
pub mod rise;
pub mod sae;
pub mod scorecam;

use ndarray::{Array2, ArrayBase, ArrayView2, ArrayView3, Ix3, RawData};
use snafu::Snafu;

use crate::model::manifest::Layout;
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, ModelError, Probe};

/// Why an explanation could not be made.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum ExplainError {
    /// The model failed during the method's passes.
    #[snafu(display("{method}: {source}"))]
    Model {
        /// The method.
        method: &'static str,
        /// The model's error.
        #[snafu(source(from(ModelError, Box::new)))]
        source: Box<ModelError>,
    },
    /// The method is known but not available in this build.
    #[snafu(display("method {name:?} is not available yet (available: {})", available.join(", ")))]
    Unavailable {
        /// The method asked for.
        name: String,
        /// The methods this build has.
        available: Vec<&'static str>,
    },
    /// The parameters do not make sense for this model.
    #[snafu(display("{method}: {message}"))]
    Parameters {
        /// The method.
        method: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The result is not a usable map (NaN, infinite).
    #[snafu(display("{method}: produced a non-finite heat map"))]
    NonFinite {
        /// The method.
        method: &'static str,
    },
}

/// A heat map in model-input space, with what produced it.
#[derive(Debug, Clone)]
pub struct ModelMap {
    /// Non-negative evidence for the class, model input height x width.
    pub heat: Array2<f32>,
    /// The tensor the method read, when not the input (CAM layers).
    pub target_layer: Option<String>,
    /// The method's parameters, as recorded in reports: its settings, and under the keys of
    /// [`MEASURED_KEYS`] what it measured on this input.
    pub parameters: serde_json::Value,
    /// Model evaluations spent (forward passes of single inputs).
    pub passes: usize,
    /// Named parts of the map, same grid (the `sae` method's leading concepts), shown
    /// individually in the summary image.
    pub parts: Vec<MapPart>,
}

/// Keys of [`ModelMap::parameters`] that record what a method measured on its input (the
/// class probability occlusion started from, integrated gradients' completeness, the
/// concepts an autoencoder found), not how it was set up.
pub const MEASURED_KEYS: &[&str] = &[
    "class_probability",
    "black_probability",
    "channels_scored",
    "constant_channels_skipped",
    "sigma",
    "score_difference",
    "attribution_sum",
    "completeness_error",
    "concepts",
    "mean_score",
];

impl ModelMap {
    /// The method's settings: `parameters` without [`MEASURED_KEYS`]. The same for every
    /// slice a method explains with the same model, so derived series made from it hold
    /// all of a method's slices (one overlay series per source series, model and method).
    pub fn settings(&self) -> serde_json::Value {
        match &self.parameters {
            serde_json::Value::Object(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .filter(|(key, _)| !MEASURED_KEYS.contains(&key.as_str()))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    /// How an overlay names the method that made this map: `method`, or `method, 8-bit
    /// copy` when its passes ran on the model's 8-bit copy (`precision = "int8"`), so that a
    /// reader of the picture knows it approximates the model's own map.
    pub fn label(&self, method: &str) -> String {
        match self.parameters.get("precision").and_then(|p| p.as_str()) {
            Some("int8") => format!("{method}, 8-bit copy"),
            _ => method.to_string(),
        }
    }
}

/// A named part of a map, on the map's grid.
#[derive(Debug, Clone)]
pub struct MapPart {
    /// What it is, `title: detail` (`concept 17: drives glioma (+0.310), 31% inside the
    /// brain`).
    pub name: String,
    /// Whether it lies mostly outside the brain (its tile is flagged).
    pub outside_brain: bool,
    /// Its share of the map.
    pub heat: Array2<f32>,
}

/// An explanation method.
pub trait Method: Send + Sync {
    /// The method's name (docs/design.md section 2).
    fn name(&self) -> &'static str;
    /// Explains class `class` of one preprocessed input (the model's layout, without batch
    /// axis). Deterministic for the same input and parameters.
    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError>;

    /// The derived models the method reads, declared before it runs so that probes can
    /// share one ([`Classifier::plan_probes`]). None for methods of forward passes only.
    fn probes(&self) -> &'static [Probe] {
        &[]
    }
}

/// Raised whenever a method or a quality check gives a different result for the same input
/// and parameters (2: the three-class brain mask and scale-free Grad-CAM++), so that stored
/// measurements (the audit's journal) are made again instead of reused.
pub const MEASUREMENT_REVISION: u32 = 2;

/// Every explanation method, as rules, `--methods` and reports name them (in the order of
/// docs/design.md section 2, which is also the order of the overlay series of a model).
pub const METHOD_NAMES: &[&str] = &[
    "gradcam",
    "gradcampp",
    "layercam",
    "hirescam",
    "saliency",
    "smoothgrad",
    "intgrad",
    "gradxinput",
    "occlusion",
    "rise",
    "scorecam",
    "rollout",
    "attn-grad",
    "sae",
];

/// Methods of docs/design.md section 2 that this build does not have yet.
pub const NOT_YET_AVAILABLE: &[&str] = &[];

/// Methods available in this build, in the order of docs/design.md section 2.
pub fn available() -> Vec<&'static str> {
    METHOD_NAMES
        .iter()
        .copied()
        .filter(|m| !NOT_YET_AVAILABLE.contains(m))
        .collect()
}

/// Every method's parameters, as a site configures them (`[methods.*]`; a section left out
/// takes the method's defaults).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MethodSet {
    /// `occlusion`.
    pub occlusion: occlusion::Occlusion,
    /// `smoothgrad`.
    pub smoothgrad: gradient::SmoothGrad,
    /// `intgrad`.
    pub intgrad: gradient::IntegratedGradients,
    /// `rollout`.
    pub rollout: attention::Rollout,
    /// `rise`.
    pub rise: rise::Rise,
    /// `scorecam`.
    pub scorecam: scorecam::ScoreCam,
    /// `sae`: its autoencoder comes from the model's manifest, not from `[methods]`.
    #[serde(skip)]
    pub sae: sae::SaeMethod,
}

impl MethodSet {
    /// What is wrong with the parameters, keys under `[methods]` (`occlusion.stride`).
    pub fn problems(&self) -> Vec<params::ParamProblem> {
        [
            self.occlusion.problems(),
            self.smoothgrad.problems(),
            self.intgrad.problems(),
            self.rollout.problems(),
            self.rise.problems(),
            self.scorecam.problems(),
        ]
        .concat()
    }
}

/// The method called `name`, configured from the site's method settings.
pub fn method_by_name(name: &str, methods: &MethodSet) -> Result<Box<dyn Method>, ExplainError> {
    use cam::{Cam, CamKind};
    Ok(match name {
        "gradcam" => Box::new(Cam::new(CamKind::GradCam)),
        "gradcampp" => Box::new(Cam::new(CamKind::GradCamPlusPlus)),
        "layercam" => Box::new(Cam::new(CamKind::LayerCam)),
        "hirescam" => Box::new(Cam::new(CamKind::HiResCam)),
        "saliency" => Box::new(gradient::Saliency),
        "gradxinput" => Box::new(gradient::GradientTimesInput),
        "smoothgrad" => Box::new(methods.smoothgrad),
        "intgrad" => Box::new(methods.intgrad),
        "occlusion" => Box::new(methods.occlusion.clone()),
        "rise" => Box::new(methods.rise),
        "scorecam" => Box::new(methods.scorecam),
        "rollout" => Box::new(methods.rollout),
        "attn-grad" => Box::new(attention::AttentionGradient),
        "sae" => Box::new(methods.sae.clone()),
        other => {
            return Err(ExplainError::Unavailable {
                name: other.to_string(),
                available: available(),
            });
        }
    })
}

/// A per-image tensor (the model's layout, no batch axis) viewed channels-last.
pub fn channels_last<S: RawData>(tensor: ArrayBase<S, Ix3>, layout: Layout) -> ArrayBase<S, Ix3> {
    match layout {
        Layout::Nhwc => tensor,
        Layout::Nchw => tensor.permuted_axes([1, 2, 0]),
    }
}

/// The error of a failed model run during `method`.
pub(crate) fn model_failed(method: &'static str) -> impl Fn(ModelError) -> ExplainError {
    move |source| ExplainError::Model {
        method,
        source: Box::new(source),
    }
}

/// Refuses a map with NaN or infinite values.
pub(crate) fn check_finite(method: &'static str, heat: &Array2<f32>) -> Result<(), ExplainError> {
    if heat.iter().all(|v| v.is_finite()) {
        Ok(())
    } else {
        Err(ExplainError::NonFinite { method })
    }
}

/// Brings a model-space map back to the slice's `rows` x `columns` (the inverse of the
/// preprocessing resize; bilinear), keeping it non-negative.
pub fn to_slice(map: ArrayView2<'_, f32>, rows: usize, columns: usize) -> Array2<f32> {
    let mut heat = resize_bilinear(map, rows, columns);
    heat.mapv_inplace(|v| v.max(0.0));
    heat
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(parameters: serde_json::Value) -> ModelMap {
        ModelMap {
            heat: Array2::zeros((2, 2)),
            target_layer: None,
            parameters,
            passes: 1,
            parts: Vec::new(),
        }
    }

    #[test]
    fn a_map_on_the_8_bit_copy_says_so_in_its_label() {
        let int8 = map(json!({"precision": "int8", "class_probability": 0.9}));
        assert_eq!(int8.label("occlusion"), "occlusion, 8-bit copy");
        assert_eq!(
            map(json!({"precision": "float32"})).label("occlusion"),
            "occlusion"
        );
        assert_eq!(map(json!({"layer": "x"})).label("gradcam"), "gradcam");
        // the precision is a setting: it stays in the settings that derive series UIDs
        assert_eq!(int8.settings(), json!({"precision": "int8"}));
    }
}
