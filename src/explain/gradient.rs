//! Methods on the gradient of the class logit with respect to the input pixels.
//!
//! - `saliency` (Simonyan et al., 2014): |d logit / d pixel|, the largest over channels.
//! - `gradxinput`: the gradient times the input's difference from the black image, summed
//!   over channels, positive part (evidence for the class). Black is the windowed grey level
//!   0, an image with no signal, the same baseline as `intgrad`, of which this is the
//!   one-step case.
//! - `smoothgrad` (Smilkov et al., 2017): the saliency averaged over `samples` copies of the
//!   input with Gaussian noise of standard deviation `noise` x (max - min of the input),
//!   all in one batch; seeded, so the map is deterministic.
//! - `intgrad` (Sundararajan et al., 2017): (input - black) x the mean gradient at `steps`
//!   midpoints on the straight path from black to the input, summed over channels, positive
//!   part. Completeness: the signed attributions add up to logit(input) - logit(black); the
//!   relative difference is recorded as `completeness_error`.
//!
//! Every method differentiates the logit (the input of a final Softmax), not the probability,
//! whose gradient vanishes when the model is confident.

use ndarray::{Array2, Array3, Array4, ArrayView3, Axis, Zip};
use serde_json::json;

use super::params::{ParamProblem, at_least, number};
use super::{ExplainError, Method, ModelMap, channels_last, check_finite, model_failed};
use crate::model::manifest::InputSpec;
use crate::model::{Classifier, Probe};
use crate::noise::NoiseSource;

/// The model-input value of the black image (windowed grey 0), per channel.
pub fn black(spec: &InputSpec) -> Vec<f32> {
    (0..spec.channels)
        .map(|c| (0.0 - spec.mean[c]) / spec.std[c])
        .collect()
}

/// Input gradients of `inputs` (stacked, the model's layout) for `class`; with the logits.
fn input_gradients(
    model: &Classifier,
    method: &'static str,
    inputs: &Array4<f32>,
    class: usize,
) -> Result<(Array4<f32>, Array2<f32>), ExplainError> {
    let n = inputs.len_of(Axis(0));
    let run = model
        .probe(Probe::InputGradient, inputs.view(), &vec![class; n])
        .map_err(model_failed(method))?;
    let gradient = run
        .gradients
        .into_iter()
        .next()
        .and_then(|g| g.into_dimensionality().ok())
        .ok_or(ExplainError::NonFinite { method })?;
    Ok((gradient, run.scores))
}

/// Max over channels of |g| for one input's gradient (model layout).
fn max_abs_over_channels(gradient: ArrayView3<'_, f32>, spec: &InputSpec) -> Array2<f32> {
    let hwc = channels_last(gradient, spec.layout);
    hwc.map_axis(Axis(2), |v| v.iter().fold(0.0f32, |m, x| m.max(x.abs())))
}

/// Σ over channels of g x (input - black), one input (model layout).
fn attribution(
    gradient: ArrayView3<'_, f32>,
    input: ArrayView3<'_, f32>,
    spec: &InputSpec,
) -> Array2<f32> {
    let baseline = black(spec);
    let (g, x) = (
        channels_last(gradient, spec.layout),
        channels_last(input, spec.layout),
    );
    let mut out = Array2::<f32>::zeros((g.dim().0, g.dim().1));
    for (c, b) in baseline.iter().enumerate() {
        Zip::from(&mut out)
            .and(g.index_axis(Axis(2), c))
            .and(x.index_axis(Axis(2), c))
            .for_each(|o, &gv, &xv| *o += gv * (xv - b));
    }
    out
}

/// The one input as a batch of one.
fn single(input: ArrayView3<'_, f32>) -> Array4<f32> {
    input.to_owned().insert_axis(Axis(0))
}

/// `saliency`: |gradient|, the largest over channels.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Saliency;

impl Method for Saliency {
    fn name(&self) -> &'static str {
        "saliency"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::InputGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let (gradient, _) = input_gradients(model, self.name(), &single(input), class)?;
        let heat = max_abs_over_channels(gradient.index_axis(Axis(0), 0), &model.manifest().input);
        check_finite(self.name(), &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({"score": "logit", "reduction": "max |gradient| over channels"}),
            passes: 1,
            parts: Vec::new(),
        })
    }
}

/// `gradxinput`: gradient x (input - black), summed over channels, positive part.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GradientTimesInput;

impl Method for GradientTimesInput {
    fn name(&self) -> &'static str {
        "gradxinput"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::InputGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let (gradient, _) = input_gradients(model, self.name(), &single(input), class)?;
        let spec = &model.manifest().input;
        let heat = attribution(gradient.index_axis(Axis(0), 0), input, spec).mapv(|v| v.max(0.0));
        check_finite(self.name(), &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({"score": "logit", "baseline": "black", "sign": "positive"}),
            passes: 1,
            parts: Vec::new(),
        })
    }
}

/// `smoothgrad`: saliency averaged over noisy copies of the input (`[methods.smoothgrad]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmoothGrad {
    /// Noisy copies (one batch).
    pub samples: usize,
    /// Noise standard deviation as a fraction of the input's range.
    pub noise: f32,
    /// Seed of the noise.
    pub seed: u64,
}

impl Default for SmoothGrad {
    /// 16 samples at 15% noise: Smilkov et al. find 10-20% noise best and the map settles
    /// after a few tens of samples; 16 keeps one slice at one batch of 16.
    fn default() -> Self {
        SmoothGrad {
            samples: 16,
            noise: 0.15,
            seed: 0,
        }
    }
}

impl SmoothGrad {
    /// What is wrong with these parameters (keys under `smoothgrad`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        [
            at_least("smoothgrad.samples", self.samples, 1),
            number(
                "smoothgrad.noise",
                self.noise,
                |v| v >= 0.0,
                "must be a finite number, at least 0 (a fraction of the input's range)",
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Method for SmoothGrad {
    fn name(&self) -> &'static str {
        "smoothgrad"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::InputGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        if self.samples == 0 || self.noise.is_nan() || self.noise < 0.0 {
            return Err(ExplainError::Parameters {
                method: self.name(),
                message: format!(
                    "samples {} / noise {}: need samples >= 1 and noise >= 0",
                    self.samples, self.noise
                ),
            });
        }
        let (low, high) = input
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        let sigma = self.noise * (high - low).max(f32::EPSILON);
        let mut noise = NoiseSource::new(self.seed);
        let (c, h, w) = input.dim();
        let mut batch = Array4::<f32>::zeros((self.samples, c, h, w));
        for mut sample in batch.outer_iter_mut() {
            Zip::from(&mut sample)
                .and(&input)
                .for_each(|s, &x| *s = x + sigma * noise.normal());
        }
        let (gradients, _) = input_gradients(model, self.name(), &batch, class)?;
        let spec = &model.manifest().input;
        let mut heat = Array2::<f32>::zeros((spec.height, spec.width));
        for gradient in gradients.outer_iter() {
            heat += &max_abs_over_channels(gradient, spec);
        }
        heat /= self.samples as f32;
        check_finite(self.name(), &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({
                "score": "logit",
                "samples": self.samples,
                "noise": self.noise,
                "sigma": sigma,
                "seed": self.seed,
            }),
            passes: self.samples,
            parts: Vec::new(),
        })
    }
}

/// `intgrad`: Integrated Gradients from the black image (`[methods.intgrad]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntegratedGradients {
    /// Points on the path (midpoint rule), in one batch with the input and the baseline.
    pub steps: usize,
}

impl Default for IntegratedGradients {
    /// 32 midpoints: completeness within a few percent on the CNNs and ViTs we ship, at the
    /// cost of two batches of 16 on the CPU.
    fn default() -> Self {
        IntegratedGradients { steps: 32 }
    }
}

impl IntegratedGradients {
    /// What is wrong with these parameters (keys under `intgrad`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        at_least("intgrad.steps", self.steps, 1)
            .into_iter()
            .collect()
    }
}

/// The result of Integrated Gradients, with its completeness check.
#[derive(Debug, Clone)]
pub struct Attributions {
    /// Signed attributions per pixel (summed over channels), model-input height x width.
    pub signed: Array2<f32>,
    /// logit(input) - logit(black).
    pub score_difference: f32,
    /// Σ attributions.
    pub total: f32,
}

impl Attributions {
    /// |Σ attributions - score difference| / |score difference|.
    pub fn completeness_error(&self) -> f32 {
        (self.total - self.score_difference).abs() / self.score_difference.abs().max(1e-6)
    }
}

impl IntegratedGradients {
    /// The signed attributions of `class` for `input`.
    pub fn attributions(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<Attributions, ExplainError> {
        const METHOD: &str = "intgrad";
        if self.steps == 0 {
            return Err(ExplainError::Parameters {
                method: METHOD,
                message: "steps must be at least 1".into(),
            });
        }
        let spec = &model.manifest().input;
        let baseline = black(spec);
        let mut black_input = Array3::<f32>::zeros(input.dim());
        {
            let mut hwc = channels_last(black_input.view_mut(), spec.layout);
            for (c, b) in baseline.iter().enumerate() {
                hwc.index_axis_mut(Axis(2), c).fill(*b);
            }
        }
        let (c, h, w) = input.dim();
        // steps path points, then the input and the baseline themselves (their logits)
        let mut batch = Array4::<f32>::zeros((self.steps + 2, c, h, w));
        for (k, mut point) in batch.outer_iter_mut().enumerate() {
            let alpha = match k {
                k if k < self.steps => (k as f32 + 0.5) / self.steps as f32,
                k if k == self.steps => 1.0,
                _ => 0.0,
            };
            Zip::from(&mut point)
                .and(&input)
                .and(&black_input)
                .for_each(|p, &x, &b| *p = b + alpha * (x - b));
        }
        let (gradients, scores) = input_gradients(model, METHOD, &batch, class)?;
        let mean_gradient = gradients
            .slice(ndarray::s![..self.steps, .., .., ..])
            .mean_axis(Axis(0))
            .ok_or(ExplainError::NonFinite { method: METHOD })?;
        let signed = attribution(mean_gradient.view(), input, spec);
        let score_difference = scores[[self.steps, class]] - scores[[self.steps + 1, class]];
        let total = signed.sum();
        Ok(Attributions {
            signed,
            score_difference,
            total,
        })
    }
}

impl Method for IntegratedGradients {
    fn name(&self) -> &'static str {
        "intgrad"
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::InputGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let attributions = self.attributions(model, input, class)?;
        let heat = attributions.signed.mapv(|v| v.max(0.0));
        check_finite(self.name(), &heat)?;
        Ok(ModelMap {
            heat,
            target_layer: None,
            parameters: json!({
                "score": "logit",
                "baseline": "black",
                "steps": self.steps,
                "rule": "midpoint",
                "sign": "positive",
                "score_difference": attributions.score_difference,
                "attribution_sum": attributions.total,
                "completeness_error": attributions.completeness_error(),
            }),
            passes: self.steps + 2,
            parts: Vec::new(),
        })
    }
}
