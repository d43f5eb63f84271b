//! Outputs: `report.json` per study (DESIGN.md 4.2) and where overlay files go.

pub mod report;

use std::path::{Path, PathBuf};

use crate::dicom::uid::{self, InvalidUid};

pub use report::{
    ExplanationReport, ModelReport, Quality, ReportError, SeriesPrediction, SeriesReport,
    SliceReport, Status, StudyReport, SummaryReport, SupersededOutput,
};

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

/// The outputs `previous` (the study's earlier `report.json`) names for the source series
/// in `redone` that `current` does not name again: what a rerun replaced. Outputs of series
/// not redone are never superseded.
pub fn superseded_outputs(
    previous: &serde_json::Value,
    current: &StudyReport,
    redone: &std::collections::BTreeSet<String>,
) -> Vec<SupersededOutput> {
    let made: std::collections::BTreeSet<&str> = current.outputs().map(|(_, sop)| sop).collect();
    let mut superseded = Vec::new();
    for series in previous["series"].as_array().into_iter().flatten() {
        let Some(source) = series["series_instance_uid"].as_str() else {
            continue;
        };
        if !redone.contains(source) {
            continue;
        }
        for model in series["models"].as_array().into_iter().flatten() {
            let outputs = ["explanations", "summaries"]
                .into_iter()
                .flat_map(|key| model[key].as_array().into_iter().flatten());
            for output in outputs {
                let (Some(sop), Some(output_series)) = (
                    output["output_sop_instance_uid"].as_str(),
                    output["output_series_instance_uid"].as_str(),
                ) else {
                    continue;
                };
                if made.contains(sop) {
                    continue;
                }
                superseded.push(SupersededOutput {
                    series_instance_uid: source.to_string(),
                    method: output["method"].as_str().unwrap_or("summary").to_string(),
                    output_sop_instance_uid: sop.to_string(),
                    output_series_instance_uid: output_series.to_string(),
                });
            }
        }
    }
    superseded
}

/// Replaces what an earlier run wrote for the series `report` redid: reads the study's
/// previous `report.json` (when there is a readable one), removes the outputs it names for
/// those series that this run did not make again ([`superseded_outputs`],
/// [`remove_superseded`]) and records them in `report.superseded` (errors in
/// `report.errors`, the status settled again). Returns the previous report, for a rerun to
/// merge into.
pub fn replace_previous(
    out: &Path,
    report: &mut StudyReport,
    redone: &std::collections::BTreeSet<String>,
) -> Option<serde_json::Value> {
    let study_dir = study_dir(out, &report.study_instance_uid).ok()?;
    let path = study_dir.join("report.json");
    let bytes = std::fs::read(&path).ok()?;
    let previous: serde_json::Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(error) => {
            tracing::warn!("{}: not JSON, replaced: {error}", path.display());
            return None;
        }
    };
    let superseded = superseded_outputs(&previous, report, redone);
    let errors = remove_superseded(&study_dir, &superseded);
    if !errors.is_empty() {
        report.errors.extend(errors);
        report.settle_status();
    }
    if !superseded.is_empty() {
        tracing::info!(
            removed = superseded.len(),
            "outputs of an earlier run replaced (other model, parameters, software or slices)"
        );
    }
    report.superseded = superseded;
    Some(previous)
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

/// Folds the report of a rerun that redid only some series of a study (`rerun`, the
/// `report.json` value of that run) into the study's `previous` report: the previous
/// series and skipped series that were not redone are kept, errors are the union, and the
/// status is settled again over the whole study (ok without errors; partial with errors
/// when some model classified slices; failed otherwise). `rerun_series` are the
/// SeriesInstanceUIDs the rerun covered.
pub fn merge_rerun(
    rerun: &mut serde_json::Value,
    previous: &serde_json::Value,
    rerun_series: &std::collections::BTreeSet<String>,
) {
    use serde_json::Value;
    let kept = |key: &str| -> Vec<Value> {
        previous[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| {
                item["series_instance_uid"]
                    .as_str()
                    .is_some_and(|uid| !rerun_series.contains(uid))
            })
            .cloned()
            .collect()
    };
    for key in ["series", "skipped_series"] {
        let mut merged = kept(key);
        merged.extend(rerun[key].as_array().into_iter().flatten().cloned());
        rerun[key] = Value::Array(merged);
    }
    let mut errors: Vec<Value> = rerun["errors"].as_array().cloned().unwrap_or_default();
    for error in previous["errors"].as_array().into_iter().flatten() {
        if !errors.contains(error) {
            errors.push(error.clone());
        }
    }
    let produced = rerun["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["models"].as_array().into_iter().flatten())
        .any(|m| m["slices"].as_array().is_some_and(|s| !s.is_empty()));
    let status = match (errors.is_empty(), produced) {
        (true, _) => "ok",
        (false, true) => "partial",
        (false, false) => "failed",
    };
    rerun["errors"] = Value::Array(errors);
    rerun["status"] = Value::String(status.into());
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

    #[test]
    fn a_rerun_keeps_the_series_it_did_not_redo() {
        let previous = serde_json::json!({
            "study_instance_uid": "1", "status": "ok", "errors": [],
            "series": [{"series_instance_uid": "a", "models": [{"slices": [1]}]},
                       {"series_instance_uid": "b", "models": [{"slices": [1]}]}],
            "skipped_series": [{"series_instance_uid": "c", "reason": "no rule"}]
        });
        let mut rerun = serde_json::json!({
            "study_instance_uid": "1", "status": "partial",
            "errors": [{"file": "x", "message": "bad"}],
            "series": [{"series_instance_uid": "b", "models": [{"slices": [1, 2]}]}],
            "skipped_series": []
        });
        let redone = std::collections::BTreeSet::from(["b".to_string()]);
        merge_rerun(&mut rerun, &previous, &redone);
        let uids: Vec<&str> = rerun["series"]
            .as_array()
            .expect("series")
            .iter()
            .filter_map(|s| s["series_instance_uid"].as_str())
            .collect();
        assert_eq!(uids, ["a", "b"]);
        assert_eq!(rerun["series"][1]["models"][0]["slices"][1], 2);
        assert_eq!(rerun["skipped_series"][0]["series_instance_uid"], "c");
        assert_eq!(rerun["status"], "partial");
    }

    #[test]
    fn a_rerun_without_errors_anywhere_is_ok() {
        let previous = serde_json::json!({"errors": [], "series": [], "skipped_series": []});
        let mut rerun = serde_json::json!({
            "errors": [], "skipped_series": [],
            "series": [{"series_instance_uid": "b", "models": [{"slices": [1]}]}]
        });
        merge_rerun(&mut rerun, &previous, &Default::default());
        assert_eq!(rerun["status"], "ok");
    }
}
