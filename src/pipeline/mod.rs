//! The pipeline: studies in, overlays and reports out. One [`Engine`] holds what is loaded
//! once (ONNX Runtime, the models, the font); [`Engine::process_study`] runs one study and
//! never fails as a whole: a bad slice fails that slice, a model that cannot run fails that
//! series for that model, and everything is recorded in the study's `report.json`.
//!
//! Series prediction: the tumour class (any label but "notumor") with the highest
//! probability on any slice, when that probability reaches `prediction.tumour_threshold`;
//! otherwise "notumor", with probability 1 minus that highest tumour probability.
//!
//! Slices explained: per the rule's slice policy (all, the top k by tumour probability, or
//! none), and always at least the most tumour-like slice, so that the radiologist sees what
//! the model looked at even when it says "notumor". Each slice is explained for its own
//! predicted class.

mod findings;
mod image;
mod series;
mod timings;

pub use findings::FindingsWriter;
pub use image::{ExplainRequest, explain_image, manifest_for};
pub use timings::StageTimes;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use snafu::{ResultExt, Snafu};

use crate::config::{ExecutionProviderKind, OutputFormat, Settings};
use crate::dicom::scan::{self, Disposition, FileIssue, Study};
use crate::dicom::secondary_capture::Timestamp;
use crate::explain::MethodSet;
use crate::explain::{self, ExplainError, Method};
use crate::model::{Classifier, Manifest, ModelError};
use crate::output::{self, ReportError, Status, StudyReport};
use crate::progress::Progress;
use crate::render::{Font, RenderError};
use crate::runtime::Runtime;
use crate::runtime::{Provider, RuntimeError, RuntimeOptions};

/// Why a run could not start or continue at all (per-study problems are in the reports).
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum RunError {
    /// The configuration, a manifest or an override is unusable (exit status 2).
    #[snafu(display("{message}"))]
    Configuration {
        /// What is wrong, naming the file, key or value.
        message: String,
    },
    /// ONNX Runtime could not be loaded (exit status 1).
    #[snafu(display("{source}"))]
    Runtime {
        /// The runtime error.
        source: RuntimeError,
    },
    /// A model could not be loaded (exit status 2: its manifest or file is wrong).
    #[snafu(display("{source}"))]
    Model {
        /// The model error.
        source: ModelError,
    },
    /// No font to burn the legend in (exit status 1).
    #[snafu(display("{source}"))]
    Font {
        /// The render error.
        source: RenderError,
    },
    /// The input image could not be read or explained (exit status 1).
    #[snafu(display("{message}"))]
    Input {
        /// What went wrong, naming the file.
        message: String,
    },
    /// A study's report could not be written: its UID names no folder (`scan` refuses such
    /// files before they reach a study) or the file could not be written.
    #[snafu(display("{source}"))]
    Report {
        /// What failed.
        source: output::WriteReportError,
    },
    /// An output could not be written (exit status 1).
    #[snafu(display("{}: cannot write: {source}", path.display()))]
    Output {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What a run was asked to do beyond the configuration.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--models`: replaces every rule's model list.
    pub models: Option<Vec<String>>,
    /// `--methods`: replaces every rule's method list.
    pub methods: Option<Vec<String>>,
}

/// Everything loaded once and shared by every study.
pub struct Engine {
    settings: Settings,
    models: Vec<Classifier>,
    font: Font,
    /// Each rule's plan, by rule name.
    plans: HashMap<String, ResolvedPlan>,
    /// The study's Structured Report, when `[output] formats` lists `sr`.
    findings: Option<FindingsWriter>,
}

/// A rule's plan resolved once, when the engine is built: the loaded models it runs (indices
/// into the engine's models) and its methods with the site's parameters, overrides applied.
pub struct ResolvedPlan {
    models: Vec<usize>,
    methods: Vec<Box<dyn Method>>,
}

/// The outcome of [`run`].
#[derive(Debug, Default)]
pub struct RunSummary {
    /// Studies processed.
    pub studies: usize,
    /// Studies whose status is not ok.
    pub studies_with_errors: usize,
    /// Files that joined no study (unreadable) or were skipped.
    pub file_issues: Vec<FileIssue>,
    /// The reports written.
    pub reports: Vec<PathBuf>,
    /// Seconds per stage over every study (report.json's `timings` summed).
    pub timings: std::collections::BTreeMap<String, f64>,
}

/// How a run that did not stop ended; the front end turns it into its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every study and every file succeeded.
    Complete,
    /// Something failed (a study's status is not ok, or a file was not read); each failure
    /// is reported where it happened.
    Partial,
}

impl RunSummary {
    /// Whether everything succeeded.
    pub fn outcome(&self) -> Outcome {
        let file_failures = self
            .file_issues
            .iter()
            .any(|i| i.disposition == Disposition::Failed);
        if self.studies_with_errors > 0 || file_failures {
            Outcome::Partial
        } else {
            Outcome::Complete
        }
    }
}

/// The ONNX Runtime options of a site configuration.
pub fn runtime_options(settings: &Settings) -> RuntimeOptions {
    RuntimeOptions {
        library: settings.runtime.onnxruntime.clone(),
        providers: settings
            .runtime
            .execution_providers
            .iter()
            .map(|p| match p {
                ExecutionProviderKind::Cuda => Provider::Cuda,
                ExecutionProviderKind::Cpu => Provider::Cpu,
            })
            .collect(),
        cuda_device: settings.runtime.cuda_device,
        require_gpu: settings.runtime.require_gpu,
        intra_threads: settings.runtime.intra_threads,
    }
}

impl Engine {
    /// Loads ONNX Runtime, the enabled models the rules (or overrides) use, and the font;
    /// checks that every model and method named anywhere exists.
    pub fn new(settings: Settings, overrides: Overrides) -> Result<Engine, RunError> {
        let configuration = |message: String| RunError::Configuration { message };
        let mut manifests = Vec::new();
        for model in settings.models.iter().filter(|m| m.enabled) {
            let manifest =
                Manifest::load(&model.manifest).map_err(|e| configuration(e.to_string()))?;
            if manifests.iter().any(|m: &Manifest| m.name == manifest.name) {
                return Err(configuration(format!(
                    "{}: model name {:?} is used by two manifests",
                    settings.source.display(),
                    manifest.name
                )));
            }
            manifests.push(manifest);
        }
        let known: Vec<&str> = manifests.iter().map(|m| m.name.as_str()).collect();
        let mut wanted: Vec<String> = Vec::new();
        let plans =
            std::iter::once(&settings.defaults).chain(settings.rules.iter().map(|r| &r.plan));
        for plan in plans {
            let models = overrides.models.clone().or_else(|| plan.models.clone());
            for name in models.unwrap_or_else(|| known.iter().map(|s| s.to_string()).collect()) {
                if !known.contains(&name.as_str()) {
                    return Err(configuration(format!(
                        "{}: model {name:?} is not configured (configured and enabled: {})",
                        settings.source.display(),
                        known.join(", ")
                    )));
                }
                if !wanted.contains(&name) {
                    wanted.push(name);
                }
            }
            for method in overrides.methods.as_ref().unwrap_or(&plan.methods) {
                if !explain::available().contains(&method.as_str()) {
                    let error = ExplainError::Unavailable {
                        name: method.clone(),
                        available: explain::available(),
                    };
                    return Err(configuration(format!(
                        "{}: {error}",
                        settings.source.display()
                    )));
                }
            }
        }
        let runtime = Runtime::init(runtime_options(&settings))
            .map_err(|source| RunError::Runtime { source })?;
        let models = load_models(
            &runtime,
            manifests.into_iter().filter(|m| wanted.contains(&m.name)),
            settings.runtime.batch_size,
        )?;
        for model in models
            .iter()
            .map(Classifier::manifest)
            .filter(|m| !m.trained)
        {
            tracing::warn!(
                model = %model.name,
                "model {} is UNTRAINED (its manifest does not say trained = true): its \
                 predictions and explanations are of random weights, and every output says so",
                model.name
            );
        }
        let font = Font::find(None).map_err(|source| RunError::Font { source })?;
        let mut plans = HashMap::new();
        for rule in &settings.rules {
            let plan = resolve_plan(&rule.plan, &overrides, &models, &settings.methods)
                .map_err(|e| configuration(format!("rule {}: {e}", rule.name)))?;
            plans.insert(rule.name.clone(), plan);
        }
        let findings = settings
            .output
            .formats
            .contains(&OutputFormat::Sr)
            .then(|| FindingsWriter::new(&models, settings.output.series_number_base));
        Ok(Engine {
            settings,
            models,
            font,
            plans,
            findings,
        })
    }

    /// The site settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// What writes the study's Structured Report, when `[output] formats` lists `sr`: given
    /// to [`output::replace_and_write`] by a front end that merges reports itself.
    pub fn findings_writer(&self) -> Option<&FindingsWriter> {
        self.findings.as_ref()
    }

    /// The loaded models, in the configuration's order.
    pub fn models(&self) -> &[Classifier] {
        &self.models
    }

    /// The quality checks as the site configures them.
    pub fn quality_policy(&self) -> crate::explain::quality::QualityPolicy {
        self.settings.quality
    }

    /// Processes one study into `out/<StudyInstanceUID>/`: overlays and `report.json`, which
    /// replaces the previous one whole; what an earlier run wrote for these series and this
    /// one did not make again is removed ([`output::replace_and_write`]). `file_errors` are
    /// errors already known for files of this study. The report and where it was written.
    pub fn process_study(
        &self,
        study: &Study,
        out: &Path,
        file_errors: Vec<ReportError>,
    ) -> Result<(StudyReport, PathBuf), RunError> {
        self.process_and_write(study, out, file_errors, false, None)
    }

    /// [`Engine::process_study`] for a work-queue job: the report also records `job_id`.
    pub fn process_job(
        &self,
        study: &Study,
        out: &Path,
        file_errors: Vec<ReportError>,
        job_id: &str,
    ) -> Result<(StudyReport, PathBuf), RunError> {
        self.process_and_write(study, out, file_errors, false, Some(job_id))
    }

    /// Processes the new or changed series of a study (`study` holds only those) into
    /// `out/<StudyInstanceUID>/`, keeping what the study's earlier report says of its other
    /// series: what the daemon does when series arrive after a study was processed. The
    /// merged report and where it was written.
    pub fn rerun(
        &self,
        study: &Study,
        out: &Path,
        file_errors: Vec<ReportError>,
    ) -> Result<(StudyReport, PathBuf), RunError> {
        self.process_and_write(study, out, file_errors, true, None)
    }

    /// The study's series processed and its report written over the earlier one.
    fn process_and_write(
        &self,
        study: &Study,
        out: &Path,
        file_errors: Vec<ReportError>,
        keep_other_series: bool,
        job_id: Option<&str>,
    ) -> Result<(StudyReport, PathBuf), RunError> {
        let mut report = self.study_report(study, out, file_errors);
        report.job_id = job_id.map(str::to_string);
        let redone: BTreeSet<String> = study.series.iter().map(|s| s.uid.clone()).collect();
        let replacing = output::Replacing {
            redone: &redone,
            keep_other_series,
        };
        let finish = |report: &mut StudyReport| match &self.findings {
            Some(writer) => writer.write(report, out),
            None => Vec::new(),
        };
        output::replace_and_write(out, report, replacing, finish, |_| Vec::new())
            .context(ReportSnafu)
    }

    /// Processes one study into `out/<StudyInstanceUID>/` (the overlays), returning its
    /// report without writing it (see [`output::replace_and_write`]).
    pub fn study_report(
        &self,
        study: &Study,
        out: &Path,
        file_errors: Vec<ReportError>,
    ) -> StudyReport {
        let span = tracing::info_span!("study", uid = %study.uid);
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let created = Timestamp::now();
        let mut report = StudyReport {
            study_instance_uid: study.uid.clone(),
            status: Status::Ok,
            errors: file_errors,
            series: Vec::new(),
            skipped_series: Vec::new(),
            software: concat!("dicom-xai ", env!("CARGO_PKG_VERSION")).to_string(),
            superseded: Vec::new(),
            structured_report: None,
            timings: Default::default(),
            job_id: None,
        };
        let study_dir = match output::study_dir(out, &study.uid) {
            Ok(dir) => dir,
            Err(invalid) => {
                let message = format!("StudyInstanceUID {invalid}: the study is not processed");
                tracing::error!("{message}");
                report.errors.push(ReportError {
                    file: String::new(),
                    message,
                });
                report.settle_status();
                return report;
            }
        };
        let times = StageTimes::default();
        for series in &study.series {
            let taken = self
                .settings
                .rule_for(series)
                .and_then(|rule| Some((rule, self.plans.get(&rule.name)?)));
            match taken {
                Some((rule, plan)) => {
                    let context = series::SeriesContext {
                        engine: self,
                        rule,
                        plan,
                        study_dir: &study_dir,
                        created: &created,
                        times: &times,
                    };
                    let series_report = context.process(series, &mut report.errors);
                    report.series.push(series_report);
                }
                None => {
                    let reason = self
                        .settings
                        .rules
                        .iter()
                        .map(|rule| match rule.selector.check(series) {
                            Ok(()) => format!("{}: matches but excluded", rule.name),
                            Err(why) => format!("{}: {why}", rule.name),
                        })
                        .collect::<Vec<_>>()
                        .join("; ");
                    tracing::info!(series = %series.uid, "no rule selects the series: {reason}");
                    report.skipped_series.push(output::report::SkippedSeries {
                        series_instance_uid: series.uid.clone(),
                        reason,
                    });
                }
            }
        }
        report.timings = times.into_map();
        report.settle_status();
        tracing::info!(
            status = ?report.status,
            seconds = started.elapsed().as_secs_f64(),
            errors = report.errors.len(),
            "study done"
        );
        report
    }
}

/// What a Parametric Map of `method`'s `map` by `model` derives from: the model, the
/// method and its settings (the same for each slice, so one map per series holds them all).
/// `run`'s maps of a series and `explain`'s map of one slice share it, and with it a series.
fn map_derivation(
    model: &Classifier,
    method: &str,
    map: &explain::ModelMap,
) -> crate::dicom::secondary_capture::Derivation {
    let manifest = model.manifest();
    crate::dicom::secondary_capture::Derivation {
        model_name: manifest.name.clone(),
        model_version: manifest.version.clone(),
        model_sha256: Some(model.sha256().to_string()),
        trained: manifest.trained,
        method: method.to_string(),
        parameters: map.settings().to_string(),
        target_layer: map.target_layer.clone(),
        // a map holds many slices: no one class, probability, colour map or quality line
        class_label: String::new(),
        probability: f32::NAN,
        colour_map: String::new(),
        quality: None,
    }
}

/// `plan` with `overrides` applied, against the loaded `models` and the site's method
/// parameters.
fn resolve_plan(
    plan: &crate::config::ExplainPlan,
    overrides: &Overrides,
    models: &[Classifier],
    parameters: &MethodSet,
) -> Result<ResolvedPlan, ExplainError> {
    let names = overrides.models.as_ref().or(plan.models.as_ref());
    let models = models
        .iter()
        .enumerate()
        .filter(|(_, m)| names.is_none_or(|n| n.contains(&m.manifest().name)))
        .map(|(index, _)| index)
        .collect();
    let methods = overrides
        .methods
        .as_ref()
        .unwrap_or(&plan.methods)
        .iter()
        .map(|name| explain::method_by_name(name, parameters))
        .collect::<Result<_, _>>()?;
    Ok(ResolvedPlan { models, methods })
}

/// Loads the models side by side, one thread each: a model's checksum and ONNX Runtime's
/// graph optimisation run on one core, so two models load in about the time of the larger.
/// The models come back in the manifests' order; the first failure is the error.
pub(crate) fn load_models(
    runtime: &Runtime,
    manifests: impl Iterator<Item = Manifest>,
    batch_size: usize,
) -> Result<Vec<Classifier>, RunError> {
    std::thread::scope(|scope| {
        let loading: Vec<_> = manifests
            .map(|manifest| scope.spawn(move || Classifier::load(runtime, manifest, batch_size)))
            .collect();
        loading
            .into_iter()
            .map(|thread| match thread.join() {
                Ok(loaded) => loaded.map_err(|source| RunError::Model { source }),
                Err(_) => Err(RunError::Configuration {
                    message: "a model's loading thread panicked".into(),
                }),
            })
            .collect()
    })
}

/// Processes every study under `inputs` once (the `run` command).
pub fn run(
    engine: &Engine,
    inputs: &[PathBuf],
    out: &Path,
    progress: &dyn Progress,
) -> Result<RunSummary, RunError> {
    std::fs::create_dir_all(out).map_err(|source| RunError::Output {
        path: out.to_path_buf(),
        source,
    })?;
    let scanned = scan::scan(inputs);
    let mut summary = RunSummary {
        file_issues: scanned.issues.clone(),
        ..RunSummary::default()
    };
    progress.stage("studies", scanned.studies.len());
    for study in &scanned.studies {
        let (report, path) = engine.process_study(study, out, Vec::new())?;
        timings::accumulate(&mut summary.timings, &report.timings);
        summary.reports.push(path);
        summary.studies += 1;
        if report.status != Status::Ok {
            summary.studies_with_errors += 1;
        }
        progress.step(&study.uid);
    }
    progress.finish();
    Ok(summary)
}

/// The study `uid` made of `files` (headers read; the pixels are decoded later): what the
/// daemon's workers and the work queue's workers process. A file that cannot be read is an
/// error of the report; files of another study are left out; the study has no series when
/// none of its files can be read.
pub fn read_study<'a>(
    uid: &str,
    files: impl IntoIterator<Item = &'a Path>,
) -> (Study, Vec<ReportError>) {
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for path in files {
        match scan::read_instance(path) {
            Ok(instance) => found.push(instance),
            Err(issue) => errors.push(ReportError {
                file: path.display().to_string(),
                message: issue.message,
            }),
        }
    }
    (scan::study_of(found, uid), errors)
}
