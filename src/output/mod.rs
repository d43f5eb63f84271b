//! Outputs: `report.json` per study (DESIGN.md 4.2) and where overlay files go.

pub mod report;

use std::path::{Path, PathBuf};

use crate::dicom::uid::{self, InvalidUid};

pub use report::{
    ExplanationReport, ModelReport, Quality, ReportError, SeriesPrediction, SeriesReport,
    SliceReport, Status, StudyReport, SummaryReport,
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
