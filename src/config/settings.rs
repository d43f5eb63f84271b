//! Validated settings: defaults applied, ranges, names, patterns and paths checked, every
//! problem reported with the file, key path and value (see [`ConfigError`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use snafu::ResultExt;

use super::document::Document;
use super::error::{ConfigError, Problem, ReadSnafu};
use super::raw::{
    RawConfig, RawExplain, RawMethods, RawModel, RawOutput, RawPacs, RawRule, RawRuntime,
    RawSelect, RawWatch,
};
use super::rules::{Rule, Selector, TextFilter, normalise};
use crate::dicom::scan::Plane;
use crate::explain::attention::{HeadFusion, Rollout};
use crate::explain::gradient::{IntegratedGradients, SmoothGrad};
use crate::explain::rise::Rise;
use crate::explain::scorecam::ScoreCam;

/// Every explanation method, as rules, `--methods` and reports name them.
pub const METHOD_NAMES: &[&str] = &[
    "gradcam",
    "gradcampp",
    "layercam",
    "hirescam",
    "saliency",
    "smoothgrad",
    "intgrad",
    "gradxinput",
    "occlusion",
    "rise",
    "scorecam",
    "rollout",
    "attn-grad",
    "sae",
];

/// Colour maps an overlay may use.
pub const COLOUR_MAPS: &[&str] = &["inferno", "magma", "plasma", "viridis", "cividis", "turbo"];

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
    pub quality: QualitySettings,
    /// `[methods.*]`: per-method parameters.
    pub methods: MethodSettings,
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

/// Parses a duration written as a number and a unit: `500ms`, `30s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a duration such as \"500ms\", \"30s\", \"5m\", \"2h\"")
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, m or h"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
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

/// One `[[models]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelRef {
    /// The model manifest (DESIGN.md 4.3), resolved against the configuration's folder.
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
}

/// `[prediction]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionSettings {
    /// Tumour probability (1 - P(notumor)) at or above which a slice counts as showing a
    /// tumour; in [0, 1].
    pub tumour_threshold: f32,
}

/// `[quality]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QualitySettings {
    /// Fraction of the evidence inside the brain below which an explanation is flagged
    /// `evidence-outside-brain`; in [0, 1].
    pub in_brain_threshold: f32,
    /// Steps of each deletion/insertion curve (4 (steps + 1) model passes per
    /// explanation); 0 turns the faithfulness check off.
    pub faithfulness_steps: usize,
    /// Mean rank correlation with the other methods of a slice below which an explanation
    /// is flagged `methods-disagree`; in [0, 1].
    pub agreement_threshold: f32,
}

/// `[methods.*]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodSettings {
    /// `[methods.occlusion]`.
    pub occlusion: OcclusionSettings,
    /// `[methods.smoothgrad]`.
    pub smoothgrad: SmoothGradSettings,
    /// `[methods.intgrad]`.
    pub intgrad: IntGradSettings,
    /// `[methods.rollout]`.
    pub rollout: RolloutSettings,
    /// `[methods.rise]`.
    pub rise: RiseSettings,
    /// `[methods.scorecam]`.
    pub scorecam: ScoreCamSettings,
}

/// `[methods.occlusion]`.
#[derive(Debug, Clone, PartialEq)]
pub struct OcclusionSettings {
    /// Square patch side in model-input pixels, at least 1.
    pub patch: usize,
    /// Step between patches in model-input pixels, 1 to `patch`.
    pub stride: usize,
    /// What an occluded patch is filled with.
    pub baseline: Baseline,
}

/// `[methods.smoothgrad]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmoothGradSettings {
    /// Noisy copies of the input, at least 1.
    pub samples: usize,
    /// Noise standard deviation as a fraction of the input's range, at least 0.
    pub noise: f32,
    /// Seed of the noise.
    pub seed: u64,
}

/// `[methods.intgrad]`.
#[derive(Debug, Clone, PartialEq)]
pub struct IntGradSettings {
    /// Points on the path from black to the input, at least 1.
    pub steps: usize,
}

/// `[methods.rollout]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    /// How the heads of a block are fused.
    pub head_fusion: HeadFusion,
    /// Share of the weakest fused attention entries discarded per block, in [0, 1).
    pub discard_ratio: f32,
}

/// `[methods.rise]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RiseSettings {
    /// Random masks (one model pass each), at least 1.
    pub masks: usize,
    /// Grid cells along each side of a mask, at least 1.
    pub cells: usize,
    /// Probability that a grid cell is kept, in (0, 1).
    pub keep: f32,
    /// Seed of the masks.
    pub seed: u64,
}

/// `[methods.scorecam]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreCamSettings {
    /// Most feature channels scored (one model pass each), at least 1.
    pub max_channels: usize,
}

/// The fill of an occluded patch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// The mean of the model input, per channel (hides structure, keeps brightness).
    Mean,
    /// Black: the windowed grey level 0.
    Zero,
    /// This windowed grey level, in [0, 1].
    Value(f32),
}

/// What to do with the series a rule takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainPlan {
    /// Model names; `None` = every enabled model.
    pub models: Option<Vec<String>>,
    /// Method names, from [`METHOD_NAMES`], in order (empty only with `slices = "none"`).
    pub methods: Vec<String>,
    /// Which slices are explained (every slice is classified).
    pub slices: SlicePolicy,
    /// Colour map, from [`COLOUR_MAPS`].
    pub colour_map: String,
    /// Heat-map opacity in the overlay, in [0, 1].
    pub opacity: f32,
}

/// Which slices of a series are explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicePolicy {
    /// Every slice.
    All,
    /// The k slices with the highest tumour probability.
    TopK(usize),
    /// Only the most tumour-like slice: the minimum every processed series gets per method
    /// (no overlays at all when the plan has no methods).
    None,
}

impl std::fmt::Display for SlicePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::TopK(k) => write!(f, "top-k {k}"),
            Self::None => f.write_str("none"),
        }
    }
}

impl std::fmt::Display for ExplainPlan {
    /// One line, e.g. `models: every enabled model; methods: occlusion; slices: top-k 3;
    /// colour map: inferno; opacity: 0.45`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.models {
            None => f.write_str("models: every enabled model")?,
            Some(models) => write!(f, "models: {}", models.join(", "))?,
        }
        write!(
            f,
            "; methods: {}; slices: {}; colour map: {}; opacity: {}",
            self.methods.join(", "),
            self.slices,
            self.colour_map,
            self.opacity
        )
    }
}

/// The default `top_k`.
const DEFAULT_TOP_K: usize = 3;

impl Default for ExplainPlan {
    /// What `[explain]` means when it is absent.
    fn default() -> Self {
        Self {
            models: None,
            methods: vec!["occlusion".to_string()],
            slices: SlicePolicy::TopK(DEFAULT_TOP_K),
            colour_map: "inferno".to_string(),
            opacity: 0.45,
        }
    }
}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        let text = std::fs::read_to_string(path).context(ReadSnafu { path })?;
        Self::from_str(&text, path)
    }

    /// Validates configuration text; `source` is the file it came from (named in errors,
    /// and the folder relative model paths are resolved against).
    pub fn from_str(text: &str, source: &Path) -> Result<Settings, ConfigError> {
        let document = Document::parse(text).map_err(|problem| ConfigError::Syntax {
            path: source.to_path_buf(),
            problem,
        })?;
        let raw: RawConfig = toml::from_str(text).map_err(|error| ConfigError::Invalid {
            path: source.to_path_buf(),
            problems: vec![document.problem_at(error.span(), plain_serde(error.message()))],
        })?;
        let mut validator = Validator {
            document: &document,
            base: folder_of(source),
            problems: Vec::new(),
        };
        let settings = validator.settings(raw, source);
        let mut problems = validator.problems;
        if problems.is_empty() {
            return Ok(settings);
        }
        problems.sort_by_key(|p| p.position.unwrap_or((usize::MAX, usize::MAX)));
        Err(ConfigError::Invalid {
            path: source.to_path_buf(),
            problems,
        })
    }

    /// The enabled models, in file order.
    pub fn enabled_models(&self) -> impl Iterator<Item = &ModelRef> {
        self.models.iter().filter(|m| m.enabled)
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }
}

/// serde's wording, in configuration terms.
fn plain_serde(message: &str) -> String {
    let message = message
        .replace("unknown field", "unknown key")
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected an integer")
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    // `expected struct RawExplain` (a section given as a value)
    match Regex::new(r"struct Raw\w+") {
        Ok(raw) => raw.replace_all(&message, "a table").into_owned(),
        Err(_) => message,
    }
}

/// The folder relative paths in the file are resolved against.
fn folder_of(source: &Path) -> PathBuf {
    let folder = match source.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    folder
        .canonicalize()
        .or_else(|_| std::path::absolute(&folder))
        .unwrap_or(folder)
}

/// Absolute, and canonical when the path exists.
fn resolved(base: &Path, relative: &str) -> PathBuf {
    let joined = base.join(relative);
    joined
        .canonicalize()
        .or_else(|_| std::path::absolute(&joined))
        .unwrap_or(joined)
}

fn quoted(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("\"{v}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

struct Validator<'d> {
    document: &'d Document<'d>,
    base: PathBuf,
    problems: Vec<Problem>,
}

impl Validator<'_> {
    fn bad(&mut self, key: &str, fallback: Option<String>, message: impl Into<String>) {
        let problem = self.document.problem(key, fallback, message.into());
        self.problems.push(problem);
    }

    /// An integer in `min..=max`, or `default` when absent.
    fn integer(&mut self, key: &str, value: Option<i64>, default: i64, min: i64, max: i64) -> i64 {
        match value {
            None => default,
            Some(v) if (min..=max).contains(&v) => v,
            Some(v) => {
                let range = if max == i64::MAX {
                    format!("at least {min}")
                } else {
                    format!("between {min} and {max}")
                };
                self.bad(key, Some(v.to_string()), format!("must be {range}"));
                default
            }
        }
    }

    fn count(&mut self, key: &str, value: Option<i64>, default: usize, min: usize) -> usize {
        let min = i64::try_from(min).unwrap_or(i64::MAX);
        let default = i64::try_from(default).unwrap_or(min);
        let v = self.integer(key, value, default, min, i64::MAX);
        usize::try_from(v).unwrap_or(usize::MAX)
    }

    /// A number in [0, 1], or `default` when absent.
    fn fraction(&mut self, key: &str, value: Option<f64>, default: f32) -> f32 {
        match value {
            None => default,
            Some(v) if (0.0..=1.0).contains(&v) => v as f32,
            Some(v) => {
                self.bad(key, Some(v.to_string()), "must be between 0 and 1");
                default
            }
        }
    }

    /// A number that `accept`s (as `requirement` says), or `default` when absent.
    fn number(
        &mut self,
        key: &str,
        value: Option<f64>,
        default: f32,
        accept: impl Fn(f64) -> bool,
        requirement: &str,
    ) -> f32 {
        match value {
            None => default,
            // checked as stored: f32 may round 0.99999999 to 1 or overflow to infinity
            Some(v) if (v as f32).is_finite() && accept(f64::from(v as f32)) => v as f32,
            Some(v) => {
                self.bad(key, Some(v.to_string()), requirement);
                default
            }
        }
    }

    /// A seed (0 or more), or `default` when absent.
    fn seed(&mut self, key: &str, value: Option<i64>, default: u64) -> u64 {
        match value {
            None => default,
            Some(v) => u64::try_from(v).unwrap_or_else(|_| {
                self.bad(key, Some(v.to_string()), "must be at least 0");
                default
            }),
        }
    }

    /// A list of non-empty code strings, upper case.
    fn codes(&mut self, key: &str, values: &[String], allow_empty: bool) -> Vec<String> {
        if values.is_empty() && !allow_empty {
            self.bad(
                key,
                Some("[]".into()),
                "the list is empty, so nothing would match; remove the key to accept any value",
            );
        }
        let mut codes = Vec::new();
        for (i, value) in values.iter().enumerate() {
            let code = normalise(value);
            if code.is_empty() {
                self.bad(
                    &format!("{key}[{i}]"),
                    Some(format!("{value:?}")),
                    "empty value",
                );
            } else if !codes.contains(&code) {
                codes.push(code);
            }
        }
        codes
    }

    fn settings(&mut self, raw: RawConfig, source: &Path) -> Settings {
        let runtime = self.runtime(&raw.runtime);
        let models = self.models(&raw.models);
        // rules may only name models when every manifest could be read
        let names: Option<Vec<ModelRef>> =
            (models.len() == raw.models.len()).then(|| models.clone());
        let output = self.output(&raw.output);
        let log_paths = raw.logging.paths.as_deref().and_then(|name| {
            let style = crate::logging::PathStyle::from_name(name);
            if style.is_none() {
                self.bad(
                    "logging.paths",
                    Some(format!("{name:?}")),
                    format!(
                        "must be one of {}",
                        quoted(&crate::logging::PathStyle::NAMES)
                    ),
                );
            }
            style
        });
        let prediction = PredictionSettings {
            tumour_threshold: self.fraction(
                "prediction.tumour_threshold",
                raw.prediction.tumour_threshold,
                0.5,
            ),
        };
        let policy = crate::explain::quality::QualityPolicy::default();
        let quality = QualitySettings {
            in_brain_threshold: self.fraction(
                "quality.in_brain_threshold",
                raw.quality.in_brain_threshold,
                policy.in_brain_threshold,
            ),
            faithfulness_steps: self.count(
                "quality.faithfulness_steps",
                raw.quality.faithfulness_steps,
                policy.faithfulness_steps,
                0,
            ),
            agreement_threshold: self.fraction(
                "quality.agreement_threshold",
                raw.quality.agreement_threshold,
                policy.agreement_threshold,
            ),
        };
        let methods = self.methods(&raw.methods);
        let builtin = ExplainPlan::default();
        // what `slices = "top-k"` without `top_k` means in a rule (reported once, below)
        let default_top_k = raw
            .explain
            .top_k
            .and_then(|k| usize::try_from(k).ok())
            .filter(|k| *k >= 1)
            .unwrap_or(DEFAULT_TOP_K);
        let defaults = self.plan(
            &raw.explain,
            "explain",
            "built-in default",
            &builtin,
            DEFAULT_TOP_K,
            names.as_deref(),
        );
        let rules = self.rules(&raw.rules, &defaults, default_top_k, names.as_deref());
        let watch = self.watch(&raw.watch, &rules);
        Settings {
            source: source.to_path_buf(),
            runtime,
            models,
            output,
            prediction,
            quality,
            methods,
            defaults,
            rules,
            watch,
            log_paths,
        }
    }

    /// A duration, or `default` when absent.
    fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value.map(parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(message)) => {
                self.bad(key, None, message);
                default
            }
        }
    }

    fn folder(&mut self, key: &str, value: Option<&str>, default: &str) -> PathBuf {
        match value {
            Some(dir) if dir.trim().is_empty() => {
                self.bad(key, None, "empty path");
                PathBuf::from(default)
            }
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(default),
        }
    }

    fn watch(&mut self, raw: &RawWatch, rules: &[Rule]) -> WatchSettings {
        let drop = self.folder("watch.drop", raw.drop.as_deref(), "drop");
        let state = self.folder("watch.state", raw.state.as_deref(), "state");
        let poll = match raw.poll.as_deref() {
            None | Some("off") => None,
            Some(text) => Some(self.duration("watch.poll", Some(text), Duration::from_secs(5))),
        };
        let stable = self.duration(
            "watch.stable",
            raw.stable.as_deref(),
            Duration::from_secs(2),
        );
        let settle = self.duration(
            "watch.settle",
            raw.settle.as_deref(),
            Duration::from_secs(30),
        );
        let force_after = self.duration(
            "watch.force_after",
            raw.force_after.as_deref(),
            Duration::from_secs(600),
        );
        if force_after < settle {
            self.bad(
                "watch.force_after",
                None,
                "must be at least watch.settle (it limits how long a study may keep settling)",
            );
        }
        let rescan = self.duration(
            "watch.rescan",
            raw.rescan.as_deref(),
            Duration::from_secs(600),
        );
        let ignore = raw.ignore.clone().unwrap_or_else(|| {
            [".*", "*.part", "*.tmp", "*.partial", "*~"]
                .map(String::from)
                .to_vec()
        });
        let required_rules = raw.required_rules.clone().unwrap_or_default();
        for (i, name) in required_rules.iter().enumerate() {
            if !rules.iter().any(|r| &r.name == name) {
                self.bad(
                    &format!("watch.required_rules[{i}]"),
                    Some(format!("{name:?}")),
                    format!(
                        "no rule has this name (rules: {})",
                        rules
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        let mut deliver = Vec::new();
        for (i, name) in raw
            .deliver
            .clone()
            .unwrap_or_else(|| vec!["out".to_string()])
            .iter()
            .enumerate()
        {
            let destination = match name.as_str() {
                "out" => Destination::Out,
                "study-folder" => Destination::StudyFolder,
                "pacs" => Destination::Pacs,
                _ => {
                    self.bad(
                        &format!("watch.deliver[{i}]"),
                        Some(format!("{name:?}")),
                        "must be \"out\", \"study-folder\" or \"pacs\"",
                    );
                    continue;
                }
            };
            if !deliver.contains(&destination) {
                deliver.push(destination);
            }
        }
        let pacs = raw.pacs.as_ref().and_then(|raw| self.pacs(raw));
        if deliver.contains(&Destination::Pacs) && pacs.is_none() && raw.pacs.is_none() {
            self.bad(
                "watch.deliver",
                None,
                "\"pacs\" needs a [watch.pacs] section with peer = \"AE@host:port\"",
            );
        }
        let after = match raw.after.as_deref() {
            None | Some("keep") => AfterProcessing::Keep,
            Some("delete") => AfterProcessing::Delete,
            Some("move") => match raw.archive.as_deref() {
                Some(dir) if !dir.trim().is_empty() => AfterProcessing::Move(PathBuf::from(dir)),
                _ => {
                    self.bad(
                        "watch.archive",
                        None,
                        "after = \"move\" needs archive = \"<folder>\"",
                    );
                    AfterProcessing::Keep
                }
            },
            Some(other) => {
                self.bad(
                    "watch.after",
                    Some(format!("{other:?}")),
                    "must be \"keep\", \"move\" or \"delete\"",
                );
                AfterProcessing::Keep
            }
        };
        let workers = self.count("watch.workers", raw.workers, 1, 1);
        let max_attempts = self.integer("watch.max_attempts", raw.max_attempts, 3, 1, 100) as u32;
        let retry_after = self.duration(
            "watch.retry_after",
            raw.retry_after.as_deref(),
            Duration::from_secs(30),
        );
        let metrics = raw.metrics.as_deref().and_then(|text| {
            match text.parse::<std::net::SocketAddr>() {
                Ok(address) if address.ip().is_loopback() => Some(address),
                Ok(_) => {
                    self.bad(
                        "watch.metrics",
                        Some(format!("{text:?}")),
                        "the metrics endpoint listens on the loopback address only (127.0.0.1:PORT)",
                    );
                    None
                }
                Err(_) => {
                    self.bad(
                        "watch.metrics",
                        Some(format!("{text:?}")),
                        "not an address such as \"127.0.0.1:9464\"",
                    );
                    None
                }
            }
        });
        WatchSettings {
            drop,
            state,
            poll,
            stable,
            settle,
            force_after,
            rescan,
            ignore,
            required_rules,
            deliver,
            pacs,
            after,
            workers,
            max_attempts,
            retry_after,
            metrics,
        }
    }

    fn pacs(&mut self, raw: &RawPacs) -> Option<PacsSettings> {
        let Some(peer) = raw.peer.as_deref() else {
            self.bad("watch.pacs.peer", None, "missing: peer = \"AE@host:port\"");
            return None;
        };
        let parsed = peer.split_once('@').and_then(|(ae, address)| {
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok()?;
            (!ae.is_empty() && ae.len() <= 16 && !host.is_empty() && port > 0)
                .then(|| (ae.to_string(), host.to_string(), port))
        });
        let Some((called_ae, host, port)) = parsed else {
            self.bad(
                "watch.pacs.peer",
                Some(format!("{peer:?}")),
                "must be \"AE@host:port\" (AE title of at most 16 characters)",
            );
            return None;
        };
        let calling_ae = raw
            .calling_ae
            .clone()
            .unwrap_or_else(|| "DICOM-XAI".to_string());
        if calling_ae.is_empty() || calling_ae.len() > 16 {
            self.bad(
                "watch.pacs.calling_ae",
                Some(format!("{calling_ae:?}")),
                "an AE title has 1 to 16 characters",
            );
        }
        Some(PacsSettings {
            called_ae,
            host,
            port,
            calling_ae,
            timeout: self.duration(
                "watch.pacs.timeout",
                raw.timeout.as_deref(),
                Duration::from_secs(30),
            ),
            max_attempts: self.integer("watch.pacs.max_attempts", raw.max_attempts, 5, 1, 1000)
                as u32,
        })
    }

    fn runtime(&mut self, raw: &RawRuntime) -> RuntimeSettings {
        let onnxruntime = raw.onnxruntime.as_deref().and_then(|path| {
            if path.trim().is_empty() {
                self.bad(
                    "runtime.onnxruntime",
                    None,
                    "empty path; remove the key to use ORT_DYLIB_PATH or the loader's search path",
                );
                return None;
            }
            if !path.contains('/') {
                // a bare library name: the dynamic loader searches for it
                return Some(PathBuf::from(path));
            }
            let full = resolved(&self.base, path);
            if !full.is_file() {
                self.bad(
                    "runtime.onnxruntime",
                    None,
                    format!(
                        "{} does not exist (relative paths are resolved against {})",
                        full.display(),
                        self.base.display()
                    ),
                );
            }
            Some(full)
        });
        let mut execution_providers = Vec::new();
        match &raw.execution_providers {
            None => execution_providers.push(ExecutionProviderKind::Cpu),
            Some(names) if names.is_empty() => self.bad(
                "runtime.execution_providers",
                None,
                "no execution provider; list \"cuda\", \"cpu\" or both, in order of preference",
            ),
            Some(names) => {
                for (i, name) in names.iter().enumerate() {
                    let key = format!("runtime.execution_providers[{i}]");
                    let kind = match name.as_str() {
                        "cuda" => ExecutionProviderKind::Cuda,
                        "cpu" => ExecutionProviderKind::Cpu,
                        _ => {
                            self.bad(
                                &key,
                                Some(format!("{name:?}")),
                                "unknown execution provider; valid: \"cuda\", \"cpu\"",
                            );
                            continue;
                        }
                    };
                    if execution_providers.contains(&kind) {
                        self.bad(&key, Some(format!("{name:?}")), "listed twice");
                    } else {
                        execution_providers.push(kind);
                    }
                }
            }
        }
        let require_gpu = raw.require_gpu.unwrap_or(false);
        if require_gpu
            && raw.execution_providers.is_some()
            && !execution_providers.contains(&ExecutionProviderKind::Cuda)
        {
            self.bad(
                "runtime.require_gpu",
                Some("true".into()),
                "requires \"cuda\" in runtime.execution_providers",
            );
        } else if require_gpu && raw.execution_providers.is_none() {
            self.bad(
                "runtime.require_gpu",
                Some("true".into()),
                "requires \"cuda\" in runtime.execution_providers (the default is [\"cpu\"])",
            );
        }
        let cuda_device = self.integer(
            "runtime.cuda_device",
            raw.cuda_device,
            0,
            0,
            i64::from(i32::MAX),
        );
        RuntimeSettings {
            onnxruntime,
            execution_providers,
            cuda_device: i32::try_from(cuda_device).unwrap_or(0),
            require_gpu,
            intra_threads: self.count("runtime.intra_threads", raw.intra_threads, 0, 0),
            batch_size: self.count("runtime.batch_size", raw.batch_size, 8, 1),
        }
    }

    fn models(&mut self, raw: &[RawModel]) -> Vec<ModelRef> {
        if raw.is_empty() {
            self.bad(
                "models",
                None,
                "no [[models]] entry; add at least one with manifest = \"path/to/model.toml\"",
            );
        }
        let mut models: Vec<ModelRef> = Vec::new();
        for (i, model) in raw.iter().enumerate() {
            let key = format!("models[{i}].manifest");
            let Some(manifest) = &model.manifest else {
                self.bad(
                    &format!("models[{i}]"),
                    None,
                    "missing manifest = \"path/to/model.toml\"",
                );
                continue;
            };
            let path = resolved(&self.base, manifest);
            if path.is_dir() {
                self.bad(
                    &key,
                    None,
                    format!("{} is a folder, not a model manifest", path.display()),
                );
                continue;
            }
            if !path.is_file() {
                self.bad(
                    &key,
                    None,
                    format!(
                        "model manifest {} does not exist (relative paths are resolved against \
                         the configuration's folder, {})",
                        path.display(),
                        self.base.display()
                    ),
                );
                continue;
            }
            let name = match manifest_name(&path) {
                Ok(name) => name,
                Err(why) => {
                    self.bad(
                        &key,
                        None,
                        format!("cannot read the model name from {}: {why}", path.display()),
                    );
                    continue;
                }
            };
            if let Some(j) = models.iter().position(|m| m.name == name) {
                self.bad(
                    &key,
                    None,
                    format!("model name {name:?} is already used by models[{j}]"),
                );
                continue;
            }
            models.push(ModelRef {
                manifest: path,
                enabled: model.enabled.unwrap_or(true),
                name,
            });
        }
        if !models.is_empty() && models.len() == raw.len() && !models.iter().any(|m| m.enabled) {
            self.bad(
                "models",
                None,
                "every model is disabled (enabled = false); enable at least one",
            );
        }
        models
    }

    fn output(&mut self, raw: &RawOutput) -> OutputSettings {
        let dir = match raw.dir.as_deref() {
            Some(dir) if dir.trim().is_empty() => {
                self.bad("output.dir", None, "empty path");
                PathBuf::from("out")
            }
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from("out"),
        };
        // SeriesNumber is an IS (at most 2^31 - 1): leave room for the indices added to it
        let base = self.integer(
            "output.series_number_base",
            raw.series_number_base,
            9900,
            1,
            2_147_000_000,
        );
        OutputSettings {
            dir,
            series_number_base: u32::try_from(base).unwrap_or(9900),
            summary: raw.summary.unwrap_or(true),
        }
    }

    fn methods(&mut self, raw: &RawMethods) -> MethodSettings {
        let occlusion = &raw.occlusion;
        let patch = self.count("methods.occlusion.patch", occlusion.patch, 48, 1);
        let mut stride = self.count("methods.occlusion.stride", occlusion.stride, 24, 1);
        if stride > patch {
            self.bad(
                "methods.occlusion.stride",
                Some(stride.to_string()),
                format!(
                    "stride {stride} is larger than patch {patch}: parts of the image would \
                     never be occluded"
                ),
            );
            stride = patch;
        }
        let baseline = match &occlusion.baseline {
            None => Baseline::Mean,
            Some(toml::Value::String(s)) if s == "mean" => Baseline::Mean,
            Some(toml::Value::String(s)) if s == "zero" => Baseline::Zero,
            Some(toml::Value::Integer(v)) if (0..=1).contains(v) => Baseline::Value(*v as f32),
            Some(toml::Value::Float(v)) if (0.0..=1.0).contains(v) => Baseline::Value(*v as f32),
            Some(other) => {
                self.bad(
                    "methods.occlusion.baseline",
                    Some(other.to_string()),
                    "must be \"mean\", \"zero\" or a grey level in [0, 1]",
                );
                Baseline::Mean
            }
        };
        MethodSettings {
            occlusion: OcclusionSettings {
                patch,
                stride,
                baseline,
            },
            smoothgrad: self.smoothgrad(raw),
            intgrad: IntGradSettings {
                steps: self.count(
                    "methods.intgrad.steps",
                    raw.intgrad.steps,
                    IntegratedGradients::default().steps,
                    1,
                ),
            },
            rollout: self.rollout(raw),
            rise: self.rise(raw),
            scorecam: ScoreCamSettings {
                max_channels: self.count(
                    "methods.scorecam.max_channels",
                    raw.scorecam.max_channels,
                    ScoreCam::default().max_channels,
                    1,
                ),
            },
        }
    }

    // Defaults come from the methods themselves, so a file without the section and a
    // method built with `Default` agree.

    fn smoothgrad(&mut self, raw: &RawMethods) -> SmoothGradSettings {
        let (raw, default) = (&raw.smoothgrad, SmoothGrad::default());
        SmoothGradSettings {
            samples: self.count(
                "methods.smoothgrad.samples",
                raw.samples,
                default.samples,
                1,
            ),
            noise: self.number(
                "methods.smoothgrad.noise",
                raw.noise,
                default.noise,
                |v| v.is_finite() && v >= 0.0,
                "must be a finite number, at least 0 (a fraction of the input's range)",
            ),
            seed: self.seed("methods.smoothgrad.seed", raw.seed, default.seed),
        }
    }

    fn rollout(&mut self, raw: &RawMethods) -> RolloutSettings {
        let (raw, default) = (&raw.rollout, Rollout::default());
        let head_fusion = match raw.head_fusion.as_deref() {
            None => default.head_fusion,
            Some("mean") => HeadFusion::Mean,
            Some("max") => HeadFusion::Max,
            Some("min") => HeadFusion::Min,
            Some(other) => {
                self.bad(
                    "methods.rollout.head_fusion",
                    Some(format!("{other:?}")),
                    "must be \"mean\", \"max\" or \"min\"",
                );
                default.head_fusion
            }
        };
        RolloutSettings {
            head_fusion,
            discard_ratio: self.number(
                "methods.rollout.discard_ratio",
                raw.discard_ratio,
                default.discard_ratio,
                |v| (0.0..1.0).contains(&v),
                "must be at least 0 and below 1",
            ),
        }
    }

    fn rise(&mut self, raw: &RawMethods) -> RiseSettings {
        let (raw, default) = (&raw.rise, Rise::default());
        RiseSettings {
            masks: self.count("methods.rise.masks", raw.masks, default.masks, 1),
            cells: self.count("methods.rise.cells", raw.cells, default.cells, 1),
            keep: self.number(
                "methods.rise.keep",
                raw.keep,
                default.keep,
                |v| v > 0.0 && v < 1.0,
                "must be above 0 and below 1 (the probability that a grid cell is kept)",
            ),
            seed: self.seed("methods.rise.seed", raw.seed, default.seed),
        }
    }

    /// `[explain]` or `[rules.explain]` over `parent`; keys absent from `raw` inherit.
    fn plan(
        &mut self,
        raw: &RawExplain,
        prefix: &str,
        parent_name: &str,
        parent: &ExplainPlan,
        parent_top_k: usize,
        model_names: Option<&[ModelRef]>,
    ) -> ExplainPlan {
        let models = match &raw.models {
            None => parent.models.clone(),
            Some(list) => Some(self.model_list(&format!("{prefix}.models"), list, model_names)),
        };
        let methods = match &raw.methods {
            None => parent.methods.clone(),
            Some(list) => self.method_list(&format!("{prefix}.methods"), list),
        };
        let top_k_key = format!("{prefix}.top_k");
        let top_k = self.count(&top_k_key, raw.top_k, parent_top_k, 1);
        let slices = match raw.slices.as_deref() {
            None => match parent.slices {
                SlicePolicy::TopK(_) if raw.top_k.is_some() => SlicePolicy::TopK(top_k),
                inherited => inherited,
            },
            Some("all") => SlicePolicy::All,
            Some("none") => SlicePolicy::None,
            Some("top-k") => SlicePolicy::TopK(top_k),
            Some(other) => {
                self.bad(
                    &format!("{prefix}.slices"),
                    Some(format!("{other:?}")),
                    "must be \"all\", \"top-k\" or \"none\"",
                );
                parent.slices
            }
        };
        if raw.top_k.is_some() && !matches!(slices, SlicePolicy::TopK(_)) {
            let whence = if raw.slices.is_some() {
                String::new()
            } else {
                format!(", inherited from the {parent_name}")
            };
            self.bad(
                &top_k_key,
                None,
                format!("has no effect: slices is \"{slices}\"{whence}; set slices = \"top-k\""),
            );
        }
        if methods.is_empty() && slices != SlicePolicy::None {
            self.bad(
                &format!("{prefix}.methods"),
                Some("[]".into()),
                format!(
                    "names no method, but slices is \"{slices}\"; to classify without \
                     explaining, set slices = \"none\""
                ),
            );
        }
        let colour_map = match &raw.colour_map {
            None => parent.colour_map.clone(),
            Some(name) if COLOUR_MAPS.contains(&name.as_str()) => name.clone(),
            Some(name) => {
                self.bad(
                    &format!("{prefix}.colour_map"),
                    Some(format!("{name:?}")),
                    format!("unknown colour map; valid: {}", quoted(COLOUR_MAPS)),
                );
                parent.colour_map.clone()
            }
        };
        let opacity = self.fraction(&format!("{prefix}.opacity"), raw.opacity, parent.opacity);
        ExplainPlan {
            models,
            methods,
            slices,
            colour_map,
            opacity,
        }
    }

    fn model_list(
        &mut self,
        key: &str,
        list: &[String],
        known: Option<&[ModelRef]>,
    ) -> Vec<String> {
        if list.is_empty() {
            self.bad(
                key,
                Some("[]".into()),
                "names no model; remove the key to use every enabled model",
            );
        }
        let mut names: Vec<String> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let item = format!("{key}[{i}]");
            if names.contains(name) {
                self.bad(&item, Some(format!("{name:?}")), "listed twice");
                continue;
            }
            if let Some(known) = known {
                match known.iter().position(|m| &m.name == name) {
                    Some(index) if !known[index].enabled => self.bad(
                        &item,
                        Some(format!("{name:?}")),
                        format!(
                            "that model is disabled (models[{index}].enabled = false); enable it \
                             or leave it out of this list"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> = known.iter().map(|m| m.name.as_str()).collect();
                        self.bad(
                            &item,
                            Some(format!("{name:?}")),
                            format!(
                                "no model of that name in [[models]] (their manifests name: {})",
                                quoted(&known)
                            ),
                        );
                    }
                }
            }
            names.push(name.clone());
        }
        names
    }

    fn method_list(&mut self, key: &str, list: &[String]) -> Vec<String> {
        let mut methods: Vec<String> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let item = format!("{key}[{i}]");
            if !METHOD_NAMES.contains(&name.as_str()) {
                self.bad(
                    &item,
                    Some(format!("{name:?}")),
                    format!("unknown method; valid: {}", quoted(METHOD_NAMES)),
                );
            } else if methods.contains(name) {
                self.bad(&item, Some(format!("{name:?}")), "listed twice");
            } else {
                methods.push(name.clone());
            }
        }
        methods
    }

    fn rules(
        &mut self,
        raw: &[RawRule],
        defaults: &ExplainPlan,
        default_top_k: usize,
        model_names: Option<&[ModelRef]>,
    ) -> Vec<Rule> {
        if raw.is_empty() {
            self.bad(
                "rules",
                None,
                "no [[rules]] entry; add at least one, or no series will ever be explained",
            );
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, rule) in raw.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            let name = match rule.name.as_deref().map(str::trim) {
                None => {
                    self.bad(
                        &prefix,
                        None,
                        "missing name = \"...\" (unique among the rules)",
                    );
                    format!("#{i}")
                }
                Some("") => {
                    self.bad(&format!("{prefix}.name"), None, "empty name");
                    format!("#{i}")
                }
                Some(name) => {
                    if let Some(j) = rules.iter().position(|r| r.name == name) {
                        self.bad(
                            &format!("{prefix}.name"),
                            Some(format!("{name:?}")),
                            format!("rule name already used by rules[{j}]"),
                        );
                    }
                    name.to_string()
                }
            };
            let selector = self.selector(&format!("{prefix}.select"), &rule.select);
            let plan = self.plan(
                &rule.explain,
                &format!("{prefix}.explain"),
                "[explain] section",
                defaults,
                default_top_k,
                model_names,
            );
            rules.push(Rule {
                name,
                description: rule.description.clone(),
                enabled: rule.enabled.unwrap_or(true),
                selector,
                plan,
            });
        }
        rules
    }

    fn pattern(&mut self, key: &str, pattern: Option<&String>) -> Option<Regex> {
        let pattern = pattern?;
        match Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(error) => {
                // the last line of the regex error says what is wrong
                let why = error.to_string();
                let why = why
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                self.bad(
                    key,
                    Some(format!("{pattern:?}")),
                    format!("invalid regular expression: {why}"),
                );
                None
            }
        }
    }

    fn filter(
        &mut self,
        prefix: &str,
        name: &str,
        include: Option<&String>,
        exclude: Option<&String>,
    ) -> TextFilter {
        TextFilter {
            include: self.pattern(&format!("{prefix}.{name}"), include),
            exclude: self.pattern(&format!("{prefix}.{name}_exclude"), exclude),
        }
    }

    fn selector(&mut self, prefix: &str, raw: &RawSelect) -> Selector {
        let modality = raw
            .modality
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.modality"), list, false));
        let body_part = raw
            .body_part
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.body_part"), list, false));
        let image_type = raw
            .image_type
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.image_type"), list, true))
            .unwrap_or_default();
        let image_type_exclude = raw
            .image_type_exclude
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.image_type_exclude"), list, true))
            .unwrap_or_default();
        if let Some(both) = image_type.iter().find(|v| image_type_exclude.contains(v)) {
            self.bad(
                &format!("{prefix}.image_type_exclude"),
                None,
                format!("{both} is both required (image_type) and refused; nothing would match"),
            );
        }
        let planes = raw.planes.as_ref().map(|list| {
            if list.is_empty() {
                self.bad(
                    &format!("{prefix}.planes"),
                    Some("[]".into()),
                    "the list is empty, so nothing would match; remove the key to accept any plane",
                );
            }
            let mut planes = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let plane = match name.trim().to_lowercase().as_str() {
                    "axial" => Plane::Axial,
                    "coronal" => Plane::Coronal,
                    "sagittal" => Plane::Sagittal,
                    "oblique" => Plane::Oblique,
                    _ => {
                        self.bad(
                            &format!("{prefix}.planes[{i}]"),
                            Some(format!("{name:?}")),
                            "unknown plane; valid: \"axial\", \"coronal\", \"sagittal\", \"oblique\"",
                        );
                        continue;
                    }
                };
                if !planes.contains(&plane) {
                    planes.push(plane);
                }
            }
            planes
        });
        let min_slices = self.count(&format!("{prefix}.min_slices"), raw.min_slices, 1, 1);
        let max_slices = raw.max_slices.map(|max| {
            let max = self.count(&format!("{prefix}.max_slices"), Some(max), usize::MAX, 1);
            if max < min_slices {
                self.bad(
                    &format!("{prefix}.max_slices"),
                    Some(max.to_string()),
                    format!("smaller than min_slices = {min_slices}; nothing would match"),
                );
            }
            max
        });
        Selector {
            modality,
            series_description: self.filter(
                prefix,
                "series_description",
                raw.series_description.as_ref(),
                raw.series_description_exclude.as_ref(),
            ),
            protocol_name: self.filter(
                prefix,
                "protocol_name",
                raw.protocol_name.as_ref(),
                raw.protocol_name_exclude.as_ref(),
            ),
            study_description: self.filter(
                prefix,
                "study_description",
                raw.study_description.as_ref(),
                raw.study_description_exclude.as_ref(),
            ),
            body_part,
            body_part_required: raw.body_part_required.unwrap_or(false),
            image_type,
            image_type_exclude,
            planes,
            min_slices,
            max_slices,
        }
    }
}

/// `[model] name` of a model manifest (the rest of the manifest is the model loader's).
fn manifest_name(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| e.message().to_string())?;
    let name = table
        .get("model")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .ok_or("no [model] name = \"...\"")?;
    if name.trim().is_empty() {
        return Err("empty [model] name".into());
    }
    Ok(name.to_string())
}
