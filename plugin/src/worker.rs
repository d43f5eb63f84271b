//! The worker thread: takes stable studies off the board, reads their new or changed
//! series from Orthanc, has the engine thread run the pipeline on them, stores every
//! overlay back into Orthanc and writes the study's `report.json`.
//!
//! Per study:
//! 1. `GET /studies/{id}` (the StudyInstanceUID) and `GET /studies/{id}/series` (each
//!    series' Modality, SeriesDescription and instances). Our own overlay series
//!    ([`is_own_overlay`]) are left out, so storing overlays, which makes the study
//!    stable again, never makes work.
//! 2. The series whose instances differ from the last run's (all of them the first time)
//!    are downloaded, `GET /instances/{id}/file` each, into `<out>/.incoming/<study>/`
//!    (removed afterwards).
//! 3. The pipeline runs on them, as `dicom-xai run` would; overlays go to
//!    `<out>/<StudyInstanceUID>/`.
//! 4. Each overlay is stored with `POST /instances`; a rerun's report is merged into the
//!    previous one, and `report.json` is written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_xai::config::is_own_overlay;
use dicom_xai::dicom::scan::{self, Disposition, SeriesHeader};
use dicom_xai::output::{self, ReportError, StudyReport};
use serde_json::Value;
use snafu::{IntoError, OptionExt, ResultExt, Snafu};

use crate::engine;
use crate::error::{
    CreateIncomingSnafu, GoneSnafu, InternalSnafu, JobError, NoStudyUidSnafu,
    NothingProcessedSnafu, OrthancStoppedSnafu, ReadStudySnafu, StoppingSnafu, WriteInstanceSnafu,
    WriteReportSnafu,
};
use crate::jobs::{Jobs, Outcome, Processed};
use crate::orthanc::{self, CallError};
use dicom_xai::panic_message;

/// The worker's share of the plugin.
pub struct Worker {
    /// The board.
    pub jobs: Arc<Jobs>,
    /// The engine thread.
    pub engine: engine::Client,
    /// Where reports and overlay files go.
    pub out: PathBuf,
    /// How long shutdown waits for the study in hand.
    pub grace: Duration,
}

/// A series as Orthanc lists it.
#[derive(Debug, Clone)]
struct OrthancSeries {
    id: String,
    uid: String,
    own_overlay: bool,
    instances: Vec<String>,
}

impl Worker {
    /// Processes studies until the plugin stops.
    pub fn run(self) {
        while let Some(study) = self.jobs.next() {
            self.jobs.start(&study);
            let started = Instant::now();
            let span = tracing::info_span!("orthanc_study", id = %study);
            let _entered = span.enter();
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(&study)))
                    .unwrap_or_else(|panic| {
                        InternalSnafu {
                            study: &study,
                            message: panic_message(panic.as_ref()),
                        }
                        .fail()
                    })
                    .unwrap_or_else(|error| Outcome::Failed(error.to_string()));
            let seconds = started.elapsed().as_secs_f64();
            match &outcome {
                Outcome::Failed(reason) => tracing::error!(seconds, "{reason}"),
                Outcome::Done { detail, .. } | Outcome::Unchanged(detail) => {
                    tracing::info!(seconds, "{detail}")
                }
            }
            self.jobs.finish(&study, outcome, seconds);
        }
        tracing::info!("worker stopped");
    }

    /// An error once the plugin has been stopping for longer than the grace period.
    fn check_stop(&self, study: &str) -> Result<(), JobError> {
        match self.jobs.stopping_since() {
            Some(since) if since.elapsed() > self.grace => StoppingSnafu { study }.fail(),
            _ => Ok(()),
        }
    }

    fn process(&self, study: &str) -> Result<Outcome, JobError> {
        let reading = |source: CallError| {
            if source.is_unknown_resource() {
                GoneSnafu { study }.build()
            } else {
                ReadStudySnafu { study }.into_error(source)
            }
        };
        let info = get_json(&format!("/studies/{study}")).map_err(reading)?;
        let uid = info["MainDicomTags"]["StudyInstanceUID"]
            .as_str()
            .context(NoStudyUidSnafu { study })?
            .to_string();
        self.jobs.set_study_uid(study, &uid);
        let listed = get_json(&format!("/studies/{study}/series")).map_err(reading)?;
        let all = series_of(&listed);
        let ours = all.iter().filter(|s| s.own_overlay).count();
        let previous = self.jobs.processed(study);
        let changed: Vec<&OrthancSeries> = all
            .iter()
            .filter(|s| !s.own_overlay)
            .filter(|s| {
                previous
                    .as_ref()
                    .and_then(|p| p.get(&s.id))
                    .is_none_or(|instances| *instances != s.instances)
            })
            .collect();
        if changed.is_empty() {
            return Ok(Outcome::Unchanged(format!(
                "study {study} ({uid}): nothing new since the last run ({} series, {ours} of \
                 them our overlays, which are never processed)",
                all.len()
            )));
        }
        let rerun = previous.is_some();
        tracing::info!(
            study_instance_uid = %uid,
            series = changed.len(),
            rerun,
            "processing{}",
            if rerun { " the new or changed series" } else { "" }
        );

        let incoming = Incoming::create(&self.out, study)?;
        let (found, errors) = self.download(study, &changed, incoming.path())?;
        let study_data = scan::study_of(found, &uid);
        let downloaded: usize = study_data.series.iter().map(|s| s.instances.len()).sum();
        self.check_stop(study)?;
        let engine::PipelineOutput {
            mut report,
            findings,
        } = self
            .engine
            .process(study_data, self.out.clone(), errors, &self.jobs, self.grace)?;
        drop(incoming);

        let (stored, store_errors) = self.store_overlays(study, &uid, report.outputs());
        report.errors.extend(store_errors);
        let redone: BTreeSet<String> = changed.iter().map(|s| s.uid.clone()).collect();
        // what an earlier run wrote for the redone series and this one did not make again
        // (other slices, a new model or parameters) goes from the folder and from Orthanc;
        // the report on disk says what, so this holds after a restart too
        let mut removed = 0;
        let replacing = output::Replacing {
            redone: &redone,
            keep_other_series: rerun,
        };
        // the study's Structured Report is made from the merged report, then stored
        let mut stored_report = 0;
        let finish = |report: &mut StudyReport| {
            let Some(writer) = &findings else {
                return Vec::new();
            };
            let mut errors = writer.write(report, &self.out);
            let written = report.structured_report_output();
            let (count, store_errors) = self.store_overlays(study, &uid, written);
            stored_report = count;
            errors.extend(store_errors);
            errors
        };
        let (report, report_path) =
            output::replace_and_write(&self.out, report, replacing, finish, |superseded| {
                let (count, errors) = remove_superseded_overlays(study, superseded);
                removed = count;
                errors
            })
            .context(WriteReportSnafu)?;
        let stored = stored + stored_report;
        self.jobs.mark_processed(
            study,
            changed
                .iter()
                .map(|s| (s.id.clone(), s.instances.clone()))
                .collect::<Processed>(),
        );

        let status = report.status.name().to_string();
        let errors = report.errors.len();
        if report.status == output::Status::Failed {
            let first = report
                .errors
                .first()
                .map_or("no slice could be used", |e| e.message.as_str());
            return NothingProcessedSnafu {
                study,
                uid,
                first,
                errors,
                report: report_path,
            }
            .fail();
        }
        // the series this run processed: a rerun's report also holds the ones it kept
        let selected = report
            .series
            .iter()
            .filter(|s| redone.contains(&s.series_instance_uid))
            .count();
        let detail = if selected == 0 {
            format!(
                "study {study} ({uid}): no rule of the site configuration selects its {} new \
                 series ({downloaded} instances); nothing to store",
                changed.len()
            )
        } else {
            format!(
                "study {study} ({uid}): {selected} series processed ({downloaded} instances \
                 read), {stored} overlays stored in Orthanc{}, report {status}{}",
                if removed > 0 {
                    format!(", {removed} outdated overlays removed")
                } else {
                    String::new()
                },
                if errors > 0 {
                    format!(" with {errors} errors")
                } else {
                    String::new()
                }
            )
        };
        Ok(Outcome::Done {
            series: selected,
            overlays: stored,
            removed,
            report_status: Some(status),
            detail,
        })
    }

    /// Downloads the instances of `series` into `folder` and reads their headers.
    fn download(
        &self,
        study: &str,
        series: &[&OrthancSeries],
        folder: &Path,
    ) -> Result<(Vec<scan::Found>, Vec<ReportError>), JobError> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for instance in series.iter().flat_map(|s| &s.instances) {
            self.check_stop(study)?;
            let bytes = match orthanc::rest_get(&format!("/instances/{instance}/file")) {
                Ok(bytes) => bytes,
                Err(CallError::Closed) => return OrthancStoppedSnafu { study }.fail(),
                Err(e) => {
                    errors.push(ReportError {
                        file: format!("/instances/{instance}"),
                        message: format!(
                            "instance {instance} of study {study}: cannot read it from Orthanc: {e}"
                        ),
                    });
                    continue;
                }
            };
            let path = folder.join(format!("{instance}.dcm"));
            std::fs::write(&path, &bytes).context(WriteInstanceSnafu { study, path: &path })?;
            match scan::read_instance(&path) {
                Ok(instance) => found.push(instance),
                Err(issue) if issue.disposition == Disposition::Skipped => {
                    tracing::info!("instance {instance}: skipped: {}", issue.message);
                }
                Err(issue) => errors.push(ReportError {
                    file: issue.file.display().to_string(),
                    message: issue.message,
                }),
            }
        }
        Ok((found, errors))
    }

    /// Stores `outputs` (paths relative to the study folder, SOP Instance UIDs) in Orthanc;
    /// how many are there now, and an error per output Orthanc refused.
    fn store_overlays<'a>(
        &self,
        study: &str,
        uid: &str,
        outputs: impl Iterator<Item = (&'a Path, &'a str)>,
    ) -> (usize, Vec<ReportError>) {
        let study_dir = match output::study_dir(&self.out, uid) {
            Ok(dir) => dir,
            Err(invalid) => {
                let message = format!("study {study}: StudyInstanceUID {invalid}");
                return (
                    0,
                    vec![ReportError {
                        file: String::new(),
                        message,
                    }],
                );
            }
        };
        let mut stored = 0;
        let mut errors = Vec::new();
        for (file, sop) in outputs {
            let path = study_dir.join(file);
            let result = std::fs::read(&path)
                .context(ReadOverlaySnafu)
                .and_then(|bytes| orthanc::rest_post("/instances", &bytes).context(PostSnafu))
                .and_then(|answer| store_status(&answer));
            match result {
                Ok(status) => {
                    stored += 1;
                    tracing::debug!(overlay = %sop, "{status}");
                }
                Err(why) => errors.push(ReportError {
                    file: path.display().to_string(),
                    message: format!(
                        "overlay {sop} of study {study}: Orthanc did not store it: {why}"
                    ),
                }),
            }
        }
        (stored, errors)
    }
}

/// Deletes from Orthanc the overlays an earlier run stored that this run superseded, so that
/// the study shows only current explanations. Only instances of our own overlay series in
/// this study are deleted. How many were, and an error per one that could not be.
fn remove_superseded_overlays(
    study: &str,
    superseded: &[output::SupersededOutput],
) -> (usize, Vec<ReportError>) {
    let mut removed = 0;
    let mut errors = Vec::new();
    for sop in superseded.iter().map(|s| &s.output_sop_instance_uid) {
        match remove_overlay(study, sop) {
            Ok(true) => {
                removed += 1;
                tracing::info!(overlay = %sop, "superseded overlay removed");
            }
            Ok(false) => {}
            Err(why) => errors.push(ReportError {
                file: sop.clone(),
                message: format!("superseded overlay {sop} of study {study}: {why}"),
            }),
        }
    }
    (removed, errors)
}

/// Why a superseded overlay could not be deleted from Orthanc.
#[derive(Debug, Snafu)]
enum RemoveError {
    /// `POST /tools/lookup` failed.
    #[snafu(display("cannot look it up: {source}"))]
    Lookup {
        /// Orthanc's error.
        source: CallError,
    },
    /// The lookup's answer is not JSON.
    #[snafu(display("unexpected lookup answer: {source}"))]
    LookupAnswer {
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The instance's series could not be read.
    #[snafu(display("{source}"))]
    InstanceSeries {
        /// Orthanc's error.
        source: CallError,
    },
    /// The instance is not ours to delete.
    #[snafu(display(
        "instance {id} is not in one of our overlay series of this study; left in place"
    ))]
    NotOurs {
        /// Orthanc's ID of the instance.
        id: String,
    },
    /// `DELETE /instances/{id}` failed.
    #[snafu(display("cannot delete instance {id}: {source}"))]
    Delete {
        /// Orthanc's ID of the instance.
        id: String,
        /// Orthanc's error.
        source: CallError,
    },
}

/// Deletes one overlay by SOPInstanceUID; false when Orthanc no longer has it.
fn remove_overlay(study: &str, sop: &str) -> Result<bool, RemoveError> {
    let found = orthanc::rest_post("/tools/lookup", sop.as_bytes()).context(LookupSnafu)?;
    let found: Value = serde_json::from_slice(&found).context(LookupAnswerSnafu)?;
    let Some(id) = found
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["Type"] == "Instance")
        .and_then(|r| r["ID"].as_str())
    else {
        return Ok(false);
    };
    let series = get_json(&format!("/instances/{id}/series")).context(InstanceSeriesSnafu)?;
    let tags = &series["MainDicomTags"];
    let header = SeriesHeader {
        modality: tags["Modality"].as_str().map(str::to_string),
        description: tags["SeriesDescription"].as_str().map(str::to_string),
        ..SeriesHeader::default()
    };
    if series["ParentStudy"] != study || !is_own_overlay(&header) {
        return NotOursSnafu { id }.fail();
    }
    orthanc::rest_delete(&format!("/instances/{id}")).context(DeleteSnafu { id })?;
    Ok(true)
}

/// GET on Orthanc's REST API, as JSON.
fn get_json(uri: &str) -> Result<Value, CallError> {
    let bytes = orthanc::rest_get(uri)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| CallError::Invalid(format!("GET {uri}: the answer is not JSON: {e}")))
}

/// The series of `GET /studies/{id}/series`, instances sorted.
fn series_of(listed: &Value) -> Vec<OrthancSeries> {
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|series| {
            let id = series["ID"].as_str()?.to_string();
            let tags = &series["MainDicomTags"];
            let text = |key: &str| tags[key].as_str().map(str::to_string);
            let header = SeriesHeader {
                modality: text("Modality"),
                description: text("SeriesDescription"),
                ..SeriesHeader::default()
            };
            let mut instances: Vec<String> = series["Instances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect();
            instances.sort();
            Some(OrthancSeries {
                uid: text("SeriesInstanceUID").unwrap_or_else(|| id.clone()),
                id,
                own_overlay: is_own_overlay(&header),
                instances,
            })
        })
        .collect()
}

/// Why Orthanc did not store an overlay.
#[derive(Debug, Snafu)]
enum StoreError {
    /// The overlay file could not be read.
    #[snafu(display("cannot read it: {source}"))]
    ReadOverlay {
        /// The I/O error.
        source: std::io::Error,
    },
    /// `POST /instances` failed.
    #[snafu(display("{source}"))]
    Post {
        /// Orthanc's error.
        source: CallError,
    },
    /// The answer is not JSON.
    #[snafu(display("unexpected answer to POST /instances: {source}"))]
    StoreAnswer {
        /// The parser's error.
        source: serde_json::Error,
    },
    /// Orthanc answered with another status than stored.
    #[snafu(display("Orthanc answered {status}"))]
    NotStored {
        /// The status (`FilteredOut`, ...).
        status: String,
    },
    /// Orthanc's answer has no status.
    #[snafu(display("Orthanc's answer has no Status"))]
    NoStatus,
}

/// Orthanc's answer to `POST /instances`: "Success" or "AlreadyStored".
fn store_status(answer: &[u8]) -> Result<String, StoreError> {
    let value: Value = serde_json::from_slice(answer).context(StoreAnswerSnafu)?;
    match value["Status"].as_str() {
        Some(status @ ("Success" | "AlreadyStored")) => Ok(status.to_string()),
        Some(status) => NotStoredSnafu { status }.fail(),
        None => NoStatusSnafu.fail(),
    }
}

/// The folder a study's instances are downloaded to, removed when dropped.
struct Incoming(PathBuf);

impl Incoming {
    fn create(out: &Path, study: &str) -> Result<Incoming, JobError> {
        let path = out.join(".incoming").join(study);
        // leftovers of a run cut short
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).context(CreateIncomingSnafu { study, path: &path })?;
        Ok(Incoming(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!("cannot remove {}: {error}", self.0.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_overlay_series_are_recognised_from_orthanc_tags() {
        let listed = serde_json::json!([
            {"ID": "s1", "Instances": ["b", "a"],
             "MainDicomTags": {"Modality": "MR", "SeriesDescription": "AX T1",
                               "SeriesInstanceUID": "1.2.3"}},
            {"ID": "s2", "Instances": ["c"],
             "MainDicomTags": {"Modality": "OT",
                               "SeriesDescription": "XAI gradcam vgg16 - NOT FOR DIAGNOSTIC USE",
                               "SeriesInstanceUID": "2.25.1"}},
            {"ID": "s3", "Instances": [],
             "MainDicomTags": {"Modality": "OT", "SeriesDescription": "scanned form"}}
        ]);
        let series = series_of(&listed);
        assert_eq!(series.len(), 3);
        assert!(!series[0].own_overlay);
        assert_eq!(series[0].instances, ["a", "b"]);
        assert_eq!(series[0].uid, "1.2.3");
        assert!(series[1].own_overlay);
        assert!(!series[2].own_overlay, "OT without the marker is not ours");
        assert_eq!(series[2].uid, "s3");
    }

    #[test]
    fn store_answers() {
        let text = |answer: &[u8]| store_status(answer).map_err(|e| e.to_string());
        assert_eq!(
            text(br#"{"ID": "x", "Status": "Success"}"#),
            Ok("Success".into())
        );
        assert_eq!(
            text(br#"{"ID": "x", "Status": "AlreadyStored"}"#),
            Ok("AlreadyStored".into())
        );
        assert_eq!(
            text(br#"{"Status": "FilteredOut"}"#),
            Err("Orthanc answered FilteredOut".into())
        );
        assert_eq!(text(b"{}"), Err("Orthanc's answer has no Status".into()));
        assert!(
            text(b"<html>").is_err_and(|e| e.starts_with("unexpected answer to POST /instances: "))
        );
    }
}
