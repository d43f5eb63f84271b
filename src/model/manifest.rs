//! Model manifests (docs/design.md section 4): a TOML file beside or near the ONNX file that
//! says how to feed the model and read its output. Parsed strictly (unknown keys are errors,
//! so a typo cannot silently change preprocessing) and validated; errors name the manifest
//! file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use snafu::Snafu;

/// A manifest problem: the file, the key and what is wrong.
#[derive(Debug, Snafu)]
#[snafu(display("model manifest {}: {key}: {message}", path.display()))]
pub struct ManifestError {
    /// The manifest file.
    pub path: PathBuf,
    /// The key (e.g. `input.mean`), or `(file)` for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Tensor layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum Layout {
    /// Batch, height, width, channels.
    #[serde(rename = "NHWC")]
    Nhwc,
    /// Batch, channels, height, width.
    #[serde(rename = "NCHW")]
    Nchw,
}

/// What the output tensor holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Softmax probabilities.
    Probabilities,
    /// Raw scores; softmax is applied here.
    Logits,
}

/// Layout of the feature tensor CAM and attention methods read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum FeatureLayout {
    /// [N, C, H, W].
    #[serde(rename = "NCHW")]
    Nchw,
    /// [N, H, W, C].
    #[serde(rename = "NHWC")]
    Nhwc,
    /// [N, 1 + H*W, C], class token first.
    #[serde(rename = "tokens")]
    Tokens,
}

/// The model input.
#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    /// Tensor name.
    pub name: String,
    /// Layout.
    pub layout: Layout,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Channels (the grey slice is replicated).
    pub channels: usize,
    /// Per-channel mean subtracted from the windowed [0, 1] value.
    pub mean: Vec<f32>,
    /// Per-channel divisor.
    pub std: Vec<f32>,
}

/// The model output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    /// Tensor name.
    pub name: String,
    /// Probabilities or logits.
    pub kind: OutputKind,
}

/// What explanation methods need to know about the graph.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExplainSpec {
    /// The tensor CAM methods read.
    pub feature_tensor: Option<String>,
    /// Its layout.
    pub feature_layout: Option<FeatureLayout>,
    /// ViT: the softmax attention probabilities of each block, in order.
    pub attention_tensors: Vec<String>,
    /// A sparse autoencoder for the `sae` method (resolved path).
    pub sae: Option<PathBuf>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The manifest file.
    pub path: PathBuf,
    /// Unique model name, used by rules and `--models`.
    pub name: String,
    /// Model version.
    pub version: String,
    /// The ONNX file (resolved against the manifest's folder).
    pub onnx: PathBuf,
    /// Expected SHA-256 of the ONNX file, lower-case hex.
    pub sha256: Option<String>,
    /// Class labels, in output order.
    pub labels: Vec<String>,
    /// False for untrained (demo) weights: overlays and reports say UNTRAINED.
    pub trained: bool,
    /// Standard codes of labels (`[model] label_codes`), for the Structured Report; a label
    /// without one is coded in this software's private scheme.
    pub label_codes: BTreeMap<String, LabelCode>,
    /// Input.
    pub input: InputSpec,
    /// Output.
    pub output: OutputSpec,
    /// Explanation hints.
    pub explain: ExplainSpec,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    model: RawModel,
    input: RawInput,
    output: RawOutput,
    explain: Option<RawExplain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    version: Version,
    onnx: PathBuf,
    sha256: Option<String>,
    labels: Vec<String>,
    /// Absent means untrained: a manifest must say so to be shown as trained.
    #[serde(default)]
    trained: bool,
    /// `label = ["SCHEME", "value", "meaning"]`.
    #[serde(default)]
    label_codes: BTreeMap<String, [String; 3]>,
}

/// A coded concept for a label: `[model] label_codes = { glioma = ["SCT", "<code>",
/// "<meaning>"] }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelCode {
    /// CodingSchemeDesignator (`SCT` for SNOMED CT), at most 16 characters.
    pub scheme: String,
    /// CodeValue, at most 16 characters.
    pub value: String,
    /// CodeMeaning, at most 64 characters.
    pub meaning: String,
}

/// `version = "3"` and `version = 3` are both common.
#[derive(Deserialize)]
#[serde(untagged)]
enum Version {
    Text(String),
    Number(i64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInput {
    name: String,
    layout: Layout,
    height: usize,
    width: usize,
    channels: usize,
    mean: Vec<f32>,
    std: Vec<f32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    name: String,
    kind: OutputKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExplain {
    feature_tensor: Option<String>,
    feature_layout: Option<FeatureLayout>,
    #[serde(default)]
    attention_tensors: Vec<String>,
    sae: Option<PathBuf>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            key: "(file)".into(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` locates relative files and labels errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let error = |key: &str, message: String| ManifestError {
            path: path.to_path_buf(),
            key: key.to_string(),
            message,
        };
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            // toml names the offending key in its message; keep it whole
            error("(file)", e.to_string().trim().replace('\n', " "))
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let RawManifest {
            model,
            input,
            output,
            explain,
        } = raw;

        let name = model.name.trim().to_string();
        if name.is_empty() || name.contains(',') {
            return Err(error(
                "model.name",
                format!("{:?} must be non-empty and contain no comma", model.name),
            ));
        }
        let version = match model.version {
            Version::Text(v) => v,
            Version::Number(n) => n.to_string(),
        };
        let onnx = folder.join(&model.onnx);
        if !onnx.is_file() {
            return Err(error(
                "model.onnx",
                format!("{} does not exist", onnx.display()),
            ));
        }
        let sha256 = model.sha256.map(|s| s.trim().to_ascii_lowercase());
        if let Some(sha) = &sha256
            && (sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(error(
                "model.sha256",
                format!("{sha:?} is not 64 hexadecimal digits"),
            ));
        }
        if model.labels.is_empty() {
            return Err(error("model.labels", "at least one label is needed".into()));
        }
        for (i, label) in model.labels.iter().enumerate() {
            if label.trim().is_empty() || model.labels[..i].contains(label) {
                return Err(error(
                    "model.labels",
                    format!("label {label:?} is empty or repeated"),
                ));
            }
        }
        if input.height == 0 || input.width == 0 {
            return Err(error(
                "input.height",
                format!("{} x {} is not an image size", input.height, input.width),
            ));
        }
        if input.channels != 1 && input.channels != 3 {
            return Err(error(
                "input.channels",
                format!("{} (1 or 3 supported)", input.channels),
            ));
        }
        if input.mean.len() != input.channels || input.mean.iter().any(|m| !m.is_finite()) {
            return Err(error(
                "input.mean",
                format!("{:?} needs {} finite values", input.mean, input.channels),
            ));
        }
        if input.std.len() != input.channels
            || input.std.iter().any(|s| !s.is_finite() || *s <= 0.0)
        {
            return Err(error(
                "input.std",
                format!("{:?} needs {} positive values", input.std, input.channels),
            ));
        }
        let explain = explain.map_or_else(ExplainSpec::default, |e| ExplainSpec {
            feature_tensor: e.feature_tensor,
            feature_layout: e.feature_layout,
            attention_tensors: e.attention_tensors,
            sae: e.sae.map(|p| folder.join(p)),
        });
        if explain.feature_tensor.is_some() && explain.feature_layout.is_none() {
            return Err(error(
                "explain.feature_layout",
                "required when explain.feature_tensor is set".into(),
            ));
        }
        let mut label_codes = BTreeMap::new();
        for (label, [scheme, value, meaning]) in model.label_codes {
            let key = format!("model.label_codes.{label}");
            if !model.labels.contains(&label) {
                return Err(error(
                    &key,
                    format!("{label:?} is not one of model.labels {:?}", model.labels),
                ));
            }
            for (part, text, most) in [("scheme", &scheme, 16), ("value", &value, 16)] {
                if text.trim().is_empty() || text.len() > most || text.contains('\\') {
                    return Err(error(
                        &key,
                        format!("code {part} {text:?}: 1 to {most} characters, no backslash"),
                    ));
                }
            }
            if meaning.trim().is_empty() || meaning.chars().count() > 64 {
                return Err(error(
                    &key,
                    format!("code meaning {meaning:?}: 1 to 64 characters"),
                ));
            }
            label_codes.insert(
                label,
                LabelCode {
                    scheme,
                    value,
                    meaning,
                },
            );
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            name,
            version,
            onnx,
            sha256,
            labels: model.labels,
            trained: model.trained,
            label_codes,
            input: InputSpec {
                name: input.name,
                layout: input.layout,
                height: input.height,
                width: input.width,
                channels: input.channels,
                mean: input.mean,
                std: input.std,
            },
            output: OutputSpec {
                name: output.name,
                kind: output.kind,
            },
            explain,
        })
    }

    /// Index of the label that means "no tumour", when the model has one.
    pub fn no_tumour_index(&self) -> Option<usize> {
        self.labels.iter().position(|l| {
            matches!(
                l.to_ascii_lowercase().as_str(),
                "notumor" | "no_tumor" | "notumour" | "no_tumour" | "normal"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_text(extra_model: &str, input: &str) -> String {
        format!(
            r#"
[model]
name = "m"
version = 2
onnx = "model.onnx"
labels = ["glioma", "meningioma", "notumor", "pituitary"]
{extra_model}
[input]
{input}
[output]
name = "out"
kind = "logits"
"#
        )
    }

    const GOOD_INPUT: &str = r#"name = "x"
layout = "NCHW"
height = 224
width = 224
channels = 3
mean = [0.485, 0.456, 0.406]
std = [0.229, 0.224, 0.225]"#;

    fn parse(text: &str) -> Result<Manifest, ManifestError> {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.onnx"), b"onnx").expect("write");
        Manifest::parse(text, &dir.path().join("m.toml"))
    }

    #[test]
    fn a_valid_manifest_parses() {
        let m = parse(&manifest_text("trained = false", GOOD_INPUT)).expect("valid");
        assert_eq!(
            (m.version.as_str(), m.trained, m.input.layout),
            ("2", false, Layout::Nchw)
        );
        assert_eq!(m.no_tumour_index(), Some(2));
        assert_eq!(m.output.kind, OutputKind::Logits);
    }

    #[test]
    fn a_manifest_that_does_not_say_trained_is_untrained() {
        assert!(
            !parse(&manifest_text("", GOOD_INPUT))
                .expect("valid")
                .trained
        );
        let said = parse(&manifest_text("trained = true", GOOD_INPUT)).expect("valid");
        assert!(said.trained);
    }

    #[test]
    fn label_codes_are_read_and_checked() {
        let codes = r#"label_codes = { glioma = ["SCT", "123456", "Glioma"] }"#;
        let m = parse(&manifest_text(codes, GOOD_INPUT)).expect("valid");
        assert_eq!(
            m.label_codes.get("glioma"),
            Some(&LabelCode {
                scheme: "SCT".into(),
                value: "123456".into(),
                meaning: "Glioma".into()
            })
        );
        assert!(!m.label_codes.contains_key("pituitary"));
        for (bad, why) in [
            (
                r#"label_codes = { astrocytoma = ["SCT", "1", "A"] }"#,
                "not one of",
            ),
            (r#"label_codes = { glioma = ["", "1", "A"] }"#, "scheme"),
            (
                r#"label_codes = { glioma = ["SCT", "12345678901234567", "A"] }"#,
                "value",
            ),
            (r#"label_codes = { glioma = ["SCT", "1", ""] }"#, "meaning"),
        ] {
            let error = parse(&manifest_text(bad, GOOD_INPUT)).expect_err(bad);
            assert_eq!(
                error.key,
                "model.label_codes.glioma".replace(
                    "glioma",
                    if why == "not one of" {
                        "astrocytoma"
                    } else {
                        "glioma"
                    },
                )
            );
            assert!(error.message.contains(why), "{bad}: {error}");
        }
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            (
                manifest_text("", &GOOD_INPUT.replace("channels = 3", "channels = 2")),
                "input.channels",
            ),
            (
                manifest_text(
                    "",
                    &GOOD_INPUT.replace("std = [0.229, 0.224, 0.225]", "std = [0.2, 0.0, 0.2]"),
                ),
                "input.std",
            ),
            (
                manifest_text(
                    "",
                    &GOOD_INPUT.replace("mean = [0.485, 0.456, 0.406]", "mean = [0.5]"),
                ),
                "input.mean",
            ),
            (
                manifest_text("sha256 = \"xyz\"", GOOD_INPUT),
                "model.sha256",
            ),
            (manifest_text("colour = \"red\"", GOOD_INPUT), "colour"),
            (
                manifest_text("", &GOOD_INPUT.replace("NCHW", "CHWN")),
                "CHWN",
            ),
            (
                manifest_text("", GOOD_INPUT).replace("model.onnx", "missing.onnx"),
                "model.onnx",
            ),
            (
                manifest_text("", GOOD_INPUT)
                    .replace("\"meningioma\", \"notumor\"", "\"glioma\", \"notumor\""),
                "model.labels",
            ),
        ];
        for (text, key) in cases {
            let message = parse(&text).expect_err(key).to_string();
            assert!(message.contains(key), "{key} not in {message}");
            assert!(message.contains("m.toml"), "no file in {message}");
        }
    }
}
