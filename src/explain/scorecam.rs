//! Score-CAM (Wang et al., 2020): a CAM whose channel weights are measured, not read from
//! gradients. Each channel A_k of the manifest's feature tensor, upsampled to the input and
//! min-max normalised to [0, 1], masks the input (hidden pixels become black, windowed grey
//! 0, as in `rise`); its weight is how much class probability that masked input keeps above
//! the black image: w_k = p(mask_k ⊙ input) - p(black). map = ReLU(Σ_k w_k A_k), upsampled.
//!
//! One gradient-model run reads the activations (the feature-gradient probe; its gradient is
//! not used), one pass scores the black image, and one pass per channel scores the masks,
//! built and run in chunks of `4 x batch size`. Channels constant over the grid carry no
//! spatial information and are skipped. Layers wider than `max_channels` keep the channels
//! of largest mean activation (DenseNet169's 1664, ViT-B/16's 768).

use ndarray::{Array2, Array3, Array4, ArrayView3, Axis};
use serde_json::json;

use super::cam::feature_grid;
use super::gradient::black;
use super::params::{ParamProblem, at_least};
use super::rise::blend_with_black;
use super::{ExplainError, Method, ModelMap, check_finite, model_failed};
use crate::model::manifest::FeatureLayout;
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, Precision, Probe};

/// The Score-CAM method and its parameters (`[methods.scorecam]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScoreCam {
    /// Most channels scored (one model pass each).
    pub max_channels: usize,
    /// The arithmetic of the masked passes (and of the black one they are compared with):
    /// the model itself, or its 8-bit copy. The channels are always the model's own.
    pub precision: Precision,
}

impl Default for ScoreCam {
    /// 256 channels: the model-pass budget of `rise`, about 60 s per slice on two CPU cores
    /// for VGG16 (half of its 512 channels) and 15 s for DenseNet169 (instead of 1666 passes
    /// for its 1664).
    fn default() -> Self {
        ScoreCam {
            max_channels: 256,
            precision: Precision::Float32,
        }
    }
}

impl ScoreCam {
    /// What is wrong with these parameters (keys under `scorecam`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        at_least("scorecam.max_channels", self.max_channels, 1)
            .into_iter()
            .collect()
    }
}

/// The channels to score: all, or the `limit` of largest mean activation (in channel order).
fn selected_channels(activations: &Array3<f32>, limit: usize) -> Vec<usize> {
    let channels = activations.dim().0;
    let mut order: Vec<usize> = (0..channels).collect();
    if channels > limit {
        let means: Vec<f32> = activations
            .outer_iter()
            .map(|a| a.mean().unwrap_or(0.0))
            .collect();
        order.sort_by(|&i, &j| means[j].total_cmp(&means[i]).then(i.cmp(&j)));
        order.truncate(limit);
        order.sort_unstable();
    }
    order
}

/// A channel upsampled to `height` x `width` and min-max normalised to [0, 1]; `None` when
/// it is constant (no spatial information, and nothing to normalise).
fn normalised_mask(
    activation: ndarray::ArrayView2<'_, f32>,
    height: usize,
    width: usize,
) -> Option<Array2<f32>> {
    let upsampled = resize_bilinear(activation, height, width);
    let (low, high) = upsampled
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let range = high - low;
    // relative to the values' size, so rounding noise on a constant channel is not a mask
    let tolerance = 1e-6 * low.abs().max(high.abs()).max(f32::MIN_POSITIVE);
    if !range.is_finite() || range <= tolerance {
        return None;
    }
    Some(upsampled.mapv(|v| (v - low) / range))
}

impl Method for ScoreCam {
    fn name(&self) -> &'static str {
        "scorecam"
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
        if self.max_channels == 0 {
            return Err(ExplainError::Parameters {
                method,
                message: "max_channels must be at least 1".into(),
            });
        }
        let manifest = model.manifest();
        let spec = &manifest.input;
        let layout = manifest
            .explain
            .feature_layout
            .unwrap_or(FeatureLayout::Nchw);
        let run = model
            .probe(Probe::FeatureGradient, input.insert_axis(Axis(0)), &[class])
            .map_err(model_failed(method))?;
        let values = run.values.first().ok_or_else(|| ExplainError::Parameters {
            method,
            message: "the feature probe returned no feature tensor".into(),
        })?;
        let activations = feature_grid(values, layout, method)?;
        let class_probability = run.probabilities[[0, class]];

        let fill = black(spec);
        // a mask of zeros hides every pixel: the black image
        let mut black_input = Array4::<f32>::zeros(input.insert_axis(Axis(0)).dim());
        let full = Array2::<f32>::zeros((spec.height, spec.width));
        blend_with_black(
            black_input.index_axis_mut(Axis(0), 0),
            input,
            full.view(),
            &fill,
            spec.layout,
        );
        let precision = model.effective_precision(self.precision);
        let black_probability = model
            .predict_at(precision, black_input.view())
            .map_err(model_failed(method))?[[0, class]];

        let channels = selected_channels(&activations, self.max_channels);
        let (_, rows, columns) = activations.dim();
        let mut grid = Array2::<f32>::zeros((rows, columns));
        let mut scored = 0;
        let (d0, d1, d2) = input.dim();
        for group in channels.chunks(4 * model.batch_size()) {
            let masks: Vec<(usize, Array2<f32>)> = group
                .iter()
                .filter_map(|&k| {
                    normalised_mask(activations.index_axis(Axis(0), k), spec.height, spec.width)
                        .map(|mask| (k, mask))
                })
                .collect();
            if masks.is_empty() {
                continue;
            }
            let mut batch = Array4::<f32>::zeros((masks.len(), d0, d1, d2));
            for (item, (_, mask)) in batch.outer_iter_mut().zip(&masks) {
                blend_with_black(item, input, mask.view(), &fill, spec.layout);
            }
            let probabilities = model
                .predict_at(precision, batch.view())
                .map_err(model_failed(method))?;
            for (n, (k, _)) in masks.iter().enumerate() {
                let weight = probabilities[[n, class]] - black_probability;
                grid.scaled_add(weight, &activations.index_axis(Axis(0), *k));
            }
            scored += masks.len();
        }
        grid.mapv_inplace(|v| v.max(0.0));
        let heat = resize_bilinear(grid.view(), spec.height, spec.width).mapv(|v| v.max(0.0));
        check_finite(method, &heat)?;
        let total = activations.dim().0;
        Ok(ModelMap {
            heat,
            target_layer: manifest.explain.feature_tensor.clone(),
            parameters: json!({
                "score": "probability",
                "baseline": "black",
                "max_channels": self.max_channels,
                "precision": precision.name(),
                "channels_total": total,
                "channel_selection": if total > self.max_channels {
                    "largest mean activation"
                } else {
                    "all"
                },
                "channels_scored": scored,
                "constant_channels_skipped": channels.len() - scored,
                "feature_layout": format!("{layout:?}"),
                "grid": [rows, columns],
                "class_probability": class_probability,
                "black_probability": black_probability,
            }),
            passes: scored + 2,
            parts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_layers_keep_the_most_active_channels_in_order() {
        let mut activations = Array3::<f32>::zeros((5, 2, 2));
        for (k, level) in [0.5, 3.0, 1.0, 2.0, 0.0].iter().enumerate() {
            activations.index_axis_mut(Axis(0), k).fill(*level);
        }
        assert_eq!(selected_channels(&activations, 2), vec![1, 3]);
        assert_eq!(selected_channels(&activations, 9), vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn constant_channels_are_no_mask() {
        let flat = Array2::<f32>::from_elem((3, 3), 2.5);
        assert!(normalised_mask(flat.view(), 12, 12).is_none());
        let ramp = Array2::from_shape_fn((3, 3), |(i, j)| (i + j) as f32);
        let mask = normalised_mask(ramp.view(), 12, 12).expect("a mask");
        let (low, high) = mask
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        assert_eq!((low, high), (0.0, 1.0));
    }
}
