//! Site configuration: the shipped files load; every kind of mistake gives an error naming
//! the file, the key path and the value; rules select the right series of a realistic
//! generated study (`tests/support/make_series.py`, preset `test`); our own overlays never
//! match; `config check` and `rules test` behave as documented.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dicom_xai::config::{
    ConfigError, ExecutionProviderKind, Settings, SlicePolicy, is_own_overlay,
};
use dicom_xai::dicom::Series;
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::scan::{self, Plane};
use dicom_xai::dicom::secondary_capture::{self, Derivation, Placement, RgbImage, Timestamp};
use dicom_xai::explain::MethodSet;
use dicom_xai::explain::attention::HeadFusion;
use dicom_xai::explain::occlusion::Baseline;
use serde_json::Value;

/// The real model manifest the shipped configurations use.
fn manifest() -> PathBuf {
    common::root().join("onnx/manifests/vgg16-kaggle.toml")
}

/// A valid configuration with the real manifest and two rules, followed by `extra`.
fn valid_config(extra: &str) -> String {
    format!(
        r#"[[models]]
manifest = {manifest:?}

[explain]
methods = ["occlusion"]
slices = "top-k"
top_k = 2

[[rules]]
name = "axial-mr"
[rules.select]
modality = ["MR"]
planes = ["axial"]

[[rules]]
name = "any-mr"
[rules.select]
modality = ["MR"]
{extra}"#,
        manifest = manifest().display().to_string()
    )
}

/// Writes `text` as `site.toml` in a new folder and loads it.
fn load_text(text: &str) -> (tempfile::TempDir, PathBuf, Result<Settings, ConfigError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    let loaded = Settings::load(&path);
    (dir, path, loaded)
}

/// Loads `text`, which must fail, and checks that the message names the file, the key and
/// the value; returns the message.
fn assert_error(text: &str, key: &str, value: &str) -> String {
    let (_dir, path, loaded) = load_text(text);
    let error = match loaded {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert_eq!(error.file(), path);
    assert!(
        message.contains(&path.display().to_string()),
        "no file in: {message}"
    );
    assert!(
        message.contains(&format!("{key} = {value}")),
        "no `{key} = {value}` in: {message}"
    );
    assert!(
        error
            .problems()
            .iter()
            .any(|p| p.key == key && p.value.as_deref() == Some(value) && p.position.is_some()),
        "{:#?}",
        error.problems()
    );
    message
}

// ---------------------------------------------------------------- the shipped files

#[test]
fn default_config_loads() {
    let settings = Settings::load(&common::root().join("config/default.toml")).unwrap();
    let names: Vec<&str> = settings.models.iter().map(|m| m.name.as_str()).collect();
    // the trained VGG16, and the mission's models exported by `make setup` into models/
    assert_eq!(names, ["vgg16-kaggle", "densenet169", "vit_b_16"]);
    for model in &settings.models {
        assert!(model.enabled);
        assert!(model.manifest.is_absolute() && model.manifest.is_file());
    }
    assert_eq!(
        settings.models[0].manifest,
        manifest().canonicalize().unwrap()
    );
    assert!(
        settings.models[1]
            .manifest
            .starts_with(common::root().join("models").canonicalize().unwrap())
    );
    assert_eq!(
        settings.runtime.execution_providers,
        [ExecutionProviderKind::Cpu]
    );
    assert_eq!(settings.runtime.batch_size, 8);
    assert_eq!(settings.output.series_number_base, 9900);
    assert!(settings.output.summary);
    assert_eq!(settings.prediction.tumour_threshold, 0.5);
    assert_eq!(settings.quality.in_brain_threshold, 0.5);
    assert_eq!(settings.quality.faithfulness_steps, 4);
    // every method's parameters are spelled out at their defaults (occlusion's coarser 64 / 32
    // of earlier releases failed the known-answer check of tests/occlusion_known_answer.rs)
    assert_eq!(settings.methods.occlusion.patch, 48);
    assert_eq!(settings.methods.occlusion.stride, 24);
    assert_eq!(settings.methods.occlusion.baseline, Baseline::Mean);
    assert_eq!(settings.methods, MethodSet::default());
    assert_eq!(settings.rules.len(), 1);
    let rule = &settings.rules[0];
    assert_eq!(rule.name, "brain-mr");
    assert_eq!(rule.plan.methods, ["gradcam", "saliency", "occlusion"]);
    // the one-pass methods map the whole series (OHIF fuses those maps), occlusion the top 3
    assert_eq!(rule.plan.slices, SlicePolicy::All);
    assert_eq!(rule.plan.slices_for("occlusion"), SlicePolicy::TopK(3));
    assert_eq!(
        settings.output.formats,
        dicom_xai::config::OutputFormat::DEFAULT
    );
    assert_eq!(rule.plan.models, None);
    assert_eq!(rule.selector.min_slices, 1);
    assert_eq!(rule.selector.planes, None);
}

#[test]
fn site_neuro_example_loads() {
    let path = common::root().join("config/examples/site-neuro.toml");
    let settings = Settings::load(&path).unwrap();
    assert_eq!(settings.rules.len(), 2);
    for rule in &settings.rules {
        assert_eq!(rule.plan.slices, SlicePolicy::TopK(5), "{}", rule.name);
        assert_eq!(rule.selector.planes.as_deref(), Some(&[Plane::Axial][..]));
        assert!(rule.selector.series_description.include.is_some());
    }
    let post = &settings.rules[0].selector.series_description;
    let flair = &settings.rules[1].selector.series_description;
    let matches = |filter: &dicom_xai::config::TextFilter, text: &str| {
        filter.include.as_ref().unwrap().is_match(text)
            && !filter.exclude.as_ref().is_some_and(|e| e.is_match(text))
    };
    for text in [
        "AX T1 POST",
        "T1+C AX",
        "AX T1 GAD",
        "MPRAGE POST GD",
        "POST T1 AX",
    ] {
        assert!(matches(post, text), "{text}");
    }
    for text in [
        "AX T1 PRE",
        "AX T1 W/O",
        "AX T1 SE",
        "T1 LOCALIZER POST",
        "AX FLAIR",
    ] {
        assert!(!matches(post, text), "{text}");
    }
    assert!(matches(flair, "AX T2 FLAIR"));
    assert!(!matches(flair, "AX T1 POST"));
    assert_eq!(settings.rules[1].plan.colour_map, "viridis");
}

#[test]
fn gpu_example_loads() {
    let path = common::root().join("config/examples/gpu.toml");
    let settings = Settings::load(&path).unwrap();
    assert_eq!(
        settings.runtime.execution_providers,
        [ExecutionProviderKind::Cuda, ExecutionProviderKind::Cpu]
    );
    assert!(settings.runtime.require_gpu);
}

#[test]
fn densenet_vit_example_loads_with_three_models() {
    let path = common::root().join("config/examples/densenet-vit.toml");
    let settings = Settings::load(&path).unwrap();
    let names: Vec<&str> = settings.models.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["vgg16-kaggle", "densenet169", "vit_b_16"]);
}

// ---------------------------------------------------------------- validation errors

#[test]
fn bad_regex_names_key_and_value() {
    let message = assert_error(
        &valid_config("series_description = \"(?i)t1(\"\n"),
        "rules[1].select.series_description",
        "\"(?i)t1(\"",
    );
    assert!(message.contains("invalid regular expression"), "{message}");
}

#[test]
fn unknown_key_is_refused() {
    let message = assert_error(
        &valid_config("series_descripton = \"T1\"\n"),
        "rules[1].select.series_descripton",
        "\"T1\"",
    );
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains("series_description"), "{message}");
}

#[test]
fn bad_colour_map_names_key_and_value() {
    let text = valid_config("").replace("top_k = 2", "top_k = 2\ncolour_map = \"jet\"");
    let message = assert_error(&text, "explain.colour_map", "\"jet\"");
    assert!(message.contains("viridis"), "{message}");
}

#[test]
fn log_path_styles_are_checked() {
    let text = format!("{}\n[logging]\npaths = \"names\"\n", valid_config(""));
    let message = assert_error(&text, "logging.paths", "\"names\"");
    assert!(message.contains("hashed"), "{message}");
    let text = format!("{}\n[logging]\npaths = \"relative\"\n", valid_config(""));
    let (_dir, _path, loaded) = load_text(&text);
    assert_eq!(
        loaded.expect("valid").log_paths,
        Some(dicom_xai::logging::PathStyle::Relative)
    );
}

#[test]
fn unknown_method_lists_the_valid_names() {
    let text = valid_config("[rules.explain]\nmethods = [\"occlusion\", \"gradcan\"]\n");
    let message = assert_error(&text, "rules[1].explain.methods[1]", "\"gradcan\"");
    for name in dicom_xai::explain::METHOD_NAMES {
        assert!(
            message.contains(&format!("\"{name}\"")),
            "{name}: {message}"
        );
    }
}

#[test]
fn opacity_above_one_is_refused() {
    let text = valid_config("[rules.explain]\nopacity = 1.5\n");
    assert_error(&text, "rules[1].explain.opacity", "1.5");
}

#[test]
fn duplicate_rule_name_is_refused() {
    let text = valid_config("").replace("name = \"any-mr\"", "name = \"axial-mr\"");
    let message = assert_error(&text, "rules[1].name", "\"axial-mr\"");
    assert!(message.contains("rules[0]"), "{message}");
}

#[test]
fn missing_manifest_names_the_resolved_path() {
    let text = valid_config("").replace(
        &format!("{:?}", manifest().display().to_string()),
        "\"../nowhere/model.toml\"",
    );
    let (dir, path, loaded) = load_text(&text);
    let message = loaded.unwrap_err().to_string();
    let resolved = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("../nowhere/model.toml");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(
        message.contains("models[0].manifest = \"../nowhere/model.toml\""),
        "{message}"
    );
    assert!(
        message.contains(&resolved.display().to_string()),
        "{message}"
    );
}

#[test]
fn stride_larger_than_patch_is_refused() {
    let text = valid_config("[methods.occlusion]\npatch = 16\nstride = 40\n");
    let message = assert_error(&text, "methods.occlusion.stride", "40");
    assert!(message.contains("patch 16"), "{message}");
}

#[test]
fn absent_method_sections_take_the_methods_defaults() {
    let (_dir, _, loaded) = load_text(&valid_config(""));
    let settings = loaded.unwrap();
    assert_eq!(settings.methods.clone(), MethodSet::default());
}

#[test]
fn method_sections_configure_the_methods() {
    let text = valid_config(
        "[methods.smoothgrad]\nsamples = 8\nnoise = 0\nseed = 42\n\
         [methods.intgrad]\nsteps = 64\n\
         [methods.rollout]\nhead_fusion = \"max\"\ndiscard_ratio = 0.9\n\
         [methods.rise]\nmasks = 1000\ncells = 10\nkeep = 0.25\nseed = 7\n\
         [methods.scorecam]\nmax_channels = 64\n",
    );
    let (_dir, _, loaded) = load_text(&text);
    let methods = loaded.unwrap().methods;
    assert_eq!(
        (
            methods.smoothgrad.samples,
            methods.smoothgrad.noise,
            methods.smoothgrad.seed
        ),
        (8, 0.0, 42)
    );
    assert_eq!(methods.intgrad.steps, 64);
    assert_eq!(methods.rollout.head_fusion, HeadFusion::Max);
    assert_eq!(methods.rollout.discard_ratio, 0.9);
    assert_eq!(
        (
            methods.rise.masks,
            methods.rise.cells,
            methods.rise.keep,
            methods.rise.seed
        ),
        (1000, 10, 0.25, 7)
    );
    assert_eq!(methods.scorecam.max_channels, 64);
}

#[test]
fn bad_method_parameters_name_key_and_value() {
    // (section and key = value, key path, value as written, words of the message)
    let cases = [
        ("smoothgrad", "samples = 0", "samples", "0", "at least 1"),
        ("smoothgrad", "noise = -0.1", "noise", "-0.1", "at least 0"),
        ("smoothgrad", "noise = inf", "noise", "inf", "finite"),
        ("smoothgrad", "seed = -1", "seed", "-1", "at least 0"),
        ("intgrad", "steps = 0", "steps", "0", "at least 1"),
        (
            "rollout",
            "head_fusion = \"median\"",
            "head_fusion",
            "\"median\"",
            "\"mean\", \"max\" or \"min\"",
        ),
        (
            "rollout",
            "discard_ratio = 1.0",
            "discard_ratio",
            "1.0",
            "below 1",
        ),
        (
            "rollout",
            "discard_ratio = -0.5",
            "discard_ratio",
            "-0.5",
            "at least 0",
        ),
        ("rise", "masks = 0", "masks", "0", "at least 1"),
        ("rise", "cells = 0", "cells", "0", "at least 1"),
        ("rise", "keep = 0", "keep", "0", "above 0"),
        ("rise", "keep = 1", "keep", "1", "below 1"),
        ("rise", "keep = nan", "keep", "nan", "above 0"),
        ("rise", "seed = -3", "seed", "-3", "at least 0"),
        (
            "scorecam",
            "max_channels = 0",
            "max_channels",
            "0",
            "at least 1",
        ),
    ];
    for (section, line, key, value, words) in cases {
        let text = valid_config(&format!("[methods.{section}]\n{line}\n"));
        let message = assert_error(&text, &format!("methods.{section}.{key}"), value);
        assert!(message.contains(words), "{line}: {message}");
    }
}

#[test]
fn unknown_method_key_is_refused() {
    let message = assert_error(
        &valid_config("[methods.rise]\nmask = 100\n"),
        "methods.rise.mask",
        "100",
    );
    assert!(message.contains("unknown key"), "{message}");
    assert!(message.contains("masks"), "{message}");
}

#[test]
fn wrong_type_names_key_and_value() {
    let text = valid_config("min_slices = \"ten\"\n");
    let message = assert_error(&text, "rules[1].select.min_slices", "\"ten\"");
    assert!(message.contains("expected an integer"), "{message}");
}

#[test]
fn every_problem_is_reported_in_file_order() {
    let text = valid_config("planes = [\"transverse\"]\n[rules.explain]\ncolour_map = \"jet\"\n")
        .replace("top_k = 2", "top_k = 0");
    let (_dir, _, loaded) = load_text(&text);
    let error = loaded.unwrap_err();
    let keys: Vec<&str> = error.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "explain.top_k",
            "rules[1].select.planes[0]",
            "rules[1].explain.colour_map"
        ]
    );
    let lines: Vec<usize> = error
        .problems()
        .iter()
        .map(|p| p.position.unwrap().0)
        .collect();
    assert!(lines.windows(2).all(|w| w[0] < w[1]), "{lines:?}");
}

#[test]
fn syntax_error_gives_line_and_column() {
    let (_dir, path, loaded) = load_text("[explain]\nopacity = = 0.5\n");
    let error = loaded.unwrap_err();
    assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.starts_with(&path.display().to_string()),
        "{message}"
    );
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn at_least_one_rule_and_one_model() {
    let (_dir, _, loaded) = load_text("[explain]\nmethods = [\"occlusion\"]\n");
    let error = loaded.unwrap_err();
    let keys: Vec<&str> = error.problems().iter().map(|p| p.key.as_str()).collect();
    assert!(
        keys.contains(&"rules") && keys.contains(&"models"),
        "{keys:?}"
    );
}

#[test]
fn rules_inherit_explain_and_override_it() {
    let text = valid_config("[rules.explain]\ncolour_map = \"magma\"\n").replace(
        "name = \"axial-mr\"",
        "name = \"axial-mr\"\nexplain = { slices = \"all\", methods = [] , top_k = 4 }",
    );
    // slices = "all" with top_k in the same table is an error; without it, accepted
    let (_dir, _, loaded) = load_text(&text);
    let error = loaded.unwrap_err();
    let keys: Vec<&str> = error.problems().iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["rules[0].explain.methods", "rules[0].explain.top_k"],
        "{error}"
    );
    let text = valid_config("[rules.explain]\ncolour_map = \"magma\"\n").replace(
        "name = \"axial-mr\"",
        "name = \"axial-mr\"\nexplain = { slices = \"none\", methods = [] }",
    );
    let (_dir, _, loaded) = load_text(&text);
    let settings = loaded.unwrap();
    assert_eq!(settings.rules[0].plan.slices, SlicePolicy::None);
    assert!(settings.rules[0].plan.methods.is_empty());
    let second = &settings.rules[1].plan;
    assert_eq!(second.colour_map, "magma");
    assert_eq!(
        second.slices,
        SlicePolicy::TopK(2),
        "inherited from [explain]"
    );
    assert_eq!(second.methods, ["occlusion"]);
    assert_eq!(settings.defaults.colour_map, "inferno");
}

#[test]
fn method_slices_override_slices_per_method_and_inherit() {
    // [explain]: gradcam and saliency on every slice, occlusion on the top 2
    let text = valid_config("[rules.explain]\ntop_k = 4\n").replace(
        "methods = [\"occlusion\"]\nslices = \"top-k\"",
        "methods = [\"gradcam\", \"saliency\", \"occlusion\"]\nslices = \"all\"\n\
         method_slices = { occlusion = \"top-k\" }",
    );
    let (_dir, _, loaded) = load_text(&text);
    let settings = loaded.unwrap();
    let defaults = &settings.defaults;
    assert_eq!(defaults.slices_for("gradcam"), SlicePolicy::All);
    assert_eq!(defaults.slices_for("saliency"), SlicePolicy::All);
    assert_eq!(defaults.slices_for("occlusion"), SlicePolicy::TopK(2));
    assert!(
        defaults
            .to_string()
            .contains("slices: all (occlusion: top-k 2)"),
        "{defaults}"
    );
    // the first rule inherits everything; the second sets its own k, which the inherited
    // per-method "top-k" takes
    assert_eq!(settings.rules[0].plan, *defaults);
    let second = &settings.rules[1].plan;
    assert_eq!(second.slices_for("gradcam"), SlicePolicy::All);
    assert_eq!(second.slices_for("occlusion"), SlicePolicy::TopK(4));

    // a rule's own entry replaces the inherited one for that method only
    let text = text.replace(
        "[rules.explain]\ntop_k = 4\n",
        "[rules.explain]\nmethod_slices = { saliency = \"none\" }\n",
    );
    let (_dir, _, loaded) = load_text(&text);
    let second = loaded.unwrap().rules[1].plan.clone();
    assert_eq!(second.slices_for("saliency"), SlicePolicy::None);
    assert_eq!(second.slices_for("occlusion"), SlicePolicy::TopK(2));
    assert_eq!(second.slices_for("gradcam"), SlicePolicy::All);
}

#[test]
fn bad_method_slices_name_key_and_value() {
    // [explain] with `slices` and a method_slices table
    let with = |slices: &str, table: &str| {
        valid_config("").replace(
            "slices = \"top-k\"",
            &format!("slices = \"{slices}\"\nmethod_slices = {{ {table} }}"),
        )
    };
    let message = assert_error(
        &with("top-k", "occlusion = \"some\""),
        "explain.method_slices.occlusion",
        "\"some\"",
    );
    assert!(
        message.contains("\"all\", \"top-k\" or \"none\""),
        "{message}"
    );
    // a method the plan does not run: the entry would silently do nothing
    let message = assert_error(
        &with("top-k", "saliency = \"all\""),
        "explain.method_slices.saliency",
        "\"all\"",
    );
    assert!(
        message.contains("not among the methods (\"occlusion\")"),
        "{message}"
    );
    // top_k is used by a per-method "top-k" even when slices is "all"
    let (_dir, _, loaded) = load_text(&with("all", "occlusion = \"top-k\""));
    assert_eq!(
        loaded.unwrap().defaults.slices_for("occlusion"),
        SlicePolicy::TopK(2)
    );
    assert_error(&with("all", "occlusion = \"none\""), "explain.top_k", "2");
}

#[test]
fn rule_models_must_be_configured() {
    let text = valid_config("[rules.explain]\nmodels = [\"vgg16\"]\n");
    let message = assert_error(&text, "rules[1].explain.models[0]", "\"vgg16\"");
    assert!(message.contains("vgg16-kaggle"), "{message}");
}

#[test]
fn rules_may_not_name_a_disabled_model() {
    let dir = tempfile::tempdir().unwrap();
    let real = std::fs::read_to_string(manifest()).unwrap();
    let other = real.replace("name = \"vgg16-kaggle\"", "name = \"vgg16-other\"");
    std::fs::write(dir.path().join("other.toml"), other).unwrap();
    let text = valid_config("[rules.explain]\nmodels = [\"vgg16-other\"]\n").replace(
        "[explain]",
        "[[models]]\nmanifest = \"other.toml\"\nenabled = false\n\n[explain]",
    );
    let path = dir.path().join("site.toml");
    std::fs::write(&path, text).unwrap();
    let message = Settings::load(&path).unwrap_err().to_string();
    assert!(
        message.contains("rules[1].explain.models[0] = \"vgg16-other\""),
        "{message}"
    );
    assert!(message.contains("models[1].enabled = false"), "{message}");
}

// ---------------------------------------------------------------- rules on real series

/// The generated `test` study (seven MR series), its ground truth and its scanned series.
struct Generated {
    study: common::GeneratedStudy,
    series: Vec<Series>,
}

fn test_study() -> &'static Generated {
    static GENERATED: OnceLock<Generated> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let study = common::generate_study("test");
        let scanned = scan::scan(std::slice::from_ref(&study.root));
        assert_eq!(scanned.studies.len(), 1);
        let series = scanned.studies[0].series.clone();
        Generated { study, series }
    })
}

/// Ground truth of a generated series, by UID.
fn truth<'a>(generated: &'a Generated, uid: &str) -> &'a Value {
    generated.study.manifest["studies"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["series_instance_uid"] == uid)
        .unwrap_or_else(|| panic!("{uid} not in the manifest"))
}

fn settings_from(text: &str) -> Settings {
    Settings::from_str(text, &common::root().join("tests/site.toml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn default_rule_matches_every_series_of_the_test_study() {
    let generated = test_study();
    let settings = Settings::load(&common::root().join("config/default.toml")).unwrap();
    assert_eq!(generated.series.len(), 7);
    for series in &generated.series {
        let rule = settings.rule_for(series);
        assert_eq!(
            rule.map(|r| r.name.as_str()),
            Some("brain-mr"),
            "{:?}",
            series.header.description
        );
    }
    // a single-slice series (one file of a series scanned alone) is taken too
    let one_file = generated.study.root.join("01_ax_t1_mprage/IM0001.dcm");
    let single = scan::scan(&[one_file]);
    let series = &single.studies[0].series[0];
    assert_eq!(series.slices.len(), 1);
    assert_eq!(
        settings.rule_for(series).map(|r| r.name.as_str()),
        Some("brain-mr")
    );
}

#[test]
fn axial_rule_matches_only_axial_series() {
    let generated = test_study();
    let settings = settings_from(&valid_config(""));
    let mut planes_seen = Vec::new();
    for series in &generated.series {
        let expected = truth(generated, &series.uid)["orientation"]
            .as_str()
            .unwrap();
        planes_seen.push(expected.to_string());
        let verdict = settings.evaluate(series);
        let name = verdict.rule.map(|r| r.name.as_str());
        if expected == "axial" {
            assert_eq!(name, Some("axial-mr"), "{:?}", series.header.description);
            assert!(verdict.rejected.is_empty());
        } else {
            assert_eq!(name, Some("any-mr"), "{:?}", series.header.description);
            assert_eq!(verdict.rejected.len(), 1);
            assert_eq!(
                verdict.rejected[0].1.to_string(),
                format!("plane {expected} is not one of [axial]")
            );
        }
    }
    for plane in ["axial", "coronal", "sagittal"] {
        assert!(planes_seen.iter().any(|p| p == plane), "{planes_seen:?}");
    }
}

#[test]
fn slice_counts_image_type_and_descriptions_select() {
    let generated = test_study();
    let settings = settings_from(&format!(
        r#"[[models]]
manifest = {manifest:?}

[[rules]]
name = "enhanced"
[rules.select]
image_type = ["volume"]

[[rules]]
name = "long"
[rules.select]
min_slices = 25

[[rules]]
name = "t1-short"
[rules.select]
series_description = '(?i)\bT1\b'
protocol_name_exclude = "MF$"
max_slices = 24

[[rules]]
name = "brain-study"
[rules.select]
study_description = "^MR BRAIN"
body_part = ["head"]
body_part_required = true
modality = ["mr"]
"#,
        manifest = manifest().display().to_string()
    ));
    for series in &generated.series {
        let truth = truth(generated, &series.uid);
        let frames = truth["frames_total"].as_u64().unwrap() as usize;
        let description = truth["description"].as_str().unwrap();
        let expected = if truth["multiframe"].as_bool().unwrap() {
            "enhanced"
        } else if frames >= 25 {
            "long"
        } else if description.contains("T1") {
            "t1-short"
        } else {
            "brain-study"
        };
        let verdict = settings.evaluate(series);
        assert_eq!(
            verdict.rule.map(|r| r.name.as_str()),
            Some(expected),
            "{description}: {:?}",
            verdict.rejected
        );
        assert_eq!(series.slices.len(), frames);
    }
    // the multi-frame Enhanced MR fails `long` on its frame count, not its instance count
    let enhanced = generated
        .series
        .iter()
        .find(|s| s.header.description.as_deref() == Some("AX T1 SE MF"))
        .unwrap();
    assert_eq!(
        settings.rules[1]
            .selector
            .check(enhanced)
            .map_err(|m| m.to_string()),
        Err("16 slice(s), fewer than min_slices = 25".to_string())
    );
    let axial_t2 = generated
        .series
        .iter()
        .find(|s| s.header.description.as_deref() == Some("AX T2"))
        .unwrap();
    assert_eq!(
        settings.rules[0]
            .selector
            .check(axial_t2)
            .map_err(|m| m.to_string()),
        Err("ImageType ORIGINAL\\PRIMARY\\M\\ND lacks VOLUME".to_string())
    );
}

#[test]
fn our_own_overlays_never_match() {
    let generated = test_study();
    let source_path = generated.study.root.join("01_ax_t1_mprage/IM0001.dcm");
    let source = file::open(&source_path, Depth::Full).unwrap();
    let derivation = Derivation {
        model_name: "vgg16-kaggle".into(),
        model_version: "1".into(),
        model_sha256: None,
        trained: true,
        method: "occlusion".into(),
        parameters: "{}".into(),
        target_layer: None,
        class_label: "glioma".into(),
        probability: 0.9,
        colour_map: "inferno".into(),
        quality: None,
    };
    let image = RgbImage {
        rows: 16,
        columns: 16,
        pixels: vec![100; 16 * 16 * 3],
    };
    let placement = Placement {
        source_frame: 0,
        instance_number: 1,
        series_number: 9900,
    };
    let object = secondary_capture::build(
        source.dataset(),
        &image,
        &derivation,
        placement,
        &Timestamp::now(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let written = out.path().join("overlay.dcm");
    secondary_capture::write_atomically(&object, &written).unwrap();
    let scanned = scan::scan(&[written]);
    let overlay = &scanned.studies[0].series[0];
    assert!(is_own_overlay(&overlay.header), "{:?}", overlay.header);
    // a rule that takes every series still does not take the overlay
    let settings = settings_from(&format!(
        "[[models]]\nmanifest = {:?}\n[[rules]]\nname = \"everything\"\n",
        manifest().display().to_string()
    ));
    assert_eq!(settings.rules[0].selector.check(overlay), Ok(()));
    assert!(settings.rule_for(overlay).is_none());
    assert!(settings.evaluate(overlay).own_overlay);
    assert!(settings.rule_for(&generated.series[0]).is_some());
}

// ---------------------------------------------------------------- the commands

fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String, String) {
    let output = common::binary().args(args).output().unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn config_check_exit_codes() {
    let default = common::root().join("config/default.toml");
    let (code, stdout, stderr) = run(&["config".as_ref(), "check".as_ref(), default.as_os_str()]);
    assert_eq!(code, Some(0), "{stderr}");
    for text in ["valid", "vgg16-kaggle", "brain-mr", "occlusion", "top-k 3"] {
        assert!(stdout.contains(text), "{text}: {stdout}");
    }
    let (_dir, path, _) = load_text(&valid_config("").replace("top_k = 2", "opacity = 1.5"));
    let (code, stdout, stderr) = run(&["config".as_ref(), "check".as_ref(), path.as_os_str()]);
    assert_eq!(code, Some(2), "{stdout}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(stderr.contains("explain.opacity = 1.5"), "{stderr}");
    let missing = Path::new("/nonexistent/site.toml");
    let (code, _, stderr) = run(&["config".as_ref(), "check".as_ref(), missing.as_os_str()]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent/site.toml"), "{stderr}");
}

#[test]
fn rules_test_names_the_rule_and_the_failed_criterion() {
    let generated = test_study();
    let (_dir, config, _) = load_text(&valid_config(""));
    let (code, stdout, stderr) = run(&[
        "rules".as_ref(),
        "test".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        generated.study.root.as_os_str(),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let coronal = generated
        .series
        .iter()
        .find(|s| s.header.description.as_deref() == Some("COR T2"))
        .unwrap();
    let block: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains(&coronal.uid))
        .take(3)
        .collect();
    assert!(
        block[0].contains("#2 \"COR T2\" MR coronal 24 slices"),
        "{stdout}"
    );
    assert_eq!(
        block[1].trim(),
        "rule axial-mr: no: plane coronal is not one of [axial]"
    );
    assert!(
        block[2].trim().starts_with("rule any-mr: MATCH"),
        "{stdout}"
    );
    assert!(stdout.contains("7 series, 7 matched a rule"), "{stdout}");
    // series-level attributes only
    let patient = &generated.study.manifest["studies"][0]["patient_id"];
    assert!(!stdout.contains(patient.as_str().unwrap()), "{stdout}");
    assert!(!stdout.contains("TEST^READER"), "{stdout}");
    // a bad configuration stops it with exit status 2
    let (_dir, bad, _) = load_text(&valid_config("planes = [\"transverse\"]\n"));
    let (code, _, stderr) = run(&[
        "rules".as_ref(),
        "test".as_ref(),
        "--config".as_ref(),
        bad.as_os_str(),
        generated.study.root.as_os_str(),
    ]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("rules[1].select.planes[0] = \"transverse\""),
        "{stderr}"
    );
}

// ---------------------------------------------------------------- [watch]

#[test]
fn watch_settings_are_read_and_defaulted() {
    let (_dir, _path, loaded) = load_text(&valid_config(
        r#"
[watch]
drop = "/srv/pacs-export"
poll = "15s"
settle = "45s"
deliver = ["out", "pacs", "study-folder"]
after = "move"
archive = "/srv/archive"
required_rules = ["axial-mr"]
metrics = "127.0.0.1:9464"
[watch.pacs]
peer = "ORTHANC@pacs.local:4242"
"#,
    ));
    let watch = loaded.expect("valid").watch;
    assert_eq!(watch.drop, PathBuf::from("/srv/pacs-export"));
    assert_eq!(watch.state, PathBuf::from("state"));
    assert_eq!(watch.poll, Some(std::time::Duration::from_secs(15)));
    assert_eq!(watch.settle, std::time::Duration::from_secs(45));
    assert_eq!(watch.stable, std::time::Duration::from_secs(2));
    assert_eq!(watch.deliver.len(), 3);
    let pacs = watch.pacs.expect("pacs");
    assert_eq!(
        (pacs.called_ae.as_str(), pacs.host.as_str(), pacs.port),
        ("ORTHANC", "pacs.local", 4242)
    );
    assert_eq!(pacs.calling_ae, "DICOM-XAI");
    assert_eq!(
        watch.after,
        dicom_xai::config::AfterProcessing::Move(PathBuf::from("/srv/archive"))
    );
    assert_eq!(watch.metrics.map(|a| a.port()), Some(9464));
}

#[test]
fn bad_watch_settings_name_key_and_value() {
    assert_error(
        &valid_config("[watch]\nsettle = \"30 parsecs\"\n"),
        "watch.settle",
        "\"30 parsecs\"",
    );
    assert_error(
        &valid_config("[watch]\nrequired_rules = [\"flair\"]\n"),
        "watch.required_rules[0]",
        "\"flair\"",
    );
    assert_error(
        &valid_config("[watch]\nmetrics = \"0.0.0.0:9464\"\n"),
        "watch.metrics",
        "\"0.0.0.0:9464\"",
    );
    assert_error(
        &valid_config("[watch]\ndeliver = [\"email\"]\n"),
        "watch.deliver[0]",
        "\"email\"",
    );
    assert_error(
        &valid_config("[watch.pacs]\npeer = \"ORTHANC@pacs\"\n"),
        "watch.pacs.peer",
        "\"ORTHANC@pacs\"",
    );
    let (_dir, _path, loaded) = load_text(&valid_config("[watch]\nafter = \"move\"\n"));
    let message = loaded.expect_err("move without archive").to_string();
    assert!(message.contains("watch.archive"), "{message}");
}

#[test]
fn absent_formats_mean_every_format_and_sc_is_required() {
    use dicom_xai::config::OutputFormat;
    let settings = settings_from(&valid_config(""));
    assert_eq!(
        settings.output.formats,
        [OutputFormat::Sc, OutputFormat::Pmap, OutputFormat::Sr]
    );
    let text = format!("[output]\nformats = [\"pmap\"]\n\n{}", valid_config(""));
    let (_dir, _, loaded) = load_text(&text);
    let message = loaded.unwrap_err().to_string();
    assert!(message.contains("must include \"sc\""), "{message}");
}
