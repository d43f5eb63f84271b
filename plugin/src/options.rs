//! The `DicomXai` section of Orthanc's configuration.
//!
//! ```json
//! "DicomXai" : {
//!   "Enable" : true,
//!   "Config" : "/etc/dicom-xai/site.toml",
//!   "Models" : [ "vgg16-kaggle" ],
//!   "Methods" : [ "gradcam" ],
//!   "Out" : "/var/lib/dicom-xai",
//!   "StopTimeout" : 10
//! }
//! ```
//!
//! `Enable` (default false) switches processing on; `Config` is the site configuration
//! (the TOML file `dicom-xai run --config` takes); `Models` and `Methods` replace the rules'
//! lists as `--models`/`--methods` do; `Out` is where reports and overlay files are written
//! (default: the site configuration's `[output] dir`); `StopTimeout` is how many seconds
//! Orthanc's shutdown waits for the study in hand before abandoning it (default 10).
//! Relative paths are relative to Orthanc's working folder; absolute paths are advised.

use std::path::PathBuf;
use std::time::Duration;

use dicom_xai::pipeline::Overrides;
use serde::Deserialize;
use snafu::{OptionExt, ResultExt, Snafu};

/// The name of the section.
pub const SECTION: &str = "DicomXai";

/// What is wrong with Orthanc's configuration or the section; each message names the option.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum OptionsError {
    /// Orthanc's configuration is not JSON.
    #[snafu(display("Orthanc's configuration is not JSON: {source}"))]
    NotJson {
        /// The parser's error.
        source: serde_json::Error,
    },
    /// The section has an unknown key or a value of the wrong type.
    #[snafu(display("\"{SECTION}\" in Orthanc's configuration: {source}"))]
    Section {
        /// The parser's error, naming the key.
        source: serde_json::Error,
    },
    /// `Config` is missing.
    #[snafu(display(
        "\"{SECTION}\".\"Config\" is missing: name the site configuration (TOML) file"
    ))]
    MissingConfig,
    /// `StopTimeout` is out of range.
    #[snafu(display("\"{SECTION}\".\"StopTimeout\" is {seconds}: give seconds from 0 to 3600"))]
    StopTimeout {
        /// The value given.
        seconds: f64,
    },
    /// `Models` or `Methods` holds a blank name.
    #[snafu(display("\"{SECTION}\".\"{key}\" holds an empty name ({name:?})"))]
    EmptyName {
        /// `Models` or `Methods`.
        key: &'static str,
        /// The name as given.
        name: String,
    },
}

/// The section as written.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    enable: bool,
    config: Option<PathBuf>,
    models: Option<Vec<String>>,
    methods: Option<Vec<String>>,
    out: Option<PathBuf>,
    stop_timeout: Option<f64>,
}

/// What the plugin was asked to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The site configuration file.
    pub config: PathBuf,
    /// `Models` and `Methods`.
    pub overrides: OverridesOption,
    /// `Out`, when given.
    pub out: Option<PathBuf>,
    /// How long shutdown waits for the study in hand.
    pub stop_timeout: Duration,
}

/// `Models` and `Methods` (kept apart from [`Overrides`] to compare in tests).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverridesOption {
    /// `Models`.
    pub models: Option<Vec<String>>,
    /// `Methods`.
    pub methods: Option<Vec<String>>,
}

impl OverridesOption {
    /// As the pipeline takes them.
    pub fn to_overrides(&self) -> Overrides {
        Overrides {
            models: self.models.clone(),
            methods: self.methods.clone(),
        }
    }
}

/// Reads the section from Orthanc's configuration (JSON): `Ok(None)` when the plugin is
/// not enabled; an error names the option and what is wrong with it.
pub fn parse(configuration: &str) -> Result<Option<Options>, OptionsError> {
    let whole: serde_json::Value = serde_json::from_str(configuration).context(NotJsonSnafu)?;
    let Some(section) = whole.get(SECTION) else {
        return Ok(None);
    };
    let raw: Raw = serde_json::from_value(section.clone()).context(SectionSnafu)?;
    if !raw.enable {
        return Ok(None);
    }
    let config = raw.config.context(MissingConfigSnafu)?;
    let stop_timeout = match raw.stop_timeout {
        None => Duration::from_secs(10),
        Some(seconds) if seconds.is_finite() && (0.0..=3600.0).contains(&seconds) => {
            Duration::from_secs_f64(seconds)
        }
        Some(seconds) => return StopTimeoutSnafu { seconds }.fail(),
    };
    for (key, list) in [("Models", &raw.models), ("Methods", &raw.methods)] {
        if let Some(list) = list
            && let Some(bad) = list.iter().find(|name| name.trim().is_empty())
        {
            return EmptyNameSnafu { key, name: bad }.fail();
        }
    }
    Ok(Some(Options {
        config,
        overrides: OverridesOption {
            models: raw.models,
            methods: raw.methods,
        },
        out: raw.out,
        stop_timeout,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_section_or_enable_false_means_inactive() {
        for inactive in [
            r#"{"Name": "PACS"}"#,
            r#"{"DicomXai": {"Enable": false, "Config": "/x.toml"}}"#,
            r#"{"DicomXai": {"Config": "/x.toml"}}"#,
        ] {
            assert_eq!(parse(inactive).expect("valid"), None, "{inactive}");
        }
    }

    #[test]
    fn every_option_is_read() {
        let options = parse(
            r#"{"DicomXai": {"Enable": true, "Config": "/etc/site.toml",
                "Models": ["vgg16-kaggle"], "Methods": ["gradcam", "saliency"],
                "Out": "/var/lib/xai", "StopTimeout": 2.5}}"#,
        )
        .expect("valid")
        .expect("enabled");
        assert_eq!(options.config, PathBuf::from("/etc/site.toml"));
        assert_eq!(options.overrides.models, Some(vec!["vgg16-kaggle".into()]));
        assert_eq!(
            options.overrides.methods,
            Some(vec!["gradcam".into(), "saliency".into()])
        );
        assert_eq!(options.out, Some(PathBuf::from("/var/lib/xai")));
        assert_eq!(options.stop_timeout, Duration::from_millis(2500));
    }

    #[test]
    fn mistakes_name_the_option() {
        let error = |configuration: &str| parse(configuration).expect_err("a mistake").to_string();
        let missing = error(r#"{"DicomXai": {"Enable": true}}"#);
        assert_eq!(
            missing,
            "\"DicomXai\".\"Config\" is missing: name the site configuration (TOML) file"
        );
        let typo = error(r#"{"DicomXai": {"Enable": true, "Config": "/x", "Model": []}}"#);
        assert!(typo.contains("unknown field `Model`"), "{typo}");
        let timeout = error(r#"{"DicomXai": {"Enable": true, "Config": "/x", "StopTimeout": -1}}"#);
        assert_eq!(
            timeout,
            "\"DicomXai\".\"StopTimeout\" is -1: give seconds from 0 to 3600"
        );
        let wrong_type = error(r#"{"DicomXai": {"Enable": "yes", "Config": "/x"}}"#);
        assert!(
            wrong_type.starts_with("\"DicomXai\" in Orthanc's configuration: "),
            "{wrong_type}"
        );
        let blank = error(r#"{"DicomXai": {"Enable": true, "Config": "/x", "Methods": [" "]}}"#);
        assert_eq!(
            blank,
            "\"DicomXai\".\"Methods\" holds an empty name (\" \")"
        );
        let not_json = error("{");
        assert!(
            not_json.starts_with("Orthanc's configuration is not JSON: "),
            "{not_json}"
        );
    }
}
