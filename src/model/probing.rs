//! How a [`Classifier`] runs its probes (see [`super::probe`]): the derived model of each
//! probe opened once, batches run, recent single-input runs reused.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, Array4, ArrayD, ArrayView4, Axis, IxDyn, s};
use ort::value::TensorRef;

use super::classifier::{Classifier, ModelError, softmax_in_place};
use super::manifest::OutputKind;
use super::probe::{Probe, ProbeRun, ProbeSession, RECENT_RUNS, RecentRun};
use crate::autodiff::{GRAD_PREFIX, GRAD_SEED, GradRequest};

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

    /// Declares probes that the methods about to run will use. When both the input
    /// gradient and the feature gradient are planned, one gradient model differentiates
    /// with respect to both: one session to build instead of two, and one backward pass per
    /// slice serves a CAM method and a gradient method alike.
    pub fn plan_probes(&self, probes: impl IntoIterator<Item = Probe>) {
        if let Ok(mut planned) = self.probes().planned.lock() {
            planned.extend(probes);
        }
    }

    /// Builds (or finds in the cache) and opens the derived models of the planned probes
    /// ahead of their first use, so that another thread can do it while this model
    /// classifies. A failure is left for the probe itself to report, with its method.
    pub fn prepare_probes(&self) {
        let planned: Vec<Probe> = match self.probes().planned.lock() {
            Ok(planned) => planned.iter().copied().collect(),
            Err(_) => return,
        };
        for probe in planned {
            let prepared = self
                .probed(probe)
                .and_then(|tensors| self.probe_session(probe, &tensors));
            if let Err(error) = prepared {
                tracing::debug!(model = %self.manifest().name, ?probe, %error, "probe not prepared");
            }
        }
    }

    /// How many times a derived model has run (a probe answered from a derived model's
    /// recent runs does not count).
    pub fn probe_runs(&self) -> usize {
        self.probes().runs.load(Ordering::Relaxed)
    }

    /// The tensors the derived model serving `probe` differentiates or exposes: the probe's
    /// own, or the input and the feature tensor together when both gradients are planned.
    fn served(&self, probe: Probe, tensors: &[String]) -> Vec<String> {
        let planned = self
            .probes()
            .planned
            .lock()
            .map(|p| p.contains(&Probe::InputGradient) && p.contains(&Probe::FeatureGradient))
            .unwrap_or(false);
        match (probe, &self.manifest().explain.feature_tensor) {
            (Probe::InputGradient | Probe::FeatureGradient, Some(feature)) if planned => {
                vec![self.manifest().input.name.clone(), feature.clone()]
            }
            _ => tensors.to_vec(),
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
        let failed = |message: String| self.inference_error(message);
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
            let outputs = self.run_probe(probe, &opened, chunk, &classes[start..end])?;
            let take = |name: &str| -> Result<ArrayD<f32>, ModelError> {
                outputs
                    .get(name)
                    .cloned()
                    .ok_or_else(|| failed(format!("the derived model has no output {name}")))
            };
            let as_matrix = |array: ArrayD<f32>| {
                array
                    .into_shape_with_order(IxDyn(&[end - start, labels]))
                    .map_err(|e| failed(format!("output shape: {e}")))
            };
            let scores = as_matrix(take(output_name)?)?;
            all_scores
                .slice_mut(s![start..end, ..])
                .assign(&as_matrix(take(&score_name)?)?);
            let mut target = probabilities.slice_mut(s![start..end, ..]);
            target.assign(&scores);
            if self.manifest().output.kind == OutputKind::Logits {
                for mut row in target.outer_iter_mut() {
                    softmax_in_place(row.as_slice_mut().unwrap_or(&mut []));
                }
            }
            if probe != Probe::InputGradient {
                values.push(tensors.iter().map(|t| take(t)).collect::<Result<_, _>>()?);
            }
            if probe.differentiates() {
                gradients.push(
                    grad_names
                        .iter()
                        .map(|t| take(t))
                        .collect::<Result<_, _>>()?,
                );
            }
        }
        Ok(ProbeRun {
            probabilities,
            scores: all_scores,
            values: concatenate(values).map_err(|e| failed(format!("probe batches: {e}")))?,
            gradients: concatenate(gradients).map_err(|e| failed(format!("probe batches: {e}")))?,
        })
    }

    /// Every output of `opened` for one batch, from its recent runs when the batch is one
    /// input it has already seen with the same class.
    fn run_probe(
        &self,
        probe: Probe,
        opened: &ProbeSession,
        chunk: Array4<f32>,
        classes: &[usize],
    ) -> Result<HashMap<String, ArrayD<f32>>, ModelError> {
        let failed = |message: String| self.inference_error(message);
        let single = (classes.len() == 1).then(|| chunk.as_slice().unwrap_or(&[]));
        if let Some(input) = single
            && let Ok(recent) = opened.recent.lock()
            && let Some(run) = recent
                .iter()
                .find(|r| r.class == classes[0] && r.input == input)
        {
            return Ok(run.outputs.clone());
        }
        let labels = self.manifest().labels.len();
        let mut session = opened
            .loaded
            .lock()
            .map_err(|_| failed("a previous probe panicked".into()))?;
        let input_name = self.manifest().input.name.as_str();
        let input = TensorRef::from_array_view(&chunk).map_err(|e| failed(e.to_string()))?;
        let mut seed = Array2::<f32>::zeros((classes.len(), labels));
        for (row, &class) in classes.iter().enumerate() {
            seed[[row, class]] = 1.0;
        }
        let seed_tensor = TensorRef::from_array_view(&seed).map_err(|e| failed(e.to_string()))?;
        let names: Vec<String> = session
            .session
            .outputs()
            .iter()
            .map(|o| o.name().to_string())
            .collect();
        let outputs = if probe.differentiates() {
            session
                .session
                .run(ort::inputs![input_name => input, GRAD_SEED => seed_tensor])
        } else {
            session.session.run(ort::inputs![input_name => input])
        }
        .map_err(|e| failed(e.to_string()))?;
        self.probes().runs.fetch_add(1, Ordering::Relaxed);
        let mut extracted = HashMap::with_capacity(names.len());
        for name in names {
            let array = outputs[name.as_str()]
                .try_extract_array::<f32>()
                .map_err(|e| failed(format!("{name}: {e}")))?
                .to_owned();
            extracted.insert(name, array);
        }
        if let Some(input) = single
            && let Ok(mut recent) = opened.recent.lock()
        {
            if recent.len() == RECENT_RUNS {
                recent.pop_front();
            }
            recent.push_back(RecentRun {
                input: input.to_vec(),
                class: classes[0],
                outputs: extracted.clone(),
            });
        }
        Ok(extracted)
    }

    /// The session of `probe`, building (or finding in the cache) its model on first use.
    fn probe_session(&self, probe: Probe, tensors: &[String]) -> Result<ProbeSession, ModelError> {
        let failed = |message: String| self.inference_error(message);
        let mut sessions = self
            .probes()
            .sessions
            .lock()
            .map_err(|_| failed("a previous probe panicked".into()))?;
        if let Some(session) = sessions.get(&probe) {
            return Ok(session.clone());
        }
        let served = self.served(probe, tensors);
        let onnx = &self.manifest().onnx;
        let cached = if probe.differentiates() {
            let request = GradRequest::new(served.clone()).exposing_score();
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
            .cached_session(&path, &self.gradient_cache().optimized_dir())
            .map_err(|source| ModelError::Runtime { source })?;
        tracing::debug!(model = %self.manifest().name, ?probe, ?served, path = %path.display(), "probe ready");
        let session = ProbeSession {
            loaded: Arc::new(Mutex::new(loaded)),
            score: cached.score,
            recent: Arc::default(),
        };
        if served.len() > tensors.len() {
            // the combined model serves both gradient probes
            sessions.insert(Probe::InputGradient, session.clone());
            sessions.insert(Probe::FeatureGradient, session.clone());
        } else {
            sessions.insert(probe, session.clone());
        }
        Ok(session)
    }
}

/// Concatenates per-batch lists of tensors along axis 0.
fn concatenate(parts: Vec<Vec<ArrayD<f32>>>) -> Result<Vec<ArrayD<f32>>, ndarray::ShapeError> {
    let Some(first) = parts.first() else {
        return Ok(Vec::new());
    };
    (0..first.len())
        .map(|k| {
            let views: Vec<_> = parts.iter().map(|p| p[k].view()).collect();
            ndarray::concatenate(Axis(0), &views)
        })
        .collect()
}
