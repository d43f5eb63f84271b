//! The engine thread: owns the library's [`Engine`] (ONNX Runtime, the models, the font),
//! loads it once at start, and runs the pipeline on the studies the worker hands it.
//!
//! The pipeline cannot be interrupted half way through a study, so it runs on a thread of
//! its own: at shutdown the worker waits for it until `StopTimeout`, then abandons the
//! study in hand, and Finalize returns in bounded time. An engine thread still busy then is
//! left to finish on its own (it only writes under the output folder, and the plugin's
//! gate keeps it away from Orthanc), with the plugin's code pinned in memory so that
//! Orthanc unloading the library cannot pull it from under the thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dicom_xai::config::Settings;
use dicom_xai::dicom::scan::Study;
use dicom_xai::output::{ReportError, StudyReport};
use dicom_xai::pipeline::{Engine, FindingsWriter, Overrides};

use crate::error::{
    AbandonedSnafu, EngineEndedSnafu, JobError, NoEngineSnafu, PipelinePanickedSnafu,
};
use crate::jobs::{EngineState, Jobs};
use dicom_xai::panic_message;

/// One study for the pipeline.
struct Request {
    study: Study,
    out: PathBuf,
    errors: Vec<ReportError>,
    reply: Sender<Result<PipelineOutput, JobError>>,
}

/// A study's report as the pipeline made it (before any merge with an earlier report), and
/// what writes the study's Structured Report once the worker has merged it.
pub struct PipelineOutput {
    /// The report of the series processed.
    pub report: StudyReport,
    /// Present when `[output] formats` lists `sr`.
    pub findings: Option<FindingsWriter>,
}

/// The worker's side: hands studies to the engine thread.
pub struct Client {
    requests: Sender<Request>,
}

/// Finalize's side: the thread itself.
pub struct Thread {
    handle: JoinHandle<()>,
}

/// Starts the engine thread; it loads the engine at once and reports through `jobs`.
pub fn spawn(
    settings: Settings,
    overrides: Overrides,
    jobs: Arc<Jobs>,
) -> std::io::Result<(Client, Thread)> {
    let (requests, receiver) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("dicom-xai-engine".into())
        .spawn(move || serve(settings, overrides, &jobs, receiver))?;
    Ok((Client { requests }, Thread { handle }))
}

fn serve(settings: Settings, overrides: Overrides, jobs: &Jobs, requests: Receiver<Request>) {
    let started = Instant::now();
    let loaded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Engine::new(settings, overrides)
    }));
    let engine = match loaded {
        Ok(Ok(engine)) => {
            tracing::info!(
                seconds = started.elapsed().as_secs_f64(),
                "engine ready (ONNX Runtime and models loaded)"
            );
            jobs.set_engine(EngineState::Ready);
            engine
        }
        Ok(Err(error)) => return fail_all(jobs, requests, error.to_string()),
        Err(panic) => return fail_all(jobs, requests, panic_message(panic.as_ref())),
    };
    for request in requests {
        let Request {
            study,
            out,
            errors,
            reply,
        } = request;
        let report = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| PipelineOutput {
            report: engine.study_report(&study, &out, errors),
            findings: engine.findings_writer().cloned(),
        }))
        .map_err(|panic| {
            PipelinePanickedSnafu {
                study: &study.uid,
                message: panic_message(panic.as_ref()),
            }
            .build()
        });
        // the worker may have given up waiting (shutdown): nothing to tell then
        let _ = reply.send(report);
    }
}

/// The engine could not be loaded: every study fails with the reason, until the worker
/// hangs up.
fn fail_all(jobs: &Jobs, requests: Receiver<Request>, reason: String) {
    tracing::error!("the engine could not be loaded, no study will be processed: {reason}");
    jobs.set_engine(EngineState::Failed(reason.clone()));
    for request in requests {
        let _ = request.reply.send(
            NoEngineSnafu {
                study: &request.study.uid,
                reason: &reason,
            }
            .fail(),
        );
    }
}

impl Client {
    /// Runs the pipeline on `study`, writing overlays under `out/<StudyInstanceUID>/`;
    /// gives up (an error) when the plugin has been stopping for longer than `grace`.
    pub fn process(
        &self,
        study: Study,
        out: PathBuf,
        errors: Vec<ReportError>,
        jobs: &Jobs,
        grace: Duration,
    ) -> Result<PipelineOutput, JobError> {
        let uid = study.uid.clone();
        let (reply, answer) = mpsc::channel();
        self.requests
            .send(Request {
                study,
                out,
                errors,
                reply,
            })
            // sending fails only once the engine thread has ended (its receiver is gone)
            .map_err(|_| EngineEndedSnafu { study: &uid }.build())?;
        loop {
            match answer.recv_timeout(Duration::from_millis(200)) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Timeout) => {
                    if jobs
                        .stopping_since()
                        .is_some_and(|since| since.elapsed() > grace)
                    {
                        return AbandonedSnafu { study: uid, grace }.fail();
                    }
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return EngineEndedSnafu { study: uid }.fail();
                }
            }
        }
    }
}

impl Thread {
    /// Waits up to `wait` for the thread to end (the worker has hung up, so it ends after
    /// the study in hand) and joins it; otherwise leaves it running and pins the plugin in
    /// memory. True when joined.
    pub fn finish(self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while !self.handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if self.handle.is_finished() {
            let _ = self.handle.join();
            true
        } else {
            pin_library();
            false
        }
    }
}

/// Keeps this shared library mapped for the rest of the process (`RTLD_NODELETE`), so that
/// a thread still running its code survives Orthanc's `dlclose`.
fn pin_library() {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let address = crate::OrthancPluginGetName as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-parameter.
    let found = unsafe { libc::dladdr(address, &mut info) } != 0;
    if !found || info.dli_fname.is_null() {
        tracing::warn!("cannot find the plugin's own file to keep it loaded");
        return;
    }
    // SAFETY: `dli_fname` is the loaded library's path; RTLD_NOLOAD opens no new library,
    // it only marks the loaded one NODELETE. The handle is deliberately never closed.
    let handle = unsafe {
        libc::dlopen(
            info.dli_fname,
            libc::RTLD_NOW | libc::RTLD_NOLOAD | libc::RTLD_NODELETE,
        )
    };
    if handle.is_null() {
        tracing::warn!("cannot keep the plugin loaded for its engine thread");
    }
}
