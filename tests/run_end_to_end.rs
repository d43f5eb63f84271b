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

/// A copy of `source` past the top of the head, its pixels all zero or, with `noise`,
/// uniform noise up to 400 (white, as a scanner's background): a new instance (UID ending in
/// `number`) at `position` (z, mm), in the series `series` when given.
fn write_blank_slice(
    source: &Path,
    out: &Path,
    series: Option<&str>,
    (number, position): (u32, f64),
    noise: bool,
) {
    use dicom_core::{PrimitiveValue, VR};
    use dicom_dictionary_std::tags;
    use dicom_object::mem::InMemElement;
    let mut object = dicom_object::open_file(source).expect("source slice");
    let rows = object
        .element(tags::ROWS)
        .unwrap()
        .to_int::<usize>()
        .unwrap();
    let columns = object
        .element(tags::COLUMNS)
        .unwrap()
        .to_int::<usize>()
        .unwrap();
    let sop_instance_uid = format!("1.2.826.0.1.3680043.98.{number}");
    let mut state = u64::from(number);
    let pixels: Vec<u16> = (0..rows * columns)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if noise {
                ((state >> 33) % 400) as u16
            } else {
                0
            }
        })
        .collect();
    let mut text = vec![
        (tags::SOP_INSTANCE_UID, VR::UI, sop_instance_uid.clone()),
        (tags::INSTANCE_NUMBER, VR::IS, number.to_string()),
        (tags::SLICE_LOCATION, VR::DS, format!("{position}")),
    ];
    if let Some(uid) = series {
        text.push((tags::SERIES_INSTANCE_UID, VR::UI, uid.to_string()));
        text.push((tags::SERIES_NUMBER, VR::IS, "77".to_string()));
    }
    for (tag, vr, value) in text {
        object.put(InMemElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let mut origin: Vec<f64> = object
        .element(tags::IMAGE_POSITION_PATIENT)
        .unwrap()
        .to_multi_float64()
        .unwrap();
    origin[2] = position;
    object.put(InMemElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        PrimitiveValue::Strs(origin.iter().map(|v| format!("{v}")).collect()),
    ));
    object.put(InMemElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    object.meta_mut().media_storage_sop_instance_uid = sop_instance_uid;
    object.write_to_file(out).expect("blank slice");
}

/// Slices without a brain (all zero, past the top of the head): the trained ViT-B/16 calls
/// black glioma with about 0.995 (docs/models.md), so without the brain check such a slice
/// decides the series and is the one explained. With it the slice is flagged `no-brain`,
/// neither decides nor is explained; a series with no brain at all is flagged as a whole.
#[test]
fn slices_without_a_brain_neither_decide_the_series_nor_are_explained() {
    let study = common::generate_study("demo");
    let series = study.root.join("01_ax_t1_mprage");
    let top = series.join("IM0024.dcm");
    // two blank slices and one of noise above the head, and a series of two blank
    // slices of its own
    write_blank_slice(&top, &series.join("IM0025.dcm"), None, (25, 77.5), false);
    write_blank_slice(&top, &series.join("IM0026.dcm"), None, (26, 82.5), false);
    write_blank_slice(&top, &series.join("IM0027.dcm"), None, (27, 87.5), true);
    let empty_series = study.root.join("02_blank");
    std::fs::create_dir_all(&empty_series).unwrap();
    let blank_series_uid = "1.2.826.0.1.3680043.98.7";
    for (name, place) in [("IM0001.dcm", (101, 0.0)), ("IM0002.dcm", (102, 5.0))] {
        let path = empty_series.join(name);
        write_blank_slice(&top, &path, Some(blank_series_uid), place, false);
    }
    let blank: Vec<String> = (25..=27)
        .map(|n| format!("1.2.826.0.1.3680043.98.{n}"))
        .collect();

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("site.toml");
    let manifest = common::root().join("models/vit_b_16/vit_b_16.toml");
    let out = work.path().join("out");
    let run_with = |prediction: &str| -> Value {
        let text = format!(
            r#"
[[models]]
manifest = "{}"

[output]
formats = ["sc"]
dir = "unused"
summary = false

[prediction]
{prediction}

[quality]
faithfulness_steps = 0

[explain]
methods = ["saliency"]
slices = "top-k"
top_k = 2

[[rules]]
name = "mr"
[rules.select]
modality = ["MR"]
"#,
            manifest.display()
        );
        std::fs::write(&config, text).unwrap();
        let (code, stdout, stderr) = run(&config, &out, &[], &[&study.root]);
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let study_uid = common::study_uid_of(&top);
        serde_json::from_slice(&std::fs::read(out.join(study_uid).join("report.json")).unwrap())
            .unwrap()
    };
    let model_of = |report: &Value, series_uid: Option<&str>| -> Value {
        let series = report["series"].as_array().unwrap();
        let entry = series
            .iter()
            .find(|s| match series_uid {
                Some(uid) => s["series_instance_uid"] == uid,
                None => s["series_instance_uid"] != blank_series_uid,
            })
            .unwrap_or_else(|| panic!("series {series_uid:?} in {report:#}"));
        entry["models"][0].clone()
    };
    let decided_by = |model: &Value| -> String {
        model["series_prediction"]["decided_by"]["sop_instance_uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let explained = |model: &Value| -> Vec<String> {
        model["explanations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["sop_instance_uid"].as_str().unwrap().to_string())
            .collect()
    };

    // the check off: the slices past the head are the most tumour-like, decide and are
    // explained
    let unchecked = model_of(&run_with("min_brain_fraction = 0.0"), None);
    for slice in unchecked["slices"].as_array().unwrap() {
        let uid = slice["sop_instance_uid"].as_str().unwrap().to_string();
        if blank[..2].contains(&uid) {
            let glioma = slice["probabilities"]["glioma"].as_f64().unwrap();
            assert!(glioma >= 0.9, "ViT-B/16 on black: glioma {glioma}");
        }
        if blank.contains(&uid) {
            // the noise too: its "tissue" is speckle, not anatomy
            assert_eq!(slice["brain_fraction"], 0.0, "{slice}");
        }
        assert!(slice.get("flags").is_none(), "{slice}");
    }
    assert!(blank.contains(&decided_by(&unchecked)), "{unchecked:#}");
    assert!(explained(&unchecked).iter().all(|uid| blank.contains(uid)));

    // the default check: flagged, not deciding, not explained
    let report = run_with("");
    let checked = model_of(&report, None);
    let mut flagged = Vec::new();
    for slice in checked["slices"].as_array().unwrap() {
        let uid = slice["sop_instance_uid"].as_str().unwrap().to_string();
        let fraction = slice["brain_fraction"].as_f64().unwrap();
        if slice.get("flags").is_some() {
            assert_eq!(slice["flags"], serde_json::json!(["no-brain"]), "{slice}");
            flagged.push(uid);
        } else {
            assert!(
                fraction >= 0.1,
                "a demo slice with {fraction} brain: {slice}"
            );
        }
    }
    assert_eq!(flagged, blank);
    assert!(!blank.contains(&decided_by(&checked)), "{checked:#}");
    let chosen = explained(&checked);
    assert_eq!(chosen.len(), 2);
    assert!(chosen.iter().all(|uid| !blank.contains(uid)), "{chosen:?}");
    assert!(checked["series_prediction"].get("flags").is_none());

    // a series without any brain: every slice decides, and the prediction says so
    let nothing = model_of(&report, Some(blank_series_uid));
    assert_eq!(
        nothing["series_prediction"]["flags"],
        serde_json::json!(["no-brain"]),
        "{nothing:#}"
    );
    assert_eq!(explained(&nothing).len(), 2);
}
