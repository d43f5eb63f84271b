//! The validated configuration: every section with its defaults applied and its values
//! checked (by the `validate` module), and the questions asked of it (which rule takes a
//! series).

use std::path::PathBuf;
use std::time::Duration;

use super::plan::ExplainPlan;
use super::rules::{Mismatch, Rule, Verdict, is_own_overlay};
use crate::dicom::Series;
use crate::explain::MethodSet;
use crate::explain::quality::QualityPolicy;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The configuration file.
    pub source: PathBuf,
    /// `[runtime]`: ONNX Runtime.
    pub runtime: RuntimeSettings,
    /// `[[models]]`, in file order.
    pub models: Vec<ModelRef>,
    /// `[output]`.
    pub output: OutputSettings,
    /// `[prediction]`.
    pub prediction: PredictionSettings,
    /// `[quality]`.
    pub quality: QualityPolicy,
    /// `[methods.*]`: per-method parameters.
    pub methods: MethodSet,
    /// `[explain]`: what rules do unless they say otherwise.
    pub defaults: ExplainPlan,
    /// `[[rules]]`, in file order; the first that matches a series wins.
    pub rules: Vec<Rule>,
    /// `[watch]`: the daemon.
    pub watch: WatchSettings,
    /// `[logging] paths`: how paths under the input folders appear in logs; `None` leaves
    /// it to the front end (`run`: full; `watch` and the Orthanc plugin: hashed).
    pub log_paths: Option<crate::logging::PathStyle>,
}

/// Where the daemon delivers outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// The output folder (`<out>/<StudyInstanceUID>/`).
    Out,
    /// Back into the study's own folder in the drop tree.
    StudyFolder,
    /// A PACS, by C-STORE (`[watch.pacs]`).
    Pacs,
}

impl Destination {
    /// The name used in configuration files and the journal.
    pub fn name(self) -> &'static str {
        match self {
            Destination::Out => "out",
            Destination::StudyFolder => "study-folder",
            Destination::Pacs => "pacs",
        }
    }
}

/// What happens to input files once their study is processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterProcessing {
    /// Left where they are (the default).
    Keep,
    /// Moved into this archive folder, keeping their path below the drop folder.
    Move(PathBuf),
    /// Deleted (only when the site asks for it).
    Delete,
}

/// `[watch.pacs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PacsSettings {
    /// The peer's AE title.
    pub called_ae: String,
    /// The peer's host.
    pub host: String,
    /// The peer's port.
    pub port: u16,
    /// Our AE title.
    pub calling_ae: String,
    /// Network timeout.
    pub timeout: Duration,
    /// Attempts per instance before its delivery is marked failed.
    pub max_attempts: u32,
}

/// `[watch]`: the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchSettings {
    /// The drop folder (relative to the current directory).
    pub drop: PathBuf,
    /// The journal's folder (relative to the current directory).
    pub state: PathBuf,
    /// `Some(interval)`: poll instead of inotify (network shares give no events).
    pub poll: Option<Duration>,
    /// A file is ready when its size and mtime stayed the same for this long.
    pub stable: Duration,
    /// A study is ready when no file of it arrived for this long.
    pub settle: Duration,
    /// A study is processed this long after its first file even if files keep arriving.
    pub force_after: Duration,
    /// Interval of full rescans (a safety net for lost events).
    pub rescan: Duration,
    /// File name patterns (`*` and `?` wildcards) never read: transfers in progress.
    pub ignore: Vec<String>,
    /// Rules that must each take a series of a study before it skips the settle wait.
    pub required_rules: Vec<String>,
    /// Where outputs go.
    pub deliver: Vec<Destination>,
    /// The C-STORE destination, when `deliver` names "pacs".
    pub pacs: Option<PacsSettings>,
    /// What happens to inputs after processing.
    pub after: AfterProcessing,
    /// Studies processed at once.
    pub workers: usize,
    /// Attempts before a study is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry (doubled on each further attempt).
    pub retry_after: Duration,
    /// The metrics endpoint's address.
    pub metrics: Option<std::net::SocketAddr>,
}

/// An ONNX Runtime execution provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutionProviderKind {
    /// NVIDIA CUDA (needs the `cuda` feature and onnxruntime-gpu).
    Cuda,
    /// The CPU.
    Cpu,
}

impl ExecutionProviderKind {
    /// The name used in configuration files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cuda => "cuda",
            Self::Cpu => "cpu",
        }
    }
}

/// `[runtime]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSettings {
    /// `libonnxruntime.so` to load; `None`: `ORT_DYLIB_PATH` or the loader's search path.
    /// A bare file name is left to the dynamic loader; any other relative path is resolved
    /// against the configuration file's folder.
    pub onnxruntime: Option<PathBuf>,
    /// Execution providers in order of preference (never empty).
    pub execution_providers: Vec<ExecutionProviderKind>,
    /// CUDA device index.
    pub cuda_device: i32,
    /// Refuse to start without the CUDA provider instead of falling back to the CPU.
    pub require_gpu: bool,
    /// Intra-op threads; 0 = ONNX Runtime's default.
    pub intra_threads: usize,
    /// Slices per inference batch, at least 1.
    pub batch_size: usize,
}

/// `runtime.batch_size` when the configuration leaves it out (and for commands run without
/// a configuration).
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// The model manifest (docs/design.md section 4), resolved against the configuration's
    /// folder.
    pub manifest: PathBuf,
    /// Whether rules use the model (disabled models stay in the file, unused).
    pub enabled: bool,
    /// `[model] name` of the manifest: what rules and `--models` call it.
    pub name: String,
}

/// `[output]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSettings {
    /// Output folder; a relative path is relative to the current directory.
    pub dir: PathBuf,
    /// Overlay series get SeriesNumber `series_number_base + index`.
    pub series_number_base: u32,
    /// Write one summary image (the slice and every method's map side by side, in its own
    /// series) for each slice explained by two or more methods.
    pub summary: bool,
    /// What is written for the explanations, in file order, never empty; `sc` always
    /// among them (the report's explanation entries are the overlays').
    pub formats: Vec<OutputFormat>,
}

/// A kind of output object (`[output] formats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// `sc`: burned-in Secondary Capture overlays and summary images, for every viewer.
    Sc,
    /// `pmap`: one float Parametric Map per source series, model and method, for viewers
    /// that fuse maps over the series.
    Pmap,
    /// `sr`: one TID 1500 Structured Report per study, the findings as coded values.
    Sr,
}

impl OutputFormat {
    /// Every format, by the name configurations use.
    pub const NAMES: [(&'static str, OutputFormat); 3] = [
        ("sc", OutputFormat::Sc),
        ("pmap", OutputFormat::Pmap),
        ("sr", OutputFormat::Sr),
    ];

    /// What `[output] formats` means when absent: every format (OHIF fuses the maps over
    /// the series when they cover it, tests/ohif_viewer.rs).
    pub const DEFAULT: [OutputFormat; 3] = [OutputFormat::Sc, OutputFormat::Pmap, OutputFormat::Sr];

    /// The name configurations use.
    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Sc => "sc",
            OutputFormat::Pmap => "pmap",
            OutputFormat::Sr => "sr",
        }
    }
}

/// `prediction.min_brain_fraction` when the file leaves it out: a tenth of the smallest brain
/// share measured on the public test split's slices (docs/models.md, "No I don't know").
pub const DEFAULT_MIN_BRAIN_FRACTION: f32 = 0.02;

/// `[prediction]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionSettings {
    /// Tumour probability (1 - P(notumor)) at or above which a slice counts as showing a
    /// tumour; in [0, 1].
    pub tumour_threshold: f32,
    /// Share of a slice's area that its brain mask ([`crate::anatomy::brain_mask`]) must
    /// cover for the slice to decide the series prediction and to be chosen for
    /// explanation; slices below it are flagged `no-brain`. In [0, 1]; 0 takes every slice.
    pub min_brain_fraction: f32,
}

impl Settings {
    /// The enabled models, in file order.
    pub fn enabled_models(&self) -> impl Iterator<Item = &ModelRef> {
        self.models.iter().filter(|m| m.enabled)
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rule that takes `series`: the first enabled rule whose selector accepts it, in
    /// file order. Never a rule for one of our own overlays (see [`is_own_overlay`]).
    pub fn rule_for(&self, series: &Series) -> Option<&Rule> {
        self.evaluate(series).rule
    }

    /// Like [`Settings::rule_for`], with the reasons the earlier rules did not match (what
    /// `dicom-xai rules test` prints).
    pub fn evaluate(&self, series: &Series) -> Verdict<'_> {
        let mut verdict = Verdict {
            rule: None,
            rejected: Vec::new(),
            own_overlay: is_own_overlay(&series.header),
        };
        if verdict.own_overlay {
            return verdict;
        }
        for rule in &self.rules {
            if !rule.enabled {
                verdict.rejected.push((rule, Mismatch::Disabled));
                continue;
            }
            match rule.selector.check(series) {
                Ok(()) => {
                    verdict.rule = Some(rule);
                    break;
                }
                Err(reason) => verdict.rejected.push((rule, reason)),
            }
        }
        verdict
    }
}
