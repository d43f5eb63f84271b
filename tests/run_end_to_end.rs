//! `dicom-xai run` end to end, as a site runs it: generated MR studies with a corrupt slice,
//! an empty file and a stray text file beside them; the real VGG16; occlusion overlays that
//! must pass dciodvfy and render with dcmj2pnm; report.json checked against docs/design.md section 3;
//! the input tree byte-identical afterwards; reruns replace rather than duplicate.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

const LABELS: [&str; 4] = ["glioma", "meningioma", "notumor", "pituitary"];

/// A configuration small enough for a test: one explained slice per series, a coarse
/// occlusion grid (3 x 3 patches), the real VGG16.
fn write_config(dir: &Path) -> PathBuf {
    let manifest = common::root().join("onnx/manifests/vgg16-kaggle.toml");
    let text = format!(
        r#"
[runtime]
intra_threads = 2
batch_size = 8

[[models]]
manifest = "{}"

[output]
# the overlays alone: the maps and the report have suites of their own
formats = ["sc"]
dir = "unused"

[explain]
methods = ["occlusion"]
slices = "top-k"
top_k = 1
colour_map = "inferno"
opacity = 0.5

[methods.occlusion]
patch = 80
stride = 80
baseline = "mean"

[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]
"#,
        manifest.display()
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn run(config: &Path, out: &Path, extra: &[&str], inputs: &[&Path]) -> (i32, String, String) {
    let output = common::binary()
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(inputs)
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn assert_valid_overlay(path: &Path) {
    common::assert_no_dciodvfy_errors(path);
    let png = path.with_extension("png");
    let rendered = common::tool(
        "dcmj2pnm",
        &["+on".as_ref(), path.as_os_str(), png.as_os_str()],
    );
    assert!(
        rendered.status.success(),
        "dcmj2pnm cannot render {}",
        path.display()
    );
    std::fs::remove_file(png).unwrap();
}

#[test]
fn run_writes_valid_overlays_and_reports_and_leaves_inputs_alone() {
    let work = tempfile::tempdir().unwrap();
    let generated = common::generate_study("ordering");
    let input = generated.root.clone();
    let manifest = &generated.manifest;
    // a slice whose pixel data was cut short, an empty file, a stray note
    let victim = input.join(
        manifest["studies"][0]["series"][0]["files"][3]
            .as_str()
            .unwrap(),
    );
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() - 5000]).unwrap();
    std::fs::write(input.join("empty.dcm"), b"").unwrap();
    std::fs::write(input.join("README.txt"), b"exported by the PACS\n").unwrap();
    let before = common::checksums(&input);

    let config = write_config(work.path());
    let out = work.path().join("out");
    let (code, stdout, stderr) = run(&config, &out, &[], &[&input]);
    assert_eq!(
        code, 3,
        "some inputs failed, so exit 3\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains("empty.dcm"),
        "the empty file is reported: {stderr}"
    );
    assert_eq!(
        common::checksums(&input),
        before,
        "input files were modified"
    );

    let study_uid = manifest["studies"][0]["study_instance_uid"]
        .as_str()
        .unwrap();
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join(study_uid).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["study_instance_uid"], study_uid);
    assert_eq!(report["status"], "partial");
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["file"]
            .as_str()
            .unwrap()
            .ends_with(victim.file_name().unwrap().to_str().unwrap())
            && e["message"]
                .as_str()
                .unwrap()
                .contains(victim.to_str().unwrap())),
        "the corrupt slice is reported by name: {errors:#?}"
    );

    let expected_series = manifest["studies"][0]["series"].as_array().unwrap();
    let series = report["series"].as_array().unwrap();
    assert_eq!(series.len(), expected_series.len());
    let mut overlays = 0;
    for s in series {
        assert_eq!(s["rule"], "brain-mr");
        let models = s["models"].as_array().unwrap();
        assert_eq!(models.len(), 1);
        let model = &models[0];
        assert_eq!(model["model"], "vgg16-kaggle");
        assert_eq!(model["trained"], true);
        let prediction = &model["series_prediction"];
        assert!(LABELS.contains(&prediction["label"].as_str().unwrap()));
        let p = prediction["probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        let slices = model["slices"].as_array().unwrap();
        let corrupted = s["series_instance_uid"] == expected_series[0]["series_instance_uid"];
        assert_eq!(slices.len(), if corrupted { 19 } else { 20 });
        for slice in slices {
            let probabilities = slice["probabilities"].as_object().unwrap();
            let keys: Vec<&str> = probabilities.keys().map(String::as_str).collect();
            assert_eq!(keys.len(), 4);
            for label in LABELS {
                assert!(probabilities.contains_key(label), "{label} missing");
            }
            let total: f64 = probabilities.values().map(|v| v.as_f64().unwrap()).sum();
            assert!((total - 1.0).abs() < 1e-3);
            assert!(slice["sop_instance_uid"].is_string() && slice["frame"].is_u64());
            let best = probabilities
                .iter()
                .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
                .unwrap()
                .0;
            assert_eq!(slice["label"].as_str().unwrap(), best);
        }
        let explanations = model["explanations"].as_array().unwrap();
        assert_eq!(explanations.len(), 1, "top-k 1");
        for e in explanations {
            assert_eq!(e["method"], "occlusion");
            assert!(LABELS.contains(&e["class"].as_str().unwrap()));
            for key in [
                "in_brain_fraction",
                "deletion_auc",
                "insertion_auc",
                "flags",
            ] {
                assert!(e["quality"].get(key).is_some(), "quality.{key} missing");
            }
            let file = out.join(study_uid).join(e["output_file"].as_str().unwrap());
            assert!(file.is_file(), "{}", file.display());
            assert_valid_overlay(&file);
            let overlay =
                dicom_xai::dicom::file::open(&file, dicom_xai::dicom::file::Depth::Header).unwrap();
            assert_eq!(
                overlay.sop_instance_uid().as_deref(),
                e["output_sop_instance_uid"].as_str()
            );
            let study = dicom_xai::dicom::attrs::string(
                overlay.dataset(),
                dicom_dictionary_std::tags::STUDY_INSTANCE_UID,
            );
            assert_eq!(
                study.as_deref(),
                Some(study_uid),
                "the overlay joins the source study"
            );
            overlays += 1;
        }
    }
    assert_eq!(overlays, expected_series.len());
}

#[test]
fn reruns_replace_overlays_and_single_slice_series_are_explained() {
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path());
    let out = work.path().join("out");
    let source = common::asset("pydicom/MR_small.dcm");
    let count = |dir: &Path| common::files_under(dir).len();
    let (code, _, stderr) = run(&config, &out, &[], &[&source]);
    assert_eq!(code, 0, "{stderr}");
    let first = count(&out);
    let overlays: Vec<PathBuf> = common::files_under(&out)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    assert_eq!(
        overlays.len(),
        1,
        "one single-slice series, one method: one overlay"
    );
    let (code, _, stderr) = run(
        &config,
        &out,
        &["--models", "vgg16-kaggle", "--methods", "occlusion"],
        &[&source],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(count(&out), first, "a rerun replaces, it does not add");
    assert!(overlays[0].is_file());
}

#[test]
fn unknown_models_or_methods_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path());
    let out = work.path().join("out");
    let source = common::asset("pydicom/MR_small.dcm");
    let (code, _, stderr) = run(&config, &out, &["--models", "resnet-nowhere"], &[&source]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("resnet-nowhere"), "{stderr}");
    let (code, _, stderr) = run(&config, &out, &["--methods", "telepathy"], &[&source]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("telepathy"), "{stderr}");
    let (code, _, _) = run(&work.path().join("missing.toml"), &out, &[], &[&source]);
    assert_eq!(code, 2);
    assert!(
        !out.exists(),
        "nothing is written when the configuration is unusable"
    );
}

/// Renders `path` with dcmj2pnm and reads the picture back.
fn rendered(path: &Path) -> image::RgbImage {
    let png = path.with_extension("summary-test.png");
    let output = common::tool(
        "dcmj2pnm",
        &["+on".as_ref(), path.as_os_str(), png.as_os_str()],
    );
    assert!(output.status.success(), "dcmj2pnm: {}", path.display());
    let picture = image::open(&png).unwrap().to_rgb8();
    std::fs::remove_file(png).unwrap();
    picture
}

/// Several methods on a slice give one summary image in its own series: valid, labelled,
/// and each tile is exactly that method's overlay (at the tile's scale), in report order.
#[test]
fn several_methods_give_a_summary_image_whose_tiles_are_the_overlays() {
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path());
    let out = work.path().join("out");
    let source = common::asset("pydicom/MR_small.dcm");
    let (code, _, stderr) = run(
        &config,
        &out,
        &["--methods", "gradcam,saliency,occlusion"],
        &[&source],
    );
    assert_eq!(code, 0, "{stderr}");
    let study = common::files_under(&out)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n == "report.json"))
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&study).unwrap()).unwrap();
    let study_dir = study.parent().unwrap();
    let model = &report["series"][0]["models"][0];
    let explanations = model["explanations"].as_array().unwrap();
    assert_eq!(explanations.len(), 3);
    let summaries = model["summaries"].as_array().unwrap();
    assert_eq!(summaries.len(), 1, "one explained slice, one summary");
    let summary = &summaries[0];
    let methods: Vec<&str> = summary["methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert_eq!(methods, ["gradcam", "saliency", "occlusion"]);
    let summary_file = study_dir.join(summary["output_file"].as_str().unwrap());
    common::assert_no_dciodvfy_errors(&summary_file);
    let header =
        dicom_xai::dicom::file::open(&summary_file, dicom_xai::dicom::file::Depth::Header).unwrap();
    let attribute = |tag| dicom_xai::dicom::attrs::string(header.dataset(), tag).unwrap();
    let description = attribute(dicom_dictionary_std::tags::SERIES_DESCRIPTION);
    assert!(
        description.contains("summary") && description.contains("NOT FOR DIAGNOSTIC USE"),
        "{description}"
    );
    let derivation = attribute(dicom_dictionary_std::tags::DERIVATION_DESCRIPTION);
    for method in &methods {
        assert!(derivation.contains(method), "{derivation}");
    }
    let series_uids: std::collections::BTreeSet<&str> = explanations
        .iter()
        .map(|e| e["output_series_instance_uid"].as_str().unwrap())
        .chain([summary["output_series_instance_uid"].as_str().unwrap()])
        .collect();
    assert_eq!(
        series_uids.len(),
        4,
        "a series per method and one for summaries"
    );

    // MR_small is 64 x 64: tiles are upscaled 4x (256 px), overlays 8x (512 px)
    let picture = rendered(&summary_file);
    let (tile, gutter) = (256_u32, 8_u32);
    assert_eq!(picture.width(), 4 * (tile + gutter) + gutter);
    for (i, method) in methods.iter().enumerate() {
        let explanation = explanations
            .iter()
            .find(|e| e["method"] == *method)
            .unwrap();
        let overlay = rendered(&study_dir.join(explanation["output_file"].as_str().unwrap()));
        let x0 = gutter + (i as u32 + 1) * (tile + gutter);
        // the header's height is the font's business: find the offset where the tile matches
        let matches = |y0: u32| {
            (0..64).all(|row| {
                (0..64).all(|column| {
                    y0 + row * 4 < picture.height()
                        && picture.get_pixel(x0 + column * 4, y0 + row * 4)
                            == overlay.get_pixel(column * 8, row * 8)
                })
            })
        };
        assert!(
            (0..tile).any(matches),
            "the {method} tile is not the {method} overlay"
        );
    }
}

#[test]
fn files_with_hostile_uids_fail_alone_and_nothing_is_written_outside_the_output_folder() {
    let work = tempfile::tempdir().unwrap();
    let input = work.path().join("in");
    let hostile = common::write_hostile_uid_files(&input);
    let good = input.join("good.dcm");
    std::fs::copy(common::asset("pydicom/MR_small.dcm"), &good).unwrap();
    let before = common::checksums(&input);
    let config = write_config(work.path());
    let out = work.path().join("out");

    let (code, stdout, stderr) = run(&config, &out, &[], &[&input]);
    assert_eq!(code, 3, "stdout:\n{stdout}\nstderr:\n{stderr}");
    for path in &hostile {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains(name) && l.contains("StudyInstanceUID")),
            "{name} is reported with the attribute: {stderr}"
        );
    }
    let good_uid = common::study_uid_of(&good);
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join(&good_uid).join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["status"], "ok", "the good study goes on: {report:#}");
    assert_eq!(common::checksums(&input), before, "inputs untouched");
    common::assert_nothing_written_outside(work.path(), &[&input, &out, &config]);
}

#[test]
fn a_new_model_or_changed_parameters_supersede_the_previous_outputs() {
    let work = tempfile::tempdir().unwrap();
    let model = work.path().join("model");
    common::run_support_script("make_toy_model.py", &[model.as_os_str()]);
    let input = work.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let source = input.join("mr.dcm");
    std::fs::copy(common::asset("pydicom/MR_small.dcm"), &source).unwrap();
    let out = work.path().join("out");
    let config = work.path().join("site.toml");
    let configure = |patch: u32| {
        let text = format!(
            r#"
[[models]]
manifest = "{}"

[output]
# the overlays alone: the maps and the report have suites of their own
formats = ["sc"]
dir = "unused"

[quality]
faithfulness_steps = 0

[explain]
methods = ["occlusion"]
slices = "top-k"
top_k = 1

[methods.occlusion]
patch = {patch}
stride = {patch}
baseline = "mean"

[[rules]]
name = "mr"
[rules.select]
modality = ["MR"]
"#,
            model.join("toy.toml").display()
        );
        std::fs::write(&config, text).unwrap();
    };
    let study_dir = || out.join(common::study_uid_of(&source));
    let run_once = || -> Value {
        let (code, stdout, stderr) = run(&config, &out, &[], &[&input]);
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
        serde_json::from_slice(&std::fs::read(study_dir().join("report.json")).unwrap()).unwrap()
    };

    configure(32);
    let first = common::explanation_output_uids(&run_once());
    assert!(!first.is_empty());
    let again = run_once();
    assert_eq!(
        common::explanation_output_uids(&again),
        first,
        "the same inputs give the same UIDs"
    );
    assert!(
        again.get("superseded").is_none(),
        "nothing replaced: {again:#}"
    );

    // a changed method parameter: new UIDs, the old overlays gone, the report says so
    configure(16);
    let changed = run_once();
    let second = common::explanation_output_uids(&changed);
    assert!(first.is_disjoint(&second), "{first:?} {second:?}");
    assert_eq!(common::superseded_uids(&changed), first);
    assert_eq!(
        common::overlay_file_uids(&study_dir()),
        second,
        "only the current overlays are left"
    );

    // a new checkpoint of the same model, same name and path: new UIDs again
    common::run_support_script("make_toy_model.py", &[model.as_os_str(), "4".as_ref()]);
    let swapped = run_once();
    let third = common::explanation_output_uids(&swapped);
    assert!(second.is_disjoint(&third), "{second:?} {third:?}");
    assert_eq!(common::superseded_uids(&swapped), second);
    assert_eq!(common::overlay_file_uids(&study_dir()), third);
}
