//! `dicom-xai audit`: how far can a site trust a model's explanations? The research this
//! product grew from was a study: accuracy on a test set, and how often a correct prediction
//! rests on evidence outside the brain. An audit runs the models and methods over a labelled
//! set of images and writes `audit.json` ([`report`]) and one self-contained `audit.html`
//! ([`html`]) with the figures, the charts and a gallery of the correct predictions whose
//! evidence lies furthest outside the brain.
//!
//! ```text
//! data folders --dataset--> labelled images --(per model: classify in batches,
//!   per method: explain the predicted class, quality checks)--> journal records
//!   --report--> audit.json --html--> audit.html (gallery maps made again, few)
//! ```
//!
//! Every image's outcome is appended to the journal ([`journal`]) as soon as it is measured,
//! so an interrupted audit started again with the same `--out` measures only what is
//! missing. An image that fails is recorded and listed, never fatal.
//!
//! The library draws nothing: progress goes through the [`Progress`] trait, which the
//! command line implements with a progress bar.

pub mod dataset;
mod gallery;
pub mod html;
pub mod journal;
pub mod metrics;
pub mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ndarray::ArrayView3;
use sha2::{Digest, Sha256};
use snafu::Snafu;

use crate::config::Settings;
use crate::dicom::slices::SliceError;
use crate::explain::quality::{self, QualityPolicy, SliceCheck};
use crate::explain::{self, ExplainError, Method, MethodSet};
use crate::model::{Classifier, Manifest, ModelError, preprocess};
use crate::progress::Progress;
use crate::render::{Font, RenderError};
use crate::runtime::Runtime;
use crate::runtime::RuntimeError;
use dataset::{DatasetError, LabelledImage};
use journal::{ExplanationRecord, ImageRecord, Journal};
use report::{AuditReport, Failure};

/// Pictures per (model, method) in the gallery.
pub const GALLERY_SIZE: usize = 6;

/// What to audit.
#[derive(Debug, Clone)]
pub struct AuditRequest {
    /// Model names; `None`: the configuration's `[explain] models`, else every enabled model.
    pub models: Option<Vec<String>>,
    /// Method names; `None`: the configuration's `[explain] methods`.
    pub methods: Option<Vec<String>>,
    /// At most this many images per label (the first in path order).
    pub limit: Option<usize>,
    /// The output folder (`audit.json`, `audit.html`, the journal).
    pub out: PathBuf,
    /// The labelled data folders.
    pub data: Vec<PathBuf>,
}

/// Why an audit could not run at all (a failed image is a [`Failure`], not an error).
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum AuditError {
    /// The configuration, a model or method name, or a manifest is unusable.
    #[snafu(display("{message}"))]
    Configuration {
        /// What is wrong, naming the file, key or value.
        message: String,
    },
    /// The data folders hold no usable labelled images.
    #[snafu(display("{source}"))]
    Data {
        /// What is wrong with them.
        source: DatasetError,
    },
    /// ONNX Runtime could not be loaded.
    #[snafu(display("{source}"))]
    Runtime {
        /// The runtime error.
        source: RuntimeError,
    },
    /// A model could not be loaded.
    #[snafu(display("{source}"))]
    Model {
        /// The model error.
        source: ModelError,
    },
    /// No font for the gallery's legends.
    #[snafu(display("{source}"))]
    Font {
        /// The render error.
        source: RenderError,
    },
    /// An output could not be written.
    #[snafu(display("{}: cannot write: {source}", path.display()))]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl AuditError {
    /// True for errors of the request or the configuration (usage), false for failures of
    /// the machine (runtime, font, disk).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            AuditError::Configuration { .. } | AuditError::Data { .. } | AuditError::Model { .. }
        )
    }
}

/// What an audit wrote.
#[derive(Debug)]
pub struct AuditOutcome {
    /// The figures.
    pub report: AuditReport,
    /// `audit.json`.
    pub json: PathBuf,
    /// `audit.html`.
    pub html: PathBuf,
}

fn configuration(message: impl Into<String>) -> AuditError {
    AuditError::Configuration {
        message: message.into(),
    }
}

/// The enabled models the request names (or the configuration's defaults), in
/// configuration order.
fn manifests(settings: &Settings, request: &AuditRequest) -> Result<Vec<Manifest>, AuditError> {
    let mut enabled = Vec::new();
    for model in settings.models.iter().filter(|m| m.enabled) {
        enabled.push(Manifest::load(&model.manifest).map_err(|e| configuration(e.to_string()))?);
    }
    let names = request
        .models
        .clone()
        .or_else(|| settings.defaults.models.clone());
    let Some(names) = names else {
        return Ok(enabled);
    };
    for name in &names {
        if !enabled.iter().any(|m| &m.name == name) {
            let known: Vec<&str> = enabled.iter().map(|m| m.name.as_str()).collect();
            return Err(configuration(format!(
                "{}: model {name:?} is not configured (configured and enabled: {})",
                settings.source.display(),
                known.join(", ")
            )));
        }
    }
    Ok(enabled
        .into_iter()
        .filter(|m| names.contains(&m.name))
        .collect())
}

/// A fingerprint of everything that changes a record besides the model and the image: the
/// method parameters, the quality policy, the software and the measurement revision.
fn settings_fingerprint(methods: &MethodSet, policy: &QualityPolicy) -> String {
    let described = format!(
        "{methods:?}|{policy:?}|{}|{}",
        concat!("dicom-xai ", env!("CARGO_PKG_VERSION")),
        explain::MEASUREMENT_REVISION
    );
    let digest = Sha256::digest(described.as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Why `method` cannot run on `model` at all (its manifest lacks a tensor the method
/// reads), when it cannot.
fn not_applicable(model: &Classifier, method: &dyn Method) -> Option<String> {
    method
        .probes()
        .iter()
        .find_map(|probe| model.probed(*probe).err())
        .map(|e| e.to_string())
}

/// Runs the audit of `request` with the site's `settings`; writes `audit.json`,
/// `audit.html` and the journal into `request.out`.
pub fn audit(
    settings: &Settings,
    request: &AuditRequest,
    progress: &dyn Progress,
) -> Result<AuditOutcome, AuditError> {
    let manifests = manifests(settings, request)?;
    if manifests.is_empty() {
        return Err(configuration(format!(
            "{}: no enabled model to audit",
            settings.source.display()
        )));
    }
    let method_set = settings.methods.clone();
    let method_names = request
        .methods
        .clone()
        .unwrap_or_else(|| settings.defaults.methods.clone());
    let mut methods: Vec<Box<dyn Method>> = Vec::new();
    for name in &method_names {
        methods.push(
            explain::method_by_name(name, &method_set).map_err(|e| configuration(e.to_string()))?,
        );
    }
    let mut labels: Vec<String> = Vec::new();
    for label in manifests.iter().flat_map(|m| m.labels.iter()) {
        if !labels.contains(label) {
            labels.push(label.clone());
        }
    }
    let images = dataset::discover(&request.data, &labels, request.limit)
        .map_err(|source| AuditError::Data { source })?;
    let output_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| AuditError::Output { path, source }
    };
    std::fs::create_dir_all(&request.out).map_err(output_error(&request.out))?;

    let runtime = Runtime::init(crate::pipeline::runtime_options(settings))
        .map_err(|source| AuditError::Runtime { source })?;
    let font = Font::find(None).map_err(|source| AuditError::Font { source })?;
    let models =
        crate::pipeline::load_models(&runtime, manifests.into_iter(), settings.runtime.batch_size)
            .map_err(|e| match e {
                crate::pipeline::RunError::Model { source } => AuditError::Model { source },
                other => configuration(other.to_string()),
            })?;
    let policy = settings.quality;
    let fingerprint = settings_fingerprint(&method_set, &policy);
    let mut journal = Journal::open(&request.out).map_err(output_error(&request.out))?;

    let mut report = AuditReport {
        notice: "NOT FOR DIAGNOSTIC USE: research figures of the audited models on the \
                 audited images"
            .to_string(),
        software: concat!("dicom-xai ", env!("CARGO_PKG_VERSION")).to_string(),
        data: request.data.clone(),
        limit: request.limit,
        in_brain_threshold: policy.in_brain_threshold,
        faithfulness_steps: policy.faithfulness_steps,
        models: Vec::new(),
        failures: Vec::new(),
    };
    for model in &models {
        let mut skipped: BTreeMap<&'static str, String> = BTreeMap::new();
        for method in &methods {
            if let Some(why) = not_applicable(model, method.as_ref()) {
                skipped.insert(method.name(), why);
            }
        }
        model.plan_probes(
            methods
                .iter()
                .filter(|m| !skipped.contains_key(m.name()))
                .flat_map(|m| m.probes().iter().copied()),
        );
        let context = ModelRun {
            model,
            methods: &methods,
            policy: &policy,
            fingerprint: &fingerprint,
        };
        progress.stage(&model.manifest().name, images.len());
        context.measure(&images, &mut journal, &mut skipped, progress)?;

        let records: Vec<&ImageRecord> = images
            .iter()
            .filter_map(|image| {
                journal.find(
                    model.sha256(),
                    &image.path,
                    file_size(&image.path),
                    &fingerprint,
                )
            })
            .collect();
        report
            .failures
            .extend(failures(&records, &model.manifest().name));
        let manifest = model.manifest();
        let classified: Vec<&ImageRecord> = records
            .iter()
            .copied()
            .filter(|r| r.error.is_none())
            .collect();
        let mut figures = report::model_figures(&classified, &manifest.labels);
        figures.model = manifest.name.clone();
        figures.version = manifest.version.clone();
        figures.trained = manifest.trained;
        figures.sha256 = model.sha256().to_string();
        for method in &methods {
            let mut method_figures =
                report::method_figures(method.name(), &classified, &manifest.labels);
            method_figures.error = skipped.get(method.name()).cloned();
            if method_figures.error.is_none() {
                let candidates = report::gallery_candidates(
                    method.name(),
                    &classified,
                    &manifest.labels,
                    policy.in_brain_threshold,
                    GALLERY_SIZE,
                );
                let (entries, failed) =
                    gallery::render(model, method.as_ref(), &candidates, settings, &font);
                method_figures.gallery = entries;
                report.failures.extend(failed);
            }
            figures.methods.push(method_figures);
        }
        report.models.push(figures);
    }
    progress.finish();

    let json = request.out.join("audit.json");
    let bytes = serde_json::to_vec_pretty(&report).map_err(|e| AuditError::Output {
        path: json.clone(),
        source: std::io::Error::other(e),
    })?;
    crate::files::write_atomically(&json, &bytes).map_err(output_error(&json))?;
    let html = request.out.join("audit.html");
    let page = html::page(&report);
    crate::files::write_atomically(&html, page.as_bytes()).map_err(output_error(&html))?;
    Ok(AuditOutcome { report, json, html })
}

/// The size of an image file as the journal keys it: 0 when it cannot be read (its record
/// then holds the error), the same when it is measured and when its record is looked up.
fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The failed images and explanations of `records`.
fn failures(records: &[&ImageRecord], model: &str) -> Vec<Failure> {
    let mut failures = Vec::new();
    for record in records {
        if let Some(message) = &record.error {
            failures.push(Failure {
                file: record.image.clone(),
                model: model.to_string(),
                method: None,
                message: message.clone(),
            });
        }
        for explanation in &record.explanations {
            if let Some(message) = &explanation.error {
                failures.push(Failure {
                    file: record.image.clone(),
                    model: model.to_string(),
                    method: Some(explanation.method.clone()),
                    message: message.clone(),
                });
            }
        }
    }
    failures
}

/// The share of an `sae` map's evidence carried by concepts mostly outside the brain: the
/// contributions of its leading concepts marked `outside_brain` over all of them (`None` for
/// other methods, or when no concept contributes).
fn outside_concept_share(parameters: &serde_json::Value) -> Option<f32> {
    let concepts = parameters.get("concepts")?.as_array()?;
    let (mut outside, mut total) = (0.0f64, 0.0f64);
    for concept in concepts {
        let contribution = concept.get("contribution")?.as_f64()?.max(0.0);
        total += contribution;
        if concept.get("outside_brain")?.as_bool()? {
            outside += contribution;
        }
    }
    (total > 0.0).then(|| (outside / total) as f32)
}

/// One model's pass over the images.
struct ModelRun<'a> {
    model: &'a Classifier,
    methods: &'a [Box<dyn Method>],
    policy: &'a QualityPolicy,
    fingerprint: &'a str,
}

/// An image of the current batch: its record so far and its model input.
struct Pending<'a> {
    image: &'a LabelledImage,
    bytes: u64,
    previous: Option<ImageRecord>,
    loaded: Result<(ndarray::Array2<f32>, ndarray::Array3<f32>), SliceError>,
}

impl ModelRun<'_> {
    /// The methods still to run on `record` (all of them without one).
    fn missing<'m>(
        &'m self,
        record: Option<&ImageRecord>,
        skipped: &BTreeMap<&'static str, String>,
    ) -> Vec<&'m dyn Method> {
        self.methods
            .iter()
            .map(|m| m.as_ref())
            .filter(|m| !skipped.contains_key(m.name()))
            .filter(|m| record.is_none_or(|r| r.explanation(m.name()).is_none()))
            .collect()
    }

    /// Measures every image the journal does not hold yet, a batch at a time.
    fn measure(
        &self,
        images: &[LabelledImage],
        journal: &mut Journal,
        skipped: &mut BTreeMap<&'static str, String>,
        progress: &dyn Progress,
    ) -> Result<(), AuditError> {
        let manifest = self.model.manifest();
        let batch = self.model.batch_size().max(1);
        let mut queue: Vec<Pending> = Vec::new();
        for (index, image) in images.iter().enumerate() {
            let bytes = file_size(&image.path);
            let previous = journal
                .find(self.model.sha256(), &image.path, bytes, self.fingerprint)
                .filter(|r| r.error.is_none())
                .cloned();
            let complete = previous
                .as_ref()
                .is_some_and(|r| self.missing(Some(r), skipped).is_empty());
            if complete {
                progress.step(&image.path.display().to_string());
            } else {
                let loaded = crate::dicom::slices::load_grey(&image.path).map(|grey| {
                    let input = preprocess::model_input(grey.view(), &manifest.input);
                    (grey, input)
                });
                queue.push(Pending {
                    image,
                    bytes,
                    previous,
                    loaded,
                });
            }
            if queue.len() == batch || (index + 1 == images.len() && !queue.is_empty()) {
                for record in self.measure_batch(std::mem::take(&mut queue), skipped) {
                    progress.step(&record.image.display().to_string());
                    journal
                        .append(record)
                        .map_err(|source| AuditError::Output {
                            path: journal.path().to_path_buf(),
                            source,
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Classifies the images of `queue` without a record in one batch, then explains each.
    fn measure_batch(
        &self,
        queue: Vec<Pending>,
        skipped: &mut BTreeMap<&'static str, String>,
    ) -> Vec<ImageRecord> {
        let manifest = self.model.manifest();
        let to_classify: Vec<ArrayView3<f32>> = queue
            .iter()
            .filter(|p| p.previous.is_none())
            .filter_map(|p| p.loaded.as_ref().ok().map(|(_, input)| input.view()))
            .collect();
        let classified = if to_classify.is_empty() {
            Ok(ndarray::Array2::zeros((0, manifest.labels.len())))
        } else {
            self.model
                .predict(preprocess::batch(&to_classify).view())
                .map_err(|e| e.to_string())
        };
        let mut row = 0;
        let mut records = Vec::new();
        for pending in queue {
            let mut record = pending.previous.clone().unwrap_or_else(|| ImageRecord {
                model: manifest.name.clone(),
                sha256: self.model.sha256().to_string(),
                image: pending.image.path.clone(),
                bytes: pending.bytes,
                label: pending.image.label.clone(),
                probabilities: Vec::new(),
                settings: self.fingerprint.to_string(),
                error: None,
                explanations: Vec::new(),
            });
            let (grey, input) = match &pending.loaded {
                Ok(loaded) => loaded,
                Err(error) => {
                    record.error = Some(error.to_string());
                    records.push(record);
                    continue;
                }
            };
            if pending.previous.is_none() {
                match &classified {
                    Ok(probabilities) => {
                        record.probabilities = probabilities.row(row).to_vec();
                        row += 1;
                    }
                    Err(message) => {
                        record.error = Some(format!("{}: {message}", pending.image.path.display()));
                        records.push(record);
                        continue;
                    }
                }
            }
            let class = crate::model::classifier::argmax(record.probabilities.iter().copied());
            let mut slice = SliceCheck::new(crate::anatomy::brain_mask(grey.view()));
            for method in self.missing(Some(&record), skipped) {
                match self.explain(method, input, class, &mut slice) {
                    Ok(explanation) => record.explanations.push(explanation),
                    Err(
                        error
                        @ (ExplainError::Parameters { .. } | ExplainError::Unavailable { .. }),
                    ) => {
                        tracing::warn!(
                            model = %manifest.name,
                            method = method.name(),
                            "the method cannot run on this model: {error}"
                        );
                        skipped.insert(method.name(), error.to_string());
                    }
                    Err(error) => record.explanations.push(ExplanationRecord {
                        method: method.name().to_string(),
                        in_brain_fraction: None,
                        deletion_auc: None,
                        insertion_auc: None,
                        flags: Vec::new(),
                        outside_concept_share: None,
                        seconds: 0.0,
                        error: Some(format!("{}: {error}", pending.image.path.display())),
                    }),
                }
            }
            records.push(record);
        }
        records
    }

    /// One method's explanation of `class` and its quality checks.
    fn explain(
        &self,
        method: &dyn Method,
        input: &ndarray::Array3<f32>,
        class: usize,
        slice: &mut SliceCheck,
    ) -> Result<ExplanationRecord, ExplainError> {
        let started = Instant::now();
        let assessed = quality::explain_and_assess(
            self.model,
            method,
            input.view(),
            class,
            slice,
            self.policy,
        )?;
        let quality = assessed.assessment.to_report();
        Ok(ExplanationRecord {
            method: method.name().to_string(),
            in_brain_fraction: quality.in_brain_fraction,
            deletion_auc: quality.deletion_auc,
            insertion_auc: quality.insertion_auc,
            flags: quality.flags,
            outside_concept_share: outside_concept_share(&assessed.map.parameters),
            seconds: started.elapsed().as_secs_f64(),
            error: None,
        })
    }
}
