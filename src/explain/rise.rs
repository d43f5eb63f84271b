//! RISE (Petsiuk et al., 2018): show the model many randomly masked copies of the input and
//! weight each mask by the class probability it leaves; pixels whose presence keeps the
//! probability up are evidence for the class. Forward passes only.
//!
//! A mask is a random binary `cells` x `cells` grid (each cell kept with probability `keep`),
//! upsampled bilinearly to `(cells + 1)` cell sizes and cropped at a random offset of less
//! than one cell, as in the paper, so mask edges fall anywhere rather than on a fixed
//! lattice. Hidden pixels become black (windowed grey 0), the baseline of `gradxinput` and
//! `intgrad`. The map is Σ_i (p_i - mean p) M_i / (masks · keep): subtracting the mean score
//! removes the constant the plain estimator adds everywhere, so only pixels whose presence
//! raises the probability above average get heat (positive part).
//!
//! Masks are drawn from a seeded [`NoiseSource`] in order, and regenerated per chunk of
//! `4 x batch size`, so the map is deterministic and the masked inputs of a chunk are all
//! that is in memory at once.

use ndarray::{Array2, Array4, ArrayView2, ArrayView3, ArrayViewMut3, Axis, Zip, s};
use serde_json::json;

use super::gradient::black;
use super::params::{ParamProblem, at_least, number};
use super::{ExplainError, Method, ModelMap, channels_last, check_finite, model_failed};
use crate::model::manifest::{InputSpec, Layout};
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, Precision};
use crate::noise::NoiseSource;

/// The RISE method and its parameters (`[methods.rise]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rise {
    /// Random masks, one model pass each.
    pub masks: usize,
    /// Grid cells along each side of a mask.
    pub cells: usize,
    /// Probability that a grid cell is kept, in (0, 1).
    pub keep: f32,
    /// Seed of the masks.
    pub seed: u64,
    /// The arithmetic of the masked passes: the model itself, or its 8-bit copy.
    pub precision: Precision,
}

impl Default for Rise {
    /// 256 masks of a 7 x 7 grid, half the cells kept (the paper's grid and keep).
    ///
    /// The paper uses 4000-8000 masks: 15 minutes or more per slice for VGG16 on this
    /// project's two-core CPU target (0.23 s a pass). Where the map puts its mass settles long
    /// before its detail does: on the known-answer model of the tests (default grid, 16
    /// seeds), 256 masks put 0.74 of the mass within 6 pixels of the evidence on average, 4000 masks 0.82.
    /// 256 passes take about 60 s per slice for VGG16, 80 s for ViT-B/16 and 15 s for
    /// DenseNet169 on the CPU (three times occlusion's default), seconds on a GPU.
    fn default() -> Self {
        Rise {
            masks: 256,
            cells: 7,
            keep: 0.5,
            seed: 0,
            precision: Precision::Float32,
        }
    }
}

impl Rise {
    /// What is wrong with these parameters (keys under `rise`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        [
            at_least("rise.masks", self.masks, 1),
            at_least("rise.cells", self.cells, 1),
            number(
                "rise.keep",
                self.keep,
                |v| v > 0.0 && v < 1.0,
                "must be above 0 and below 1 (the probability that a grid cell is kept)",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Draws the masks of one explanation, in order.
struct MaskSampler {
    noise: NoiseSource,
    cells: usize,
    keep: f64,
    height: usize,
    width: usize,
    cell_height: usize,
    cell_width: usize,
}

impl MaskSampler {
    fn new(rise: &Rise, height: usize, width: usize) -> MaskSampler {
        MaskSampler {
            noise: NoiseSource::new(rise.seed),
            cells: rise.cells,
            keep: f64::from(rise.keep),
            height,
            width,
            cell_height: height.div_ceil(rise.cells),
            cell_width: width.div_ceil(rise.cells),
        }
    }

    /// The next mask, height x width, values in [0, 1].
    fn next_mask(&mut self) -> Array2<f32> {
        let mut grid = Array2::<f32>::zeros((self.cells, self.cells));
        for cell in grid.iter_mut() {
            *cell = if self.noise.uniform() < self.keep {
                1.0
            } else {
                0.0
            };
        }
        let row_shift = self.shift(self.cell_height);
        let column_shift = self.shift(self.cell_width);
        // (cells + 1) cells leave room for a shift of up to one cell past the input
        let upsampled = resize_bilinear(
            grid.view(),
            (self.cells + 1) * self.cell_height,
            (self.cells + 1) * self.cell_width,
        );
        upsampled
            .slice(s![
                row_shift..row_shift + self.height,
                column_shift..column_shift + self.width
            ])
            .to_owned()
    }

    /// A uniform offset in 0..cell.
    fn shift(&mut self, cell: usize) -> usize {
        ((self.noise.uniform() * cell as f64) as usize).min(cell.saturating_sub(1))
    }
}

/// Writes `mask * input + (1 - mask) * black` into `target` (both in the model's layout).
pub(crate) fn blend_with_black(
    target: ArrayViewMut3<'_, f32>,
    input: ArrayView3<'_, f32>,
    mask: ArrayView2<'_, f32>,
    black: &[f32],
    layout: Layout,
) {
    let mut target = channels_last(target, layout);
    let input = channels_last(input, layout);
    for (c, fill) in black.iter().enumerate() {
        Zip::from(target.index_axis_mut(Axis(2), c))
            .and(input.index_axis(Axis(2), c))
            .and(mask)
            .for_each(|out, &x, &m| *out = m * x + (1.0 - m) * fill);
    }
}

impl Rise {
    fn check(&self, spec: &InputSpec) -> Result<(), ExplainError> {
        let side = spec.height.min(spec.width);
        let keep_ok = self.keep > 0.0 && self.keep < 1.0;
        if self.masks == 0 || self.cells == 0 || self.cells > side || !keep_ok {
            return Err(ExplainError::Parameters {
                method: "rise",
                message: format!(
                    "masks {} / cells {} / keep {}: need masks >= 1, 1 <= cells <= {side} \
                     (the input's shorter side) and 0 < keep < 1",
                    self.masks, self.cells, self.keep
                ),
            });
        }
        Ok(())
    }
}

impl Method for Rise {
    fn name(&self) -> &'static str {
        "rise"
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let spec = &model.manifest().input;
        self.check(spec)?;
        let (height, width) = (spec.height, spec.width);
        let fill = black(spec);
        let mut sampler = MaskSampler::new(self, height, width);
        // f64: the map is a small difference of two sums over hundreds of masks
        let mut score_weighted = Array2::<f64>::zeros((height, width));
        let mut mask_total = Array2::<f64>::zeros((height, width));
        let mut score_total = 0.0f64;
        let chunk = 4 * model.batch_size();
        let precision = model.effective_precision(self.precision);
        let mut drawn = 0;
        while drawn < self.masks {
            let count = chunk.min(self.masks - drawn);
            let masks: Vec<Array2<f32>> = (0..count).map(|_| sampler.next_mask()).collect();
            let (d0, d1, d2) = input.dim();
            let mut batch = Array4::<f32>::zeros((count, d0, d1, d2));
            for (item, mask) in batch.outer_iter_mut().zip(&masks) {
                blend_with_black(item, input, mask.view(), &fill, spec.layout);
            }
            let probabilities = model
                .predict_at(precision, batch.view())
                .map_err(model_failed(self.name()))?;
            for (n, mask) in masks.iter().enumerate() {
                let score = f64::from(probabilities[[n, class]]);
                score_total += score;
                Zip::from(&mut score_weighted)
                    .and(&mut mask_total)
                    .and(mask)
                    .for_each(|weighted, total, &m| {
                        *weighted += score * f64::from(m);
                        *total += f64::from(m);
                    });
            }
            drawn += count;
        }
        let mean_score = score_total / self.masks as f64;
        let scale = self.masks as f64 * f64::from(self.keep);
        let heat = Zip::from(&score_weighted)
            .and(&mask_total)
            .map_collect(|weighted, total| {
                (((weighted - mean_score * total) / scale) as f32).max(0.0)
            });
        check_finite(self.name(), &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({
                "score": "probability",
                "masks": self.masks,
                "cells": self.cells,
                "keep": self.keep,
                "seed": self.seed,
                "precision": precision.name(),
                "fill": "black",
                "baseline": "mean score",
                "mean_score": mean_score,
            }),
            passes: self.masks,
            parts: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_are_smooth_seeded_and_keep_about_the_asked_share() {
        let rise = Rise {
            masks: 200,
            cells: 7,
            keep: 0.3,
            seed: 7,
            ..Rise::default()
        };
        let (mut first, mut again) = (
            MaskSampler::new(&rise, 60, 90),
            MaskSampler::new(&rise, 60, 90),
        );
        let mut kept = 0.0f64;
        for _ in 0..rise.masks {
            let mask = first.next_mask();
            assert_eq!(mask.dim(), (60, 90));
            assert!(mask.iter().all(|m| (0.0..=1.0).contains(m)));
            assert_eq!(mask, again.next_mask());
            kept += f64::from(mask.mean().unwrap_or(0.0));
        }
        let share = kept / rise.masks as f64;
        assert!((share - 0.3).abs() < 0.03, "kept {share}");
    }
}
