//! The daemon's threads besides the scheduler: workers that process queued studies, and
//! the delivery thread that sends outputs to the PACS with retries.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use snafu::{ResultExt, Snafu};

use super::journal::{Finished, Journal, JournalError, StudyState};
use super::metrics::Metrics;
use super::{Current, read};
use crate::config::{AfterProcessing, Destination, WatchSettings};
use crate::dicom::uid::InvalidUid;
use crate::output::{self, ReportError};
use crate::pipeline::{self, RunError};

/// A worker: claims queued studies and processes them, one at a time.
pub(super) struct Worker {
    pub(super) index: usize,
    pub(super) shared: Arc<RwLock<Current>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) state: PathBuf,
}

impl Worker {
    pub(super) fn run(self) {
        let span = tracing::info_span!("worker", index = self.index);
        let _entered = span.enter();
        let mut journal = match Journal::open(&self.state) {
            Ok(journal) => journal,
            Err(error) => {
                tracing::error!("worker cannot open the journal: {error}");
                return;
            }
        };
        while !self.stop.load(Ordering::SeqCst) {
            match journal.claim() {
                Ok(Some(uid)) => self.process(&mut journal, &uid),
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(error) => {
                    tracing::error!("{error}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    fn process(&self, journal: &mut Journal, uid: &str) {
        let span = tracing::info_span!("job", study = %uid);
        let _entered = span.enter();
        self.metrics.running(1);
        let started = Instant::now();
        let (engine, watch, out) = {
            let current = read(&self.shared);
            (
                Arc::clone(&current.engine),
                current.watch.clone(),
                current.out.clone(),
            )
        };
        // a panic in the pipeline fails this study, not the daemon
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_study(journal, &engine, &watch, &out, uid)
        }))
        .unwrap_or_else(|panic| {
            PanickedSnafu {
                message: crate::panic_message(panic.as_ref()),
            }
            .fail()
        });
        self.metrics.running(-1);
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(run) => {
                let finished = Finished {
                    status: run.status.clone(),
                    seconds,
                    report: run.report.clone(),
                    deliveries: run.deliveries.clone(),
                };
                match journal.finish(uid, &run.covered, &finished) {
                    Ok(()) => {
                        self.metrics.study_done(seconds, run.status == "failed");
                        tracing::info!(status = %run.status, seconds, "study processed");
                        after_processing(journal, &watch, uid);
                    }
                    Err(error) => tracing::error!("{error}"),
                }
            }
            Err(reason) => {
                let recorded = reason.to_string();
                match journal.fail_attempt(uid, &recorded, watch.max_attempts, watch.retry_after) {
                    Ok(StudyState::Failed) => {
                        self.metrics.study_done(seconds, true);
                        tracing::error!("study failed for good: {reason}");
                    }
                    Ok(_) => tracing::warn!("attempt failed, will retry: {reason}"),
                    Err(error) => tracing::error!("{error}; the attempt failed: {reason}"),
                }
            }
        }
    }
}

/// Why one attempt at a study failed: a reason to retry, recorded in the journal.
#[derive(Debug, Snafu)]
enum JobError {
    /// The journal could not be read.
    #[snafu(display("{source}"))]
    StudyJournal {
        /// The journal's error.
        source: JournalError,
    },
    /// The StudyInstanceUID cannot name the study's output folder.
    #[snafu(display("StudyInstanceUID {source}"))]
    StudyUid {
        /// What is wrong with it.
        source: InvalidUid,
    },
    /// The pipeline could not run or its report could not be written.
    #[snafu(display("{source}"))]
    Pipeline {
        /// The pipeline's error.
        source: RunError,
    },
    /// A superseded output could not be removed from the study folder.
    #[snafu(display("{}", error.message))]
    RemoveWrittenBack {
        /// The first failure, naming the file.
        error: ReportError,
    },
    /// An output could not be read to write it back.
    #[snafu(display("{}: {source}", path.display()))]
    ReadOutput {
        /// The output in the out folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An output could not be written into the study folder.
    #[snafu(display("{}: cannot write back: {source}", path.display()))]
    WriteBack {
        /// The copy in the study folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pipeline panicked.
    #[snafu(display("internal error: {message}"))]
    Panicked {
        /// The panic's message.
        message: String,
    },
}

/// The outcome of one successful run of a study.
struct StudyRun {
    status: String,
    report: PathBuf,
    covered: Vec<PathBuf>,
    deliveries: Vec<(PathBuf, String, String)>,
}

/// Runs the pipeline on the study (or only its changed series) and delivers the outputs
/// that are delivered at once; an error is a reason to retry.
fn run_study(
    journal: &Journal,
    engine: &pipeline::Engine,
    watch: &WatchSettings,
    out: &Path,
    uid: &str,
) -> Result<StudyRun, JobError> {
    let files = journal.study_files(uid).context(StudyJournalSnafu)?;
    let rerun = journal.has_run(uid).context(StudyJournalSnafu)?;
    let changed: BTreeSet<String> = files
        .iter()
        .filter(|(_, _, processed)| !processed)
        .map(|(_, series, _)| series.clone())
        .collect();
    let wanted = |series: &str| !rerun || changed.contains(series);
    let covered: Vec<PathBuf> = files
        .iter()
        .filter(|(_, s, _)| wanted(s))
        .map(|(path, _, _)| path.clone())
        .collect();
    let (study, errors) = pipeline::read_study(uid, covered.iter().map(PathBuf::as_path));
    let study_dir = output::study_dir(out, uid).context(StudyUidSnafu)?;
    remove_stale_temporaries(&study_dir);
    tracing::info!(
        series = study.series.len(),
        rerun,
        "processing{}",
        if rerun { " the changed series" } else { "" }
    );
    let processed = if rerun {
        engine.rerun(&study, out, errors)
    } else {
        engine.process_study(&study, out, errors)
    };
    let (report, report_path) = processed.context(PipelineSnafu)?;
    let status = report.status.name().to_string();

    // what this run made: a rerun's report also holds the series it kept; the study's
    // Structured Report is made again from the whole report
    let outputs: Vec<(PathBuf, String)> = report
        .series
        .iter()
        .filter(|s| {
            study
                .series
                .iter()
                .any(|redone| redone.uid == s.series_instance_uid)
        })
        .flat_map(|s| s.outputs())
        .chain(report.structured_report_output())
        .map(|(file, sop)| (file.to_path_buf(), sop.to_string()))
        .collect();
    let mut deliveries = Vec::new();
    for destination in &watch.deliver {
        match destination {
            Destination::Out => {}
            Destination::StudyFolder => {
                write_back(
                    &study_dir,
                    &outputs,
                    &report.superseded,
                    &files,
                    &watch.drop,
                )?;
            }
            Destination::Pacs => {
                for (relative, sop) in &outputs {
                    deliveries.push((
                        study_dir.join(relative),
                        sop.clone(),
                        Destination::Pacs.name().to_string(),
                    ));
                }
            }
        }
    }
    Ok(StudyRun {
        status,
        report: report_path,
        covered,
        deliveries,
    })
}

/// Leftovers of a write interrupted by a crash (`.<name>.part`), removed before a rerun.
fn remove_stale_temporaries(study_dir: &Path) {
    for entry in walkdir::WalkDir::new(study_dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file()
            && name.starts_with('.')
            && name.ends_with(".part")
            && let Err(error) = std::fs::remove_file(entry.path())
        {
            tracing::warn!(file = %entry.path().display(), "cannot remove: {error}");
        }
    }
}

/// Copies the outputs into the study's own folder in the drop tree, under `dicom-xai/`
/// (written under a hidden temporary name, then renamed; the watcher recognises them as
/// ours and never processes them), and removes the copies of `superseded` outputs there.
fn write_back(
    study_dir: &Path,
    outputs: &[(PathBuf, String)],
    superseded: &[output::SupersededOutput],
    files: &[(PathBuf, String, bool)],
    drop: &Path,
) -> Result<(), JobError> {
    let Some(folder) = study_folder(files, drop) else {
        return Ok(());
    };
    let removed = output::remove_superseded(&folder.join("dicom-xai"), superseded);
    if let Some(error) = removed.into_iter().next() {
        return RemoveWrittenBackSnafu { error }.fail();
    }
    for (relative, _) in outputs {
        let target = folder.join("dicom-xai").join(relative);
        let made = study_dir.join(relative);
        let bytes = std::fs::read(&made).context(ReadOutputSnafu { path: &made })?;
        crate::files::write_atomically(&target, &bytes)
            .context(WriteBackSnafu { path: &target })?;
    }
    Ok(())
}

/// The study's folder in the drop tree: the folder directly below the drop folder that
/// holds every file of the study (the drop folder itself when they are spread out). It
/// stays the same when late series arrive in subfolders of their own.
fn study_folder(files: &[(PathBuf, String, bool)], drop: &Path) -> Option<PathBuf> {
    let mut top: Option<&std::ffi::OsStr> = None;
    for (path, _, _) in files {
        let relative = path.strip_prefix(drop).ok()?;
        let mut components = relative.components();
        let first = components.next()?.as_os_str();
        // a file directly in the drop folder, or two top folders: the drop folder
        if components.next().is_none() || top.is_some_and(|t| t != first) {
            return Some(drop.to_path_buf());
        }
        top = Some(first);
    }
    top.map(|t| drop.join(t))
}

/// Keeps, moves or deletes the study's processed inputs, as the site asked.
fn after_processing(journal: &Journal, watch: &WatchSettings, uid: &str) {
    if watch.after == AfterProcessing::Keep {
        return;
    }
    let files = match journal.processed_files(uid) {
        Ok(files) => files,
        Err(error) => {
            tracing::error!("{error}");
            return;
        }
    };
    for path in files {
        let Ok(relative) = path.strip_prefix(&watch.drop) else {
            continue;
        };
        let result = match &watch.after {
            AfterProcessing::Keep => Ok(()),
            AfterProcessing::Delete => std::fs::remove_file(&path),
            AfterProcessing::Move(archive) => {
                let target = archive.join(relative);
                move_file(&path, &target).and_then(|()| {
                    journal
                        .moved_file(&path, &target)
                        .map_err(std::io::Error::other)
                })
            }
        };
        if let Err(error) = result {
            tracing::error!(file = %path.display(), "after processing: {error}");
        }
    }
}

/// Renames, or copies and removes across file systems.
fn move_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) => {
            std::fs::copy(from, to)?;
            std::fs::remove_file(from)
        }
    }
}

/// The delivery thread: sends pending outputs to the PACS, one association per study,
/// retrying with back-off.
pub(super) struct Delivery {
    pub(super) shared: Arc<RwLock<Current>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) state: PathBuf,
}

impl Delivery {
    pub(super) fn run(self) {
        let journal = match Journal::open(&self.state) {
            Ok(journal) => journal,
            Err(error) => {
                tracing::error!("delivery cannot open the journal: {error}");
                return;
            }
        };
        while !self.stop.load(Ordering::SeqCst) {
            let watch = read(&self.shared).watch.clone();
            if let Some(pacs) = &watch.pacs
                && let Err(error) = self.send_due(&journal, pacs, watch.retry_after)
            {
                tracing::error!("{error}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn send_due(
        &self,
        journal: &Journal,
        pacs: &crate::config::PacsSettings,
        retry_after: Duration,
    ) -> Result<(), super::journal::JournalError> {
        let due = journal.due_deliveries(Destination::Pacs.name())?;
        let mut by_study: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for delivery in due {
            by_study
                .entry(delivery.study_uid)
                .or_default()
                .push(delivery.path);
        }
        let peer = crate::dicom::store::StorePeer {
            host: pacs.host.clone(),
            port: pacs.port,
            called_ae: pacs.called_ae.clone(),
            calling_ae: pacs.calling_ae.clone(),
            timeout: pacs.timeout,
        };
        for (study, paths) in by_study {
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
            let results = crate::dicom::store::store_files(&peer, &paths);
            let mut failed = 0;
            for (path, result) in paths.iter().zip(results) {
                let message = result.as_ref().err().map(|e| e.to_string());
                if message.is_some() {
                    failed += 1;
                }
                journal.delivered(
                    path,
                    message.as_deref().map_or(Ok(()), Err),
                    pacs.max_attempts,
                    retry_after,
                )?;
                if let Some(message) = message {
                    tracing::warn!(study = %study, "C-STORE failed: {message}");
                }
            }
            self.metrics.delivered(paths.len() - failed, failed);
            tracing::info!(
                study = %study,
                peer = %peer,
                sent = paths.len() - failed,
                failed,
                "delivered to the PACS"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_study_folder_is_the_top_folder_of_its_files() {
        let drop = Path::new("/drop");
        let files = vec![
            (PathBuf::from("/drop/p1/s1/a.dcm"), "x".to_string(), false),
            (
                PathBuf::from("/drop/p1/s1/t2/b.dcm"),
                "y".to_string(),
                false,
            ),
        ];
        assert_eq!(study_folder(&files, drop), Some(PathBuf::from("/drop/p1")));
        let spread = vec![
            (PathBuf::from("/drop/p1/a.dcm"), "x".to_string(), false),
            (PathBuf::from("/drop/p2/b.dcm"), "y".to_string(), false),
        ];
        assert_eq!(study_folder(&spread, drop), Some(PathBuf::from("/drop")));
    }
}
