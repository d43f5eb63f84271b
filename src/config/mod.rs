//! Site configuration: which ONNX Runtime and models to use, where outputs go, and the rules
//! that pick the series to explain and how.
//!
//! Loading happens in two stages, as ripgrep turns its low-level arguments into high-level
//! ones:
//!
//! 1. [`raw`]: the TOML as written, parsed by serde into structures where every key is
//!    optional and unknown keys are refused (`#[serde(deny_unknown_fields)]`).
//! 2. [`settings`]: defaults applied and everything checked: ranges, method and colour-map
//!    names, regular expressions, model manifests (which must exist; their `[model] name` is
//!    what rules refer to), unique rule names. The result is [`Settings`].
//!
//! Every error is a [`ConfigError`] that names the configuration file, the key path (for
//! example `rules[1].select.series_description`; arrays count from 0), the value as written
//! and its line and column. Validation reports every problem it finds at once, so a site
//! fixes its file in one go; a bad configuration stops a command before it touches any study.
//!
//! Paths: model manifests (and a relative `runtime.onnxruntime`) are relative to the
//! configuration file's folder; `output.dir` is relative to the current directory.
//!
//! ## Rules
//!
//! `[[rules]]` are tried in file order and the first whose [`Selector`] accepts a series
//! takes it ([`Settings::rule_for`]); its [`ExplainPlan`] is `[rules.explain]` over the
//! `[explain]` defaults. A series no rule takes is not processed. Our own overlays (Modality
//! `OT` with "NOT FOR DIAGNOSTIC USE" in SeriesDescription) never match any rule, so overlays
//! delivered back into a watched study are not explained again. [`Settings::evaluate`] also
//! says why each earlier rule refused a series (what `dicom-xai rules test` prints).
//!
//! The keys are documented in `config/README.md` and in `config/default.toml`.
//!
//! ## Example
//!
//! ```no_run
//! use std::path::{Path, PathBuf};
//! use dicom_xai::config::{Settings, SlicePolicy};
//! use dicom_xai::dicom::scan;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // errors read like `config/site.toml: line 31, column 22:
//! //   rules[1].select.series_description = "(?i)t1(": invalid regular expression: ...`
//! let settings = Settings::load(Path::new("config/default.toml"))?;
//! for study in scan::scan(&[PathBuf::from("incoming/")]).studies {
//!     for series in &study.series {
//!         let Some(rule) = settings.rule_for(series) else { continue };
//!         for method in &rule.plan.methods {
//!             let slices = match rule.plan.slices_for(method) {
//!                 SlicePolicy::All => series.slices.len(),
//!                 SlicePolicy::TopK(k) => k.min(series.slices.len()),
//!                 SlicePolicy::None => 1, // the most tumour-like slice
//!             };
//!             println!("{}: rule {}, {method} on {slices} slice(s)", series.uid, rule.name);
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod document;
pub mod error;
pub mod plan;
pub mod raw;
pub mod rules;
pub mod settings;
mod validate;

pub use error::{ConfigError, Problem};
pub use plan::{COLOUR_MAPS, ExplainPlan, SlicePolicy};
pub use rules::{OVERLAY_MARKER, Rule, Selector, TextFilter, Verdict, is_own_overlay, plane_name};
pub use settings::{
    AfterProcessing, DEFAULT_BATCH_SIZE, Destination, ExecutionProviderKind, ModelRef,
    OutputFormat, OutputSettings, PacsSettings, PredictionSettings, RuntimeSettings, Settings,
    WatchSettings,
};
pub use validate::{DurationError, parse_duration};
