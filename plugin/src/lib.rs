//! # dicom-xai-orthanc
//!
//! The dicom-xai Orthanc plugin: when a study becomes stable in Orthanc, its new series
//! go through the same pipeline as `dicom-xai run` (the site configuration's rules,
//! models, explanation methods and quality checks), and the Secondary Capture overlays,
//! labelled NOT FOR DIAGNOSTIC USE, are stored back into the same study, where Orthanc
//! Explorer, its web viewer and any DICOMweb viewer show them beside the source images.
//!
//! This crate is FFI glue; the work is the `dicom_xai` library's.
//!
//! ## How it runs
//!
//! ```text
//! Orthanc core ── StableStudy ──> on_change: enqueue, return at once (jobs)
//!                                   │
//! worker thread <───────────────────┘  GET /studies/{id}/series, /instances/{id}/file
//!     │ new or changed series                      (worker)
//!     v
//! engine thread: Engine::study_report -> overlays under Out/<StudyInstanceUID>/  (engine)
//!     │
//!     v
//! worker: POST /instances for each overlay, report.json       (worker)
//! ```
//!
//! The on-change callback runs inside Orthanc's core, where calling the REST API can
//! deadlock, so it only queues the study. Our own overlay series never make work, so the
//! study becoming stable again once they are stored ends there.
//!
//! ## Configuration
//!
//! A `DicomXai` section in Orthanc's configuration ([`options`]): `Enable`, `Config` (the
//! site TOML file), optional `Models`, `Methods`, `Out` and `StopTimeout`.
//!
//! ## Operations
//!
//! - Logs go to Orthanc's log through `tracing` ([`log`]); they name Orthanc IDs and DICOM
//!   UIDs, never patients.
//! - REST routes `/dicom-xai/status`, `/dicom-xai/studies/{id}/report` and
//!   `/dicom-xai/studies/{id}/process` ([`rest`]).
//! - Every entry point from Orthanc catches panics: an error fails one job or one request,
//!   never Orthanc. A bad `DicomXai` section or site configuration leaves the plugin
//!   inactive (the status route says why) and Orthanc running.
//! - `OrthancPluginFinalize` stops the worker: the study in hand finishes, or is abandoned
//!   after `StopTimeout`, and the threads are joined.
//!
//! ## Modules
//!
//! - [`ffi`]: the SDK's structs and numbers, written by hand from `OrthancCPlugin.h`.
//! - [`orthanc`]: safe calls into Orthanc behind a gate that closes at Finalize.
//! - [`jobs`], [`worker`], [`engine`]: the queue, the Orthanc-facing worker, the pipeline
//!   thread; [`error`]: why a study job failed.

pub mod engine;
pub mod error;
pub mod ffi;
pub mod jobs;
pub mod log;
pub mod options;
pub mod orthanc;
pub mod rest;
pub mod worker;

use std::ffi::{CStr, c_char};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use dicom_xai::config::{ConfigError, Settings};
use snafu::{ResultExt, Snafu};

use crate::ffi::{ErrorCode, OrthancPluginContext};
use crate::jobs::Jobs;
use crate::options::OptionsError;
use crate::orthanc::CallError;

/// The plugin's name in Orthanc (`/plugins/dicom-xai`).
const NAME: &CStr = c"dicom-xai";
/// The plugin's version, NUL-terminated.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
/// The oldest Orthanc accepted: the SDK this crate was written against.
const MINIMUM_ORTHANC: (u32, u32, u32) = (1, 10, 1);

/// What the callbacks share.
pub struct Shared {
    /// The job board.
    pub jobs: Arc<Jobs>,
    /// Whether studies are processed.
    pub enabled: bool,
    /// The site configuration file.
    pub config: Option<PathBuf>,
    /// Where reports and overlays go.
    pub out: Option<PathBuf>,
    /// Why the plugin is inactive, when it was asked to be active.
    pub problem: Option<String>,
}

static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);

/// The threads Finalize stops.
struct Threads {
    worker: JoinHandle<()>,
    engine: engine::Thread,
}

static THREADS: Mutex<Option<Threads>> = Mutex::new(None);

/// What the callbacks share, while the plugin is initialized.
pub fn shared() -> Option<Arc<Shared>> {
    SHARED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Runs one entry point from Orthanc, turning a panic into `on_panic` (panics must never
/// cross into Orthanc; the panic hook has logged it).
pub fn guarded<T>(what: &str, on_panic: T, f: impl FnOnce() -> T) -> T {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        orthanc::log(
            orthanc::Level::Error,
            &format!("dicom-xai: {what} failed with an internal error; Orthanc carries on"),
        );
        on_panic
    })
}

/// Called by Orthanc when it loads the plugin.
///
/// # Safety
/// `context` is the context Orthanc passes, valid until [`OrthancPluginFinalize`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn OrthancPluginInitialize(context: *mut OrthancPluginContext) -> i32 {
    guarded("OrthancPluginInitialize", -1, || {
        if context.is_null() {
            return -1;
        }
        orthanc::open(context);
        log::install();
        initialize()
    })
}

/// Called by Orthanc when it unloads the plugin (Orthanc is stopping).
#[unsafe(no_mangle)]
pub extern "C" fn OrthancPluginFinalize() {
    guarded("OrthancPluginFinalize", (), finalize);
    orthanc::close();
}

/// The plugin's name.
#[unsafe(no_mangle)]
pub extern "C" fn OrthancPluginGetName() -> *const c_char {
    NAME.as_ptr()
}

/// The plugin's version.
#[unsafe(no_mangle)]
pub extern "C" fn OrthancPluginGetVersion() -> *const c_char {
    VERSION.as_ptr().cast()
}

fn initialize() -> i32 {
    let version = orthanc::version().unwrap_or_default();
    if !version_at_least(&version, MINIMUM_ORTHANC) {
        let (major, minor, revision) = MINIMUM_ORTHANC;
        tracing::error!(
            "Orthanc {version} is too old for this plugin: it needs {major}.{minor}.{revision} \
             or later"
        );
        return -1;
    }
    let _ = orthanc::set_description(
        NAME,
        "Explanations of brain-MR classifiers as Secondary Capture overlays (NOT FOR \
         DIAGNOSTIC USE), stored into each study once it is stable",
    );
    let routes = [
        (rest::STATUS, rest::status as ffi::RestCallback),
        (rest::REPORT, rest::report),
        (rest::PROCESS, rest::process),
    ];
    for (path, callback) in routes {
        if let Err(error) = orthanc::register_rest(path, callback) {
            tracing::error!("cannot register {}: {error}", path.to_string_lossy());
            return -1;
        }
    }
    let shared = match start() {
        Ok(shared) => shared,
        Err(problem) => {
            tracing::error!("{problem}; the plugin is inactive, Orthanc runs without it");
            Shared {
                jobs: Arc::new(Jobs::default()),
                enabled: false,
                config: None,
                out: None,
                problem: Some(problem.to_string()),
            }
        }
    };
    if shared.enabled
        && let Err(error) = orthanc::register_on_change(on_change)
    {
        tracing::error!("cannot register the on-change callback: {error}");
        return -1;
    }
    *SHARED.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(shared));
    0
}

/// Why the plugin could not start: it stays inactive, and the status route says why.
#[derive(Debug, Snafu)]
enum StartError {
    /// Orthanc did not give its configuration.
    #[snafu(display("cannot read Orthanc's configuration: {source}"))]
    OrthancConfiguration {
        /// Orthanc's error.
        source: CallError,
    },
    /// The `DicomXai` section is wrong.
    #[snafu(display("{source}"))]
    Options {
        /// What is wrong with which option.
        source: OptionsError,
    },
    /// The site configuration named by `Config` is not usable.
    #[snafu(display(
        "\"{}\".\"Config\": the site configuration is not usable: {source}",
        options::SECTION
    ))]
    SiteConfiguration {
        /// Its problems.
        source: ConfigError,
    },
    /// The `Out` folder could not be made.
    #[snafu(display(
        "\"{}\".\"Out\": cannot create {}: {source}",
        options::SECTION,
        path.display()
    ))]
    CreateOut {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The engine thread could not be started.
    #[snafu(display("cannot start the engine thread: {source}"))]
    EngineThread {
        /// The I/O error.
        source: std::io::Error,
    },
    /// The worker thread could not be started.
    #[snafu(display("cannot start the worker thread: {source}"))]
    WorkerThread {
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Reads the options and the site configuration and starts the threads; an error says
/// what is wrong with which option or file.
fn start() -> Result<Shared, StartError> {
    let configuration = orthanc::configuration().context(OrthancConfigurationSnafu)?;
    let Some(options) = options::parse(&configuration).context(OptionsSnafu)? else {
        tracing::warn!(
            "\"{}\".\"Enable\" is not true in Orthanc's configuration: no study is processed",
            options::SECTION
        );
        return Ok(Shared {
            jobs: Arc::new(Jobs::default()),
            enabled: false,
            config: None,
            out: None,
            problem: None,
        });
    };
    let config = std::path::absolute(&options.config).unwrap_or(options.config.clone());
    let settings = Settings::load(&config).context(SiteConfigurationSnafu)?;
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| settings.output.dir.clone());
    let out = std::path::absolute(&out).unwrap_or(out);
    // instances are downloaded under Orthanc's IDs, but a site's own paths may still show
    dicom_xai::logging::set_path_policy(
        settings
            .log_paths
            .unwrap_or(dicom_xai::logging::PathStyle::Hashed),
        &[out.join(".incoming")],
    );
    std::fs::create_dir_all(&out).context(CreateOutSnafu { path: &out })?;
    let jobs = Arc::new(Jobs::default());
    let (client, engine_thread) = engine::spawn(
        settings,
        options.overrides.to_overrides(),
        Arc::clone(&jobs),
    )
    .context(EngineThreadSnafu)?;
    let worker = worker::Worker {
        jobs: Arc::clone(&jobs),
        engine: client,
        out: out.clone(),
        grace: options.stop_timeout,
    };
    let worker = std::thread::Builder::new()
        .name("dicom-xai-worker".into())
        .spawn(move || worker.run())
        .context(WorkerThreadSnafu)?;
    *THREADS.lock().unwrap_or_else(PoisonError::into_inner) = Some(Threads {
        worker,
        engine: engine_thread,
    });
    tracing::info!(
        config = %config.display(),
        out = %out.display(),
        models = ?options.overrides.models,
        methods = ?options.overrides.methods,
        stop_timeout = options.stop_timeout.as_secs_f64(),
        "started: stable studies are processed"
    );
    Ok(Shared {
        jobs,
        enabled: true,
        config: Some(config),
        out: Some(out),
        problem: None,
    })
}

fn finalize() {
    let shared = SHARED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(shared) = &shared {
        shared.jobs.stop();
    }
    let threads = THREADS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    let Some(threads) = threads else {
        tracing::info!("stopped");
        return;
    };
    let running = shared
        .as_ref()
        .and_then(|s| s.jobs.status()["counts"]["running"].as_u64())
        .unwrap_or(0);
    if running > 0 {
        tracing::warn!("stopping: waiting for the study in hand (at most StopTimeout)");
    }
    // bounded: the worker abandons the study in hand once StopTimeout has passed
    if threads.worker.join().is_err() {
        tracing::error!("the worker thread ended with an internal error");
    }
    if threads.engine.finish(Duration::from_secs(1)) {
        tracing::info!("stopped: worker and engine threads joined");
    } else {
        tracing::warn!(
            "stopped: worker joined; the engine thread is still busy with an abandoned study \
             and ends with Orthanc"
        );
    }
}

/// Orthanc's changes: stable studies are queued; nothing else is done here, as this runs
/// inside Orthanc's core.
unsafe extern "C" fn on_change(
    change_type: i32,
    resource_type: i32,
    resource_id: *const c_char,
) -> ErrorCode {
    guarded("the on-change callback", ffi::PLUGIN_ERROR, || {
        match change_type {
            ffi::change::STABLE_STUDY if resource_type == ffi::RESOURCE_STUDY => {
                if resource_id.is_null() {
                    return ffi::SUCCESS;
                }
                // SAFETY: Orthanc passes the resource's NUL-terminated ID.
                let id = unsafe { CStr::from_ptr(resource_id) }.to_string_lossy();
                if let Some(shared) = shared()
                    && shared.jobs.enqueue(&id)
                {
                    tracing::info!(study = %id, "stable study queued");
                }
            }
            ffi::change::ORTHANC_STOPPED => {
                if let Some(shared) = shared() {
                    shared.jobs.stop();
                }
            }
            _ => {}
        }
        ffi::SUCCESS
    })
}

/// Whether an Orthanc version ("1.10.1", "mainline") is at least `minimum`.
fn version_at_least(version: &str, minimum: (u32, u32, u32)) -> bool {
    if version == "mainline" {
        return true;
    }
    let mut numbers = version.split('.').map(|n| n.trim().parse::<u32>());
    match (numbers.next(), numbers.next(), numbers.next()) {
        (Some(Ok(major)), Some(Ok(minor)), Some(Ok(revision))) => {
            (major, minor, revision) >= minimum
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orthanc_versions() {
        assert!(version_at_least("1.10.1", MINIMUM_ORTHANC));
        assert!(version_at_least("1.12.0", MINIMUM_ORTHANC));
        assert!(version_at_least("mainline", MINIMUM_ORTHANC));
        assert!(!version_at_least("1.9.7", MINIMUM_ORTHANC));
        assert!(!version_at_least("1.10", MINIMUM_ORTHANC));
        assert!(!version_at_least("", MINIMUM_ORTHANC));
    }

    #[test]
    fn name_and_version_are_c_strings() {
        // SAFETY: both return static NUL-terminated strings.
        let name = unsafe { CStr::from_ptr(OrthancPluginGetName()) };
        assert_eq!(name.to_str(), Ok("dicom-xai"));
        // SAFETY: as above.
        let version = unsafe { CStr::from_ptr(OrthancPluginGetVersion()) };
        assert_eq!(version.to_str(), Ok(env!("CARGO_PKG_VERSION")));
    }

    #[test]
    fn panics_stay_inside() {
        assert_eq!(guarded("test", 7, || panic!("boom")), 7);
        let payload: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(dicom_xai::panic_message(payload.as_ref()), "boom");
    }
}
