//! Outputs: `report.json` per study (DESIGN.md 4.2) and where overlay files go.

pub mod report;

use std::path::{Path, PathBuf};

pub use report::{
    ExplanationReport, ModelReport, Quality, ReportError, SeriesPrediction, SeriesReport,
    SliceReport, Status, StudyReport, SummaryReport,
};

/// The folder of a study's outputs: `<out>/<StudyInstanceUID>`.
pub fn study_dir(out: &Path, study_uid: &str) -> PathBuf {
    out.join(study_uid)
}

/// Where an overlay is written, relative to the study folder:
/// `<overlay SeriesInstanceUID>/<overlay SOPInstanceUID>.dcm`.
pub fn overlay_relative_path(series_uid: &str, sop_uid: &str) -> PathBuf {
    Path::new(series_uid).join(format!("{sop_uid}.dcm"))
}

/// Writes `bytes` to `path` atomically (temporary name in the same folder, then rename).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.part"));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
