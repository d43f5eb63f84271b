//! Attention methods for Vision Transformers, on the attention probabilities of every block
//! (the manifest's `attention_tensors`, [1, heads, T, T], the class token first):
//!
//! - `rollout` (Abnar and Zuidema, 2020): per block, fuse the heads (mean, max or min),
//!   zero the weakest `discard_ratio` of the entries (never the class token's own row and
//!   column entry), add the identity for the residual path, renormalise rows, and multiply
//!   the blocks from the first to the last. The class token's row, without itself, is the
//!   map on the patch grid. Forward only, and class-agnostic by construction.
//! - `attn-grad` (Chefer et al., 2021): per block, Ā = mean over heads of ReLU(∇A ⊙ A),
//!   the attention weighted by the class logit's gradient, positive part; rolled out as
//!   R ← R + Ā R from R = I. Class specific.

use ndarray::{Array2, ArrayD, Axis, Ix4};
use serde_json::json;

use super::params::{ParamProblem, named, number};
use super::{ExplainError, Method, ModelMap, check_finite, model_failed};
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, Probe};

/// How `rollout` fuses the heads of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadFusion {
    /// Mean over heads.
    Mean,
    /// Max over heads.
    Max,
    /// Min over heads.
    Min,
}

impl<'de> serde::Deserialize<'de> for HeadFusion {
    /// `"mean"`, `"max"` or `"min"`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        const NAMES: &[(&str, HeadFusion)] = &[
            ("mean", HeadFusion::Mean),
            ("max", HeadFusion::Max),
            ("min", HeadFusion::Min),
        ];
        named(deserializer, NAMES)
    }
}

/// `rollout` (`[methods.rollout]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Rollout {
    /// Head fusion.
    pub head_fusion: HeadFusion,
    /// Share of the weakest fused attention entries set to zero per block, in [0, 1).
    pub discard_ratio: f32,
}

impl Default for Rollout {
    /// Mean fusion, nothing discarded: Abnar and Zuidema's original rollout.
    fn default() -> Self {
        Rollout {
            head_fusion: HeadFusion::Mean,
            discard_ratio: 0.0,
        }
    }
}

impl Rollout {
    /// What is wrong with these parameters (keys under `rollout`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        number(
            "rollout.discard_ratio",
            self.discard_ratio,
            |v| (0.0..1.0).contains(&v),
            "must be at least 0 and below 1",
        )
        .into_iter()
        .collect()
    }
}

/// `attn-grad`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttentionGradient;

/// One block's attention of the first sample as heads x T x T.
fn block(tensor: &ArrayD<f32>, method: &'static str) -> Result<ndarray::Array3<f32>, ExplainError> {
    let shape = tensor.shape().to_vec();
    let four = tensor
        .view()
        .into_dimensionality::<Ix4>()
        .ok()
        .filter(|t| t.dim().0 == 1 && t.dim().2 == t.dim().3)
        .ok_or_else(|| ExplainError::Parameters {
            method,
            message: format!(
                "attention tensor of shape {shape:?}; expected [1, heads, tokens, tokens]"
            ),
        })?;
    Ok(four.index_axis(Axis(0), 0).to_owned())
}

/// The class token's row of `relevance` (without itself) as a square grid, brought to the
/// model input's size.
fn class_token_map(
    relevance: &Array2<f32>,
    model: &Classifier,
    method: &'static str,
) -> Result<Array2<f32>, ExplainError> {
    let patches = relevance.dim().0.saturating_sub(1);
    let side = (patches as f64).sqrt().round() as usize;
    if side == 0 || side * side != patches {
        return Err(ExplainError::Parameters {
            method,
            message: format!("{patches} patch tokens do not form a square grid"),
        });
    }
    let row = relevance.row(0);
    let grid = Array2::from_shape_fn((side, side), |(i, j)| row[1 + i * side + j].max(0.0));
    let spec = &model.manifest().input;
    let heat = resize_bilinear(grid.view(), spec.height, spec.width).mapv(|v| v.max(0.0));
    check_finite(method, &heat)?;
    Ok(heat)
}

/// Zeroes the weakest `ratio` of the entries of `fused`, keeping the class token's
/// self-attention.
fn discard_weakest(fused: &mut Array2<f32>, ratio: f32) {
    let count = ((fused.len() as f32) * ratio).floor() as usize;
    if count == 0 {
        return;
    }
    let mut order: Vec<usize> = (0..fused.len()).filter(|&i| i != 0).collect();
    let flat: Vec<f32> = fused.iter().copied().collect();
    order.sort_by(|&a, &b| flat[a].total_cmp(&flat[b]));
    let columns = fused.dim().1;
    for &i in order.iter().take(count) {
        fused[[i / columns, i % columns]] = 0.0;
    }
}

impl Rollout {
    /// The rolled-out relevance T x T of the attention of every block.
    pub fn relevance(&self, blocks: &[ndarray::Array3<f32>]) -> Array2<f32> {
        let tokens = blocks.first().map_or(0, |b| b.dim().1);
        let mut result = Array2::<f32>::eye(tokens);
        for attention in blocks {
            let mut fused = match self.head_fusion {
                HeadFusion::Mean => attention
                    .mean_axis(Axis(0))
                    .unwrap_or_else(|| Array2::zeros((tokens, tokens))),
                HeadFusion::Max => {
                    attention.fold_axis(Axis(0), f32::NEG_INFINITY, |m, &v| m.max(v))
                }
                HeadFusion::Min => attention.fold_axis(Axis(0), f32::INFINITY, |m, &v| m.min(v)),
            };
            discard_weakest(&mut fused, self.discard_ratio);
            let mut with_residual = &fused + &Array2::<f32>::eye(tokens);
            for mut row in with_residual.outer_iter_mut() {
                let total = row.sum();
                if total > 0.0 {
                    row /= total;
                }
            }
            result = with_residual.dot(&result);
        }
        result
    }
}

impl Method for Rollout {
    fn name(&self) -> &'static str {
        "rollout"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::Attention]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ndarray::ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let method = self.name();
        if !(0.0..1.0).contains(&self.discard_ratio) {
            return Err(ExplainError::Parameters {
                method,
                message: format!("discard_ratio {} is not in [0, 1)", self.discard_ratio),
            });
        }
        let run = model
            .probe(Probe::Attention, input.insert_axis(Axis(0)), &[class])
            .map_err(model_failed(method))?;
        let blocks = run
            .values
            .iter()
            .map(|t| block(t, method))
            .collect::<Result<Vec<_>, _>>()?;
        let heat = class_token_map(&self.relevance(&blocks), model, method)?;
        Ok(ModelMap {
            heat,
            target_layer: model.manifest().explain.attention_tensors.last().cloned(),
            parameters: json!({
                "head_fusion": format!("{:?}", self.head_fusion).to_lowercase(),
                "discard_ratio": self.discard_ratio,
                "blocks": blocks.len(),
                "class_specific": false,
            }),
            passes: 1,
            parts: Vec::new(),
        })
    }
}

impl AttentionGradient {
    /// The gradient-weighted rollout T x T of attention and gradient pairs per block.
    pub fn relevance(
        blocks: &[ndarray::Array3<f32>],
        gradients: &[ndarray::Array3<f32>],
    ) -> Array2<f32> {
        let tokens = blocks.first().map_or(0, |b| b.dim().1);
        let mut result = Array2::<f32>::eye(tokens);
        for (attention, gradient) in blocks.iter().zip(gradients) {
            let weighted = (gradient * attention).mapv(|v| v.max(0.0));
            let fused = weighted
                .mean_axis(Axis(0))
                .unwrap_or_else(|| Array2::zeros((tokens, tokens)));
            result = &result + &fused.dot(&result);
        }
        result
    }
}

impl Method for AttentionGradient {
    fn name(&self) -> &'static str {
        "attn-grad"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::AttentionGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ndarray::ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let method = self.name();
        let run = model
            .probe(
                Probe::AttentionGradient,
                input.insert_axis(Axis(0)),
                &[class],
            )
            .map_err(model_failed(method))?;
        let blocks = run
            .values
            .iter()
            .map(|t| block(t, method))
            .collect::<Result<Vec<_>, _>>()?;
        let gradients = run
            .gradients
            .iter()
            .map(|t| block(t, method))
            .collect::<Result<Vec<_>, _>>()?;
        let heat = class_token_map(&Self::relevance(&blocks, &gradients), model, method)?;
        Ok(ModelMap {
            heat,
            target_layer: model.manifest().explain.attention_tensors.last().cloned(),
            parameters: json!({
                "score": "logit",
                "blocks": blocks.len(),
                "fusion": "mean over heads of ReLU(gradient x attention)",
            }),
            passes: 1,
            parts: Vec::new(),
        })
    }
}
