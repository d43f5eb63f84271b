//! `[runtime]` and `[[models]]`: ONNX Runtime and the model manifests.

use std::path::{Path, PathBuf};

use snafu::{OptionExt, ResultExt, Snafu, ensure};

use super::{Validator, resolved};
use crate::config::raw::{RawModel, RawRuntime};
use crate::config::settings::{
    DEFAULT_BATCH_SIZE, ExecutionProviderKind, ModelRef, RuntimeSettings,
};

impl Validator<'_> {
    pub(super) fn runtime(&mut self, raw: &RawRuntime) -> RuntimeSettings {
        let onnxruntime = raw.onnxruntime.as_deref().and_then(|path| {
            if path.trim().is_empty() {
                self.bad(
                    "runtime.onnxruntime",
                    None,
                    "empty path; remove the key to use ORT_DYLIB_PATH or the loader's search path",
                );
                return None;
            }
            if !path.contains('/') {
                // a bare library name: the dynamic loader searches for it
                return Some(PathBuf::from(path));
            }
            let full = resolved(&self.base, path);
            if !full.is_file() {
                self.bad(
                    "runtime.onnxruntime",
                    None,
                    format!(
                        "{} does not exist (relative paths are resolved against {})",
                        full.display(),
                        self.base.display()
                    ),
                );
            }
            Some(full)
        });
        let mut execution_providers = Vec::new();
        match &raw.execution_providers {
            None => execution_providers.push(ExecutionProviderKind::Cpu),
            Some(names) if names.is_empty() => self.bad(
                "runtime.execution_providers",
                None,
                "no execution provider; list \"cuda\", \"cpu\" or both, in order of preference",
            ),
            Some(names) => {
                for (i, name) in names.iter().enumerate() {
                    let key = format!("runtime.execution_providers[{i}]");
                    let kind = match name.as_str() {
                        "cuda" => ExecutionProviderKind::Cuda,
                        "cpu" => ExecutionProviderKind::Cpu,
                        _ => {
                            self.bad(
                                &key,
                                Some(format!("{name:?}")),
                                "unknown execution provider; valid: \"cuda\", \"cpu\"",
                            );
                            continue;
                        }
                    };
                    if execution_providers.contains(&kind) {
                        self.bad(&key, Some(format!("{name:?}")), "listed twice");
                    } else {
                        execution_providers.push(kind);
                    }
                }
            }
        }
        let require_gpu = raw.require_gpu.unwrap_or(false);
        if require_gpu
            && raw.execution_providers.is_some()
            && !execution_providers.contains(&ExecutionProviderKind::Cuda)
        {
            self.bad(
                "runtime.require_gpu",
                Some("true".into()),
                "requires \"cuda\" in runtime.execution_providers",
            );
        } else if require_gpu && raw.execution_providers.is_none() {
            self.bad(
                "runtime.require_gpu",
                Some("true".into()),
                "requires \"cuda\" in runtime.execution_providers (the default is [\"cpu\"])",
            );
        }
        let cuda_device = self.integer(
            "runtime.cuda_device",
            raw.cuda_device,
            0,
            0,
            i64::from(i32::MAX),
        );
        RuntimeSettings {
            onnxruntime,
            execution_providers,
            cuda_device: i32::try_from(cuda_device).unwrap_or(0),
            require_gpu,
            intra_threads: self.count("runtime.intra_threads", raw.intra_threads, 0, 0),
            batch_size: self.count("runtime.batch_size", raw.batch_size, DEFAULT_BATCH_SIZE, 1),
        }
    }

    pub(super) fn models(&mut self, raw: &[RawModel]) -> Vec<ModelRef> {
        if raw.is_empty() {
            self.bad(
                "models",
                None,
                "no [[models]] entry; add at least one with manifest = \"path/to/model.toml\"",
            );
        }
        let mut models: Vec<ModelRef> = Vec::new();
        for (i, model) in raw.iter().enumerate() {
            let key = format!("models[{i}].manifest");
            let Some(manifest) = &model.manifest else {
                self.bad(
                    &format!("models[{i}]"),
                    None,
                    "missing manifest = \"path/to/model.toml\"",
                );
                continue;
            };
            let path = resolved(&self.base, manifest);
            if path.is_dir() {
                self.bad(
                    &key,
                    None,
                    format!("{} is a folder, not a model manifest", path.display()),
                );
                continue;
            }
            if !path.is_file() {
                self.bad(
                    &key,
                    None,
                    format!(
                        "model manifest {} does not exist (relative paths are resolved against \
                         the configuration's folder, {})",
                        path.display(),
                        self.base.display()
                    ),
                );
                continue;
            }
            let name = match manifest_name(&path) {
                Ok(name) => name,
                Err(why) => {
                    self.bad(
                        &key,
                        None,
                        format!("cannot read the model name from {}: {why}", path.display()),
                    );
                    continue;
                }
            };
            if let Some(j) = models.iter().position(|m| m.name == name) {
                self.bad(
                    &key,
                    None,
                    format!("model name {name:?} is already used by models[{j}]"),
                );
                continue;
            }
            models.push(ModelRef {
                manifest: path,
                enabled: model.enabled.unwrap_or(true),
                name,
            });
        }
        if !models.is_empty() && models.len() == raw.len() && !models.iter().any(|m| m.enabled) {
            self.bad(
                "models",
                None,
                "every model is disabled (enabled = false); enable at least one",
            );
        }
        models
    }
}

/// Why the name of a model manifest could not be read (the validator says which file).
#[derive(Debug, Snafu)]
enum ManifestNameError {
    /// The file could not be read.
    #[snafu(display("{source}"))]
    ReadManifest {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML.
    #[snafu(display("{}", source.message()))]
    ParseManifest {
        /// The parser's error (its message only: the validator names the file).
        source: toml::de::Error,
    },
    /// There is no `[model] name` string.
    #[snafu(display("no [model] name = \"...\""))]
    NoName,
    /// `[model] name` is blank.
    #[snafu(display("empty [model] name"))]
    EmptyName,
}

/// `[model] name` of a model manifest (the rest of the manifest is the model loader's).
fn manifest_name(path: &Path) -> Result<String, ManifestNameError> {
    let text = std::fs::read_to_string(path).context(ReadManifestSnafu)?;
    let table: toml::Table = toml::from_str(&text).context(ParseManifestSnafu)?;
    let name = table
        .get("model")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .context(NoNameSnafu)?;
    ensure!(!name.trim().is_empty(), EmptyNameSnafu);
    Ok(name.to_string())
}
