//! The CUDA and cuDNN libraries of the onnxruntime-gpu wheel, loaded before its CUDA
//! execution provider.
//!
//! `libonnxruntime_providers_cuda.so` names CUDA's libraries without a path, and loads cuDNN
//! by name at run time; in a virtual environment (`make setup GPU=1`) they sit in NVIDIA's
//! wheels beside onnxruntime (`site-packages/nvidia/cu13/lib`, `.../nvidia/cudnn/lib`),
//! where the dynamic loader does not look. Python's onnxruntime loads them first
//! (`preload_dlls`); a Rust process must do the same, or the provider fails with "cannot
//! open shared object file". Loaded once per process, globally, so that the provider and
//! cuDNN find them by name. Libraries found on the system's own search path are used as
//! they are.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use snafu::Snafu;

/// The libraries, in load order (cuBLAS needs cuBLASLt first), as folders under
/// `site-packages/nvidia` and file names. A missing optional one costs only the features
/// that use it (NVRTC, cuFFT).
const LIBRARIES: [(&str, &str, bool); 7] = [
    ("cu13/lib", "libcudart.so.13", true),
    ("cu13/lib", "libcublasLt.so.13", true),
    ("cu13/lib", "libcublas.so.13", true),
    ("cu13/lib", "libcurand.so.10", true),
    ("cu13/lib", "libnvrtc.so.13", false),
    ("cu13/lib", "libcufft.so.12", false),
    ("cudnn/lib", "libcudnn.so.9", true),
];

/// What preloading found: each library loaded with the path it came from, and the
/// required ones that could not be loaded, with the loader's reason.
#[derive(Debug, Clone, Default)]
pub struct Preloaded {
    /// Loaded libraries: (file name, where from: a path, or the name for the system's).
    pub loaded: Vec<(String, String)>,
    /// Required libraries that could not be loaded, with the reason.
    pub missing: Vec<(String, OpenError)>,
}

/// Why the dynamic loader could not open a library, in its own words
/// (`libcudart.so.13: cannot open shared object file: No such file or directory`).
#[derive(Debug, Clone, Snafu)]
#[snafu(display("{}", loader_words(source)))]
pub struct OpenError {
    /// libloading's error (shared: [`Preloaded`] is cloned).
    source: Arc<libloading::Error>,
}

/// The loader's own words, which libloading keeps as the source of its "dlopen failed".
fn loader_words(error: &libloading::Error) -> String {
    match std::error::Error::source(error) {
        Some(reason) => reason.to_string(),
        None => error.to_string(),
    }
}

/// The `site-packages` folder of the wheel that holds `library`
/// (`site-packages/onnxruntime/capi/libonnxruntime.so.*`), if it is laid out that way.
pub fn site_packages(library: &Path) -> Option<PathBuf> {
    let capi = library.parent()?;
    let package = capi.parent()?;
    (capi.file_name()? == "capi" && package.file_name()? == "onnxruntime")
        .then(|| package.parent().map(Path::to_path_buf))
        .flatten()
}

/// Loads the libraries once per process: from the NVIDIA wheels beside `library` where they
/// are, else by name from the system's search path. Returns what happened, for the log and
/// for the error when the provider then fails.
pub fn preload(library: &Path) -> &'static Preloaded {
    static PRELOADED: OnceLock<Preloaded> = OnceLock::new();
    PRELOADED.get_or_init(|| {
        let nvidia = site_packages(library).map(|site| site.join("nvidia"));
        let mut preloaded = Preloaded::default();
        for (folder, name, required) in LIBRARIES {
            let beside = nvidia.as_ref().map(|n| n.join(folder).join(name));
            let candidates = beside
                .filter(|path| path.is_file())
                .map(|path| path.into_os_string())
                .into_iter()
                .chain([name.into()]);
            // the loader's reason for the last candidate, while none has loaded
            let mut failure = None;
            for candidate in candidates {
                match open_global(&candidate) {
                    Ok(()) => {
                        let from = candidate.to_string_lossy().into_owned();
                        preloaded.loaded.push((name.to_owned(), from));
                        failure = None;
                        break;
                    }
                    Err(error) => failure = Some(error),
                }
            }
            if let Some(reason) = failure.filter(|_| required) {
                preloaded.missing.push((name.to_owned(), reason));
            }
        }
        tracing::debug!(loaded = ?preloaded.loaded, missing = ?preloaded.missing, "CUDA libraries preloaded");
        preloaded
    })
}

/// Opens `path` with its symbols global and keeps it loaded for the life of the process.
fn open_global(path: &std::ffi::OsStr) -> Result<(), OpenError> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: these are NVIDIA's CUDA libraries, whose initialisers only register
    // themselves; they are never unloaded (forgotten below), so no symbol outlives them.
    let library = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) };
    library.map(std::mem::forget).map_err(|error| OpenError {
        source: Arc::new(error),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wheel_layout_gives_its_site_packages() {
        let site = Path::new("/v/lib/python3.12/site-packages");
        let library = site.join("onnxruntime/capi/libonnxruntime.so.1.31.1");
        assert_eq!(site_packages(&library).as_deref(), Some(site));
        assert_eq!(site_packages(Path::new("/usr/lib/libonnxruntime.so")), None);
        assert_eq!(site_packages(Path::new("libonnxruntime.so")), None);
    }

    #[test]
    fn a_library_that_is_not_there_is_reported_with_the_loaders_reason() {
        let missing = open_global("/nonexistent/libcudart.so.13".as_ref())
            .unwrap_err()
            .to_string();
        assert!(missing.contains("libcudart.so.13"), "{missing}");
        assert!(
            !missing.contains("dlopen failed"),
            "the loader's words: {missing}"
        );
        // a real library loads (glibc's maths library is on every Linux system)
        open_global("libm.so.6".as_ref()).unwrap();
    }
}
