//! The durable job journal: an SQLite database (`<state>/journal.sqlite`, WAL) that holds
//! every file the daemon has seen, every study's state and every delivery, so that a
//! restart (even after `kill -9`) resumes where it stopped.
//!
//! Study states:
//!
//! ```text
//! settling --(quiet for `settle`, or required series present, or `force_after`)--> queued
//! queued   --(a worker claims it)--> running --> done | failed | queued (retry, back-off)
//! done/failed --(a new file of the study arrives)--> settling (only the new series rerun)
//! running at start-up (the daemon died mid-study) --> queued (redone from the start)
//! ```
//!
//! With a broker (`watch --broker`), a claimed study is not processed here but published as
//! a work-queue job: `running` then means "published, confirm awaited", and the broker's
//! confirm makes it `published` (a late file reopens it like `done`). A publish that fails
//! (broker down) puts it back to `queued`, and so does a restart: a job whose confirm never
//! came is published again.
//!
//! Each claim counts an attempt, so a run cut short by a crash counts too: a study that
//! kills the daemon is not retried for ever.
//!
//! Files carry `processed = 0` until a run of their study included them; a rerun takes only
//! the series that have unprocessed files. Every write is one transaction: the journal is
//! never half-updated.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// The journal's file name inside the state folder.
pub const FILE_NAME: &str = "journal.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS studies (
    uid         TEXT PRIMARY KEY,
    state       TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    last_change REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL DEFAULT 0,
    reason      TEXT,
    status      TEXT,
    started     REAL,
    finished    REAL,
    seconds     REAL,
    report      TEXT,
    runs        INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS files (
    path       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    study_uid  TEXT,
    series_uid TEXT,
    sop_uid    TEXT,
    reason     TEXT,
    processed  INTEGER NOT NULL DEFAULT 0,
    seen       REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_study ON files (study_uid);
CREATE TABLE IF NOT EXISTS outputs (
    path        TEXT PRIMARY KEY,
    study_uid   TEXT NOT NULL,
    sop_uid     TEXT NOT NULL,
    destination TEXT NOT NULL,
    state       TEXT NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    not_before  REAL NOT NULL DEFAULT 0,
    reason      TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
";

const SCHEMA_VERSION: &str = "1";

/// A study's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StudyState {
    /// Files are arriving; waiting for the study to be complete.
    Settling,
    /// Complete; waiting for a worker.
    Queued,
    /// A worker is processing it.
    Running,
    /// Processed (its report says ok or partial).
    Done,
    /// Gave up after the configured attempts, or nothing in it could be processed.
    Failed,
    /// Handed to the work queue: the broker confirmed the job (`watch --broker`).
    Published,
}

impl StudyState {
    /// The name stored in the journal.
    pub fn name(self) -> &'static str {
        match self {
            StudyState::Settling => "settling",
            StudyState::Queued => "queued",
            StudyState::Running => "running",
            StudyState::Done => "done",
            StudyState::Failed => "failed",
            StudyState::Published => "published",
        }
    }

    fn parse(name: &str) -> StudyState {
        match name {
            "settling" => StudyState::Settling,
            "queued" => StudyState::Queued,
            "running" => StudyState::Running,
            "done" => StudyState::Done,
            "published" => StudyState::Published,
            _ => StudyState::Failed,
        }
    }

    /// Every state, in the order `status` lists them.
    pub const ALL: [StudyState; 6] = [
        StudyState::Settling,
        StudyState::Queued,
        StudyState::Running,
        StudyState::Published,
        StudyState::Done,
        StudyState::Failed,
    ];
}

/// What a file turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// A DICOM instance of a study.
    Instance {
        /// StudyInstanceUID.
        study: String,
        /// SeriesInstanceUID.
        series: String,
        /// SOPInstanceUID.
        sop: String,
    },
    /// One of our own overlays (sent back by the PACS, or written back into the study
    /// folder): never processed.
    Own,
    /// Not DICOM (or a DICOMDIR): skipped.
    Skipped(String),
    /// DICOM that cannot be used: the reason.
    Failed(String),
}

/// One study as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StudyRow {
    /// StudyInstanceUID.
    pub uid: String,
    /// Its state.
    pub state: StudyState,
    /// Attempts so far.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: Option<String>,
    /// The report's status after the last run (ok, partial, failed).
    pub status: Option<String>,
    /// Seconds the last run took.
    pub seconds: Option<f64>,
    /// Its report.json.
    pub report: Option<String>,
    /// DICOM files of the study seen so far.
    pub files: u64,
    /// Runs completed.
    pub runs: u32,
}

/// A delivery not yet done.
#[derive(Debug, Clone)]
pub struct PendingDelivery {
    /// The output file.
    pub path: PathBuf,
    /// Its study.
    pub study_uid: String,
    /// Attempts so far.
    pub attempts: u32,
}

/// Why the journal could not be used.
#[derive(Debug, snafu::Snafu)]
#[snafu(display("{}: journal: {source}", path.display()))]
pub struct JournalError {
    /// The database file.
    pub path: PathBuf,
    /// SQLite's error.
    pub source: rusqlite::Error,
}

/// An open journal. Each thread opens its own (SQLite connections are not shared).
pub struct Journal {
    connection: Connection,
    path: PathBuf,
}

/// Seconds since the Unix epoch, as stored.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Journal {
    /// Opens (creating if needed) the journal in `state_dir`.
    pub fn open(state_dir: &Path) -> Result<Journal, JournalError> {
        let path = state_dir.join(FILE_NAME);
        let error = |source| JournalError {
            path: path.clone(),
            source,
        };
        if let Err(io) = std::fs::create_dir_all(state_dir) {
            return Err(error(rusqlite::Error::ToSqlConversionFailure(Box::new(io))));
        }
        let connection = Connection::open(&path).map_err(error)?;
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(error)?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(error)?;
        connection.execute_batch(SCHEMA).map_err(error)?;
        connection
            .execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?1)",
                params![SCHEMA_VERSION],
            )
            .map_err(error)?;
        Ok(Journal { connection, path })
    }

    /// Opens an existing journal for reading only (`status`).
    pub fn open_read_only(state_dir: &Path) -> Result<Journal, JournalError> {
        let path = state_dir.join(FILE_NAME);
        let connection =
            Connection::open_with_flags(&path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .map_err(|source| JournalError {
                    path: path.clone(),
                    source,
                })?;
        connection
            .busy_timeout(Duration::from_secs(10))
            .map_err(|source| JournalError {
                path: path.clone(),
                source,
            })?;
        Ok(Journal { connection, path })
    }

    fn fail(&self, source: rusqlite::Error) -> JournalError {
        JournalError {
            path: self.path.clone(),
            source,
        }
    }

    /// At start-up: studies left running by a daemon that died are queued again (redone from
    /// the start; their outputs are replaced, since UIDs are deterministic). Returns them.
    pub fn recover(&self) -> Result<Vec<String>, JournalError> {
        let mut statement = self
            .connection
            .prepare("UPDATE studies SET state = 'queued' WHERE state = 'running' RETURNING uid")
            .map_err(|e| self.fail(e))?;
        let uids = statement
            .query_map([], |row| row.get(0))
            .and_then(|rows| rows.collect::<Result<Vec<String>, _>>())
            .map_err(|e| self.fail(e))?;
        Ok(uids)
    }

    /// The size and mtime recorded for `path`, if it was seen.
    pub fn known_file(&self, path: &Path) -> Result<Option<(u64, i64)>, JournalError> {
        self.connection
            .query_row(
                "SELECT size, mtime_ns FROM files WHERE path = ?1",
                params![path.to_string_lossy()],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// Records a file that became stable; an instance joins (or reopens) its study.
    /// Returns true when a study changed.
    pub fn record_file(
        &mut self,
        path: &Path,
        size: u64,
        mtime_ns: i64,
        kind: &FileKind,
    ) -> Result<bool, JournalError> {
        let now = now();
        let path_of_journal = self.path.clone();
        let fail = |source| JournalError {
            path: path_of_journal.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(fail)?;
        let (kind_name, study, series, sop, reason) = match kind {
            FileKind::Instance { study, series, sop } => (
                "instance",
                Some(study.as_str()),
                Some(series.as_str()),
                Some(sop.as_str()),
                None,
            ),
            FileKind::Own => ("own", None, None, None, None),
            FileKind::Skipped(reason) => ("skipped", None, None, None, Some(reason.as_str())),
            FileKind::Failed(reason) => ("failed", None, None, None, Some(reason.as_str())),
        };
        let result = (|| {
            transaction.execute(
                "INSERT INTO files (path, size, mtime_ns, kind, study_uid, series_uid, sop_uid,
                                    reason, processed, seen)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9)
                 ON CONFLICT (path) DO UPDATE SET size = ?2, mtime_ns = ?3, kind = ?4,
                    study_uid = ?5, series_uid = ?6, sop_uid = ?7, reason = ?8, processed = 0,
                    seen = ?9",
                params![
                    path.to_string_lossy(),
                    size as i64,
                    mtime_ns,
                    kind_name,
                    study,
                    series,
                    sop,
                    reason,
                    now
                ],
            )?;
            if let Some(study) = study {
                // a new study settles; a finished one reopens; a queued or running one
                // takes the file in its next run
                transaction.execute(
                    "INSERT INTO studies (uid, state, first_seen, last_change)
                     VALUES (?1, 'settling', ?2, ?2)
                     ON CONFLICT (uid) DO UPDATE SET last_change = ?2,
                        first_seen = CASE WHEN state IN ('done', 'failed', 'published') THEN ?2
                                          ELSE first_seen END,
                        attempts = CASE WHEN state IN ('done', 'failed', 'published') THEN 0
                                        ELSE attempts END,
                        state = CASE WHEN state IN ('done', 'failed', 'published') THEN 'settling'
                                     ELSE state END",
                    params![study, now],
                )?;
            }
            Ok::<bool, rusqlite::Error>(study.is_some())
        })();
        let changed = result.map_err(fail)?;
        transaction.commit().map_err(fail)?;
        Ok(changed)
    }

    /// A file that disappeared before it was used (a transfer that was cancelled).
    pub fn forget_file(&self, path: &Path) -> Result<(), JournalError> {
        self.connection
            .execute(
                "DELETE FROM files WHERE path = ?1 AND processed = 0",
                params![path.to_string_lossy()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Settling studies: (uid, first_seen, last_change).
    pub fn settling(&self) -> Result<Vec<(String, f64, f64)>, JournalError> {
        let mut statement = self
            .connection
            .prepare("SELECT uid, first_seen, last_change FROM studies WHERE state = 'settling'")
            .map_err(|e| self.fail(e))?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// Moves a settling study to the queue.
    pub fn enqueue(&self, uid: &str) -> Result<(), JournalError> {
        self.connection
            .execute(
                "UPDATE studies SET state = 'queued', not_before = 0
                 WHERE uid = ?1 AND state = 'settling'",
                params![uid],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Claims the oldest queued study whose back-off has passed: it becomes running.
    pub fn claim(&self) -> Result<Option<String>, JournalError> {
        self.connection
            .query_row(
                "UPDATE studies SET state = 'running', started = ?1, attempts = attempts + 1
                 WHERE uid = (SELECT uid FROM studies WHERE state = 'queued' AND not_before <= ?1
                              ORDER BY last_change, uid LIMIT 1)
                 RETURNING uid",
                params![now()],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| self.fail(e))
    }

    /// The study's DICOM files: (path, series, processed).
    pub fn study_files(&self, uid: &str) -> Result<Vec<(PathBuf, String, bool)>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT path, series_uid, processed FROM files
                 WHERE study_uid = ?1 AND kind = 'instance' ORDER BY path",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map(params![uid], |row| {
                Ok((
                    PathBuf::from(row.get::<_, String>(0)?),
                    row.get(1)?,
                    row.get::<_, i64>(2)? != 0,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// The study's DICOM instances: (path, SOPInstanceUID), by path.
    pub fn study_instances(&self, uid: &str) -> Result<Vec<(PathBuf, String)>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT path, sop_uid FROM files
                 WHERE study_uid = ?1 AND kind = 'instance' ORDER BY path",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map(params![uid], |row| {
                Ok((PathBuf::from(row.get::<_, String>(0)?), row.get(1)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// The broker confirmed the study's job: the files it named are processed (a late file
    /// reopens the study), the study is published (or settles again when a file arrived
    /// meanwhile).
    pub fn published(&mut self, uid: &str, covered: &[PathBuf]) -> Result<(), JournalError> {
        let path = self.path.clone();
        let fail = |source| JournalError {
            path: path.clone(),
            source,
        };
        let transaction = self.connection.transaction().map_err(fail)?;
        let result = (|| {
            mark_processed(&transaction, covered)?;
            transaction.execute(
                "UPDATE studies SET finished = ?2, reason = NULL, runs = runs + 1, attempts = 0,
                    state = CASE WHEN EXISTS (SELECT 1 FROM files WHERE study_uid = ?1
                                   AND kind = 'instance' AND processed = 0)
                                 THEN 'settling' ELSE 'published' END
                 WHERE uid = ?1",
                params![uid, now()],
            )?;
            Ok::<(), rusqlite::Error>(())
        })();
        result.map_err(fail)?;
        transaction.commit().map_err(fail)
    }

    /// A job that could not be published (the broker is away): queued again, to be
    /// published after `delay`; the attempt does not count.
    pub fn requeue(&self, uid: &str, reason: &str, delay: Duration) -> Result<(), JournalError> {
        self.connection
            .execute(
                "UPDATE studies SET state = 'queued', reason = ?2, not_before = ?3,
                    attempts = MAX(attempts - 1, 0)
                 WHERE uid = ?1",
                params![uid, reason, now() + delay.as_secs_f64()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }

    /// Whether the study has completed a run before (its report exists).
    pub fn has_run(&self, uid: &str) -> Result<bool, JournalError> {
        self.connection
            .query_row(
                "SELECT runs FROM studies WHERE uid = ?1",
                params![uid],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|runs| runs.unwrap_or(0) > 0)
            .map_err(|e| self.fail(e))
    }

    /// A run finished: the files it covered are processed, its outputs await delivery, the
    /// study is done (unless a file arrived meanwhile: then it settles again).
    pub fn finish(
        &mut self,
        uid: &str,
        covered: &[PathBuf],
        outcome: &Finished,
    ) -> Result<(), JournalError> {
        let now = now();
        let path = self.path.clone();
        let transaction = self
            .connection
            .transaction()
            .map_err(|source| JournalError {
                path: path.clone(),
                source,
            })?;
        let result = (|| {
            mark_processed(&transaction, covered)?;
            for (output, sop, destination) in &outcome.deliveries {
                transaction.execute(
                    "INSERT INTO outputs (path, study_uid, sop_uid, destination, state)
                     VALUES (?1, ?2, ?3, ?4, 'pending')
                     ON CONFLICT (path) DO UPDATE SET state = 'pending', attempts = 0,
                        not_before = 0, reason = NULL, destination = ?4",
                    params![output.to_string_lossy(), uid, sop, destination],
                )?;
            }
            let pending: i64 = transaction.query_row(
                "SELECT COUNT(*) FROM files WHERE study_uid = ?1 AND kind = 'instance'
                 AND processed = 0",
                params![uid],
                |row| row.get(0),
            )?;
            let state = if pending > 0 { "settling" } else { "done" };
            transaction.execute(
                "UPDATE studies SET state = ?2, status = ?3, finished = ?4, seconds = ?5,
                    report = ?6, reason = NULL, runs = runs + 1, attempts = 0
                 WHERE uid = ?1",
                params![
                    uid,
                    state,
                    outcome.status,
                    now,
                    outcome.seconds,
                    outcome.report.to_string_lossy()
                ],
            )?;
            Ok::<(), rusqlite::Error>(())
        })();
        result.map_err(|source| JournalError {
            path: path.clone(),
            source,
        })?;
        transaction
            .commit()
            .map_err(|source| JournalError { path, source })
    }

    /// A run failed: queued again after a back-off, or failed for good after
    /// `max_attempts`. Returns the new state.
    pub fn fail_attempt(
        &self,
        uid: &str,
        reason: &str,
        max_attempts: u32,
        retry_after: Duration,
    ) -> Result<StudyState, JournalError> {
        let attempts: i64 = self
            .connection
            .query_row(
                "SELECT attempts FROM studies WHERE uid = ?1",
                params![uid],
                |row| row.get(0),
            )
            .map_err(|e| self.fail(e))?;
        let state = if attempts >= i64::from(max_attempts) {
            StudyState::Failed
        } else {
            StudyState::Queued
        };
        let backoff = retry_after.as_secs_f64() * 2f64.powi((attempts.max(1) - 1) as i32);
        self.connection
            .execute(
                "UPDATE studies SET state = ?2, reason = ?3, not_before = ?4, finished = ?5
                 WHERE uid = ?1",
                params![uid, state.name(), reason, now() + backoff, now()],
            )
            .map_err(|e| self.fail(e))?;
        Ok(state)
    }

    /// Deliveries due now.
    pub fn due_deliveries(&self, destination: &str) -> Result<Vec<PendingDelivery>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT path, study_uid, attempts FROM outputs
                 WHERE destination = ?1 AND state = 'pending' AND not_before <= ?2
                 ORDER BY study_uid, path",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map(params![destination, now()], |row| {
                Ok(PendingDelivery {
                    path: PathBuf::from(row.get::<_, String>(0)?),
                    study_uid: row.get(1)?,
                    attempts: row.get::<_, i64>(2)? as u32,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// Records the outcome of one delivery attempt.
    pub fn delivered(
        &self,
        path: &Path,
        outcome: Result<(), &str>,
        max_attempts: u32,
        retry_after: Duration,
    ) -> Result<(), JournalError> {
        let path_text = path.to_string_lossy();
        match outcome {
            Ok(()) => self.connection.execute(
                "UPDATE outputs SET state = 'done', attempts = attempts + 1, reason = NULL
                 WHERE path = ?1",
                params![path_text],
            ),
            Err(reason) => self.connection.execute(
                "UPDATE outputs SET attempts = attempts + 1, reason = ?2,
                    state = CASE WHEN attempts + 1 >= ?3 THEN 'failed' ELSE 'pending' END,
                    not_before = ?4 * (1 << MIN(attempts, 10)) + ?5
                 WHERE path = ?1",
                params![
                    path_text,
                    reason,
                    i64::from(max_attempts),
                    retry_after.as_secs_f64(),
                    now()
                ],
            ),
        }
        .map(|_| ())
        .map_err(|e| self.fail(e))
    }

    /// Every study, newest change first.
    pub fn studies(&self) -> Result<Vec<StudyRow>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT s.uid, s.state, s.attempts, s.reason, s.status, s.seconds, s.report,
                        (SELECT COUNT(*) FROM files f WHERE f.study_uid = s.uid
                                                      AND f.kind = 'instance'),
                        s.runs
                 FROM studies s ORDER BY s.last_change DESC, s.uid",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map([], |row| {
                Ok(StudyRow {
                    uid: row.get(0)?,
                    state: StudyState::parse(&row.get::<_, String>(1)?),
                    attempts: row.get::<_, i64>(2)? as u32,
                    reason: row.get(3)?,
                    status: row.get(4)?,
                    seconds: row.get(5)?,
                    report: row.get(6)?,
                    files: row.get::<_, i64>(7)? as u64,
                    runs: row.get::<_, i64>(8)? as u32,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// Studies per state.
    pub fn state_counts(&self) -> Result<Vec<(StudyState, u64)>, JournalError> {
        let mut counts: Vec<(StudyState, u64)> = StudyState::ALL.iter().map(|s| (*s, 0)).collect();
        let mut statement = self
            .connection
            .prepare("SELECT state, COUNT(*) FROM studies GROUP BY state")
            .map_err(|e| self.fail(e))?;
        let rows: Vec<(String, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))?;
        for (state, n) in rows {
            let state = StudyState::parse(&state);
            if let Some(entry) = counts.iter_mut().find(|(s, _)| *s == state) {
                entry.1 += n as u64;
            }
        }
        Ok(counts)
    }

    /// Files that could not be used, with the reason: (path, kind, reason).
    pub fn problem_files(&self) -> Result<Vec<(String, String, String)>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT path, kind, COALESCE(reason, '') FROM files
                 WHERE kind IN ('failed', 'skipped') ORDER BY path",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// Deliveries per (destination, state): counts.
    pub fn delivery_counts(&self) -> Result<Vec<(String, String, u64)>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT destination, state, COUNT(*) FROM outputs
                 GROUP BY destination, state ORDER BY destination, state",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)? as u64))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// Files of finished studies that are processed and still in place (for `after`).
    pub fn processed_files(&self, uid: &str) -> Result<Vec<PathBuf>, JournalError> {
        let mut statement = self
            .connection
            .prepare(
                "SELECT path FROM files WHERE study_uid = ?1 AND kind = 'instance'
                 AND processed = 1",
            )
            .map_err(|e| self.fail(e))?;
        statement
            .query_map(params![uid], |row| {
                Ok(PathBuf::from(row.get::<_, String>(0)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(|e| self.fail(e))
    }

    /// A file moved by `after = "move"`: its row follows it, so the journal still knows it.
    pub fn moved_file(&self, from: &Path, to: &Path) -> Result<(), JournalError> {
        self.connection
            .execute(
                "UPDATE files SET path = ?2 WHERE path = ?1",
                params![from.to_string_lossy(), to.to_string_lossy()],
            )
            .map(|_| ())
            .map_err(|e| self.fail(e))
    }
}

/// The files a run (or a published job) covered are processed: a later file of the study
/// is what reopens it.
fn mark_processed(
    transaction: &rusqlite::Transaction<'_>,
    covered: &[PathBuf],
) -> rusqlite::Result<()> {
    for file in covered {
        transaction.execute(
            "UPDATE files SET processed = 1 WHERE path = ?1",
            params![file.to_string_lossy()],
        )?;
    }
    Ok(())
}

/// What a finished run leaves in the journal.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The report's status.
    pub status: String,
    /// Seconds the run took.
    pub seconds: f64,
    /// The report.json written.
    pub report: PathBuf,
    /// Outputs to deliver: (file, SOPInstanceUID, destination name).
    pub deliveries: Vec<(PathBuf, String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(study: &str, series: &str, sop: &str) -> FileKind {
        FileKind::Instance {
            study: study.into(),
            series: series.into(),
            sop: sop.into(),
        }
    }

    #[test]
    fn a_study_settles_queues_runs_and_reopens_on_a_late_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        let a = dir.path().join("a.dcm");
        let b = dir.path().join("b.dcm");
        assert!(
            journal
                .record_file(&a, 10, 1, &instance("1.2", "1.2.1", "1.2.1.1"))
                .expect("record")
        );
        assert_eq!(journal.settling().expect("settling").len(), 1);
        journal.enqueue("1.2").expect("enqueue");
        assert_eq!(journal.claim().expect("claim").as_deref(), Some("1.2"));
        assert_eq!(journal.claim().expect("claim"), None, "claimed once");
        let finished = Finished {
            status: "ok".into(),
            seconds: 1.0,
            report: dir.path().join("report.json"),
            deliveries: vec![],
        };
        journal
            .finish("1.2", std::slice::from_ref(&a), &finished)
            .expect("finish");
        let rows = journal.studies().expect("studies");
        assert_eq!(rows[0].state, StudyState::Done);
        assert_eq!(rows[0].runs, 1);
        // a late file reopens the study; only it is unprocessed
        journal
            .record_file(&b, 10, 1, &instance("1.2", "1.2.2", "1.2.2.1"))
            .expect("record");
        assert_eq!(
            journal.studies().expect("studies")[0].state,
            StudyState::Settling
        );
        let files = journal.study_files("1.2").expect("files");
        assert_eq!(
            files
                .iter()
                .map(|(p, _, processed)| (p.clone(), *processed))
                .collect::<Vec<_>>(),
            vec![(a, true), (b, false)]
        );
    }

    #[test]
    fn running_studies_are_requeued_after_a_crash_and_failures_back_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        journal
            .record_file(
                &dir.path().join("a.dcm"),
                1,
                1,
                &instance("9", "9.1", "9.1.1"),
            )
            .expect("record");
        journal.enqueue("9").expect("enqueue");
        assert!(journal.claim().expect("claim").is_some());
        drop(journal);
        let journal = Journal::open(dir.path()).expect("reopen");
        assert_eq!(journal.recover().expect("recover"), vec!["9".to_string()]);
        assert!(journal.claim().expect("claim").is_some());
        // the run cut short by the crash counted: a study that kills the daemon is not
        // retried for ever
        let state = journal
            .fail_attempt("9", "disk full", 3, Duration::from_secs(3600))
            .expect("fail");
        assert_eq!(state, StudyState::Queued, "two attempts of three");
        assert_eq!(journal.claim().expect("claim"), None, "backing off");
        journal
            .connection
            .execute("UPDATE studies SET not_before = 0", [])
            .expect("skip the wait");
        assert!(journal.claim().expect("claim").is_some());
        let state = journal
            .fail_attempt("9", "disk full", 3, Duration::from_secs(1))
            .expect("fail");
        assert_eq!(state, StudyState::Failed);
        let rows = journal.studies().expect("studies");
        assert_eq!(rows[0].reason.as_deref(), Some("disk full"));
    }

    #[test]
    fn a_published_study_waits_for_the_confirm_and_reopens_on_a_late_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        let a = dir.path().join("a.dcm");
        journal
            .record_file(&a, 1, 1, &instance("7", "7.1", "7.1.1"))
            .expect("record");
        journal.enqueue("7").expect("enqueue");
        assert!(journal.claim().expect("claim").is_some());
        // the broker was away: queued again, the attempt not counted
        journal
            .requeue("7", "broker down", Duration::ZERO)
            .expect("requeue");
        let row = &journal.studies().expect("studies")[0];
        assert_eq!((row.state, row.attempts), (StudyState::Queued, 0));
        assert_eq!(
            journal.study_instances("7").expect("instances"),
            vec![(a.clone(), "7.1.1".to_string())]
        );
        assert!(journal.claim().expect("claim").is_some());
        journal
            .published("7", std::slice::from_ref(&a))
            .expect("published");
        let row = &journal.studies().expect("studies")[0];
        assert_eq!((row.state, row.runs), (StudyState::Published, 1));
        assert_eq!(row.reason, None);
        journal
            .record_file(
                &dir.path().join("b.dcm"),
                1,
                1,
                &instance("7", "7.2", "7.2.1"),
            )
            .expect("record");
        assert_eq!(
            journal.studies().expect("studies")[0].state,
            StudyState::Settling
        );
    }
}
