//! Occlusion (Zeiler and Fergus, 2014): hide one square patch of the input at a time and
//! measure how much the class probability drops; pixels whose hiding hurts the prediction
//! are evidence for it.
//!
//! Patches slide over the model input with a stride, the last row and column of patches
//! aligned to the far edges so every pixel is covered. A pixel's heat is the mean drop over
//! the patches that covered it, each weighted by a smooth window (sin^2 along each axis,
//! highest at the patch centre) so the map has no patch-shaped steps; rises (hiding the
//! region helps the class) are clipped to zero, since the map shows evidence for the class.
//! Occluded inputs are batched, at most `4 x batch size` of them in memory at once.
//!
//! Defaults (patch 48, stride 24 on a 224-240 pixel input): a patch of about a fifth of the
//! image width covers a typical tumour on an axial slice, half-overlapping patches give a
//! 9 x 9 grid (82 model passes per slice) whose averaging smooths patch borders.

use ndarray::{Array2, Array3, ArrayView3, Axis, s};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::json;

use super::params::{ParamProblem, at_least};
use super::{ExplainError, Method, ModelMap, channels_last, model_failed};
use crate::model::manifest::Layout;
use crate::model::{Classifier, Precision};

/// The fill of an occluded patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// The mean of the model input, per channel (hides structure, keeps brightness).
    Mean,
    /// Black: the windowed grey level 0.
    Zero,
    /// This windowed grey level, in [0, 1].
    Value(f32),
}

/// What a baseline may be written as.
const BASELINE_EXPECTED: &str = "\"mean\", \"zero\" or a grey level in [0, 1]";

impl<'de> Deserialize<'de> for Baseline {
    /// `"mean"`, `"zero"` or a number in [0, 1].
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fill;
        impl Visitor<'_> for Fill {
            type Value = Baseline;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(BASELINE_EXPECTED)
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Baseline, E> {
                match text {
                    "mean" => Ok(Baseline::Mean),
                    "zero" => Ok(Baseline::Zero),
                    _ => Err(E::custom(format!("must be {BASELINE_EXPECTED}"))),
                }
            }
            fn visit_f64<E: de::Error>(self, value: f64) -> Result<Baseline, E> {
                if (0.0..=1.0).contains(&value) {
                    Ok(Baseline::Value(value as f32))
                } else {
                    Err(E::custom(format!("must be {BASELINE_EXPECTED}")))
                }
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Baseline, E> {
                self.visit_f64(value as f64)
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Baseline, E> {
                self.visit_f64(value as f64)
            }
        }
        deserializer.deserialize_any(Fill)
    }
}

/// The occlusion method and its parameters (in model-input pixels): `[methods.occlusion]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Occlusion {
    /// Patch side.
    pub patch: usize,
    /// Distance between patch origins.
    pub stride: usize,
    /// Fill of the occluded patch.
    pub baseline: Baseline,
    /// The arithmetic of the occluded passes (and of the unoccluded one they are compared
    /// with): the model itself, or its 8-bit copy.
    pub precision: Precision,
}

impl Occlusion {
    /// What is wrong with these parameters (keys under `occlusion`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        let mut problems: Vec<ParamProblem> = [
            at_least("occlusion.patch", self.patch, 1),
            at_least("occlusion.stride", self.stride, 1),
        ]
        .into_iter()
        .flatten()
        .collect();
        if self.stride > self.patch && self.patch >= 1 {
            problems.push(ParamProblem {
                key: "occlusion.stride".into(),
                value: self.stride.to_string(),
                message: format!(
                    "stride {} is larger than patch {}: parts of the image would never be \
                     occluded",
                    self.stride, self.patch
                ),
            });
        }
        problems
    }
}

impl Default for Occlusion {
    fn default() -> Self {
        Occlusion {
            patch: 48,
            stride: 24,
            baseline: Baseline::Mean,
            precision: Precision::Float32,
        }
    }
}

/// The weight of each pixel of a patch: sin^2 along each axis, sampled at pixel centres, so
/// it never reaches zero inside the patch and peaks at its centre.
fn smooth_window(rows: usize, columns: usize) -> Array2<f32> {
    let along = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| {
                (std::f32::consts::PI * (i as f32 + 0.5) / n as f32)
                    .sin()
                    .powi(2)
            })
            .collect()
    };
    let (r, c) = (along(rows), along(columns));
    Array2::from_shape_fn((rows, columns), |(i, j)| r[i] * c[j])
}

/// Patch origins along an axis of `size` pixels: every `stride`, plus one flush with the end.
pub fn origins(size: usize, patch: usize, stride: usize) -> Vec<usize> {
    if patch >= size {
        return vec![0];
    }
    let mut starts: Vec<usize> = (0..=size - patch).step_by(stride.max(1)).collect();
    if starts.last() != Some(&(size - patch)) {
        starts.push(size - patch);
    }
    starts
}

impl Method for Occlusion {
    fn name(&self) -> &'static str {
        "occlusion"
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let spec = &model.manifest().input;
        let (height, width) = (spec.height, spec.width);
        if self.patch == 0 || self.stride == 0 || self.stride > self.patch {
            return Err(ExplainError::Parameters {
                method: "occlusion",
                message: format!(
                    "patch {} / stride {}: need 1 <= stride <= patch",
                    self.patch, self.stride
                ),
            });
        }
        // channel-last view of the input, whatever the model's layout
        let hwc = channels_last(input.view(), spec.layout);
        let fill: Vec<f32> = (0..spec.channels)
            .map(|c| match self.baseline {
                Baseline::Mean => hwc.index_axis(Axis(2), c).mean().unwrap_or(0.0),
                Baseline::Zero => (0.0 - spec.mean[c]) / spec.std[c],
                Baseline::Value(v) => (v - spec.mean[c]) / spec.std[c],
            })
            .collect();

        let model_error = model_failed("occlusion");
        let precision = model.effective_precision(self.precision);
        let original = model
            .predict_at(precision, input.insert_axis(Axis(0)))
            .map_err(&model_error)?[[0, class]];
        let rows = origins(height, self.patch, self.stride);
        let columns = origins(width, self.patch, self.stride);
        let patches: Vec<(usize, usize)> = rows
            .iter()
            .flat_map(|r| columns.iter().map(move |c| (*r, *c)))
            .collect();

        let (patch_rows, patch_columns) = (self.patch.min(height), self.patch.min(width));
        let window_weights = smooth_window(patch_rows, patch_columns);
        let mut drop_sum = Array2::<f32>::zeros((height, width));
        let mut covered = Array2::<f32>::zeros((height, width));
        let chunk = model.batch_size() * 4;
        for group in patches.chunks(chunk) {
            let mut batch = ndarray::Array4::<f32>::zeros((
                group.len(),
                input.dim().0,
                input.dim().1,
                input.dim().2,
            ));
            for (n, (row, column)) in group.iter().enumerate() {
                let mut occluded: Array3<f32> = input.to_owned();
                {
                    let mut view = match spec.layout {
                        Layout::Nhwc => occluded.view_mut(),
                        Layout::Nchw => occluded.view_mut().permuted_axes([1, 2, 0]),
                    };
                    let mut region = view.slice_mut(s![
                        *row..*row + self.patch.min(height),
                        *column..*column + self.patch.min(width),
                        ..
                    ]);
                    for (c, value) in fill.iter().enumerate() {
                        region.index_axis_mut(Axis(2), c).fill(*value);
                    }
                }
                batch.index_axis_mut(Axis(0), n).assign(&occluded);
            }
            let probabilities = model
                .predict_at(precision, batch.view())
                .map_err(&model_error)?;
            for (n, (row, column)) in group.iter().enumerate() {
                let drop = original - probabilities[[n, class]];
                let window = s![*row..*row + patch_rows, *column..*column + patch_columns];
                drop_sum.slice_mut(window).scaled_add(drop, &window_weights);
                covered.slice_mut(window).scaled_add(1.0, &window_weights);
            }
        }
        let heat = ndarray::Zip::from(&drop_sum)
            .and(&covered)
            .map_collect(|sum, count| {
                if *count > 0.0 {
                    (sum / count).max(0.0)
                } else {
                    0.0
                }
            });
        if heat.iter().any(|v| !v.is_finite()) {
            return Err(ExplainError::NonFinite {
                method: "occlusion",
            });
        }
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({
                "patch": self.patch,
                "stride": self.stride,
                "baseline": match self.baseline {
                    Baseline::Mean => json!("mean"),
                    Baseline::Zero => json!("zero"),
                    Baseline::Value(v) => json!(v),
                },
                "score": "probability",
                "precision": precision.name(),
                "class_probability": original,
            }),
            passes: patches.len() + 1,
            parts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_cover_the_whole_axis() {
        assert_eq!(
            origins(240, 48, 24),
            vec![0, 24, 48, 72, 96, 120, 144, 168, 192]
        );
        assert_eq!(
            origins(224, 48, 24),
            vec![0, 24, 48, 72, 96, 120, 144, 168, 176]
        );
        assert_eq!(origins(30, 48, 24), vec![0]);
        for (size, patch, stride) in [(240, 32, 16), (224, 40, 13), (17, 5, 5)] {
            let starts = origins(size, patch, stride);
            assert_eq!(starts[0], 0);
            assert_eq!(starts.last().map(|s| s + patch), Some(size));
            assert!(
                starts
                    .windows(2)
                    .all(|w| w[1] > w[0] && w[1] - w[0] <= stride)
            );
        }
    }
}
