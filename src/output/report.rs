//! `report.json` (docs/design.md section 3): what happened to one study, per series, model,
//! slice and explanation. Field names and meanings are a contract; fields may be added, never
//! changed.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// Outcome of a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every selected series processed without error.
    Ok,
    /// Some files, slices, series or models failed; the rest was processed.
    Partial,
    /// Nothing could be processed.
    Failed,
}

impl Status {
    /// As report.json writes it.
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Partial => "partial",
            Status::Failed => "failed",
        }
    }
}

/// One error: the file (or series/model) concerned and what went wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportError {
    /// The file, or the series UID when no single file is to blame.
    pub file: String,
    /// The message (names file, UID or model).
    pub message: String,
}

impl From<crate::dicom::slices::SliceFailure> for ReportError {
    fn from(failure: crate::dicom::slices::SliceFailure) -> Self {
        ReportError {
            file: failure.file.display().to_string(),
            message: failure.error.to_string(),
        }
    }
}

/// The report of one study.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StudyReport {
    /// StudyInstanceUID.
    pub study_instance_uid: String,
    /// ok, partial or failed.
    pub status: Status,
    /// Everything that failed.
    pub errors: Vec<ReportError>,
    /// Selected series.
    pub series: Vec<SeriesReport>,
    /// Series not selected by any rule, with the reason (UIDs only).
    pub skipped_series: Vec<SkippedSeries>,
    /// This software.
    pub software: String,
    /// Outputs of an earlier run that this run replaced and removed (see
    /// [`crate::output::superseded_outputs`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<SupersededOutput>,
    /// The study's Structured Report (`[output] formats` with `sr`), made from this report
    /// after a rerun's merge, so it holds every series the report holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_report: Option<StructuredReportOutput>,
    /// Wall-clock seconds of this run per stage (`decode`, `classify`, `explain.<method>`,
    /// `render`, `write`, `parametric-map`, `summary`, `structured-report`); a rerun's are
    /// the rerun's own.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub timings: std::collections::BTreeMap<String, f64>,
    /// The work-queue job that wrote this report (docs/design.md section 14): a worker that
    /// finds its job's id here has nothing left to do. Absent outside the work queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// The study's Structured Report as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructuredReportOutput {
    /// Its SOPInstanceUID.
    pub output_sop_instance_uid: String,
    /// Its SeriesInstanceUID.
    pub output_series_instance_uid: String,
    /// Its path relative to the study folder.
    pub output_file: PathBuf,
}

/// An output an earlier run wrote that this run replaced: its source series was redone and
/// its UID was not made again (other model bytes, method parameters or software version, or
/// another slice explained), so it was removed from the output folder (and, by the Orthanc
/// plugin, from Orthanc). The study's Structured Report is replaced whenever its content
/// changes: its entry names the study and the method `structured-report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupersededOutput {
    /// SeriesInstanceUID of the source series (StudyInstanceUID for the Structured Report).
    pub series_instance_uid: String,
    /// The method (`summary` for a summary image, `structured-report` for the study's
    /// Structured Report).
    pub method: String,
    /// SOPInstanceUID of the output removed.
    pub output_sop_instance_uid: String,
    /// Its SeriesInstanceUID.
    pub output_series_instance_uid: String,
}

/// A series no rule selected.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SkippedSeries {
    /// SeriesInstanceUID.
    pub series_instance_uid: String,
    /// Why no rule matched (each rule's first failed criterion).
    pub reason: String,
}

/// One selected series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesReport {
    /// SeriesInstanceUID.
    pub series_instance_uid: String,
    /// The rule that selected it.
    pub rule: String,
    /// Slices in the series (frames of all instances).
    pub slice_count: usize,
    /// SOPClassUID of its instances (what the Structured Report's references name); empty
    /// in reports written before it was recorded.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sop_class_uid: String,
    /// Per model.
    pub models: Vec<ModelReport>,
}

impl SeriesReport {
    /// Every output file made for this series (overlays and summary images): its path
    /// relative to the study folder and its SOPInstanceUID.
    pub fn outputs(&self) -> impl Iterator<Item = (&std::path::Path, &str)> {
        self.models.iter().flat_map(|m| {
            m.explanations
                .iter()
                .map(|e| (e.output_file.as_path(), e.output_sop_instance_uid.as_str()))
                .chain(
                    m.summaries
                        .iter()
                        .map(|s| (s.output_file.as_path(), s.output_sop_instance_uid.as_str())),
                )
                .chain(
                    m.parametric_maps
                        .iter()
                        .map(|p| (p.output_file.as_path(), p.output_sop_instance_uid.as_str())),
                )
        })
    }
}

/// One model's results on a series.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelReport {
    /// Model name.
    pub model: String,
    /// Model version.
    pub version: String,
    /// False for untrained (demo) weights.
    pub trained: bool,
    /// SHA-256 of the model's ONNX file (empty in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The execution provider its forward session ran on.
    pub provider: String,
    /// The execution provider of every session used: `forward` and each derived model
    /// (`input-gradient`, `feature-gradient`, `attention-gradient`, `attention`).
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, String>,
    /// What a reader must know about how it ran (a CPU fallback while CUDA was asked for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The series-level call.
    pub series_prediction: Option<SeriesPrediction>,
    /// Per slice, in spatial order.
    pub slices: Vec<SliceReport>,
    /// The explanations written.
    pub explanations: Vec<ExplanationReport>,
    /// The summary images written (one per slice explained by two or more methods).
    #[serde(default)]
    pub summaries: Vec<SummaryReport>,
    /// The Parametric Maps written (`[output] formats` with `pmap`): one per method.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parametric_maps: Vec<ParametricMapReport>,
    /// Set when the model failed on this series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The series-level prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesPrediction {
    /// The label.
    pub label: String,
    /// Its probability (see the pipeline's documentation of the series rule).
    pub probability: f32,
    /// The slice the call rests on: the one with the highest probability of a tumour
    /// class (absent in reports written before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<SliceAt>,
    /// `no-brain` when no slice showed enough brain, so every slice decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

/// A slice: an instance and its frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceAt {
    /// SOPInstanceUID.
    pub sop_instance_uid: String,
    /// Frame index within the instance (0 for single-frame images).
    pub frame: u32,
}

/// One slice's prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SliceReport {
    /// SOPInstanceUID of the source.
    pub sop_instance_uid: String,
    /// Frame (0-based).
    pub frame: u32,
    /// Predicted label.
    pub label: String,
    /// Probability per label, in the model's label order.
    pub probabilities: Probabilities,
    /// The slice's Rows and Columns (0 in reports written before they were recorded).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rows: u32,
    /// See `rows`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub columns: u32,
    /// The share of the slice's area inside its brain mask (absent in reports written
    /// before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brain_fraction: Option<f32>,
    /// `no-brain` when that share is below `prediction.min_brain_fraction`: the slice
    /// neither decides the series nor is chosen for explanation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
}

fn is_zero(value: &u32) -> bool {
    *value == 0
}

impl ModelReport {
    /// The report of the slice `sop_instance_uid`, frame `frame`.
    pub fn slice(&self, sop_instance_uid: &str, frame: u32) -> Option<&SliceReport> {
        self.slices
            .iter()
            .find(|s| s.sop_instance_uid == sop_instance_uid && s.frame == frame)
    }
}

impl SliceReport {
    /// (Rows, Columns), when recorded.
    pub fn size(&self) -> Option<(u32, u32)> {
        (self.rows > 0 && self.columns > 0).then_some((self.rows, self.columns))
    }
}

/// Label -> probability, serialised as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Probabilities(pub Vec<(String, f32)>);

impl<'de> Deserialize<'de> for Probabilities {
    /// A JSON object, its labels kept in the order written.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = Probabilities;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of label: probability")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probabilities, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, f32>()? {
                    entries.push(entry);
                }
                Ok(Probabilities(entries))
            }
        }
        deserializer.deserialize_map(InOrder)
    }
}

impl Serialize for Probabilities {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (label, p) in &self.0 {
            map.serialize_entry(label, p)?;
        }
        map.end()
    }
}

/// One explanation written as an overlay.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExplanationReport {
    /// Method name.
    pub method: String,
    /// Source SOPInstanceUID.
    pub sop_instance_uid: String,
    /// Source frame (0-based).
    pub frame: u32,
    /// The class explained.
    pub class: String,
    /// The model's probability of that class on this slice.
    pub probability: f32,
    /// SOPInstanceUID of the overlay.
    pub output_sop_instance_uid: String,
    /// SeriesInstanceUID of the overlay.
    pub output_series_instance_uid: String,
    /// The overlay file, relative to this report's folder.
    pub output_file: PathBuf,
    /// Method parameters.
    pub parameters: serde_json::Value,
    /// Model passes spent.
    pub model_passes: usize,
    /// Seconds spent.
    pub seconds: f64,
    /// Plausibility and faithfulness.
    pub quality: Quality,
}

/// One Parametric Map: a method's maps of the explained slices of a series, a frame each.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ParametricMapReport {
    /// Method name.
    pub method: String,
    /// The source slices, one per frame, in frame order.
    pub frames: Vec<MapFrameReport>,
    /// SOPInstanceUID of the map.
    pub output_sop_instance_uid: String,
    /// SeriesInstanceUID of the map.
    pub output_series_instance_uid: String,
    /// The file, relative to this report's folder.
    pub output_file: PathBuf,
}

/// The source slice of a frame of a Parametric Map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapFrameReport {
    /// Source SOPInstanceUID.
    pub sop_instance_uid: String,
    /// Source frame (0-based).
    pub frame: u32,
    /// The class the frame explains.
    pub class: String,
}

/// One summary image: the slice and every method's map side by side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryReport {
    /// Source SOPInstanceUID.
    pub sop_instance_uid: String,
    /// Source frame (0-based).
    pub frame: u32,
    /// The class explained.
    pub class: String,
    /// The methods shown, in the order of their tiles.
    pub methods: Vec<String>,
    /// SOPInstanceUID of the summary image.
    pub output_sop_instance_uid: String,
    /// SeriesInstanceUID of the summary series.
    pub output_series_instance_uid: String,
    /// The file, relative to this report's folder.
    pub output_file: PathBuf,
}

/// Quality of an explanation (docs/design.md section 3). A figure not computed is `null`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// Fraction of the heat inside the brain mask.
    pub in_brain_fraction: Option<f32>,
    /// Deletion AUC (lower is more faithful).
    pub deletion_auc: Option<f32>,
    /// Insertion AUC (higher is more faithful).
    pub insertion_auc: Option<f32>,
    /// Deletion AUC of a random order of the same pixels (the baseline).
    pub random_deletion_auc: Option<f32>,
    /// Insertion AUC of a random order of the same pixels (the baseline).
    pub random_insertion_auc: Option<f32>,
    /// Mean rank correlation with the other methods' maps of the same slice.
    pub agreement: Option<f32>,
    /// `evidence-outside-brain`, `unfaithful`, `methods-disagree`.
    pub flags: Vec<String>,
}

impl Quality {
    /// One line for legends and DerivationDescription, e.g.
    /// `in brain 83%; deletion 0.12 (random 0.40); insertion 0.71 (random 0.35)`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(f) = self.in_brain_fraction {
            parts.push(format!("in brain {:.0}%", 100.0 * f));
        }
        if let (Some(d), Some(r)) = (self.deletion_auc, self.random_deletion_auc) {
            parts.push(format!("deletion {d:.2} (random {r:.2})"));
        }
        if let (Some(i), Some(r)) = (self.insertion_auc, self.random_insertion_auc) {
            parts.push(format!("insertion {i:.2} (random {r:.2})"));
        }
        if let Some(a) = self.agreement {
            parts.push(format!("agreement {a:.2}"));
        }
        if !self.flags.is_empty() {
            parts.push(format!("flags {}", self.flags.join(",")));
        }
        parts.join("; ")
    }

    /// The legend's lines: the warnings, or the in-brain share when all is well.
    pub fn legend_notes(&self) -> Vec<String> {
        let mut notes = self.warnings();
        if notes.is_empty()
            && let Some(fraction) = self.in_brain_fraction
        {
            notes.push(format!("evidence in brain {:.0}%", 100.0 * fraction));
        }
        notes
    }

    /// Warnings a radiologist reads on the overlay, one per flag.
    pub fn warnings(&self) -> Vec<String> {
        self.flags
            .iter()
            .map(|flag| match flag.as_str() {
                "evidence-outside-brain" => format!(
                    "MOST EVIDENCE LIES OUTSIDE THE BRAIN ({:.0}% inside)",
                    100.0 * self.in_brain_fraction.unwrap_or(0.0)
                ),
                "unfaithful" => "map no more faithful than a random one".to_string(),
                "methods-disagree" => "methods disagree on this slice".to_string(),
                other => other.to_string(),
            })
            .collect()
    }
}

impl StudyReport {
    /// Every output file the report names (overlays, summary images, Parametric Maps and
    /// the Structured Report): its path relative to the study folder and its SOPInstanceUID.
    pub fn outputs(&self) -> impl Iterator<Item = (&std::path::Path, &str)> {
        self.series
            .iter()
            .flat_map(SeriesReport::outputs)
            .chain(self.structured_report_output())
    }

    /// The study's Structured Report, when written: its path relative to the study folder
    /// and its SOPInstanceUID.
    pub fn structured_report_output(&self) -> impl Iterator<Item = (&std::path::Path, &str)> {
        self.structured_report
            .iter()
            .map(|r| (r.output_file.as_path(), r.output_sop_instance_uid.as_str()))
    }

    /// Keeps what `previous` (the study's earlier report) says of the series this report
    /// did not redo (`redone`): their series and skipped-series entries come first, errors
    /// are the union, and the status is settled over the whole study. What a rerun of the
    /// new or changed series of a study writes.
    pub fn keep_previous(&mut self, previous: StudyReport, redone: &BTreeSet<String>) {
        let not_redone = |uid: &String| !redone.contains(uid);
        let mut series: Vec<SeriesReport> = previous
            .series
            .into_iter()
            .filter(|s| not_redone(&s.series_instance_uid))
            .collect();
        series.append(&mut self.series);
        self.series = series;
        let mut skipped: Vec<SkippedSeries> = previous
            .skipped_series
            .into_iter()
            .filter(|s| not_redone(&s.series_instance_uid))
            .collect();
        skipped.append(&mut self.skipped_series);
        self.skipped_series = skipped;
        for error in previous.errors {
            if !self.errors.contains(&error) {
                self.errors.push(error);
            }
        }
        self.settle_status();
    }

    /// The status implied by errors and results: failed when nothing was explained or
    /// classified and something failed, partial when anything failed, else ok.
    pub fn settle_status(&mut self) {
        let produced = self
            .series
            .iter()
            .flat_map(|s| &s.models)
            .any(|m| !m.slices.is_empty());
        let failed = !self.errors.is_empty()
            || self
                .series
                .iter()
                .flat_map(|s| &s.models)
                .any(|m| m.error.is_some());
        self.status = match (failed, produced) {
            (false, _) => Status::Ok,
            (true, true) => Status::Partial,
            (true, false) => Status::Failed,
        };
    }
}
