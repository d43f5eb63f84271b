//! The watcher daemon (`dicom-xai watch`): every study a PACS exports into the drop folder
//! is processed once, safely and unattended, with its outputs delivered.
//!
//! ```text
//!  drop folder --inotify / polling / rescans--> [drop::DropFolder] stable files
//!        |                                           |
//!        |                                 header read: instance, own overlay,
//!        |                                 not DICOM, unusable  --> [journal] files
//!        v                                           |
//!  settle / required series / force_after  ---> studies: settling -> queued
//!                                                    |
//!  worker pool (`workers`, one shared Engine) <--- claim (atomic in SQLite)
//!        |  pipeline on the study (or only its changed series), report merged
//!        v
//!  outputs: out folder | study folder | C-STORE (retries, back-off) ; inputs kept/moved
//! ```
//!
//! Guarantees:
//! - Nothing is lost: every file and study state is in the journal ([`journal`]) before it
//!   matters; a restart rescans the drop folder and requeues studies left running.
//! - Nothing is done twice: a file already recorded with the same size and mtime is not
//!   read again; a finished study reruns only when a new file of it arrives, and then only
//!   the series that changed. Overlay UIDs are deterministic, so a rerun replaces its
//!   outputs; every output is written under a temporary name and renamed.
//! - Our own overlays (sent back by the PACS or written into the study folder) are
//!   recognised and never processed.
//! - A bad file or study never stops the daemon: it is recorded with its reason, retried
//!   with back-off where a retry can help, and the rest goes on. Input files are never
//!   modified; they are moved or deleted only when the site asks (`after`).
//!
//! With a [`Dispatch`] (`watch --broker`, the `queue` module's publisher), settled studies
//! are not processed here: the dispatcher thread (`dispatch.rs`) hands each over and the
//! journal records it as `published` once the receiver holds it.
//!
//! Operations: SIGTERM/SIGINT stop taking work, let the studies in hand finish and exit 0;
//! SIGHUP or a change of the configuration file reloads it (an invalid file is rejected
//! and the running configuration kept); `dicom-xai status --state DIR` lists the journal;
//! `[watch] metrics` serves Prometheus text on 127.0.0.1.

mod dispatch;
pub mod drop;
pub mod journal;
pub mod metrics;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use notify::Watcher;

use crate::config::{Settings, WatchSettings};
use crate::dicom::scan;
use crate::pipeline::{Engine, Overrides, RunError};
pub use dispatch::{Dispatch, DispatchError, SettledStudy, wait_unless_stopped};
use drop::DropFolder;
use journal::{FileKind, Journal};
use metrics::Metrics;

/// What the command line says beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// The configuration file.
    pub config: PathBuf,
    /// `--drop`.
    pub drop: Option<PathBuf>,
    /// `--out`.
    pub out: Option<PathBuf>,
    /// `--state`.
    pub state: Option<PathBuf>,
    /// `--models` / `--methods`.
    pub overrides: Overrides,
}

/// Why the daemon could not start.
#[derive(Debug, snafu::Snafu)]
#[non_exhaustive]
pub enum WatchError {
    /// The configuration or a model is unusable (exit 2).
    #[snafu(display("{source}"))]
    Start {
        /// The engine's error.
        source: RunError,
    },
    /// The configuration file is invalid (exit 2).
    #[snafu(display("{message}"))]
    Configuration {
        /// The problems.
        message: String,
    },
    /// The journal cannot be opened (exit 1).
    #[snafu(display("{source}"))]
    Journal {
        /// The journal's error.
        source: journal::JournalError,
    },
    /// A folder or the lock cannot be set up (exit 1).
    #[snafu(display("{}: {message}", path.display()))]
    Setup {
        /// The folder or file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// The running configuration: replaced whole on reload.
pub(crate) struct Current {
    pub(crate) engine: Arc<Engine>,
    pub(crate) watch: WatchSettings,
    pub(crate) out: PathBuf,
}

/// The settings with the command line's folders applied.
fn effective(mut settings: Settings, options: &WatchOptions) -> (Settings, PathBuf) {
    if let Some(drop) = &options.drop {
        settings.watch.drop = drop.clone();
    }
    if let Some(state) = &options.state {
        settings.watch.state = state.clone();
    }
    let out = options
        .out
        .clone()
        .unwrap_or_else(|| settings.output.dir.clone());
    (settings, out)
}

fn load(options: &WatchOptions) -> Result<Current, WatchError> {
    let settings = Settings::load(&options.config).map_err(|e| WatchError::Configuration {
        message: e.to_string(),
    })?;
    let (settings, out) = effective(settings, options);
    let watch = settings.watch.clone();
    let mut inputs = vec![watch.drop.clone()];
    if let crate::config::AfterProcessing::Move(archive) = &watch.after {
        inputs.push(archive.clone());
    }
    crate::logging::set_path_policy(
        settings
            .log_paths
            .unwrap_or(crate::logging::PathStyle::Hashed),
        &inputs,
    );
    let engine = Engine::new(settings, options.overrides.clone())
        .map_err(|source| WatchError::Start { source })?;
    Ok(Current {
        engine: Arc::new(engine),
        watch,
        out,
    })
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Runs the daemon until SIGTERM or SIGINT. With a `dispatch` (`watch --broker`), settled
/// studies are handed to it instead of being processed here: the inputs must then stay in
/// place (`after = "keep"`) and the outputs stay in the out folder (`deliver = ["out"]`),
/// since the workers read the one and write the other.
pub fn watch(
    options: &WatchOptions,
    dispatch: Option<Box<dyn Dispatch>>,
) -> Result<(), WatchError> {
    let current = load(options)?;
    let settings = current.watch.clone();
    if dispatch.is_some()
        && (settings.after != crate::config::AfterProcessing::Keep
            || settings
                .deliver
                .iter()
                .any(|d| *d != crate::config::Destination::Out))
    {
        return Err(WatchError::Configuration {
            message: format!(
                "{}: with a broker, workers read the inputs from the drop folder and write the \
                 outputs to the out folder: [watch] after must be \"keep\" and deliver only \
                 [\"out\"]",
                options.config.display()
            ),
        });
    }
    for dir in [&settings.drop, &settings.state, &current.out] {
        std::fs::create_dir_all(dir).map_err(|e| WatchError::Setup {
            path: dir.clone(),
            message: e.to_string(),
        })?;
    }
    // one daemon per state folder: a second one would process everything twice
    let lock_path = settings.state.join("daemon.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| WatchError::Setup {
            path: lock_path.clone(),
            message: e.to_string(),
        })?;
    lock.try_lock().map_err(|_| WatchError::Setup {
        path: lock_path.clone(),
        message: "another dicom-xai watch holds this state folder".into(),
    })?;
    let _ = std::fs::write(
        settings.state.join("daemon.pid"),
        std::process::id().to_string(),
    );

    let mut journal =
        Journal::open(&settings.state).map_err(|source| WatchError::Journal { source })?;
    for uid in journal
        .recover()
        .map_err(|source| WatchError::Journal { source })?
    {
        tracing::warn!(study = %uid, "was running when the daemon stopped: queued again");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(|e| WatchError::Setup {
            path: PathBuf::from("signal handler"),
            message: e.to_string(),
        })?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&reload)).map_err(|e| {
        WatchError::Setup {
            path: PathBuf::from("signal handler"),
            message: e.to_string(),
        }
    })?;

    let metrics = Arc::new(Metrics::default());
    if let Some(address) = settings.metrics {
        metrics::serve(
            address,
            Arc::clone(&metrics),
            Some(settings.state.clone()),
            Arc::clone(&stop),
        )
        .map_err(|e| WatchError::Setup {
            path: PathBuf::from(address.to_string()),
            message: format!("metrics endpoint: {e}"),
        })?;
    }

    let shared = Arc::new(RwLock::new(current));
    let mut workers = Vec::new();
    let local_workers = if dispatch.is_some() {
        0
    } else {
        settings.workers
    };
    if let Some(sink) = dispatch {
        let context = dispatch::Dispatcher {
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            state: settings.state.clone(),
            sink,
        };
        workers.push(std::thread::spawn(move || context.run()));
    }
    for index in 0..local_workers {
        let context = worker::Worker {
            index,
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            metrics: Arc::clone(&metrics),
            state: settings.state.clone(),
        };
        workers.push(std::thread::spawn(move || context.run()));
    }
    let delivery = {
        let context = worker::Delivery {
            shared: Arc::clone(&shared),
            stop: Arc::clone(&stop),
            metrics: Arc::clone(&metrics),
            state: settings.state.clone(),
        };
        std::thread::spawn(move || context.run())
    };

    let result = schedule(options, &shared, &mut journal, &stop, &reload, &metrics);
    stop.store(true, Ordering::SeqCst);
    tracing::info!("stopping: waiting for the studies in hand");
    for handle in workers {
        if handle.join().is_err() {
            tracing::error!("a worker thread panicked while stopping");
        }
    }
    if delivery.join().is_err() {
        tracing::error!("the delivery thread panicked while stopping");
    }
    tracing::info!("stopped");
    drop(lock);
    result
}

/// The scheduler: follows the drop folder, records stable files, queues settled studies
/// and reloads the configuration; returns when `stop` is set.
fn schedule(
    options: &WatchOptions,
    shared: &Arc<RwLock<Current>>,
    journal: &mut Journal,
    stop: &AtomicBool,
    reload: &AtomicBool,
    metrics: &Metrics,
) -> Result<(), WatchError> {
    let mut settings = read(shared).watch.clone();
    let mut folder = DropFolder::new(
        settings.drop.clone(),
        settings.ignore.clone(),
        settings.stable,
    );
    let (events_tx, events) = std::sync::mpsc::channel::<notify::Result<notify::Event>>();
    let mut watcher = match settings.poll {
        Some(_) => None,
        None => {
            let mut watcher =
                notify::recommended_watcher(events_tx).map_err(|e| WatchError::Setup {
                    path: settings.drop.clone(),
                    message: format!("cannot watch: {e}"),
                })?;
            watcher
                .watch(&settings.drop, notify::RecursiveMode::Recursive)
                .map_err(|e| WatchError::Setup {
                    path: settings.drop.clone(),
                    message: format!("cannot watch: {e}"),
                })?;
            Some(watcher)
        }
    };
    tracing::info!(
        drop = %settings.drop.display(),
        state = %settings.state.display(),
        mode = if settings.poll.is_some() { "polling" } else { "inotify" },
        "watching"
    );
    folder.rescan();
    let mut last_rescan = Instant::now();
    let mut config_stamp = modified(&options.config);
    let tick = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        // events first: wait for one at most a tick
        match events.recv_timeout(tick) {
            Ok(first) => {
                let mut rescan = false;
                for event in std::iter::once(first).chain(events.try_iter()) {
                    match event {
                        Ok(event) if event.need_rescan() => rescan = true,
                        // reads (ours included: walking a folder opens it) change nothing
                        Ok(event) if !changes_content(&event.kind) => {}
                        Ok(event) => event.paths.iter().for_each(|p| folder.touch(p)),
                        Err(error) => {
                            tracing::warn!("file events lost ({error}): rescanning");
                            rescan = true;
                        }
                    }
                }
                if rescan {
                    folder.rescan();
                    last_rescan = Instant::now();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if watcher.is_some() {
                    tracing::error!("the file watcher stopped: falling back to polling");
                    watcher = None;
                }
                std::thread::sleep(tick);
            }
        }
        let rescan_every = match (settings.poll, &watcher) {
            (Some(poll), _) => poll,
            (None, None) => Duration::from_secs(2),
            (None, Some(_)) => settings.rescan,
        };
        if last_rescan.elapsed() >= rescan_every {
            folder.rescan();
            last_rescan = Instant::now();
        }

        // configuration: SIGHUP or a new mtime
        let stamp = modified(&options.config);
        if reload.swap(false, Ordering::SeqCst) || stamp != config_stamp {
            config_stamp = stamp;
            if let Some(new) = reload_configuration(options, shared, &settings) {
                settings = new;
                folder.reconfigure(settings.ignore.clone(), settings.stable);
            }
        }

        let (ready, vanished) = folder.take_ready();
        for path in vanished {
            if let Err(error) = journal.forget_file(&path) {
                tracing::error!("{error}");
            }
        }
        for (path, stamp) in ready {
            record(journal, &path, stamp, metrics);
        }
        if let Err(error) = queue_settled(journal, shared, &settings, &folder) {
            tracing::error!("{error}");
        }
        metrics.set_pending_files(folder.pending());
    }
    Ok(())
}

/// Whether an event can mean new or changed content: creation, writes, renames.
fn changes_content(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Any | EventKind::Other => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Remove(_) => false,
    }
}

fn read(shared: &RwLock<Current>) -> std::sync::RwLockReadGuard<'_, Current> {
    shared
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Loads the configuration again; the new watch settings when it was accepted.
fn reload_configuration(
    options: &WatchOptions,
    shared: &RwLock<Current>,
    running: &WatchSettings,
) -> Option<WatchSettings> {
    match load(options) {
        Ok(new) => {
            let fixed = fixed_at_start_changes(running, &new.watch);
            if !fixed.is_empty() {
                tracing::warn!(
                    "configuration reloaded, but [watch] {} only change on restart: restart to \
                     apply; the running values are kept",
                    fixed.join(", ")
                );
            }
            let watch = WatchSettings {
                drop: running.drop.clone(),
                state: running.state.clone(),
                workers: running.workers,
                metrics: running.metrics,
                poll: match (running.poll, new.watch.poll) {
                    (Some(_), Some(poll)) => Some(poll),
                    (running, _) => running,
                },
                ..new.watch.clone()
            };
            let mut guard = shared.write().unwrap_or_else(|p| p.into_inner());
            *guard = Current {
                watch: watch.clone(),
                ..new
            };
            tracing::info!(config = %options.config.display(), "configuration reloaded");
            Some(watch)
        }
        Err(error) => {
            tracing::error!(
                config = %options.config.display(),
                "configuration rejected, the running one is kept: {error}"
            );
            None
        }
    }
}

/// The `[watch]` settings that differ in `new` but are fixed while the daemon runs: the
/// folders, the worker threads, the metrics listener, and polling against inotify (the
/// polling interval itself may change).
fn fixed_at_start_changes(running: &WatchSettings, new: &WatchSettings) -> Vec<&'static str> {
    [
        ("drop", running.drop != new.drop),
        ("state", running.state != new.state),
        ("workers", running.workers != new.workers),
        ("metrics", running.metrics != new.metrics),
        ("poll", running.poll.is_some() != new.poll.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, changed)| changed.then_some(name))
    .collect()
}

/// Reads a stable file's header and records what it is.
fn record(journal: &mut Journal, path: &Path, stamp: drop::Stamp, metrics: &Metrics) {
    match journal.known_file(path) {
        Ok(Some((size, mtime))) if size == stamp.size && mtime == stamp.mtime_ns => return,
        Ok(_) => {}
        Err(error) => {
            tracing::error!("{error}");
            return;
        }
    }
    let kind = match scan::read_instance(path) {
        Ok(found) if crate::config::is_own_overlay(found.header()) => FileKind::Own,
        Ok(found) => FileKind::Instance {
            study: found.study_uid().to_string(),
            series: found.series_uid().to_string(),
            sop: found.instance().sop_instance_uid.clone(),
        },
        Err(issue) => match issue.disposition {
            scan::Disposition::Skipped => {
                tracing::warn!(file = %path.display(), "skipped: {}", issue.message);
                FileKind::Skipped(issue.message)
            }
            scan::Disposition::Failed => {
                tracing::error!(file = %path.display(), "{}", issue.message);
                FileKind::Failed(issue.message)
            }
        },
    };
    if let FileKind::Instance { study, .. } = &kind {
        tracing::debug!(file = %path.display(), study = %study, "instance recorded");
        metrics.file_seen();
    }
    if let Err(error) = journal.record_file(path, stamp.size, stamp.mtime_ns, &kind) {
        tracing::error!("{error}");
    }
}

/// Queues the settling studies that are complete.
/// A study does not settle while files are still arriving in a drop subfolder that holds
/// its files: a slow or stalled transfer is not a finished study (`force_after` still
/// applies).
fn queue_settled(
    journal: &Journal,
    shared: &RwLock<Current>,
    settings: &WatchSettings,
    folder: &drop::DropFolder,
) -> Result<(), journal::JournalError> {
    let now = journal::now();
    let arriving = folder.arriving_folders();
    let still_arriving = |uid: &str| {
        !arriving.is_empty()
            && journal.study_files(uid).is_ok_and(|files| {
                files.iter().any(|(path, _, _)| {
                    folder
                        .study_folder(path)
                        .is_some_and(|f| arriving.contains(&f))
                })
            })
    };
    for (uid, first_seen, last_change) in journal.settling()? {
        let quiet = now - last_change;
        let why = if quiet >= settings.settle.as_secs_f64() && !still_arriving(&uid) {
            Some("settled")
        } else if now - first_seen >= settings.force_after.as_secs_f64() {
            Some("force_after reached")
        } else if !settings.required_rules.is_empty()
            && quiet >= settings.stable.as_secs_f64()
            && required_present(journal, shared, settings, &uid)
        {
            Some("required series present")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::info!(study = %uid, "queued: {why}");
            journal.enqueue(&uid)?;
        }
    }
    Ok(())
}

/// Whether every required rule takes a series of the study.
fn required_present(
    journal: &Journal,
    shared: &RwLock<Current>,
    settings: &WatchSettings,
    uid: &str,
) -> bool {
    let Ok(files) = journal.study_files(uid) else {
        return false;
    };
    let mut one_per_series: std::collections::BTreeMap<String, PathBuf> = Default::default();
    for (path, series, _) in files {
        one_per_series.entry(series).or_insert(path);
    }
    let found: Vec<_> = one_per_series
        .values()
        .filter_map(|path| scan::read_instance(path).ok())
        .collect();
    let current = read(shared);
    let studies = scan::group(found);
    let taken: Vec<&str> = studies
        .iter()
        .flat_map(|study| &study.series)
        .filter_map(|series| current.engine.settings().rule_for(series))
        .map(|rule| rule.name.as_str())
        .collect();
    settings
        .required_rules
        .iter()
        .all(|name| taken.contains(&name.as_str()))
}
