//! Why a study job failed: [`JobError`], from the worker (reading the study from Orthanc,
//! writing the report) and from the engine thread (the pipeline). Every message names the
//! study; the board keeps it as the job's reason.

use std::path::PathBuf;
use std::time::Duration;

use dicom_xai::output::WriteReportError;
use snafu::Snafu;

use crate::orthanc::CallError;

/// Why a study job failed. `study` is Orthanc's ID of the study, except in the engine's
/// variants, which name its StudyInstanceUID.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum JobError {
    /// Orthanc no longer has the study.
    #[snafu(display("study {study} is no longer in Orthanc"))]
    Gone {
        /// Orthanc's ID of the study.
        study: String,
    },
    /// Orthanc did not give the study or its series.
    #[snafu(display("study {study}: cannot read it from Orthanc: {source}"))]
    ReadStudy {
        /// Orthanc's ID of the study.
        study: String,
        /// Orthanc's error.
        source: CallError,
    },
    /// Orthanc gave the study without its StudyInstanceUID.
    #[snafu(display("study {study}: Orthanc gives no StudyInstanceUID"))]
    NoStudyUid {
        /// Orthanc's ID of the study.
        study: String,
    },
    /// Orthanc stopped while the instances were downloaded.
    #[snafu(display("study {study}: Orthanc stopped"))]
    OrthancStopped {
        /// Orthanc's ID of the study.
        study: String,
    },
    /// The plugin has been stopping for longer than `StopTimeout`.
    #[snafu(display(
        "study {study}: abandoned, Orthanc stopped before it was finished; it is processed \
         again when it next becomes stable"
    ))]
    Stopping {
        /// Orthanc's ID of the study.
        study: String,
    },
    /// The folder the instances are downloaded to could not be made.
    #[snafu(display("study {study}: cannot create {}: {source}", path.display()))]
    CreateIncoming {
        /// Orthanc's ID of the study.
        study: String,
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A downloaded instance could not be written.
    #[snafu(display("study {study}: cannot write {}: {source}", path.display()))]
    WriteInstance {
        /// Orthanc's ID of the study.
        study: String,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `report.json` could not be written.
    #[snafu(display("{source}"))]
    WriteReport {
        /// The writer's error.
        source: WriteReportError,
    },
    /// The report's status is failed: nothing could be processed.
    #[snafu(display(
        "study {study} ({uid}): nothing could be processed: {first} ({errors} errors in {})",
        report.display()
    ))]
    NothingProcessed {
        /// Orthanc's ID of the study.
        study: String,
        /// Its StudyInstanceUID.
        uid: String,
        /// The report's first error.
        first: String,
        /// How many errors the report holds.
        errors: usize,
        /// `report.json`.
        report: PathBuf,
    },
    /// The worker panicked on the study.
    #[snafu(display("study {study}: internal error: {message}"))]
    Internal {
        /// Orthanc's ID of the study.
        study: String,
        /// The panic's message.
        message: String,
    },
    /// The engine could not be loaded at start, so no study is processed.
    #[snafu(display("study {study}: not processed, the engine could not be loaded: {reason}"))]
    NoEngine {
        /// The StudyInstanceUID.
        study: String,
        /// Why the engine could not be loaded (as the status route shows it).
        reason: String,
    },
    /// The engine thread is gone.
    #[snafu(display("study {study}: the engine thread has ended"))]
    EngineEnded {
        /// The StudyInstanceUID.
        study: String,
    },
    /// The pipeline panicked on the study.
    #[snafu(display("study {study}: internal error in the pipeline: {message}"))]
    PipelinePanicked {
        /// The StudyInstanceUID.
        study: String,
        /// The panic's message.
        message: String,
    },
    /// The pipeline did not finish within `StopTimeout` after Orthanc began to stop.
    #[snafu(display(
        "study {study}: abandoned, Orthanc stopped and the study was not finished within \
         StopTimeout ({} s); it is processed again when it next becomes stable",
        grace.as_secs_f64()
    ))]
    Abandoned {
        /// The StudyInstanceUID.
        study: String,
        /// `StopTimeout`.
        grace: Duration,
    },
}
