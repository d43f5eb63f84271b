//! Explanation methods: each maps one model input and a class to a non-negative heat map,
//! which is then brought back to the source slice's rows x columns.
//!
//! Methods work in model-input space (what the network saw) through the [`Method`] trait;
//! [`to_slice`] inverts the preprocessing resize so every map lands on the slice it explains.
//! Methods are looked up by the names of DESIGN.md 4.1 with [`method_by_name`].

pub mod occlusion;

use ndarray::{Array2, ArrayView2, ArrayView3};
use snafu::Snafu;

use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, ModelError};

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
    /// The method's parameters, as recorded in reports.
    pub parameters: serde_json::Value,
    /// Model evaluations spent (forward passes of single inputs).
    pub passes: usize,
}

/// An explanation method.
pub trait Method: Send + Sync {
    /// The method's name (DESIGN.md 4.1).
    fn name(&self) -> &'static str;
    /// Explains class `class` of one preprocessed input (the model's layout, without batch
    /// axis). Deterministic for the same input and parameters.
    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError>;
}

/// Methods available in this build.
pub const AVAILABLE: &[&str] = &["occlusion"];

/// The method called `name`, configured from the site's method settings.
pub fn method_by_name(
    name: &str,
    occlusion: &occlusion::Occlusion,
) -> Result<Box<dyn Method>, ExplainError> {
    match name {
        "occlusion" => Ok(Box::new(occlusion.clone())),
        other => Err(ExplainError::Unavailable {
            name: other.to_string(),
            available: AVAILABLE.to_vec(),
        }),
    }
}

/// Brings a model-space map back to the slice's `rows` x `columns` (the inverse of the
/// preprocessing resize; bilinear), keeping it non-negative.
pub fn to_slice(map: ArrayView2<'_, f32>, rows: usize, columns: usize) -> Array2<f32> {
    let mut heat = resize_bilinear(map, rows, columns);
    heat.mapv_inplace(|v| v.max(0.0));
    heat
}
