//! Outputs: `report.json` per study (docs/design.md section 3) and where overlay files go.

pub mod report;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use snafu::{ResultExt, Snafu};

use crate::dicom::uid::{self, InvalidUid};

pub use report::{
    ExplanationReport, MapFrameReport, ModelReport, ParametricMapReport, Quality, ReportError,
    SeriesPrediction, SeriesReport, SliceAt, SliceReport, Status, StructuredReportOutput,
    StudyReport, SummaryReport, SupersededOutput,
};

/// The method name of the study's Structured Report in `superseded` entries.
pub const STRUCTURED_REPORT: &str = "structured-report";

/// Every output path is built here, and only from valid DICOM UIDs (PS3.5 9.1, see
/// [`uid::check`]): `base/<uid>/<uid>...`, the last with `extension` when given. UIDs come
/// from input files and are untrusted; a value that is not a UID (`../x`, `/x`, a NUL byte)
/// is refused, so no output can land outside `base`.
pub fn uid_path(
    base: &Path,
    uids: &[&str],
    extension: Option<&str>,
) -> Result<PathBuf, InvalidUid> {
    let mut path = base.to_path_buf();
    for (index, value) in uids.iter().enumerate() {
        let name = uid::check(value)?;
        match extension.filter(|_| index + 1 == uids.len()) {
            Some(extension) => path.push(format!("{name}.{extension}")),
            None => path.push(name),
        }
    }
    Ok(path)
}

/// The folder of a study's outputs: `<out>/<StudyInstanceUID>`.
pub fn study_dir(out: &Path, study_uid: &str) -> Result<PathBuf, InvalidUid> {
    uid_path(out, &[study_uid], None)
}

/// Where an overlay is written, relative to the study folder:
/// `<overlay SeriesInstanceUID>/<overlay SOPInstanceUID>.dcm`.
pub fn overlay_relative_path(series_uid: &str, sop_uid: &str) -> Result<PathBuf, InvalidUid> {
    uid_path(Path::new(""), &[series_uid, sop_uid], Some("dcm"))
}

/// The outputs `previous` (the study's earlier report) names for the source series in
/// `redone` that `current` does not name again: what a rerun replaced. Outputs of series not
/// redone are never superseded.
pub fn superseded_outputs(
    previous: &StudyReport,
    current: &StudyReport,
    redone: &BTreeSet<String>,
) -> Vec<SupersededOutput> {
    let made: BTreeSet<&str> = current.outputs().map(|(_, sop)| sop).collect();
    let mut superseded = Vec::new();
    for series in &previous.series {
        if !redone.contains(&series.series_instance_uid) {
            continue;
        }
        for model in &series.models {
            let explanations = model.explanations.iter().map(|e| {
                (
                    e.method.as_str(),
                    &e.output_sop_instance_uid,
                    &e.output_series_instance_uid,
                )
            });
            let summaries = model.summaries.iter().map(|s| {
                (
                    "summary",
                    &s.output_sop_instance_uid,
                    &s.output_series_instance_uid,
                )
            });
            let maps = model.parametric_maps.iter().map(|p| {
                (
                    p.method.as_str(),
                    &p.output_sop_instance_uid,
                    &p.output_series_instance_uid,
                )
            });
            for (method, sop, output_series) in explanations.chain(summaries).chain(maps) {
                if made.contains(sop.as_str()) {
                    continue;
                }
                superseded.push(SupersededOutput {
                    series_instance_uid: series.series_instance_uid.clone(),
                    method: method.to_string(),
                    output_sop_instance_uid: sop.clone(),
                    output_series_instance_uid: output_series.clone(),
                });
            }
        }
    }
    superseded
}

/// How a study's new report meets the one an earlier run left in its folder.
#[derive(Debug, Clone, Copy)]
pub struct Replacing<'a> {
    /// The source series this run redid: the earlier outputs of these series that it did
    /// not make again are removed.
    pub redone: &'a BTreeSet<String>,
    /// A rerun of some series of the study (the daemon and the plugin, when new series
    /// arrive): the earlier report's other series are kept. Otherwise (`run`) the new report
    /// replaces the old one whole.
    pub keep_other_series: bool,
}

/// Why a report could not be written.
#[derive(Debug, Snafu)]
pub enum WriteReportError {
    /// The StudyInstanceUID cannot name a folder.
    #[snafu(display("nothing written for the study: StudyInstanceUID {source}"))]
    StudyUid {
        /// What is wrong with the UID.
        source: InvalidUid,
    },
    /// The file could not be written.
    #[snafu(display("{}: cannot write: {source}", path.display()))]
    WriteReport {
        /// `report.json`.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Writes `report` as `<out>/<StudyInstanceUID>/report.json` over what an earlier run left.
/// With `keep_other_series` the earlier report's other series are kept
/// ([`StudyReport::keep_previous`]); then `finish` adds what is made from the whole report
/// (the study's Structured Report), its failures joining the errors. The earlier outputs
/// this run did not make again (of the redone series, and a Structured Report whose content
/// changed) are removed from the folder, and by `remove_elsewhere` from wherever else they
/// were stored (the plugin's Orthanc), and listed in `report.superseded`; failures to remove
/// join the errors; the status is settled once over all of it. An earlier report that
/// cannot be read is replaced (with a warning). The report as written and its path.
pub fn replace_and_write(
    out: &Path,
    mut report: StudyReport,
    replacing: Replacing<'_>,
    finish: impl FnOnce(&mut StudyReport) -> Vec<ReportError>,
    remove_elsewhere: impl FnOnce(&[SupersededOutput]) -> Vec<ReportError>,
) -> Result<(StudyReport, PathBuf), WriteReportError> {
    let study_dir = study_dir(out, &report.study_instance_uid).context(StudyUidSnafu)?;
    let path = study_dir.join("report.json");
    let previous = read_previous(&path);
    let mut superseded = previous
        .as_ref()
        .map(|previous| superseded_outputs(previous, &report, replacing.redone))
        .unwrap_or_default();
    let previous_report = previous
        .as_ref()
        .and_then(|previous| previous.structured_report.clone());
    if let Some(previous) = previous.filter(|_| replacing.keep_other_series) {
        report.keep_previous(previous, replacing.redone);
    }
    let failed = finish(&mut report);
    report.errors.extend(failed);
    if let Some(old) = previous_report {
        let made_again = report
            .structured_report
            .as_ref()
            .is_some_and(|new| new.output_sop_instance_uid == old.output_sop_instance_uid);
        if !made_again {
            superseded.push(SupersededOutput {
                series_instance_uid: report.study_instance_uid.clone(),
                method: STRUCTURED_REPORT.to_string(),
                output_sop_instance_uid: old.output_sop_instance_uid,
                output_series_instance_uid: old.output_series_instance_uid,
            });
        }
    }
    if !superseded.is_empty() {
        report
            .errors
            .extend(remove_superseded(&study_dir, &superseded));
        report.errors.extend(remove_elsewhere(&superseded));
        tracing::info!(
            removed = superseded.len(),
            "outputs of an earlier run replaced (other model, parameters, software, slices \
             or findings)"
        );
    }
    report.superseded = superseded;
    report.settle_status();
    let bytes = serde_json::to_vec_pretty(&report).map_err(|e| WriteReportError::WriteReport {
        path: path.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::files::write_atomically(&path, &bytes).context(WriteReportSnafu { path: &path })?;
    Ok((report, path))
}

/// The study's earlier report, when there is a readable one.
fn read_previous(path: &Path) -> Option<StudyReport> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(previous) => Some(previous),
        Err(error) => {
            tracing::warn!(
                "{}: not a report of this program, replaced: {error}",
                path.display()
            );
            None
        }
    }
}

/// Removes the files of `superseded` outputs from the study folder, and their series folders
/// once empty. Paths are rebuilt from the UIDs (never read from the old report), so nothing
/// outside the study folder can be touched. An error per file that could not be removed (one
/// already gone is not an error).
pub fn remove_superseded(study_dir: &Path, superseded: &[SupersededOutput]) -> Vec<ReportError> {
    let mut errors = Vec::new();
    for output in superseded {
        let path = overlay_relative_path(
            &output.output_series_instance_uid,
            &output.output_sop_instance_uid,
        )
        .map(|relative| study_dir.join(relative));
        let result = match &path {
            Ok(path) => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => {
                    // the series folder goes with its last file; a non-empty one stays
                    if let Some(folder) = path.parent() {
                        let _ = std::fs::remove_dir(folder);
                    }
                    Ok(())
                }
            },
            Err(invalid) => Err(invalid.to_string()),
        };
        if let Err(why) = result {
            errors.push(ReportError {
                file: path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                message: format!(
                    "superseded output {} of series {}: cannot remove it: {why}",
                    output.output_sop_instance_uid, output.series_instance_uid
                ),
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_paths_are_built_from_valid_uids_only() {
        let out = Path::new("/srv/out");
        assert_eq!(study_dir(out, "1.2.3"), Ok(PathBuf::from("/srv/out/1.2.3")));
        assert_eq!(
            overlay_relative_path("2.25.1", "2.25.2"),
            Ok(PathBuf::from("2.25.1/2.25.2.dcm"))
        );
        for hostile in [
            "../../escape",
            "/abs/escape",
            "1.2..3",
            "",
            "1.2\0.3",
            ".",
            "..",
        ] {
            assert!(study_dir(out, hostile).is_err(), "{hostile:?}");
            assert!(
                overlay_relative_path("1.2", hostile).is_err(),
                "{hostile:?}"
            );
            assert!(
                overlay_relative_path(hostile, "1.2").is_err(),
                "{hostile:?}"
            );
        }
        assert!(study_dir(out, &"1".repeat(65)).is_err());
    }

    fn report(json: serde_json::Value) -> StudyReport {
        serde_json::from_value(json).expect("a report")
    }

    fn series(uid: &str, slices: usize) -> serde_json::Value {
        let slice = serde_json::json!({
            "sop_instance_uid": "9", "frame": 0, "label": "glioma",
            "probabilities": {"glioma": 0.9, "notumor": 0.1}
        });
        serde_json::json!({
            "series_instance_uid": uid, "rule": "r", "slice_count": slices,
            "models": [{"model": "m", "version": "1", "trained": true, "provider": "cpu",
                        "series_prediction": null, "explanations": [],
                        "slices": vec![slice; slices]}]
        })
    }

    #[test]
    fn a_rerun_keeps_the_series_it_did_not_redo() {
        let previous = report(serde_json::json!({
            "study_instance_uid": "1", "status": "ok", "errors": [], "software": "x",
            "series": [series("a", 1), series("b", 1)],
            "skipped_series": [{"series_instance_uid": "c", "reason": "no rule"}]
        }));
        let mut rerun = report(serde_json::json!({
            "study_instance_uid": "1", "status": "partial", "software": "x",
            "errors": [{"file": "x", "message": "bad"}],
            "series": [series("b", 2)],
            "skipped_series": []
        }));
        let redone = BTreeSet::from(["b".to_string()]);
        rerun.keep_previous(previous, &redone);
        let uids: Vec<&str> = rerun
            .series
            .iter()
            .map(|s| s.series_instance_uid.as_str())
            .collect();
        assert_eq!(uids, ["a", "b"]);
        assert_eq!(rerun.series[1].models[0].slices.len(), 2);
        assert_eq!(rerun.skipped_series[0].series_instance_uid, "c");
        assert_eq!(rerun.status, Status::Partial);
        // label order survives the round trip through report.json
        let labels: Vec<&str> = rerun.series[0].models[0].slices[0]
            .probabilities
            .0
            .iter()
            .map(|(label, _)| label.as_str())
            .collect();
        assert_eq!(labels, ["glioma", "notumor"]);
    }

    #[test]
    fn a_rerun_is_settled_by_the_one_status_rule() {
        let empty = |errors: serde_json::Value, series: Vec<serde_json::Value>| {
            report(serde_json::json!({
                "study_instance_uid": "1", "status": "failed", "software": "x",
                "errors": errors, "series": series, "skipped_series": []
            }))
        };
        let mut rerun = empty(serde_json::json!([]), vec![series("b", 1)]);
        rerun.keep_previous(empty(serde_json::json!([]), vec![]), &BTreeSet::new());
        assert_eq!(rerun.status, Status::Ok);
        // a kept series whose model failed makes the study partial, as in a full run
        let mut failed_model = series("a", 1);
        failed_model["models"][0]["error"] = serde_json::json!("the model failed");
        let mut rerun = empty(serde_json::json!([]), vec![series("b", 1)]);
        let redone = BTreeSet::from(["b".to_string()]);
        rerun.keep_previous(empty(serde_json::json!([]), vec![failed_model]), &redone);
        assert_eq!(rerun.status, Status::Partial);
    }
}
