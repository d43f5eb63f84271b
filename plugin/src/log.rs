//! `tracing` into Orthanc's log: every event of the plugin and of the library (the study
//! and series spans included) becomes one line of Orthanc's log, errors as errors, warnings
//! as warnings, the rest as information (shown when Orthanc runs with `--verbose`).
//!
//! The filter is `info,ort=warn` (ONNX Runtime is chatty at info), or `DICOM_XAI_LOG` in
//! Orthanc's environment, in `RUST_LOG` syntax. Messages carry UIDs and Orthanc IDs, never
//! patient names or IDs.

use std::io::Write;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::orthanc;

/// What every line starts with, so the plugin's lines can be found in Orthanc's log.
const PREFIX: &str = "dicom-xai: ";

/// Installs the subscriber (once per process: a plugin loaded again keeps the first one,
/// which logs through whatever context is open) and a panic hook that logs panics as errors.
pub fn install() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DICOM_XAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_writer(OrthancLog);
    // an error only means a subscriber is already installed (a second Initialize)
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
    std::panic::set_hook(Box::new(|info| {
        orthanc::log(
            orthanc::Level::Error,
            &format!("{PREFIX}internal error: {info} (the job in hand fails; Orthanc carries on)"),
        );
    }));
}

/// Makes one [`Line`] per event.
struct OrthancLog;

impl<'a> MakeWriter<'a> for OrthancLog {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line::new(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        Line::new(*meta.level())
    }
}

/// One formatted event, sent to Orthanc when dropped.
struct Line {
    level: Level,
    text: Vec<u8>,
}

impl Line {
    fn new(level: Level) -> Line {
        Line {
            level,
            text: PREFIX.as_bytes().to_vec(),
        }
    }
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.text.len() <= PREFIX.len() {
            return;
        }
        let text = String::from_utf8_lossy(&self.text);
        let level = match self.level {
            Level::ERROR => orthanc::Level::Error,
            Level::WARN => orthanc::Level::Warning,
            _ => orthanc::Level::Info,
        };
        orthanc::log(level, &dicom_xai::logging::redact(text.trim_end()));
    }
}
