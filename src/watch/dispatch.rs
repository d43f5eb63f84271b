//! Settled studies handed to someone else instead of the local workers: with `watch
//! --broker`, each becomes one job on the work queue (the `queue` module implements
//! [`Dispatch`]; the daemon knows nothing of the broker).
//!
//! The dispatcher thread claims queued studies from the journal as a worker would, hands
//! each to the [`Dispatch`], and records it as published only once that returned (for the
//! work queue: after the broker's confirm). A study that could not be handed over is queued
//! again, and the thread waits with back-off before the next try; a restart queues again
//! every study claimed and not confirmed, so nothing settled is lost.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use snafu::Snafu;

use super::journal::Journal;
use super::{Current, read};
use crate::pipeline::Engine;

/// A study the daemon found complete, as the journal holds it.
#[derive(Debug, Clone, Copy)]
pub struct SettledStudy<'a> {
    /// StudyInstanceUID.
    pub uid: &'a str,
    /// Its DICOM instances: (path in the drop folder, SOPInstanceUID).
    pub instances: &'a [(PathBuf, String)],
}

/// Why a study could not be handed over (it stays queued in the journal).
#[derive(Debug, Snafu)]
#[snafu(display("{source}"))]
pub struct DispatchError {
    /// What failed.
    pub source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// Where settled studies go instead of the daemon's own workers.
pub trait Dispatch: Send {
    /// Hands one study over; returns only once the receiver holds it durably.
    fn dispatch(&mut self, engine: &Engine, study: &SettledStudy<'_>) -> Result<(), DispatchError>;
}

/// The first and the longest wait after a failed hand-over.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(15));

/// The dispatcher thread.
pub(super) struct Dispatcher {
    pub(super) shared: Arc<RwLock<Current>>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) state: PathBuf,
    pub(super) sink: Box<dyn Dispatch>,
}

impl Dispatcher {
    pub(super) fn run(mut self) {
        let mut journal = match Journal::open(&self.state) {
            Ok(journal) => journal,
            Err(error) => {
                tracing::error!("dispatcher cannot open the journal: {error}");
                return;
            }
        };
        let mut backoff = BACKOFF.0;
        while !self.stop.load(Ordering::SeqCst) {
            match journal.claim() {
                Ok(Some(uid)) => {
                    if self.hand_over(&mut journal, &uid) {
                        backoff = BACKOFF.0;
                    } else {
                        wait_unless_stopped(&self.stop, backoff);
                        backoff = (backoff * 2).min(BACKOFF.1);
                    }
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(200)),
                Err(error) => {
                    tracing::error!("{error}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }

    /// Hands one claimed study over; whether it was taken.
    fn hand_over(&mut self, journal: &mut Journal, uid: &str) -> bool {
        let span = tracing::info_span!("dispatch", study = %uid);
        let _entered = span.enter();
        let instances = match journal.study_instances(uid) {
            Ok(instances) => instances,
            Err(error) => {
                tracing::error!("{error}");
                let _ = journal.requeue(uid, &error.to_string(), BACKOFF.1);
                return false;
            }
        };
        let engine = Arc::clone(&read(&self.shared).engine);
        let study = SettledStudy {
            uid,
            instances: &instances,
        };
        match self.sink.dispatch(&engine, &study) {
            Ok(()) => {
                let covered: Vec<PathBuf> = instances.iter().map(|(p, _)| p.clone()).collect();
                match journal.published(uid, &covered) {
                    Ok(()) => tracing::info!(files = covered.len(), "published"),
                    Err(error) => tracing::error!("{error}"),
                }
                true
            }
            Err(error) => {
                tracing::warn!("not handed over, queued again: {error}");
                if let Err(error) = journal.requeue(uid, &error.to_string(), Duration::ZERO) {
                    tracing::error!("{error}");
                }
                false
            }
        }
    }
}

/// Waits `how_long`, or less when `stop` is set meanwhile.
pub fn wait_unless_stopped(stop: &AtomicBool, how_long: Duration) {
    let until = std::time::Instant::now() + how_long;
    while !stop.load(Ordering::SeqCst) && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
}
