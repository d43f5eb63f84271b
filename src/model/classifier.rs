//! A loaded classifier: the manifest checked against the file (SHA-256) and the graph
//! (input and output names, shapes, label count), and batched prediction.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use ndarray::{Array2, ArrayView4, Axis, s};
use ort::value::TensorRef;
use snafu::Snafu;

use super::manifest::{Layout, Manifest, ManifestError, OutputKind};
use super::probe::ProbeSessions;
use crate::autodiff::GradientCache;
use crate::runtime::checksum::sha256_file;
use crate::runtime::{LoadedSession, Runtime, RuntimeError};

/// Why a model could not be loaded or run. Messages name the model and its manifest.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum ModelError {
    /// The manifest is invalid.
    #[snafu(display("{source}"))]
    InvalidManifest {
        /// The manifest problem.
        source: ManifestError,
    },
    /// ONNX Runtime refused.
    #[snafu(display("{source}"))]
    Runtime {
        /// The runtime problem.
        source: RuntimeError,
    },
    /// The ONNX file is not the one the manifest names.
    #[snafu(display(
        "model {model}: {} has sha256 {actual}, the manifest {} expects {expected}",
        onnx.display(),
        manifest.display()
    ))]
    Checksum {
        /// Model name.
        model: String,
        /// The ONNX file.
        onnx: PathBuf,
        /// The manifest.
        manifest: PathBuf,
        /// Expected digest.
        expected: String,
        /// Actual digest.
        actual: String,
    },
    /// The graph does not match the manifest.
    #[snafu(display("model manifest {}: {key}: {message}", manifest.display()))]
    Graph {
        /// The manifest.
        manifest: PathBuf,
        /// The manifest key that disagrees with the graph.
        key: String,
        /// How.
        message: String,
    },
    /// A gradient model (or a forward model with extra outputs) could not be built.
    #[snafu(display("model {model}: {source}"))]
    Gradient {
        /// Model name.
        model: String,
        /// The transform's or the cache's error.
        source: Box<crate::autodiff::AutodiffError>,
    },
    /// A run failed.
    #[snafu(display("model {model}: inference failed: {message}"))]
    Inference {
        /// Model name.
        model: String,
        /// ONNX Runtime's reason.
        message: String,
    },
}

/// The arithmetic of the forward passes a perturbation method runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// The model as it is: the passes are the classifier's own.
    #[default]
    Float32,
    /// An 8-bit copy ([`crate::onnx::quantize`]): its constant-weight matrix products in
    /// integers, about twice as fast for a transformer on the CPU, no faster for a CNN.
    Int8,
}

impl Precision {
    /// Every precision under the name a site writes and reports show.
    pub const NAMES: &'static [(&'static str, Precision)] =
        &[("float32", Precision::Float32), ("int8", Precision::Int8)];

    /// The name a site writes and reports show.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Float32 => "float32",
            Precision::Int8 => "int8",
        }
    }
}

/// A model ready to classify batches of preprocessed inputs.
pub struct Classifier {
    manifest: Manifest,
    sha256: String,
    session: Mutex<LoadedSession>,
    batch_size: usize,
    runtime: Runtime,
    gradient_cache: GradientCache,
    probes: ProbeSessions,
    /// The 8-bit copy's session, opened on first use.
    int8: Mutex<Option<Arc<Mutex<LoadedSession>>>>,
    /// Whether the site has been told that the copy is not used on a GPU.
    int8_declined: AtomicBool,
}

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("model", &self.manifest.name)
            .field("batch_size", &self.batch_size)
            .finish()
    }
}

impl Classifier {
    /// Verifies the checksum, creates the session and checks the graph against the manifest.
    pub fn load(
        runtime: &Runtime,
        manifest: Manifest,
        batch_size: usize,
    ) -> Result<Classifier, ModelError> {
        // always known: the overlays' UIDs derive from it, so a new checkpoint under the
        // same name gives new overlays (remembered by file identity, so hashed once)
        let sha256 = sha256_file(&manifest.onnx).map_err(|e| ModelError::Graph {
            manifest: manifest.path.clone(),
            key: "model.onnx".into(),
            message: format!("cannot read {}: {e}", manifest.onnx.display()),
        })?;
        if let Some(expected) = &manifest.sha256
            && &sha256 != expected
        {
            return Err(ModelError::Checksum {
                model: manifest.name.clone(),
                onnx: manifest.onnx.clone(),
                manifest: manifest.path.clone(),
                expected: expected.clone(),
                actual: sha256,
            });
        }
        let gradient_cache = GradientCache::new(GradientCache::default_dir());
        let loaded = runtime
            .cached_session(&manifest.onnx, &gradient_cache.optimized_dir())
            .map_err(|source| ModelError::Runtime { source })?;
        check_graph(&manifest, &loaded)?;
        tracing::info!(model = %manifest.name, provider = loaded.provider, "model loaded");
        Ok(Classifier {
            manifest,
            sha256,
            session: Mutex::new(loaded),
            batch_size: batch_size.max(1),
            runtime: runtime.clone(),
            gradient_cache,
            probes: ProbeSessions::default(),
            int8: Mutex::new(None),
            int8_declined: AtomicBool::new(false),
        })
    }

    /// Keeps gradient models in `cache` instead of the default folder.
    #[must_use]
    pub fn with_gradient_cache(mut self, cache: GradientCache) -> Classifier {
        self.gradient_cache = cache;
        self
    }

    /// Where gradient models are kept.
    pub fn gradient_cache(&self) -> &GradientCache {
        &self.gradient_cache
    }

    pub(crate) fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    pub(crate) fn probes(&self) -> &ProbeSessions {
        &self.probes
    }

    /// An error of this model's inference (or of a derived model's), with ONNX Runtime's
    /// or our reason.
    pub(crate) fn inference_error(&self, message: String) -> ModelError {
        ModelError::Inference {
            model: self.manifest.name.clone(),
            message,
        }
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 of the model file as loaded (hex).
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The execution provider of every session the model has used: `forward`, then each
    /// derived (gradient or attention) model opened so far under its probe's name.
    pub fn providers(&self) -> std::collections::BTreeMap<String, String> {
        let mut providers = std::collections::BTreeMap::from([(
            "forward".to_string(),
            self.provider().to_string(),
        )]);
        for (probe, provider) in self.probes.providers() {
            providers.insert(probe.name().to_string(), provider.to_string());
        }
        let int8 = self.int8.lock().ok().and_then(|opened| opened.clone());
        if let Some(provider) = int8.and_then(|s| s.lock().ok().map(|s| s.provider)) {
            providers.insert("forward-int8".to_string(), provider.to_string());
        }
        providers
    }

    /// Whether the site listed CUDA, so that a session on the CPU is a fallback.
    pub fn cuda_requested(&self) -> bool {
        self.runtime.cuda_requested()
    }

    /// The execution provider the model runs on.
    pub fn provider(&self) -> &'static str {
        self.session.lock().map(|s| s.provider).unwrap_or("cpu")
    }

    /// The largest batch sent to ONNX Runtime at once.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Class probabilities `[N, labels]` of preprocessed inputs (`[N, H, W, C]` or
    /// `[N, C, H, W]` per the manifest), run in batches of at most `batch_size`; softmax is
    /// applied when the model outputs logits.
    pub fn predict(&self, inputs: ArrayView4<'_, f32>) -> Result<Array2<f32>, ModelError> {
        self.run_forward(&mut *self.locked(&self.session)?, inputs)
    }

    /// As [`Classifier::predict`], on the model itself or on its 8-bit copy (built or found
    /// in the gradient cache, and opened, on first use).
    pub fn predict_at(
        &self,
        precision: Precision,
        inputs: ArrayView4<'_, f32>,
    ) -> Result<Array2<f32>, ModelError> {
        match precision {
            Precision::Float32 => self.predict(inputs),
            Precision::Int8 => {
                let opened = self.int8_session()?;
                self.run_forward(&mut *self.locked(&opened)?, inputs)
            }
        }
    }

    /// The precision a perturbation method asking for `asked` gets: the model itself when it
    /// runs on CUDA, whose provider leaves integer products to the CPU (said once a model).
    pub fn effective_precision(&self, asked: Precision) -> Precision {
        if asked == Precision::Int8 && self.provider() != "cpu" {
            if !self.int8_declined.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    model = %self.manifest.name,
                    provider = self.provider(),
                    "precision \"int8\" asked for: the model runs on a GPU, where the 8-bit \
                     copy's integer products would fall back to the CPU; its float passes are used"
                );
            }
            return Precision::Float32;
        }
        asked
    }

    /// The 8-bit copy's session.
    fn int8_session(&self) -> Result<Arc<Mutex<LoadedSession>>, ModelError> {
        let mut opened = self.locked(&self.int8)?;
        if let Some(session) = opened.as_ref() {
            return Ok(session.clone());
        }
        let cached = self
            .gradient_cache
            .get_or_build_quantized(&self.manifest.onnx)
            .map_err(|source| ModelError::Gradient {
                model: self.manifest.name.clone(),
                source: Box::new(source),
            })?;
        let loaded = self
            .runtime
            .cached_session(&cached.path, &self.gradient_cache.optimized_dir())
            .map_err(|source| ModelError::Runtime { source })?;
        tracing::debug!(model = %self.manifest.name, path = %cached.path.display(), "8-bit copy ready");
        let session = Arc::new(Mutex::new(loaded));
        *opened = Some(session.clone());
        Ok(session)
    }

    /// `mutex` locked, or the error of a run that panicked while holding it.
    fn locked<'a, T>(&self, mutex: &'a Mutex<T>) -> Result<MutexGuard<'a, T>, ModelError> {
        mutex
            .lock()
            .map_err(|_| self.inference_error("a previous run panicked".into()))
    }

    /// Class probabilities of `inputs` on `session` (the model's or a copy with the same
    /// input and output).
    fn run_forward(
        &self,
        session: &mut LoadedSession,
        inputs: ArrayView4<'_, f32>,
    ) -> Result<Array2<f32>, ModelError> {
        let n = inputs.len_of(Axis(0));
        let labels = self.manifest.labels.len();
        let mut probabilities = Array2::<f32>::zeros((n, labels));
        let failed = |message: String| self.inference_error(message);
        for start in (0..n).step_by(self.batch_size) {
            let end = (start + self.batch_size).min(n);
            // borrowed when already contiguous (a whole batch built by the caller): no copy
            let chunk = inputs.slice(s![start..end, .., .., ..]);
            let chunk = chunk.as_standard_layout();
            let tensor =
                TensorRef::from_array_view(chunk.view()).map_err(|e| failed(e.to_string()))?;
            let outputs = session
                .session
                .run(ort::inputs![self.manifest.input.name.as_str() => tensor])
                .map_err(|e| failed(e.to_string()))?;
            let scores = outputs[self.manifest.output.name.as_str()]
                .try_extract_array::<f32>()
                .map_err(|e| failed(e.to_string()))?;
            let scores = scores
                .into_shape_with_order((end - start, labels))
                .map_err(|e| failed(format!("output shape: {e}")))?;
            let mut target = probabilities.slice_mut(s![start..end, ..]);
            target.assign(&scores);
            if self.manifest.output.kind == OutputKind::Logits {
                for mut row in target.outer_iter_mut() {
                    softmax_in_place(row.as_slice_mut().unwrap_or(&mut []));
                }
            }
        }
        if probabilities.iter().any(|p| !p.is_finite()) {
            return Err(failed("non-finite output".into()));
        }
        Ok(probabilities)
    }
}

/// The index of the largest value (the first of equals; 0 when empty or all NaN): the
/// predicted class of a row of probabilities.
pub fn argmax(values: impl IntoIterator<Item = f32>) -> usize {
    values
        .into_iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if v > best.1 { (i, v) } else { best }
        })
        .0
}

/// Numerically stable softmax.
pub fn softmax_in_place(scores: &mut [f32]) {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut total = 0.0f64;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        total += f64::from(*s);
    }
    for s in scores.iter_mut() {
        *s = (f64::from(*s) / total) as f32;
    }
}

/// The graph's input and output against the manifest: names exist, rank 4 input with the
/// manifest's size and channels (dynamic dimensions accepted), output width = label count.
fn check_graph(manifest: &Manifest, loaded: &LoadedSession) -> Result<(), ModelError> {
    let graph_error = |key: &str, message: String| ModelError::Graph {
        manifest: manifest.path.clone(),
        key: key.to_string(),
        message,
    };
    let session = &loaded.session;
    let input = session
        .inputs()
        .iter()
        .find(|i| i.name() == manifest.input.name)
        .ok_or_else(|| {
            let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
            graph_error(
                "input.name",
                format!(
                    "{:?} is not an input of the graph (inputs: {names:?})",
                    manifest.input.name
                ),
            )
        })?;
    let shape: Vec<i64> = input
        .dtype()
        .tensor_shape()
        .map(|s| s.to_vec())
        .unwrap_or_default();
    let spec = &manifest.input;
    let expected = match spec.layout {
        Layout::Nhwc => [
            -1,
            spec.height as i64,
            spec.width as i64,
            spec.channels as i64,
        ],
        Layout::Nchw => [
            -1,
            spec.channels as i64,
            spec.height as i64,
            spec.width as i64,
        ],
    };
    let fits = shape.len() == 4
        && shape
            .iter()
            .zip(expected)
            .skip(1)
            .all(|(actual, want)| *actual < 0 || *actual == want);
    if !fits {
        return Err(graph_error(
            "input.layout",
            format!(
                "the graph's input {:?} has shape {shape:?}; the manifest describes {:?} {expected:?}",
                spec.name, spec.layout
            ),
        ));
    }
    let output = session
        .outputs()
        .iter()
        .find(|o| o.name() == manifest.output.name)
        .ok_or_else(|| {
            let names: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
            graph_error(
                "output.name",
                format!(
                    "{:?} is not an output of the graph (outputs: {names:?})",
                    manifest.output.name
                ),
            )
        })?;
    let width = output
        .dtype()
        .tensor_shape()
        .and_then(|s| s.last().copied())
        .unwrap_or(-1);
    if width >= 0 && width as usize != manifest.labels.len() {
        return Err(graph_error(
            "model.labels",
            format!(
                "{} labels, but the output {:?} has {width} classes",
                manifest.labels.len(),
                manifest.output.name
            ),
        ));
    }
    Ok(())
}
