//! The study's Structured Report (`[output] formats` with `sr`), made from its report once a
//! rerun's report has been merged, so that it holds every series the report holds and its
//! values are report.json's (docs/design.md section 13).
//!
//! The per-(series, model) probabilities are those of the slice the series call rests on
//! (`series_prediction.decided_by`); each explanation references its source slice, its
//! overlay and the Parametric Map holding its frame.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::dicom::file::{self, Depth};
use crate::dicom::structured_report::{self, Code, ExplanationFinding, Referenced, SeriesFinding};
use crate::dicom::{parametric_map, secondary_capture};
use crate::model::{Classifier, LabelCode};
use crate::output::{self, ModelReport, ReportError, StructuredReportOutput, StudyReport};

/// SOPClassUID assumed for the slices of a series whose report entry predates the field: the
/// rules select MR series.
const MR_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.4";

/// Writes a study's Structured Report; made once per engine, cheap to clone (the Orthanc
/// plugin's worker holds one).
#[derive(Debug, Clone)]
pub struct FindingsWriter {
    series_number: u32,
    /// Per model name, its labels' standard codes.
    codes: HashMap<String, BTreeMap<String, LabelCode>>,
}

impl FindingsWriter {
    /// The writer for `models`; its series number follows every overlay, summary and map
    /// series number of the engine.
    pub(super) fn new(models: &[Classifier], series_number_base: u32) -> FindingsWriter {
        let methods = crate::explain::METHOD_NAMES.len();
        // per model: an overlay series per method, a summary series, a map series per method
        let used = models.len() * (2 * methods + 1);
        FindingsWriter {
            series_number: series_number_base + 1 + used as u32,
            codes: models
                .iter()
                .map(|m| (m.manifest().name.clone(), m.manifest().label_codes.clone()))
                .collect(),
        }
    }

    /// Writes the Structured Report of `report` into `<out>/<StudyInstanceUID>/` and records
    /// it, and the seconds it took (`structured-report`), in the report; nothing when no
    /// series has a prediction. Failures are returned.
    pub fn write(&self, report: &mut StudyReport, out: &Path) -> Vec<ReportError> {
        let started = std::time::Instant::now();
        let errors = self.write_report(report, out);
        report
            .timings
            .insert("structured-report".into(), started.elapsed().as_secs_f64());
        errors
    }

    /// [`FindingsWriter::write`] without the timing.
    fn write_report(&self, report: &mut StudyReport, out: &Path) -> Vec<ReportError> {
        report.structured_report = None;
        let findings = self.findings(report);
        if findings.is_empty() {
            return Vec::new();
        }
        let failed = |file: String, message: String| {
            vec![ReportError {
                file,
                message: format!(
                    "study {}: Structured Report not written: {message}",
                    report.study_instance_uid
                ),
            }]
        };
        let study_dir = match output::study_dir(out, &report.study_instance_uid) {
            Ok(dir) => dir,
            Err(invalid) => return failed(String::new(), invalid.to_string()),
        };
        // patient and study come from an output written for the study (each carries them):
        // the source files may be gone by now (the plugin's downloads, a rerun's other series)
        let source = report
            .outputs()
            .find_map(|(relative, _)| file::open(&study_dir.join(relative), Depth::Header).ok());
        let Some(source) = source else {
            return failed(
                study_dir.display().to_string(),
                "no output of the study could be read for its patient and study".into(),
            );
        };
        let mut images: Vec<Referenced> = Vec::new();
        for explanation in findings.iter().flat_map(|f| &f.explanations) {
            if !images.contains(&explanation.source) {
                images.push(explanation.source.clone());
            }
        }
        let created = secondary_capture::Timestamp::now();
        let (object, uids) = match structured_report::build(
            source.dataset(),
            &findings,
            &images,
            self.series_number,
            &created,
        ) {
            Ok(built) => built,
            Err(error) => return failed(String::new(), error.to_string()),
        };
        let relative = match output::overlay_relative_path(&uids.series, &uids.instance) {
            Ok(relative) => relative,
            Err(invalid) => return failed(String::new(), invalid.to_string()),
        };
        let path = study_dir.join(&relative);
        if let Err(error) = secondary_capture::write_atomically(&object, &path) {
            return failed(path.display().to_string(), error.to_string());
        }
        tracing::info!(
            sop_instance_uid = %uids.instance,
            groups = findings.len(),
            "Structured Report written"
        );
        report.structured_report = Some(StructuredReportOutput {
            output_sop_instance_uid: uids.instance,
            output_series_instance_uid: uids.series,
            output_file: relative,
        });
        Vec::new()
    }

    /// One finding per (series, model) with a series call, in report order.
    fn findings(&self, report: &StudyReport) -> Vec<SeriesFinding> {
        let mut findings = Vec::new();
        for series in &report.series {
            let class_uid = if series.sop_class_uid.is_empty() {
                MR_IMAGE_STORAGE
            } else {
                series.sop_class_uid.as_str()
            };
            let slice = |sop: &str| Referenced {
                class_uid: class_uid.to_string(),
                instance_uid: sop.to_string(),
                series_uid: series.series_instance_uid.clone(),
            };
            for model in &series.models {
                let Some(prediction) = &model.series_prediction else {
                    continue;
                };
                let code = |label: &str| self.code(&model.model, label);
                // the probabilities of the slice the call rests on
                let deciding = prediction
                    .decided_by
                    .as_ref()
                    .and_then(|at| model.slice(&at.sop_instance_uid, at.frame));
                let decided_on =
                    deciding.and_then(|s| Some((slice(&s.sop_instance_uid), s.size()?)));
                let probabilities = deciding
                    .map(|s| {
                        s.probabilities
                            .0
                            .iter()
                            .map(|(label, p)| (code(label), *p))
                            .collect()
                    })
                    .unwrap_or_default();
                findings.push(SeriesFinding {
                    series_uid: series.series_instance_uid.clone(),
                    model: (
                        model.model.clone(),
                        model.version.clone(),
                        model.sha256.clone(),
                        model.trained,
                    ),
                    finding: code(&prediction.label),
                    decided_on,
                    probabilities,
                    explanations: explanation_findings(model, &slice, &code),
                });
            }
        }
        findings
    }

    /// The code of `label` of `model`: the manifest's, else the private scheme's.
    fn code(&self, model: &str, label: &str) -> Code {
        match self.codes.get(model).and_then(|codes| codes.get(label)) {
            Some(standard) => Code::new(&standard.value, &standard.scheme, &standard.meaning),
            None => Code::private(label, label),
        }
    }
}

/// Each explanation of `model`, with its overlay and the map holding its frame.
fn explanation_findings(
    model: &ModelReport,
    slice: &dyn Fn(&str) -> Referenced,
    code: &dyn Fn(&str) -> Code,
) -> Vec<ExplanationFinding> {
    model
        .explanations
        .iter()
        .map(|explanation| {
            let overlay = Referenced {
                class_uid: secondary_capture::SOP_CLASS.to_string(),
                instance_uid: explanation.output_sop_instance_uid.clone(),
                series_uid: explanation.output_series_instance_uid.clone(),
            };
            let maps = model
                .parametric_maps
                .iter()
                .filter(|map| {
                    map.method == explanation.method
                        && map.frames.iter().any(|f| {
                            f.sop_instance_uid == explanation.sop_instance_uid
                                && f.frame == explanation.frame
                        })
                })
                .map(|map| Referenced {
                    class_uid: parametric_map::SOP_CLASS.to_string(),
                    instance_uid: map.output_sop_instance_uid.clone(),
                    series_uid: map.output_series_instance_uid.clone(),
                });
            let quality = &explanation.quality;
            let source_size = model
                .slice(&explanation.sop_instance_uid, explanation.frame)
                .and_then(|s| s.size());
            ExplanationFinding {
                method: explanation.method.clone(),
                class: code(&explanation.class),
                source: slice(&explanation.sop_instance_uid),
                source_size,
                in_brain_fraction: quality.in_brain_fraction,
                deletion_auc: quality.deletion_auc,
                insertion_auc: quality.insertion_auc,
                flags: quality.flags.clone(),
                outputs: std::iter::once(overlay).chain(maps).collect(),
            }
        })
        .collect()
}
