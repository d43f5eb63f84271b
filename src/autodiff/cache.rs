//! Gradient models kept on disk: the transform runs once per model and request, and later
//! runs load the stored file. The key is a SHA-256 over the model file's hash, the request
//! (tensors and score) and the transform's revision, so an edited model, a different request
//! or a newer transform builds afresh. Files are written atomically; a damaged entry is
//! rebuilt. Forward models with extra outputs (for methods that read inner tensors without
//! gradients) and 8-bit copies of forward models (for the perturbation methods) are kept the
//! same way.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{
    AutodiffError, BadRequestSnafu, CacheSnafu, GradRequest, default_score, gradient_model,
};
use crate::onnx::Model;
use crate::onnx::proto::{DataType, TypeProto, ValueInfoProto, type_proto};
use crate::onnx::quantize::quantize_weights;
use crate::runtime::Runtime;
use crate::runtime::checksum::{hex, sha256_file};

/// Changes whenever the transform's output for the same request may change.
pub const TRANSFORM_REVISION: &str = concat!(env!("CARGO_PKG_VERSION"), "+autodiff.3");

/// A folder of gradient models.
#[derive(Debug, Clone)]
pub struct GradientCache {
    dir: PathBuf,
}

/// Where a gradient model came from.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedGradient {
    /// The gradient model file.
    pub path: PathBuf,
    /// The score it differentiates (empty for forward models with extra outputs).
    pub score: String,
    /// Whether this call built it (else it was found).
    pub built: bool,
    /// Seconds the transform took (0 when found).
    pub transform_seconds: f64,
}

impl GradientCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> GradientCache {
        GradientCache { dir: dir.into() }
    }

    /// The default folder: `$DICOM_XAI_CACHE/gradients`, else
    /// `$XDG_CACHE_HOME/dicom-xai/gradients`, else `~/.cache/dicom-xai/gradients`, else a
    /// folder in the system's temporary directory.
    pub fn default_dir() -> PathBuf {
        crate::runtime::cache_root().join("gradients")
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where ONNX Runtime's optimised graphs of these models (and of the forward models
    /// that use this cache) are kept: see [`crate::runtime::Runtime::cached_session`].
    pub fn optimized_dir(&self) -> PathBuf {
        self.dir.join("optimized")
    }

    /// The cache key of `request` on the model whose file hashes to `model_sha256`.
    pub fn key(model_sha256: &str, request: &GradRequest) -> String {
        let mut hasher = Sha256::new();
        for part in [
            TRANSFORM_REVISION,
            model_sha256,
            request.score.as_deref().unwrap_or(""),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        for t in &request.wrt {
            hasher.update(t.as_bytes());
            hasher.update([0]);
        }
        if request.expose_score {
            hasher.update(b"expose-score");
        }
        hex(&hasher.finalize())
    }

    /// The gradient model of the model in `model_path` for `request`: the stored one when
    /// present and readable, else built, stored and returned.
    pub fn get_or_build(
        &self,
        runtime: &Runtime,
        model_path: &Path,
        request: &GradRequest,
    ) -> Result<CachedGradient, AutodiffError> {
        let fail = |path: &Path, message: String| CacheSnafu { path, message }.build();
        let sha = sha256_file(model_path)
            .map_err(|e| fail(model_path, format!("cannot hash the model: {e}")))?;
        let path = self.dir.join(format!("{}.onnx", Self::key(&sha, request)));
        // the score name and the file's length are kept beside the model, so a hit needs no
        // parse of a graph that can be gigabytes (a truncated file still shows)
        let sidecar = path.with_extension("score");
        if let Some(score) = read_sidecar(&sidecar, &path) {
            tracing::debug!(path = %path.display(), "gradient model found in the cache");
            return Ok(CachedGradient {
                path,
                score,
                built: false,
                transform_seconds: 0.0,
            });
        }
        if path.is_file() {
            match Model::load(&path) {
                Ok(stored) => {
                    tracing::debug!(path = %path.display(), "gradient model found in the cache");
                    // the gradient model keeps the forward outputs: its default score is the
                    // forward model's
                    let score = match &request.score {
                        Some(score) => score.clone(),
                        None => default_score(&stored)?,
                    };
                    write_sidecar(&sidecar, &path, &score);
                    return Ok(CachedGradient {
                        path,
                        score,
                        built: false,
                        transform_seconds: 0.0,
                    });
                }
                Err(e) => tracing::warn!("rebuilding a damaged cached gradient model: {e}"),
            }
        }
        let started = Instant::now();
        let model = Model::load(model_path)?;
        let gradient = gradient_model(runtime, &model, request)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| fail(&self.dir, format!("cannot create the folder: {e}")))?;
        gradient.model.save(&path)?;
        write_sidecar(&sidecar, &path, &gradient.score);
        let transform_seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            model = %model_path.display(),
            path = %path.display(),
            backward_nodes = gradient.backward_nodes,
            seconds = transform_seconds,
            "gradient model built"
        );
        Ok(CachedGradient {
            path,
            score: gradient.score,
            built: true,
            transform_seconds,
        })
    }

    /// The model in `model_path` with `tensors` as extra outputs (forward only): the stored
    /// one when present, else built and stored.
    pub fn get_or_build_taps(
        &self,
        model_path: &Path,
        tensors: &[String],
    ) -> Result<CachedGradient, AutodiffError> {
        let request = GradRequest::new(tensors.iter().cloned()).with_score(TAPS_MARKER);
        self.get_or_build_forward(model_path, &request, |model| {
            for tensor in tensors {
                if !model.defines(tensor) {
                    return Err(BadRequestSnafu {
                        path: model_path,
                        what: "tapped tensor",
                        tensor,
                        reason: "no graph input or node output has this name",
                    }
                    .build());
                }
                if model.outputs().iter().all(|o| o.name() != tensor) {
                    model.graph_mut().output.push(untyped_output(tensor));
                }
            }
            Ok(())
        })
    }

    /// The model in `model_path` with its constant-weight matrix products quantized to
    /// 8 bits ([`crate::onnx::quantize`]): the stored one when present, else built and stored.
    pub fn get_or_build_quantized(
        &self,
        model_path: &Path,
    ) -> Result<CachedGradient, AutodiffError> {
        let request = GradRequest::new([QUANTIZE_REVISION.to_string()]).with_score(INT8_MARKER);
        self.get_or_build_forward(model_path, &request, |model| {
            let done = quantize_weights(model)?;
            tracing::info!(
                model = %model_path.display(),
                quantized = done.quantized.len(),
                kept_float = done.kept,
                "8-bit copy of the model built"
            );
            Ok(())
        })
    }

    /// A forward model derived from the one in `model_path` by `edit`, kept under the key of
    /// `request`: the stored one when present, else built and stored.
    fn get_or_build_forward(
        &self,
        model_path: &Path,
        request: &GradRequest,
        edit: impl FnOnce(&mut Model) -> Result<(), AutodiffError>,
    ) -> Result<CachedGradient, AutodiffError> {
        let fail = |path: &Path, message: String| CacheSnafu { path, message }.build();
        let sha = sha256_file(model_path)
            .map_err(|e| fail(model_path, format!("cannot hash the model: {e}")))?;
        let path = self.dir.join(format!("{}.onnx", Self::key(&sha, request)));
        if path.is_file() {
            return Ok(CachedGradient {
                path,
                score: String::new(),
                built: false,
                transform_seconds: 0.0,
            });
        }
        let started = Instant::now();
        let mut model = Model::load(model_path)?;
        edit(&mut model)?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| fail(&self.dir, format!("cannot create the folder: {e}")))?;
        model.save(&path)?;
        Ok(CachedGradient {
            path,
            score: String::new(),
            built: true,
            transform_seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// The score of the cached gradient model `model`, from its sidecar, when the sidecar names
/// a score and the model file still has the length it had when the sidecar was written.
fn read_sidecar(sidecar: &Path, model: &Path) -> Option<String> {
    let text = std::fs::read_to_string(sidecar).ok()?;
    let (length, score) = text.split_once('\n')?;
    let actual = std::fs::metadata(model).ok()?.len();
    (length.parse::<u64>().ok()? == actual && !score.is_empty()).then(|| score.to_string())
}

/// Writes the sidecar of `model` (its length, then the score); a failure only costs the
/// next lookup a parse of the model.
fn write_sidecar(sidecar: &Path, model: &Path, score: &str) {
    let Ok(metadata) = std::fs::metadata(model) else {
        return;
    };
    // written whole or not at all: a cut-off score name would name another tensor
    let partial = sidecar.with_extension("score.part");
    let written = std::fs::write(&partial, format!("{}\n{score}", metadata.len()))
        .and_then(|()| std::fs::rename(&partial, sidecar));
    if let Err(e) = written {
        tracing::warn!(path = %sidecar.display(), "cannot write the gradient cache's sidecar: {e}");
    }
}

/// The score name that marks a forward-with-outputs entry in the cache key (no tensor can
/// be called this: ONNX names hold no NUL).
const TAPS_MARKER: &str = "\0taps";

/// The score name that marks an 8-bit copy in the cache key.
const INT8_MARKER: &str = "\0int8";

/// Changes whenever the 8-bit copy of the same model may change.
const QUANTIZE_REVISION: &str = "quantize.1";

/// A float output whose shape ONNX Runtime infers.
fn untyped_output(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: Some(name.to_string()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(DataType::Float as i32),
                shape: None,
            })),
            denotation: None,
        }),
        ..ValueInfoProto::default()
    }
}
