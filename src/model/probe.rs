//! Probes: what explanation methods read besides the class scores, the gradient at the input,
//! the feature tensor and its gradient, the attention probabilities (and their gradients).
//!
//! A probe runs a derived model: a gradient model of the [`crate::autodiff`] transform, or
//! the forward model with extra outputs. Each is built once per model file and request,
//! stored in the on-disk [`GradientCache`], and opened once per [`Classifier`] on first use.
//! The score differentiated is the transform's default: the logits (the input of a final
//! Softmax when the model outputs probabilities).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayD, ArrayView4, Axis, IxDyn, s};
use ort::value::TensorRef;

use super::classifier::{Classifier, ModelError, softmax_in_place};
use super::manifest::OutputKind;
use super::runtime::LoadedSession;
use crate::autodiff::{GRAD_PREFIX, GRAD_SEED, GradRequest};

/// What a method reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// d logit / d input.
    InputGradient,
    /// The manifest's feature tensor and d logit / d it.
    FeatureGradient,
    /// Every attention tensor of the manifest and d logit / d it.
    AttentionGradient,
    /// Every attention tensor, forward only.
    Attention,
}

impl Probe {
    /// Whether the probe runs a gradient model (and so needs a class per input).
    pub fn differentiates(self) -> bool {
        !matches!(self, Probe::Attention)
    }
}

/// The result of a probe over a batch of inputs.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// Class probabilities `[N, labels]` (softmax applied to logits, as in `predict`).
    pub probabilities: Array2<f32>,
    /// The differentiated scores `[N, labels]` (the logits); for [`Probe::Attention`], the
    /// model's output as it is.
    pub scores: Array2<f32>,
    /// The probed tensors' values, `[N, ...]` each, in the order of [`Classifier::probed`]
    /// (empty for [`Probe::InputGradient`]: the input is the caller's).
    pub values: Vec<ArrayD<f32>>,
    /// d logit[class] / d tensor, `[N, ...]` each (empty for [`Probe::Attention`]).
    pub gradients: Vec<ArrayD<f32>>,
}

/// The sessions of a classifier's probes, opened on first use.
#[derive(Default)]
pub(crate) struct ProbeSessions {
    sessions: Mutex<HashMap<Probe, ProbeSession>>,
}

/// An open derived model and the name of its score output.
#[derive(Clone)]
struct ProbeSession {
    loaded: Arc<Mutex<LoadedSession>>,
    score: String,
}

impl Classifier {
    /// The tensors `probe` reads (their values and gradients come back in this order).
    pub fn probed(&self, probe: Probe) -> Result<Vec<String>, ModelError> {
        let explain = &self.manifest().explain;
        let missing = |key: &str, what: &str| ModelError::Graph {
            manifest: self.manifest().path.clone(),
            key: key.to_string(),
            message: format!("not set: {what} needs it"),
        };
        match probe {
            Probe::InputGradient => Ok(vec![self.manifest().input.name.clone()]),
            Probe::FeatureGradient => explain
                .feature_tensor
                .clone()
                .map(|t| vec![t])
                .ok_or_else(|| missing("explain.feature_tensor", "a CAM method")),
            Probe::AttentionGradient | Probe::Attention => {
                if explain.attention_tensors.is_empty() {
                    Err(missing(
                        "explain.attention_tensors",
                        "an attention method (ViT models only)",
                    ))
                } else {
                    Ok(explain.attention_tensors.clone())
                }
            }
        }
    }

    /// Runs `probe` on preprocessed `inputs` (as for [`Classifier::predict`]), differentiating
    /// the logit of `classes[n]` for input `n`, in batches of at most the batch size.
    pub fn probe(
        &self,
        probe: Probe,
        inputs: ArrayView4<'_, f32>,
        classes: &[usize],
    ) -> Result<ProbeRun, ModelError> {
        let n = inputs.len_of(Axis(0));
        let labels = self.manifest().labels.len();
        let failed = |message: String| ModelError::Inference {
            model: self.manifest().name.clone(),
            message,
        };
        if classes.len() != n || classes.iter().any(|&c| c >= labels) {
            return Err(failed(format!(
                "probe: {n} inputs need {n} classes below {labels}, got {classes:?}"
            )));
        }
        let tensors = self.probed(probe)?;
        let opened = self.probe_session(probe, &tensors)?;
        let score_name = if opened.score.is_empty() {
            self.manifest().output.name.clone()
        } else {
            opened.score.clone()
        };
        let mut session = opened
            .loaded
            .lock()
            .map_err(|_| failed("a previous probe panicked".into()))?;
        let input_name = self.manifest().input.name.as_str();
        let output_name = self.manifest().output.name.as_str();
        let grad_names: Vec<String> = tensors
            .iter()
            .map(|t| format!("{GRAD_PREFIX}{t}"))
            .collect();
        let mut probabilities = Array2::<f32>::zeros((n, labels));
        let mut all_scores = Array2::<f32>::zeros((n, labels));
        let mut values: Vec<Vec<ArrayD<f32>>> = Vec::new();
        let mut gradients: Vec<Vec<ArrayD<f32>>> = Vec::new();
        for start in (0..n).step_by(self.batch_size()) {
            let end = (start + self.batch_size()).min(n);
            let chunk = inputs
                .slice(s![start..end, .., .., ..])
                .as_standard_layout()
                .into_owned();
            let input = TensorRef::from_array_view(&chunk).map_err(|e| failed(e.to_string()))?;
            let mut seed = Array2::<f32>::zeros((end - start, labels));
            for (row, &class) in classes[start..end].iter().enumerate() {
                seed[[row, class]] = 1.0;
            }
            let seed_tensor =
                TensorRef::from_array_view(&seed).map_err(|e| failed(e.to_string()))?;
            let outputs = if probe.differentiates() {
                session
                    .session
                    .run(ort::inputs![input_name => input, GRAD_SEED => seed_tensor])
            } else {
                session.session.run(ort::inputs![input_name => input])
            }
            .map_err(|e| failed(e.to_string()))?;
            let extract = |name: &str| -> Result<ArrayD<f32>, ModelError> {
                Ok(outputs[name]
                    .try_extract_array::<f32>()
                    .map_err(|e| failed(format!("{name}: {e}")))?
                    .to_owned())
            };
            let as_matrix = |array: ArrayD<f32>| {
                array
                    .into_shape_with_order(IxDyn(&[end - start, labels]))
                    .map_err(|e| failed(format!("output shape: {e}")))
            };
            let scores = as_matrix(extract(output_name)?)?;
            all_scores
                .slice_mut(s![start..end, ..])
                .assign(&as_matrix(extract(&score_name)?)?);
            let mut target = probabilities.slice_mut(s![start..end, ..]);
            target.assign(&scores);
            if self.manifest().output.kind == OutputKind::Logits {
                for mut row in target.outer_iter_mut() {
                    softmax_in_place(row.as_slice_mut().unwrap_or(&mut []));
                }
            }
            if probe != Probe::InputGradient {
                values.push(
                    tensors
                        .iter()
                        .map(|t| extract(t))
                        .collect::<Result<_, _>>()?,
                );
            }
            if probe.differentiates() {
                gradients.push(
                    grad_names
                        .iter()
                        .map(|t| extract(t))
                        .collect::<Result<_, _>>()?,
                );
            }
        }
        Ok(ProbeRun {
            probabilities,
            scores: all_scores,
            values: concatenate(values).map_err(failed)?,
            gradients: concatenate(gradients).map_err(failed)?,
        })
    }

    /// The session of `probe`, building (or finding in the cache) its model on first use.
    fn probe_session(&self, probe: Probe, tensors: &[String]) -> Result<ProbeSession, ModelError> {
        let failed = |message: String| ModelError::Inference {
            model: self.manifest().name.clone(),
            message,
        };
        let mut sessions = self
            .probes()
            .sessions
            .lock()
            .map_err(|_| failed("a previous probe panicked".into()))?;
        if let Some(session) = sessions.get(&probe) {
            return Ok(session.clone());
        }
        let onnx = &self.manifest().onnx;
        let cached = if probe.differentiates() {
            let request = GradRequest::new(tensors.to_vec()).exposing_score();
            self.gradient_cache()
                .get_or_build(self.runtime(), onnx, &request)
        } else {
            self.gradient_cache().get_or_build_taps(onnx, tensors)
        }
        .map_err(|source| ModelError::Gradient {
            model: self.manifest().name.clone(),
            source: Box::new(source),
        })?;
        let path = cached.path;
        let loaded = self
            .runtime()
            .session(&path)
            .map_err(|source| ModelError::Runtime { source })?;
        tracing::debug!(model = %self.manifest().name, ?probe, path = %path.display(), "probe ready");
        let session = ProbeSession {
            loaded: Arc::new(Mutex::new(loaded)),
            score: cached.score,
        };
        sessions.insert(probe, session.clone());
        Ok(session)
    }
}

/// Concatenates per-batch lists of tensors along axis 0.
fn concatenate(parts: Vec<Vec<ArrayD<f32>>>) -> Result<Vec<ArrayD<f32>>, String> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    (0..first.len())
        .map(|k| {
            let views: Vec<_> = parts.iter().map(|p| p[k].view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| format!("probe batches: {e}"))
        })
        .collect()
}
