//! Turning the file as written ([`super::raw`]) into [`Settings`]: defaults applied and every
//! value checked, each problem reported with the file, key path, value and position (see
//! [`ConfigError`]), all problems at once. One file per section, as the sections are
//! documented: [`watch`] (`[watch]`, `[watch.pacs]`), [`runtime`] (`[runtime]`,
//! `[[models]]`), [`explain`] (`[explain]`), [`rules`] (`[[rules]]`); the small sections and
//! the checks every section uses are here.

mod explain;
mod rules;
mod runtime;
mod watch;

pub use watch::{DurationError, parse_duration};

use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use snafu::ResultExt;

use super::document::Document;
use super::error::{ConfigError, Problem, ReadSnafu};
use super::plan::{DEFAULT_TOP_K, ExplainPlan};
use super::raw::{RawConfig, RawOutput};
use super::rules::normalise;
use super::settings::{
    DEFAULT_MIN_BRAIN_FRACTION, ModelRef, OutputFormat, OutputSettings, PredictionSettings,
    Settings,
};
use crate::explain::params::ParamProblem;

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
}

/// serde's wording, in configuration terms.
fn plain_serde(message: &str) -> String {
    let message = message
        .replace("unknown field", "unknown key")
        .replace("expected f64", "expected a number")
        .replace("expected i64", "expected an integer")
        .replace("expected f32", "expected a number")
        // counts and seeds of the methods' parameters (negative integers)
        .replace("expected usize", "must be at least 0")
        .replace("expected u64", "must be at least 0")
        .replace("a sequence", "an array")
        .replace("a map", "a table");
    // `expected struct RawExplain` (a section given as a value)
    match Regex::new(r"struct \w+") {
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
            min_brain_fraction: self.fraction(
                "prediction.min_brain_fraction",
                raw.prediction.min_brain_fraction,
                DEFAULT_MIN_BRAIN_FRACTION,
            ),
        };
        let quality = raw.quality;
        self.params("quality", quality.problems());
        let methods = raw.methods;
        self.params("methods", methods.problems());
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
            Some(Err(error)) => {
                self.bad(key, None, error.to_string());
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
            formats: self.formats(raw.formats.as_deref()),
        }
    }

    /// `output.formats`: known names, no repeats, `sc` among them; every format when absent.
    fn formats(&mut self, names: Option<&[String]>) -> Vec<OutputFormat> {
        let Some(names) = names else {
            return OutputFormat::DEFAULT.to_vec();
        };
        let mut formats = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let key = format!("output.formats[{i}]");
            match OutputFormat::NAMES.iter().find(|(n, _)| n == name) {
                Some((_, format)) if !formats.contains(format) => formats.push(*format),
                Some(_) => self.bad(&key, Some(format!("{name:?}")), "listed twice"),
                None => {
                    let known: Vec<&str> = OutputFormat::NAMES.iter().map(|(n, _)| *n).collect();
                    self.bad(
                        &key,
                        Some(format!("{name:?}")),
                        format!("unknown format; valid: {}", quoted(&known)),
                    )
                }
            }
        }
        if !formats.contains(&OutputFormat::Sc) {
            self.bad(
                "output.formats",
                None,
                "must include \"sc\": the report's explanation entries are the overlays'",
            );
            formats.insert(0, OutputFormat::Sc);
        }
        formats
    }

    /// Range problems of parameters that serde read, keys under `section`.
    fn params(&mut self, section: &str, problems: Vec<ParamProblem>) {
        for problem in problems {
            let problem = problem.under(section);
            self.bad(&problem.key, Some(problem.value), problem.message);
        }
    }
}
