//! ONNX Runtime: finding and loading the shared library, and building sessions on the
//! execution providers the site asked for, with every fallback reported.
//!
//! The library is loaded at run time (`ort`'s `load-dynamic`), so one binary serves the CPU
//! and the GPU builds of ONNX Runtime. Search order: the configured path, `ORT_DYLIB_PATH`,
//! beside the executable, then the project's `.venv` (the `onnxruntime` wheel's `capi`
//! folder). A missing or incompatible library is an error listing what was tried.
//!
//! This module is the floor the ONNX modules stand on ([`crate::onnx`], [`crate::autodiff`],
//! [`crate::model`]); it knows none of them.
//!
//! - [`checksum`]: SHA-256 of model files, remembered by file identity.
//! - `cuda_libraries` (with the `cuda` feature): CUDA and cuDNN loaded from the
//!   onnxruntime-gpu wheel's NVIDIA packages before the CUDA provider.
//! - [`cache_root`]: the folder of everything dicom-xai caches (optimised graphs, gradient
//!   models, checksums).

pub mod checksum;
#[cfg(feature = "cuda")]
pub mod cuda_libraries;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use snafu::Snafu;

use checksum::{FileIdentity, hex16};

/// The folder of dicom-xai's caches: `$DICOM_XAI_CACHE`, else `$XDG_CACHE_HOME/dicom-xai`,
/// else `~/.cache/dicom-xai`, else under the system's temporary folder.
pub fn cache_root() -> PathBuf {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(root) = env("DICOM_XAI_CACHE") {
        return root;
    }
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|home| home.join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("dicom-xai")
}

/// Why ONNX Runtime could not be used.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum RuntimeError {
    /// No candidate library file exists.
    #[snafu(display(
        "ONNX Runtime library not found; tried: {}. Install it with `make setup` (the onnxruntime \
         wheel in .venv), or set [runtime] onnxruntime in the configuration or ORT_DYLIB_PATH",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))]
    NotFound {
        /// Every path tried.
        tried: Vec<PathBuf>,
    },
    /// The library exists but could not be loaded (wrong file, wrong version).
    #[snafu(display("cannot load ONNX Runtime from {}: {message}", path.display()))]
    Load {
        /// The library.
        path: PathBuf,
        /// ort's reason.
        message: String,
    },
    /// This process already loaded a different library.
    #[snafu(display(
        "ONNX Runtime is already loaded from {}; cannot switch to {} in the same process",
        loaded.display(),
        requested.display()
    ))]
    AlreadyLoaded {
        /// The library in use.
        loaded: PathBuf,
        /// The one asked for.
        requested: PathBuf,
    },
    /// The GPU was required but its provider could not be registered.
    #[snafu(display("the CUDA execution provider is required but unavailable for {}: {source}", model.display()))]
    GpuRequired {
        /// The model being loaded.
        model: PathBuf,
        /// Why CUDA could not be used.
        source: CudaError,
    },
    /// Creating the session failed (bad ONNX file, unsupported operator...).
    #[snafu(display("cannot create an ONNX Runtime session for {}: {message}", model.display()))]
    Session {
        /// The model.
        model: PathBuf,
        /// ONNX Runtime's reason.
        message: String,
    },
}

/// Why a session could not be made on the CUDA execution provider (the CPU is then the
/// fallback, unless the GPU is required).
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum CudaError {
    /// This binary was built without the `cuda` feature.
    #[snafu(display("this build of dicom-xai has no CUDA support (build with `--features cuda`)"))]
    NotBuilt,
    /// The session builder could not be set up.
    #[snafu(display("{source}"))]
    Builder {
        /// The runtime's error (boxed: a [`RuntimeError`] may hold this error).
        source: Box<RuntimeError>,
    },
    /// ONNX Runtime refused the CUDA provider.
    #[snafu(display("{source}"))]
    Provider {
        /// ONNX Runtime's reason.
        source: ort::Error,
    },
    /// The session could not be created on the provider (most often a CUDA or cuDNN library
    /// that is not there).
    #[snafu(display(
        "{source}{}",
        if missing.is_empty() {
            String::new()
        } else {
            format!("; CUDA libraries not found: {}", missing.join(", "))
        }
    ))]
    Commit {
        /// ONNX Runtime's reason, which names one library at most.
        source: ort::Error,
        /// The required CUDA libraries preloading could not load, each `name (the loader's
        /// reason)`.
        missing: Vec<String>,
    },
}

/// An execution provider, in the site's order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// NVIDIA CUDA (needs the `cuda` cargo feature and the onnxruntime-gpu library).
    Cuda,
    /// The CPU.
    Cpu,
}

/// How to run models.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// An explicit library path (first in the search order).
    pub library: Option<PathBuf>,
    /// Providers in order of preference; the CPU is always the last resort.
    pub providers: Vec<Provider>,
    /// CUDA device id.
    pub cuda_device: i32,
    /// Fail instead of falling back to the CPU when CUDA cannot be used.
    pub require_gpu: bool,
    /// Threads per session (0: ONNX Runtime's default).
    pub intra_threads: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            library: None,
            providers: vec![Provider::Cpu],
            cuda_device: 0,
            require_gpu: false,
            intra_threads: 0,
        }
    }
}

/// The loaded ONNX Runtime (the library is loaded once per process; clones share it).
#[derive(Clone)]
pub struct Runtime {
    library: PathBuf,
    environment: ort::environment::Environment,
    options: RuntimeOptions,
}

/// A session and the provider it actually runs on.
pub struct LoadedSession {
    /// The session.
    pub session: Session,
    /// The provider in use ("cuda" or "cpu").
    pub provider: &'static str,
}

/// The process's one ONNX Runtime environment and the library it was loaded from.
static ENVIRONMENT: OnceLock<(PathBuf, ort::environment::Environment)> = OnceLock::new();

/// The candidate library paths, in search order.
pub fn library_candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    candidates.extend(explicit.map(Path::to_path_buf));
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(path));
    }
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf));
    if let Some(dir) = &exe_dir {
        candidates.extend(versioned_libraries(dir));
    }
    // the project's .venv: above the executable (target/release/..) or the current folder
    let mut roots: Vec<PathBuf> = exe_dir
        .iter()
        .flat_map(|d| d.ancestors().map(Path::to_path_buf))
        .collect();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    for root in roots {
        let lib = root.join(".venv/lib");
        let Ok(pythons) = std::fs::read_dir(&lib) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = pythons.filter_map(Result::ok).map(|e| e.path()).collect();
        pythons.sort();
        for python in pythons {
            candidates.extend(versioned_libraries(
                &python.join("site-packages/onnxruntime/capi"),
            ));
        }
    }
    candidates.dedup();
    candidates
}

/// `libonnxruntime.so.1.*` files in `dir`, newest name last.
fn versioned_libraries(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![dir.join("libonnxruntime.so.1.*")];
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so.1.") || n == "libonnxruntime.so")
        })
        .collect();
    found.sort();
    if found.is_empty() {
        vec![dir.join("libonnxruntime.so.1.*")]
    } else {
        found
    }
}

impl Runtime {
    /// Finds and loads the library (once per process) and prepares sessions as `options` say.
    pub fn init(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let candidates = library_candidates(options.library.as_deref());
        // a bare file name (no folder) is left to the dynamic loader's search path
        let bare_name = options
            .library
            .as_ref()
            .filter(|p| p.components().count() == 1 && !p.is_file())
            .cloned();
        let library = bare_name
            .or_else(|| candidates.iter().find(|p| p.is_file()).cloned())
            .ok_or(RuntimeError::NotFound {
                tried: candidates.clone(),
            })?;
        let environment = match ENVIRONMENT.get() {
            Some((loaded, environment)) if *loaded == library => environment.clone(),
            Some((loaded, _)) => {
                return Err(RuntimeError::AlreadyLoaded {
                    loaded: loaded.clone(),
                    requested: library,
                });
            }
            None => {
                let load_error = |message: String| RuntimeError::Load {
                    path: library.clone(),
                    message,
                };
                let environment = ort::init_from(&library)
                    .map_err(|e| load_error(e.to_string()))?
                    .with_name("dicom-xai")
                    .build()
                    .map_err(|e| load_error(e.to_string()))?;
                // ort allows one environment per process: keep it for every later caller
                ENVIRONMENT
                    .get_or_init(|| (library.clone(), environment))
                    .1
                    .clone()
            }
        };
        tracing::info!(library = %library.display(), "ONNX Runtime loaded");
        Ok(Runtime {
            library,
            environment,
            options,
        })
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    /// Whether the site listed the CUDA provider.
    pub fn cuda_requested(&self) -> bool {
        self.options.providers.contains(&Provider::Cuda)
    }

    /// Creates a session for `model` on the first provider that works, logging every
    /// fallback; with `require_gpu`, a CUDA failure is an error carrying ORT's reason.
    pub fn session(&self, model: &Path) -> Result<LoadedSession, RuntimeError> {
        for provider in &self.options.providers {
            if *provider == Provider::Cuda {
                match self.cuda_session(model) {
                    Ok(session) => {
                        return Ok(LoadedSession {
                            session,
                            provider: "cuda",
                        });
                    }
                    Err(source) if self.options.require_gpu => {
                        return Err(RuntimeError::GpuRequired {
                            model: model.to_path_buf(),
                            source,
                        });
                    }
                    Err(reason) => {
                        tracing::warn!(model = %model.display(), "CUDA unavailable, falling back: {reason}");
                    }
                }
            }
        }
        let session = self
            .builder(model)?
            .commit_from_file(model)
            .map_err(|e| session_error(model, &e))?;
        Ok(LoadedSession {
            session,
            provider: "cpu",
        })
    }

    /// Like [`Runtime::session`], keeping ONNX Runtime's optimised graph of `model` in
    /// `optimized_dir` for later sessions, which load it without optimising again: a run of
    /// both models with Grad-CAM and saliency takes 10% less time on 2 cores, most of it
    /// ViT-B/16's (DenseNet169's sessions spend their time creating kernels, not optimising).
    ///
    /// The optimised graph holds layout choices for this CPU (blocked NCHWc convolutions), so
    /// it is keyed by the ONNX Runtime library, the CPU's feature flags and the model file's
    /// identity (path, size, times, inode): any change makes a new entry. Each graph keeps
    /// its weights in a file beside it, which ONNX Runtime maps when loading. Only CPU
    /// sessions are cached. A cache that cannot be written or read costs nothing but the
    /// time: the session is built from `model` as usual, and the reason is logged.
    pub fn cached_session(
        &self,
        model: &Path,
        optimized_dir: &Path,
    ) -> Result<LoadedSession, RuntimeError> {
        if self.options.providers.contains(&Provider::Cuda) {
            return self.session(model);
        }
        let Some((slot, key)) = self.optimized_key(model) else {
            return self.session(model);
        };
        let cached = optimized_dir.join(format!("{slot}-{key}.onnx"));
        if cached.is_file() {
            let failed = |e: &dyn std::fmt::Display| session_error(&cached, e);
            let loaded = self.builder(model).and_then(|builder| {
                builder
                    .with_optimization_level(GraphOptimizationLevel::Disable)
                    .map_err(|e| failed(&e))?
                    .commit_from_file(&cached)
                    .map_err(|e| failed(&e))
            });
            match loaded {
                Ok(session) => {
                    tracing::debug!(model = %model.display(), optimized = %cached.display(), "optimised graph reused");
                    return Ok(LoadedSession {
                        session,
                        provider: "cpu",
                    });
                }
                Err(error) => {
                    tracing::warn!(model = %model.display(), "optimised graph unusable, optimising again: {error}");
                    let _ = std::fs::remove_file(&cached);
                }
            }
        }
        if let Err(error) = std::fs::create_dir_all(optimized_dir) {
            tracing::warn!(dir = %optimized_dir.display(), "cannot keep optimised graphs: {error}");
            return self.session(model);
        }
        // ONNX Runtime writes the file while it builds the session: a name of this writer's
        // own, renamed once complete, so that concurrent builders never read half a file.
        static WRITERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let writer = WRITERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let writer = format!("{}-{writer}", std::process::id());
        let partial = optimized_dir.join(format!("{key}.{writer}.part"));
        // The weights go to a file of their own, which ONNX Runtime maps instead of parsing
        // them out of the graph: ViT-B/16 loads in 0.6 to 0.8 s instead of 1.1 to 1.3 s.
        // The graph names this file, so it has its final name from the start, and this
        // writer's own; the graph is renamed into place once both are complete.
        let weights = format!("{slot}-{key}.{writer}.data");
        let failed = |e: &dyn std::fmt::Display| session_error(model, e);
        let session = self
            .builder(model)?
            .with_optimized_model_path(&partial)
            .map_err(|e| failed(&e))?
            .with_config_entry(
                "session.optimized_model_external_initializers_file_name",
                &weights,
            )
            .map_err(|e| failed(&e))?
            .with_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes",
                "1024",
            )
            .map_err(|e| failed(&e))?
            .commit_from_file(model)
            .map_err(|e| failed(&e));
        match &session {
            Ok(_) => match std::fs::rename(&partial, &cached) {
                Ok(()) => remove_superseded(
                    optimized_dir,
                    &slot,
                    &[&cached, &optimized_dir.join(&weights)],
                ),
                Err(error) => {
                    tracing::warn!(optimized = %cached.display(), "cannot keep the optimised graph: {error}");
                    let _ = std::fs::remove_file(&partial);
                }
            },
            Err(_) => {
                let _ = std::fs::remove_file(&partial);
            }
        }
        Ok(LoadedSession {
            session: session?,
            provider: "cpu",
        })
    }

    /// The cache slot of `model`'s optimised graph (its path: one entry per model file) and
    /// its key within the slot: what the graph depends on besides the optimisation level,
    /// which is fixed.
    fn optimized_key(&self, model: &Path) -> Option<(String, String)> {
        use sha2::{Digest, Sha256};
        use std::os::unix::fs::MetadataExt;

        let model = FileIdentity::read(model)?;
        let library = std::fs::metadata(&self.library).ok();
        // read once per process: the CPU does not change under it
        static CPU_FLAGS: OnceLock<String> = OnceLock::new();
        let cpu_flags = CPU_FLAGS
            .get_or_init(|| {
                std::fs::read_to_string("/proc/cpuinfo")
                    .ok()
                    .and_then(|info| {
                        info.lines()
                            .find(|line| line.starts_with("flags"))
                            .map(str::to_owned)
                    })
                    .unwrap_or_default()
            })
            .clone();
        let mut hasher = Sha256::new();
        for part in [
            "dicom-xai optimised graph v2".to_owned(),
            self.library.display().to_string(),
            library.as_ref().map_or(0, |m| m.size()).to_string(),
            library
                .as_ref()
                .map_or(0, |m| m.mtime_nsec() + m.mtime() * 1_000_000_000)
                .to_string(),
            cpu_flags,
            model.path.display().to_string(),
            model.key.clone(),
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        // 16 hex digits each: a collision costs one rebuild, not a wrong graph (the full
        // identity is in the key)
        Some((model.slot(), hex16(&hasher.finalize())))
    }

    fn builder(&self, model: &Path) -> Result<ort::session::builder::SessionBuilder, RuntimeError> {
        let failed = |e: &dyn std::fmt::Display| session_error(model, e);
        let mut builder = Session::builder(&self.environment)
            .map_err(|e| failed(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| failed(&e))?;
        if self.options.intra_threads > 0 {
            builder = builder
                .with_intra_threads(self.options.intra_threads)
                .map_err(|e| failed(&e))?;
        }
        Ok(builder)
    }

    #[cfg(feature = "cuda")]
    fn cuda_session(&self, model: &Path) -> Result<Session, CudaError> {
        use snafu::ResultExt;

        let preloaded = cuda_libraries::preload(&self.library);
        let cuda = ort::ep::CUDA::default()
            .with_device_id(self.options.cuda_device)
            .build()
            .error_on_failure();
        self.builder(model)
            .map_err(Box::new)
            .context(BuilderSnafu)?
            .with_execution_providers([cuda])
            .map_err(ort::Error::from)
            .context(ProviderSnafu)?
            .commit_from_file(model)
            // the provider's own message names one library; say which were not found
            .with_context(|_| CommitSnafu {
                missing: preloaded
                    .missing
                    .iter()
                    .map(|(name, reason)| format!("{name} ({reason})"))
                    .collect::<Vec<_>>(),
            })
    }

    #[cfg(not(feature = "cuda"))]
    fn cuda_session(&self, _model: &Path) -> Result<Session, CudaError> {
        NotBuiltSnafu.fail()
    }
}

/// ONNX Runtime's failure to make a session of `model`.
fn session_error(model: &Path, error: &dyn std::fmt::Display) -> RuntimeError {
    RuntimeError::Session {
        model: model.to_path_buf(),
        message: error.to_string(),
    }
}

/// Removes the other files of `slot` than `kept`: graphs (and their weights) of an earlier
/// version of the same model file, of a damaged entry, or of a writer that lost a race,
/// which would otherwise stay on disk (a ViT-B/16 gradient graph is 657 MB).
fn remove_superseded(optimized_dir: &Path, slot: &str, kept: &[&Path]) {
    let Ok(entries) = std::fs::read_dir(optimized_dir) else {
        return;
    };
    let prefix = format!("{slot}-");
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let name = entry.file_name();
        let superseded = name.to_str().is_some_and(|name| {
            name.starts_with(&prefix)
                && (name.ends_with(".onnx") || name.ends_with(".data"))
                && !kept.contains(&path.as_path())
        });
        if superseded && std::fs::remove_file(&path).is_ok() {
            tracing::debug!(removed = %path.display(), "superseded optimised graph removed");
        }
    }
}
