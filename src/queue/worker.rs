//! `dicom-xai worker`: takes jobs from [`super::QUEUE`] one at a time (prefetch 1), reads
//! each study from the shared input location the job names, processes it with the same
//! [`Engine`] as `run`, writes the outputs and report.json (with the job id) to the
//! configured output folder, flushes the report to disk, and only then acknowledges.
//!
//! A job whose report already names it is acknowledged without work. A job that fails is
//! returned to the queue; on its [`super::DELIVERY_LIMIT`]-th attempt (at once for a message
//! that is not a job) it is published to [`super::DEAD_QUEUE`] with its error instead. A failed job (a panic included) is never
//! fatal to the worker. When the connection is lost the worker connects again with
//! back-off; SIGTERM or SIGINT let the job in hand finish (and be acknowledged), then the
//! worker exits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use snafu::{ResultExt, Snafu};

use super::broker::{ConsumerEvent, earlier_deliveries, redacted};
use super::{Broker, DEAD_QUEUE, DELIVERY_LIMIT, Job};
use crate::config::Settings;
use crate::dicom::uid::InvalidUid;
use crate::pipeline::{self, Engine, Overrides, RunError};
use crate::watch::metrics::{self, JobOutcome, Metrics};
use crate::watch::wait_unless_stopped;

/// What the command line says beyond the configuration file.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// The site configuration.
    pub config: PathBuf,
    /// The broker's URL (`amqp://HOST:PORT/VHOST`).
    pub broker: String,
    /// `--models` / `--methods`.
    pub overrides: Overrides,
    /// `--cuda-device`: replaces `[runtime] cuda_device` (one worker per GPU).
    pub cuda_device: Option<i32>,
    /// `--metrics`: replaces `[watch] metrics` (one address per worker of a machine).
    pub metrics: Option<SocketAddr>,
    /// Test hook: wait this long after the report is written and before the acknowledgement.
    pub pause_before_ack: Option<Duration>,
}

/// Why the worker could not start.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum WorkerError {
    /// The configuration file is invalid (exit 2).
    #[snafu(display("{message}"))]
    Configuration {
        /// The problems.
        message: String,
    },
    /// The configuration or a model is unusable (exit 2, or 1 for ONNX Runtime).
    #[snafu(display("{source}"))]
    Start {
        /// The engine's error.
        source: RunError,
    },
    /// The output folder, the signal handlers or the metrics endpoint cannot be set up.
    #[snafu(display("{what}: {source}"))]
    Setup {
        /// What was being set up.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Why one attempt at a job failed.
#[derive(Debug, Snafu)]
enum JobError {
    /// The message is not a job.
    #[snafu(display("not a job: {source}"))]
    BadMessage { source: serde_json::Error },
    /// The StudyInstanceUID cannot name an output folder.
    #[snafu(display("StudyInstanceUID {source}"))]
    StudyUid { source: InvalidUid },
    /// None of the job's files could be read from the shared input location.
    #[snafu(display("none of the job's {count} files can be read; first: {first}"))]
    Unreadable { count: usize, first: String },
    /// The pipeline could not write the report.
    #[snafu(display("{source}"))]
    Pipeline { source: RunError },
    /// The report could not be flushed to disk.
    #[snafu(display("{}: cannot flush to disk: {source}", path.display()))]
    Flush {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The pipeline panicked.
    #[snafu(display("internal error: {message}"))]
    Panicked { message: String },
}

/// What a successful attempt did.
enum Done {
    /// Processed; the report's status.
    Processed(&'static str),
    /// The report already named this job.
    Skipped,
}

/// The first and the longest wait between connection attempts.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(8));

struct Worker {
    engine: Engine,
    out: PathBuf,
    metrics: Arc<Metrics>,
    pause_before_ack: Option<Duration>,
}

/// Runs a worker until SIGTERM or SIGINT.
pub fn run_worker(options: &WorkerOptions) -> Result<(), WorkerError> {
    let mut settings = Settings::load(&options.config).map_err(|e| WorkerError::Configuration {
        message: e.to_string(),
    })?;
    if let Some(device) = options.cuda_device {
        settings.runtime.cuda_device = device;
    }
    crate::logging::set_path_policy(
        settings
            .log_paths
            .unwrap_or(crate::logging::PathStyle::Hashed),
        std::slice::from_ref(&settings.watch.drop),
    );
    let out = settings.output.dir.clone();
    if let Some(address) = options.metrics.filter(|a| !a.ip().is_loopback()) {
        return ConfigurationSnafu {
            message: format!(
                "--metrics {address}: the metrics endpoint listens on the loopback address \
                 only (127.0.0.1:PORT)"
            ),
        }
        .fail();
    }
    let address = options.metrics.or(settings.watch.metrics);
    std::fs::create_dir_all(&out).context(SetupSnafu {
        what: out.display().to_string(),
    })?;
    let engine = Engine::new(settings, options.overrides.clone()).context(StartSnafu)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context(SetupSnafu {
            what: "signal handler",
        })?;
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(address) = address {
        metrics::serve(address, Arc::clone(&metrics), None, Arc::clone(&stop)).context(
            SetupSnafu {
                what: format!("metrics endpoint {address}"),
            },
        )?;
    }
    let worker = Worker {
        engine,
        out,
        metrics,
        pause_before_ack: options.pause_before_ack,
    };
    worker.serve(&options.broker, &stop);
    tracing::info!("stopped");
    Ok(())
}

impl Worker {
    /// Connects, consumes until the connection is lost, and again, until `stop`.
    fn serve(&self, url: &str, stop: &AtomicBool) {
        let tag = format!("dicom-xai-worker-{}", std::process::id());
        let mut backoff = BACKOFF.0;
        while !stop.load(Ordering::SeqCst) {
            let consuming = Broker::connect(url)
                .and_then(|broker| broker.consume(&tag, 1).map(|events| (broker, events)));
            let (broker, events) = match consuming {
                Ok(connected) => connected,
                Err(error) => {
                    tracing::warn!("{error}; trying again in {:.1} s", backoff.as_secs_f64());
                    wait_unless_stopped(stop, backoff);
                    backoff = (backoff * 2).min(BACKOFF.1);
                    continue;
                }
            };
            backoff = BACKOFF.0;
            tracing::info!(broker = %redacted(url), "consuming jobs");
            loop {
                if stop.load(Ordering::SeqCst) {
                    broker.close();
                    return;
                }
                match events.recv_timeout(Duration::from_millis(200)) {
                    Ok(ConsumerEvent::Delivery(delivery)) => self.handle(&broker, &delivery),
                    Ok(ConsumerEvent::Lost(why)) => {
                        tracing::warn!("the broker connection was lost ({why}): connecting again");
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) if broker.connected() => {}
                    Err(_) => {
                        tracing::warn!("the broker connection was lost: connecting again");
                        break;
                    }
                }
            }
        }
    }

    /// One delivery: processed, skipped, returned or dead-lettered; then acknowledged.
    fn handle(&self, broker: &Broker, delivery: &Delivery) {
        let started = Instant::now();
        let attempt = earlier_deliveries(delivery).saturating_add(1);
        let job = Job::from_bytes(&delivery.data).context(BadMessageSnafu);
        let (job_id, study) = match &job {
            Ok(job) => (job.job_id.clone(), job.study_instance_uid.clone()),
            Err(_) => (
                delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map_or_else(|| "?".to_string(), |id| id.as_str().to_string()),
                "?".to_string(),
            ),
        };
        let span = tracing::info_span!("job", job = %job_id, study = %study, attempt);
        let _entered = span.enter();
        let outcome = job.and_then(|job| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(&job)))
                .unwrap_or_else(|panic| {
                    PanickedSnafu {
                        message: crate::panic_message(panic.as_ref()),
                    }
                    .fail()
                })
        });
        let seconds = started.elapsed().as_secs_f64();
        let settled = match outcome {
            Ok(Done::Skipped) => {
                tracing::info!("already done: acknowledged without work");
                self.metrics.job_finished(JobOutcome::Skipped, seconds);
                block_on(delivery.acker.ack(BasicAckOptions::default()))
            }
            Ok(Done::Processed(status)) => {
                if let Some(pause) = self.pause_before_ack {
                    tracing::info!("test hook: pausing before the acknowledgement");
                    std::thread::sleep(pause);
                }
                tracing::info!(status, seconds, "job done");
                self.metrics.job_finished(JobOutcome::Done, seconds);
                block_on(delivery.acker.ack(BasicAckOptions::default()))
            }
            Err(error) => {
                self.metrics.job_finished(JobOutcome::Failed, seconds);
                // a message that is not a job never will be: dead at once
                let last =
                    attempt >= DELIVERY_LIMIT || matches!(error, JobError::BadMessage { .. });
                if last {
                    tracing::error!("job failed on its last attempt, dead-lettered: {error}");
                    let message = error.to_string();
                    match broker.publish(DEAD_QUEUE, &delivery.data, &job_id, Some(&message)) {
                        Ok(()) => block_on(delivery.acker.ack(BasicAckOptions::default())),
                        Err(dead) => {
                            tracing::error!("cannot dead-letter the job: {dead}");
                            block_on(delivery.acker.nack(BasicNackOptions {
                                requeue: true,
                                ..BasicNackOptions::default()
                            }))
                        }
                    }
                } else {
                    tracing::warn!("job failed, returned to the queue: {error}");
                    block_on(delivery.acker.nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    }))
                }
            }
        };
        if let Err(error) = settled {
            tracing::warn!("cannot settle the job with the broker ({error}): it comes back");
        }
    }

    /// The job's study processed into the output folder, its report flushed to disk.
    fn process(&self, job: &Job) -> Result<Done, JobError> {
        let study_dir =
            crate::output::study_dir(&self.out, &job.study_instance_uid).context(StudyUidSnafu)?;
        let report_path = study_dir.join("report.json");
        if report_job_id(&report_path).as_deref() == Some(job.job_id.as_str()) {
            return Ok(Done::Skipped);
        }
        for model in &job.models {
            let ours = self
                .engine
                .models()
                .iter()
                .find(|m| m.manifest().name == model.name);
            if ours.is_some_and(|m| m.sha256() != model.sha256) {
                tracing::warn!(
                    model = %model.name,
                    "this worker's model file differs from the watcher's (sha256)"
                );
            }
        }
        let (study, errors) = pipeline::read_study(
            &job.study_instance_uid,
            job.files.iter().map(PathBuf::as_path),
        );
        if study.series.is_empty() {
            return UnreadableSnafu {
                count: job.files.len(),
                first: errors
                    .first()
                    .map_or_else(|| "no file".to_string(), |e| e.message.clone()),
            }
            .fail();
        }
        let (report, written) = self
            .engine
            .process_job(&study, &self.out, errors, &job.job_id)
            .context(PipelineSnafu)?;
        flush(&written).context(FlushSnafu { path: &written })?;
        Ok(Done::Processed(report.status.name()))
    }
}

/// The job id a report.json records, if any.
fn report_job_id(path: &Path) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct JobOf {
        job_id: Option<String>,
    }
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice::<JobOf>(&bytes).ok()?.job_id
}

/// The file and its folder flushed to disk: the report survives a crash of the machine.
fn flush(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(folder) = path.parent() {
        std::fs::File::open(folder)?.sync_all()?;
    }
    Ok(())
}
