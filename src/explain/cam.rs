//! Class activation maps on the manifest's feature tensor A (channels x h x w) and the
//! gradient G of the class logit with respect to it:
//!
//! - `gradcam` (Selvaraju et al., 2017): weights w_c = mean over positions of G_c;
//!   map = ReLU(Σ_c w_c A_c).
//! - `gradcampp` (Chattopadhay et al., 2018): w_c = Σ_ij a_ij ReLU(G_cij) with
//!   a = G² / (2 G² + Σ_ij A_c · G³), the closed form for an exponential score;
//!   map = ReLU(Σ_c w_c A_c).
//! - `layercam` (Jiang et al., 2021): map = ReLU(Σ_c ReLU(G_c) ⊙ A_c), per position.
//! - `hirescam` (Draelos and Carin, 2020): map = ReLU(Σ_c G_c ⊙ A_c), per position: what the
//!   class score's first-order change actually attributes to each position.
//!
//! Layouts: NCHW and NHWC feature tensors as they are; ViT tokens [1 + h·w, C] with the class
//! token dropped and the square patch grid recovered from the token count. The h x w map is
//! brought to the model input's size by bilinear interpolation.

use ndarray::{Array2, Array3, ArrayD, ArrayView3, Axis, Zip};
use serde_json::json;

use super::{ExplainError, Method, ModelMap, check_finite, model_failed};
use crate::model::manifest::FeatureLayout;
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, Probe};

/// Which CAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CamKind {
    /// Grad-CAM.
    GradCam,
    /// Grad-CAM++.
    GradCamPlusPlus,
    /// LayerCAM.
    LayerCam,
    /// HiResCAM.
    HiResCam,
}

/// A CAM method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cam {
    /// Which one.
    pub kind: CamKind,
}

impl Cam {
    /// The method of `kind`.
    pub fn new(kind: CamKind) -> Cam {
        Cam { kind }
    }
}

/// One sample's feature tensor as channels x h x w, per the manifest's layout; a tensor
/// that does not fit is an error of `method`'s parameters.
pub(crate) fn feature_grid(
    tensor: &ArrayD<f32>,
    layout: FeatureLayout,
    method: &'static str,
) -> Result<Array3<f32>, ExplainError> {
    crate::model::features::grid(tensor, layout).map_err(|e| ExplainError::Parameters {
        method,
        message: e.to_string(),
    })
}

/// Grad-CAM++'s `2 + ΣA·G` below this in magnitude gives a position no weight instead of
/// an unbounded one.
const ALPHA_FLOOR: f32 = 1e-6;

/// The CAM of activations `a` and gradients `g` (channels x h x w), before upsampling.
pub fn cam(kind: CamKind, a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Array2<f32> {
    let (channels, h, w) = a.dim();
    let positions = (h * w).max(1) as f32;
    let weighted = |weights: &[f32]| {
        let mut map = Array2::<f32>::zeros((h, w));
        for (c, weight) in weights.iter().enumerate() {
            map.scaled_add(*weight, &a.index_axis(Axis(0), c));
        }
        map
    };
    let map = match kind {
        CamKind::GradCam => {
            let weights: Vec<f32> = (0..channels)
                .map(|c| g.index_axis(Axis(0), c).sum() / positions)
                .collect();
            weighted(&weights)
        }
        CamKind::GradCamPlusPlus => {
            let weights: Vec<f32> = (0..channels)
                .map(|c| {
                    let (ac, gc) = (a.index_axis(Axis(0), c), g.index_axis(Axis(0), c));
                    let activation_sum = ac.sum();
                    gc.iter()
                        .map(|&gv| {
                            // a = G² / (G² (2 + ΣA·G)) = 1 / (2 + ΣA·G): free of the
                            // gradient's scale, so the small gradients at a ViT's tokens
                            // (G² far below any fixed epsilon) keep their weight
                            let denominator = 2.0 + activation_sum * gv;
                            let alpha = if gv != 0.0 && denominator.abs() > ALPHA_FLOOR {
                                1.0 / denominator
                            } else {
                                0.0
                            };
                            alpha * gv.max(0.0)
                        })
                        .sum()
                })
                .collect();
            weighted(&weights)
        }
        CamKind::LayerCam | CamKind::HiResCam => {
            let mut map = Array2::<f32>::zeros((h, w));
            for c in 0..channels {
                Zip::from(&mut map)
                    .and(a.index_axis(Axis(0), c))
                    .and(g.index_axis(Axis(0), c))
                    .for_each(|m, &av, &gv| {
                        let gv = if kind == CamKind::LayerCam {
                            gv.max(0.0)
                        } else {
                            gv
                        };
                        *m += gv * av;
                    });
            }
            map
        }
    };
    map.mapv(|v| v.max(0.0))
}

impl Method for Cam {
    fn name(&self) -> &'static str {
        match self.kind {
            CamKind::GradCam => "gradcam",
            CamKind::GradCamPlusPlus => "gradcampp",
            CamKind::LayerCam => "layercam",
            CamKind::HiResCam => "hirescam",
        }
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::FeatureGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let method = self.name();
        let manifest = model.manifest();
        let layout = manifest
            .explain
            .feature_layout
            .unwrap_or(FeatureLayout::Nchw);
        let run = model
            .probe(Probe::FeatureGradient, input.insert_axis(Axis(0)), &[class])
            .map_err(model_failed(method))?;
        let (Some(values), Some(gradients)) = (run.values.first(), run.gradients.first()) else {
            return Err(ExplainError::NonFinite { method });
        };
        let a = feature_grid(values, layout, method)?;
        let g = feature_grid(gradients, layout, method)?;
        let grid = cam(self.kind, a.view(), g.view());
        let heat = resize_bilinear(grid.view(), manifest.input.height, manifest.input.width)
            .mapv(|v| v.max(0.0));
        check_finite(method, &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: manifest.explain.feature_tensor.clone(),
            parameters: json!({
                "score": "logit",
                "feature_layout": format!("{layout:?}"),
                "grid": [grid.dim().0, grid.dim().1],
            }),
            passes: 1,
            parts: Vec::new(),
        })
    }
}
