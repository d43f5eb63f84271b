//! The configuration file as written: serde structures that mirror the TOML, every key
//! optional and unknown keys refused. Nothing here is checked beyond TOML types; defaults,
//! ranges, names and paths are applied and checked by [`super::settings`].

use serde::Deserialize;

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    /// `[runtime]`.
    pub runtime: RawRuntime,
    /// `[[models]]`.
    pub models: Vec<RawModel>,
    /// `[output]`.
    pub output: RawOutput,
    /// `[prediction]`.
    pub prediction: RawPrediction,
    /// `[quality]`: the quality checks' own parameters, read and defaulted by serde.
    pub quality: crate::explain::quality::QualityPolicy,
    /// `[explain]`: the defaults of every rule.
    pub explain: RawExplain,
    /// `[methods.*]`: the methods' own parameters, read and defaulted by serde.
    pub methods: crate::explain::MethodSet,
    /// `[[rules]]`.
    pub rules: Vec<RawRule>,
    /// `[watch]`: the daemon.
    pub watch: RawWatch,
    /// `[logging]`.
    pub logging: RawLogging,
}

/// `[logging]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawLogging {
    /// How paths under the input folders appear in logs: "full", "relative" or "hashed".
    pub paths: Option<String>,
}

/// `[watch]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawWatch {
    /// The drop folder.
    pub drop: Option<String>,
    /// The journal's folder.
    pub state: Option<String>,
    /// `"off"` (inotify) or an interval: poll the drop folder (network shares).
    pub poll: Option<String>,
    /// A file is ready when its size and mtime did not change for this long.
    pub stable: Option<String>,
    /// A study is ready when no file of it arrived for this long.
    pub settle: Option<String>,
    /// Process a study this long after its first file, even if files keep arriving.
    pub force_after: Option<String>,
    /// Full rescan of the drop folder, as a safety net for missed events.
    pub rescan: Option<String>,
    /// File name patterns that are never read (temporary names of transfers in progress).
    pub ignore: Option<Vec<String>>,
    /// Rules that must each have taken a series before a study skips the settle wait.
    pub required_rules: Option<Vec<String>>,
    /// Where outputs go: "out", "study-folder", "pacs".
    pub deliver: Option<Vec<String>>,
    /// `[watch.pacs]`: the C-STORE destination.
    pub pacs: Option<RawPacs>,
    /// What happens to inputs after processing: "keep", "move", "delete".
    pub after: Option<String>,
    /// The archive folder for `after = "move"`.
    pub archive: Option<String>,
    /// Studies processed at once.
    pub workers: Option<i64>,
    /// Attempts before a study is marked failed.
    pub max_attempts: Option<i64>,
    /// Wait before a failed attempt or delivery is retried (doubled each time).
    pub retry_after: Option<String>,
    /// `host:port` of the metrics endpoint (127.0.0.1 only).
    pub metrics: Option<String>,
}

/// `[watch.pacs]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPacs {
    /// `AE@host:port`.
    pub peer: Option<String>,
    /// Our AE title.
    pub calling_ae: Option<String>,
    /// Network timeout.
    pub timeout: Option<String>,
    /// Attempts per instance before giving up.
    pub max_attempts: Option<i64>,
}

/// `[runtime]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRuntime {
    /// Path of `libonnxruntime.so`.
    pub onnxruntime: Option<String>,
    /// `"cuda"`, `"cpu"`, in order of preference.
    pub execution_providers: Option<Vec<String>>,
    /// CUDA device index.
    pub cuda_device: Option<i64>,
    /// Fail instead of falling back to the CPU.
    pub require_gpu: Option<bool>,
    /// Intra-op threads; 0 = ONNX Runtime's default.
    pub intra_threads: Option<i64>,
    /// Slices per inference batch.
    pub batch_size: Option<i64>,
}

/// One `[[models]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawModel {
    /// The model manifest, relative to the configuration file.
    pub manifest: Option<String>,
    /// Whether rules may use the model.
    pub enabled: Option<bool>,
}

/// `[output]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawOutput {
    /// The output folder, relative to the current directory.
    pub dir: Option<String>,
    /// First SeriesNumber of overlay series.
    pub series_number_base: Option<i64>,
    /// Whether a summary image is written for slices explained by several methods.
    pub summary: Option<bool>,
    /// What is written: `"sc"`, `"pmap"`, `"sr"`.
    pub formats: Option<Vec<String>>,
}

/// `[prediction]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawPrediction {
    /// Tumour probability at or above which a slice counts as showing a tumour.
    pub tumour_threshold: Option<f64>,
    /// Share of a slice's area the brain must cover for the slice to take part.
    pub min_brain_fraction: Option<f64>,
}

/// `[explain]` and `[rules.explain]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawExplain {
    /// Model names; absent = every enabled model.
    pub models: Option<Vec<String>>,
    /// Method names.
    pub methods: Option<Vec<String>>,
    /// `"all"`, `"top-k"` or `"none"`.
    pub slices: Option<String>,
    /// k of `"top-k"`.
    pub top_k: Option<i64>,
    /// Method name -> `"all"`, `"top-k"` or `"none"`: methods whose slices differ from `slices`.
    pub method_slices: Option<std::collections::BTreeMap<String, String>>,
    /// Colour map name.
    pub colour_map: Option<String>,
    /// Heat-map opacity in the overlay.
    pub opacity: Option<f64>,
}

/// One `[[rules]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawRule {
    /// Unique name, written into report.json.
    pub name: Option<String>,
    /// Free text for the administrators; not used.
    pub description: Option<String>,
    /// `false` keeps the rule in the file without using it.
    pub enabled: Option<bool>,
    /// `[rules.select]`: which series.
    pub select: RawSelect,
    /// `[rules.explain]`: overrides of `[explain]`.
    pub explain: RawExplain,
}

/// `[rules.select]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawSelect {
    /// Accepted Modality values.
    pub modality: Option<Vec<String>>,
    /// Regex SeriesDescription must match.
    pub series_description: Option<String>,
    /// Regex SeriesDescription must not match.
    pub series_description_exclude: Option<String>,
    /// Regex ProtocolName must match.
    pub protocol_name: Option<String>,
    /// Regex ProtocolName must not match.
    pub protocol_name_exclude: Option<String>,
    /// Regex StudyDescription must match.
    pub study_description: Option<String>,
    /// Regex StudyDescription must not match.
    pub study_description_exclude: Option<String>,
    /// Accepted BodyPartExamined values.
    pub body_part: Option<Vec<String>>,
    /// Whether a series without BodyPartExamined fails `body_part`.
    pub body_part_required: Option<bool>,
    /// ImageType values that must all be present.
    pub image_type: Option<Vec<String>>,
    /// ImageType values none of which may be present.
    pub image_type_exclude: Option<Vec<String>>,
    /// Accepted planes.
    pub planes: Option<Vec<String>>,
    /// Fewest slices.
    pub min_slices: Option<i64>,
    /// Most slices.
    pub max_slices: Option<i64>,
}
