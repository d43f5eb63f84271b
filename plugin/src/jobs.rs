//! The job board shared by Orthanc's callbacks and the worker: the queue of studies to
//! process, each study's latest job (what `/dicom-xai/status` shows), the instances each
//! study's series held when they were last processed, and the stop signal.
//!
//! The on-change callback only calls [`Jobs::enqueue`], which takes a mutex for a few
//! instructions and never calls Orthanc, so Orthanc's core is never held up.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;

/// Finished jobs kept for the status page (the oldest are forgotten first).
const KEPT_FINISHED: usize = 1000;

/// Where a study's latest job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for the worker.
    Queued,
    /// In the worker's hands.
    Running,
    /// Finished; its report says ok or partial.
    Done,
    /// Finished without result; `reason` says why.
    Failed,
}

/// One study's latest job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Orthanc's ID of the study.
    pub study: String,
    /// Its StudyInstanceUID, once read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub study_instance_uid: Option<String>,
    /// Where the job stands.
    pub state: State,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the last run did, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The report's status (ok, partial, failed) after the last run that processed series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report_status: Option<String>,
    /// Times the study was taken up (a study becomes stable again when instances arrive,
    /// and after its overlays are stored).
    pub runs: u32,
    /// Series processed by the last run.
    pub series_processed: usize,
    /// Overlays the last run stored in Orthanc.
    pub overlays_stored: usize,
    /// Outdated overlays the last run removed from Orthanc (a rerun explained other slices
    /// of a changed series).
    pub overlays_removed: usize,
    /// When it was last queued (UTC).
    pub queued_at: String,
    /// When the last run started (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the last run finished (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// How long the last run took.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip)]
    updated: Instant,
    #[serde(skip)]
    again: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Processed (or nothing to do).
    Done {
        /// Series processed.
        series: usize,
        /// Overlays stored in Orthanc.
        overlays: usize,
        /// Outdated overlays removed from Orthanc.
        removed: usize,
        /// The report's status, when series were processed.
        report_status: Option<String>,
        /// What happened, in words.
        detail: String,
    },
    /// Nothing new to process (the study became stable again after our overlays were
    /// stored, say): the figures of the last run stay, with this detail.
    Unchanged(String),
    /// Failed, with the reason (naming the study or instance).
    Failed(String),
}

/// The state of the engine (ONNX Runtime and the models), loaded once at start.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "lowercase")]
pub enum EngineState {
    /// Loading.
    Loading,
    /// Ready.
    Ready,
    /// Could not be loaded; every job fails with this reason.
    Failed(String),
}

/// The instances (Orthanc IDs, sorted) each series of a study held when last processed.
pub type Processed = BTreeMap<String, Vec<String>>;

struct Board {
    pending: VecDeque<String>,
    jobs: HashMap<String, Job>,
    processed: HashMap<String, Processed>,
    engine: EngineState,
    stopping: Option<Instant>,
}

/// The board and the bell the worker waits on.
pub struct Jobs {
    board: Mutex<Board>,
    bell: Condvar,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            board: Mutex::new(Board {
                pending: VecDeque::new(),
                jobs: HashMap::new(),
                processed: HashMap::new(),
                engine: EngineState::Loading,
                stopping: None,
            }),
            bell: Condvar::new(),
        }
    }
}

impl Jobs {
    fn board(&self) -> MutexGuard<'_, Board> {
        self.board.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `study` (an Orthanc ID). A study already queued stays queued once; a study
    /// being processed is queued again when its run ends. False once stopping.
    pub fn enqueue(&self, study: &str) -> bool {
        let mut board = self.board();
        if board.stopping.is_some() {
            return false;
        }
        let now = Instant::now();
        let queued_at = utc_now();
        let pending = board.pending.iter().any(|s| s == study);
        let job = board.jobs.entry(study.to_string()).or_insert_with(|| Job {
            study: study.to_string(),
            study_instance_uid: None,
            state: State::Queued,
            reason: None,
            detail: None,
            report_status: None,
            runs: 0,
            series_processed: 0,
            overlays_stored: 0,
            overlays_removed: 0,
            queued_at: queued_at.clone(),
            started_at: None,
            finished_at: None,
            seconds: None,
            updated: now,
            again: false,
        });
        match job.state {
            State::Running => {
                job.again = true;
                return true;
            }
            State::Queued if pending => return true,
            _ => {}
        }
        job.state = State::Queued;
        job.queued_at = queued_at;
        job.updated = now;
        board.pending.push_back(study.to_string());
        self.bell.notify_all();
        true
    }

    /// Waits for the next study; `None` once stopping.
    pub fn next(&self) -> Option<String> {
        let mut board = self.board();
        loop {
            if board.stopping.is_some() {
                return None;
            }
            if let Some(study) = board.pending.pop_front() {
                return Some(study);
            }
            board = self
                .bell
                .wait_timeout(board, Duration::from_secs(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Marks `study` running.
    pub fn start(&self, study: &str) {
        let mut board = self.board();
        if let Some(job) = board.jobs.get_mut(study) {
            job.state = State::Running;
            job.runs += 1;
            job.started_at = Some(utc_now());
            job.finished_at = None;
            job.seconds = None;
            job.updated = Instant::now();
        }
    }

    /// Records the StudyInstanceUID of `study`.
    pub fn set_study_uid(&self, study: &str, uid: &str) {
        if let Some(job) = self.board().jobs.get_mut(study) {
            job.study_instance_uid = Some(uid.to_string());
        }
    }

    /// Records how the run of `study` ended; queues it again if it became stable while
    /// running.
    pub fn finish(&self, study: &str, outcome: Outcome, seconds: f64) {
        let mut board = self.board();
        let stopping = board.stopping.is_some();
        let Some(job) = board.jobs.get_mut(study) else {
            return;
        };
        job.finished_at = Some(utc_now());
        job.seconds = Some(seconds);
        job.updated = Instant::now();
        match outcome {
            Outcome::Done {
                series,
                overlays,
                removed,
                report_status,
                detail,
            } => {
                job.state = State::Done;
                job.reason = None;
                job.series_processed = series;
                job.overlays_stored = overlays;
                job.overlays_removed = removed;
                if report_status.is_some() {
                    job.report_status = report_status;
                }
                job.detail = Some(detail);
            }
            Outcome::Unchanged(detail) => {
                // a failure stays a failure until something new arrives
                job.state = if job.reason.is_some() {
                    State::Failed
                } else {
                    State::Done
                };
                job.detail = Some(detail);
            }
            Outcome::Failed(reason) => {
                job.state = State::Failed;
                job.reason = Some(reason);
                job.detail = None;
                job.series_processed = 0;
                job.overlays_stored = 0;
                job.overlays_removed = 0;
            }
        }
        let again = std::mem::take(&mut job.again);
        if again && !stopping {
            job.state = State::Queued;
            job.queued_at = utc_now();
            board.pending.push_back(study.to_string());
            self.bell.notify_all();
        }
        forget_oldest(&mut board.jobs);
    }

    /// What each series of `study` held when last processed.
    pub fn processed(&self, study: &str) -> Option<Processed> {
        self.board().processed.get(study).cloned()
    }

    /// Records that these series of `study` were processed with these instances.
    pub fn mark_processed(&self, study: &str, series: Processed) {
        self.board()
            .processed
            .entry(study.to_string())
            .or_default()
            .extend(series);
    }

    /// Forgets what was processed of `study`, so its next run redoes every series.
    pub fn forget(&self, study: &str) {
        self.board().processed.remove(study);
    }

    /// The StudyInstanceUID the last run of `study` read, if any.
    pub fn study_uid(&self, study: &str) -> Option<String> {
        self.board()
            .jobs
            .get(study)
            .and_then(|j| j.study_instance_uid.clone())
    }

    /// Sets the engine's state.
    pub fn set_engine(&self, engine: EngineState) {
        self.board().engine = engine;
        self.bell.notify_all();
    }

    /// The engine's state.
    pub fn engine(&self) -> EngineState {
        self.board().engine.clone()
    }

    /// Stops taking work (Orthanc is stopping); the first call sets the time.
    pub fn stop(&self) {
        let mut board = self.board();
        if board.stopping.is_none() {
            board.stopping = Some(Instant::now());
        }
        self.bell.notify_all();
    }

    /// Since when the plugin has been stopping.
    pub fn stopping_since(&self) -> Option<Instant> {
        self.board().stopping
    }

    /// The status page: the engine, counts per state and the jobs, most recent first.
    pub fn status(&self) -> serde_json::Value {
        let board = self.board();
        let mut jobs: Vec<&Job> = board.jobs.values().collect();
        jobs.sort_by_key(|j| std::cmp::Reverse(j.updated));
        let count = |state: State| jobs.iter().filter(|j| j.state == state).count();
        serde_json::json!({
            "engine": board.engine,
            "stopping": board.stopping.is_some(),
            "counts": {
                "queued": count(State::Queued),
                "running": count(State::Running),
                "done": count(State::Done),
                "failed": count(State::Failed),
            },
            "jobs": jobs,
        })
    }
}

/// Drops the oldest finished jobs beyond [`KEPT_FINISHED`].
fn forget_oldest(jobs: &mut HashMap<String, Job>) {
    let finished = |j: &Job| matches!(j.state, State::Done | State::Failed);
    let count = jobs.values().filter(|j| finished(j)).count();
    if count <= KEPT_FINISHED {
        return;
    }
    let mut old: Vec<(Instant, String)> = jobs
        .values()
        .filter(|j| finished(j))
        .map(|j| (j.updated, j.study.clone()))
        .collect();
    old.sort();
    for (_, study) in old.into_iter().take(count - KEPT_FINISHED) {
        jobs.remove(&study);
    }
}

/// Now, as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    utc(seconds)
}

/// Seconds since 1970 as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
fn utc(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let time = seconds % 86_400;
    // days since 1970-01-01 to a civil date (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        time / 3600,
        time % 3600 / 60,
        time % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> Outcome {
        Outcome::Done {
            series: 1,
            overlays: 2,
            removed: 0,
            report_status: Some("ok".into()),
            detail: "processed".into(),
        }
    }

    #[test]
    fn a_study_is_queued_once_and_again_after_a_run_it_interrupted() {
        let jobs = Jobs::default();
        assert!(jobs.enqueue("a"));
        assert!(jobs.enqueue("a"));
        assert!(jobs.enqueue("b"));
        assert_eq!(jobs.next().as_deref(), Some("a"));
        jobs.start("a");
        // stable again while running: queued behind b once the run ends
        jobs.enqueue("a");
        assert_eq!(jobs.status()["counts"]["running"], 1);
        jobs.finish("a", done(), 1.0);
        assert_eq!(jobs.next().as_deref(), Some("b"));
        assert_eq!(jobs.next().as_deref(), Some("a"));
        let status = jobs.status();
        let a = status["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .find(|j| j["study"] == "a")
            .expect("a");
        assert_eq!(a["state"], "queued");
        assert_eq!(a["runs"], 1);
    }

    #[test]
    fn failures_keep_their_reason_and_stop_ends_the_queue() {
        let jobs = Jobs::default();
        jobs.enqueue("a");
        let study = jobs.next().expect("a");
        jobs.start(&study);
        jobs.finish(&study, Outcome::Failed("study a: gone".into()), 0.5);
        let status = jobs.status();
        assert_eq!(status["jobs"][0]["state"], "failed");
        assert_eq!(status["jobs"][0]["reason"], "study a: gone");
        assert_eq!(status["counts"]["failed"], 1);
        jobs.enqueue("b");
        jobs.stop();
        assert_eq!(jobs.next(), None);
        assert!(!jobs.enqueue("c"));
        assert!(jobs.stopping_since().is_some());
    }

    #[test]
    fn processed_series_accumulate_and_can_be_forgotten() {
        let jobs = Jobs::default();
        jobs.mark_processed("s", Processed::from([("x".into(), vec!["1".into()])]));
        jobs.mark_processed("s", Processed::from([("y".into(), vec!["2".into()])]));
        assert_eq!(jobs.processed("s").map(|p| p.len()), Some(2));
        jobs.forget("s");
        assert_eq!(jobs.processed("s"), None);
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_800_000_000), "2027-01-15T08:00:00Z");
    }
}
