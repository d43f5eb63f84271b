//! Parametric Maps and the Structured Report (`[output] formats = ["sc", "pmap", "sr"]`) end
//! to end with the trained DenseNet169: every slice of a generated axial series (instances
//! stored shuffled) explained by Grad-CAM and saliency; each map passes dciodvfy and is read
//! back by pydicom and highdicom (`tests/support/check_parametric_map.py`), its frames on
//! their source slices' positions (1e-3 mm) in the series' spatial order, its values equal to
//! what `dicom-xai explain` writes for the same slice, and dcmqi rebuilds it as a volume with
//! every frame in place and every value unchanged; the study's Structured Report passes
//! dciodvfy and highdicom reads back report.json's findings, values, flags and references
//! (`tests/support/check_structured_report.py`); a rerun replaces rather than adds.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

const METHODS: [&str; 2] = ["gradcam", "saliency"];

fn write_config(dir: &Path, formats: &str) -> PathBuf {
    let manifest = common::root().join("models/densenet169/densenet169.toml");
    let text = format!(
        r#"
[runtime]
intra_threads = 2
batch_size = 8

[[models]]
manifest = "{}"

[output]
dir = "unused"
summary = false
formats = {formats}

[quality]
faithfulness_steps = 0

[explain]
methods = ["gradcam", "saliency"]
slices = "all"

[[rules]]
name = "axial-t1"
[rules.select]
modality = ["MR"]
series_description = "AX T1"
"#,
        manifest.display()
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("configuration");
    path
}

fn dicom_xai(args: &[&std::ffi::OsStr]) -> std::process::Output {
    common::binary()
        .args(args)
        .output()
        .expect("dicom-xai runs")
}

fn succeeded(output: &std::process::Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn report_of(out: &Path) -> Value {
    let path = common::files_under(out)
        .into_iter()
        .find(|p| p.ends_with("report.json"))
        .expect("report.json");
    serde_json::from_slice(&std::fs::read(path).expect("report")).expect("report JSON")
}

fn maps_of(report: &Value) -> Vec<Value> {
    common::model_entries(report, "parametric_maps")
}

/// `dicom-xai run --config CONFIG --out OUT STUDY`, which must succeed.
fn run(config: &Path, out: &Path, study: &Path) {
    succeeded(&dicom_xai(&[
        "run".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        study.as_os_str(),
    ]));
}

#[test]
fn maps_are_valid_on_their_slices_and_equal_explains_maps() {
    let work = tempfile::tempdir().expect("temporary folder");
    let study = common::generate_study_seeded("ordering", 7);
    let config = write_config(work.path(), r#"["sc", "pmap", "sr"]"#);
    let out = work.path().join("out");
    let timed = dicom_xai(&[
        "run".as_ref(),
        "--timings".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        study.root.as_os_str(),
    ]);
    succeeded(&timed);
    let report = report_of(&out);
    assert_eq!(report["status"], "ok", "{report}");
    // where the seconds went: every stage in report.json and in the printed table
    let table = String::from_utf8_lossy(&timed.stdout);
    for stage in [
        "decode",
        "brain-mask",
        "classify",
        "explain.gradcam",
        "explain.saliency",
        "render",
        "write",
        "parametric-map",
        "structured-report",
    ] {
        let seconds = report["timings"][stage].as_f64();
        assert!(seconds.is_some_and(|s| s >= 0.0), "{stage}: {report}");
        assert!(table.contains(stage), "{stage} not in the table:\n{table}");
    }
    assert!(
        table.contains("load (runtime, models)") && table.contains("total"),
        "{table}"
    );
    let structured_report = check_structured_report(&out, &report);
    let maps = maps_of(&report);
    let methods: BTreeSet<&str> = maps.iter().filter_map(|m| m["method"].as_str()).collect();
    assert_eq!(methods, METHODS.into_iter().collect(), "{report}");
    let study_dir = out.join(report["study_instance_uid"].as_str().expect("study UID"));
    let axial = &report["series"][0];
    let slice_count = axial["slice_count"].as_u64().expect("slice count") as usize;

    for map in &maps {
        let frames = map["frames"].as_array().expect("frames");
        assert_eq!(frames.len(), slice_count, "every slice is a frame: {map}");
        let file = study_dir.join(map["output_file"].as_str().expect("output file"));
        common::assert_no_dciodvfy_errors(&file);

        // explain's own map of the first, a middle and the last frame's slice
        let mut expected = Vec::new();
        for index in [0, frames.len() / 2, frames.len() - 1] {
            let sop = frames[index]["sop_instance_uid"].as_str().expect("SOP UID");
            let source = common::files_under(&study.root)
                .into_iter()
                .find(|p| common::sop_instance_uid_of(p).as_deref() == Some(sop))
                .expect("the source slice");
            let explained = work.path().join(format!("explain-{sop}"));
            succeeded(&dicom_xai(&[
                "explain".as_ref(),
                "--config".as_ref(),
                config.as_os_str(),
                "--model".as_ref(),
                "densenet169".as_ref(),
                "--method".as_ref(),
                map["method"].as_str().expect("method").as_ref(),
                source.as_os_str(),
                "--out".as_ref(),
                explained.as_os_str(),
            ]));
            expected.push(format!("{sop}={}", explained.join("heatmap.npy").display()));
        }
        let entry = work.path().join("entry.json");
        std::fs::write(&entry, map.to_string()).expect("entry");
        let mut args: Vec<&std::ffi::OsStr> =
            vec![file.as_os_str(), entry.as_os_str(), study.root.as_os_str()];
        args.extend(expected.iter().map(std::ffi::OsStr::new));
        let checked = common::run_support_script("check_parametric_map.py", &args);
        let measured: Value =
            serde_json::from_slice(&checked.stdout).expect("the check's measurements");
        assert_eq!(measured["compared_with_explain"], 3, "{measured}");
        println!("{}: {measured}", map["method"]);

        // explain wrote the middle slice's map as a one-frame Parametric Map too: valid, on
        // that slice, equal to its heatmap.npy, in the series of run's map of that method
        let middle = &frames[frames.len() / 2];
        let sop = middle["sop_instance_uid"].as_str().expect("SOP UID");
        let explained = work.path().join(format!("explain-{sop}"));
        let one_frame = explained.join("map.dcm");
        common::assert_no_dciodvfy_errors(&one_frame);
        let object = dicom_object::open_file(&one_frame).expect("explain's map.dcm");
        let series = object
            .element(dicom_dictionary_std::tags::SERIES_INSTANCE_UID)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|uid| uid.trim_end_matches('\0').to_string())
            .expect("SeriesInstanceUID");
        assert_eq!(
            series,
            map["output_series_instance_uid"].as_str().expect("series")
        );
        let entry = serde_json::json!({
            "method": map["method"],
            "frames": [middle],
            "output_sop_instance_uid": common::sop_instance_uid_of(&one_frame),
            "output_series_instance_uid": series,
        });
        std::fs::write(work.path().join("one.json"), entry.to_string()).expect("entry");
        let heatmap = format!("{sop}={}", explained.join("heatmap.npy").display());
        let checked = common::run_support_script(
            "check_parametric_map.py",
            &[
                one_frame.as_os_str(),
                work.path().join("one.json").as_os_str(),
                study.root.as_os_str(),
                heatmap.as_ref(),
            ],
        );
        let measured: Value =
            serde_json::from_slice(&checked.stdout).expect("the check's measurements");
        assert_eq!(measured["compared_with_explain"], 1, "{measured}");

        // dcmqi rebuilds the volume: every frame in its place, values unchanged, no warning
        let converted = tempfile::tempdir().expect("temporary folder");
        let checked = common::run_support_script(
            "check_dcmqi.py",
            &[file.as_os_str(), converted.path().as_os_str()],
        );
        let volume: Value = serde_json::from_slice(&checked.stdout).expect("dcmqi's volume");
        assert_eq!(volume["frames_matched"], frames.len(), "{volume}");
        assert_eq!(volume["sizes"][2], frames.len(), "{volume}");
        assert!(
            volume["max_difference"].as_f64().is_some_and(|d| d < 1e-7),
            "{volume}"
        );
        assert_eq!(volume["warnings"], serde_json::json!([]), "{volume}");
    }

    // a rerun writes the same maps and report again, and nothing beside them
    let before = common::overlay_file_uids(&study_dir);
    assert!(before.contains(&structured_report), "{before:?}");
    run(&config, &out, &study.root);
    assert_eq!(common::overlay_file_uids(&study_dir), before);
    let rerun = report_of(&out);
    assert_eq!(maps_of(&rerun).len(), METHODS.len());
    assert_eq!(
        rerun["structured_report"]["output_sop_instance_uid"],
        structured_report.as_str()
    );

    // without pmap and sr the maps and the report of the earlier run are superseded and
    // removed
    let sc_only = write_config(work.path(), r#"["sc"]"#);
    run(&sc_only, &out, &study.root);
    let report = report_of(&out);
    assert!(maps_of(&report).is_empty(), "{report}");
    assert!(report.get("structured_report").is_none(), "{report}");
    let removed = common::superseded_uids(&report);
    assert!(removed.contains(&structured_report), "{report}");
    assert!(!common::overlay_file_uids(&study_dir).contains(&structured_report));
    for map in &maps {
        let uid = map["output_sop_instance_uid"].as_str().expect("UID");
        assert!(removed.contains(uid), "{uid} superseded: {report}");
        assert!(!common::overlay_file_uids(&study_dir).contains(uid));
    }
}

/// The study's Structured Report against report.json: valid, and highdicom reads back the
/// series call, the deciding slice's probabilities, and each explanation's figures, flags,
/// source slice and outputs (overlay and map). Its SOPInstanceUID.
fn check_structured_report(out: &Path, report: &Value) -> String {
    let entry = &report["structured_report"];
    let study_dir = out.join(report["study_instance_uid"].as_str().expect("study UID"));
    let file = study_dir.join(entry["output_file"].as_str().expect("the report's file"));
    common::assert_no_dciodvfy_errors(&file);
    let checked = common::run_support_script("check_structured_report.py", &[file.as_os_str()]);
    let read: Value = serde_json::from_slice(&checked.stdout).expect("the check's JSON");
    let sop = entry["output_sop_instance_uid"].as_str().expect("SOP UID");
    assert_eq!(read["sop_instance_uid"], sop);
    let close = |read: &Value, written: &Value| {
        let (a, b) = (
            read.as_f64().expect("read"),
            written.as_f64().expect("written"),
        );
        assert!((a - b).abs() < 1e-6, "{a} read, {b} in report.json");
    };
    let mut groups = read["groups"].as_array().expect("groups").iter();
    let model = &report["series"][0]["models"][0];
    let series_group = groups.next().expect("the series group");
    let prediction = &model["series_prediction"];
    assert_eq!(series_group["finding"], prediction["label"], "{read}");
    let probabilities = common::deciding_probabilities(model);
    let measured = series_group["measurements"].as_array().expect("values");
    assert_eq!(measured.len(), probabilities.len());
    for (value, (label, p)) in measured.iter().zip(&probabilities) {
        assert_eq!(value["name"], format!("Probability of {label}"));
        close(&value["value"], p);
    }
    let maps = maps_of(report);
    let explanations = model["explanations"].as_array().expect("explanations");
    for explanation in explanations {
        let group = groups.next().expect("a group per explanation");
        assert_eq!(group["finding"], explanation["class"]);
        let quality = &explanation["quality"];
        close(
            &group["measurements"][0]["value"],
            &quality["in_brain_fraction"],
        );
        assert_eq!(
            group["qualitative"].as_array().map(Vec::len),
            quality["flags"].as_array().map(Vec::len),
            "{group}"
        );
        assert_eq!(group["source_images"][0], explanation["sop_instance_uid"]);
        let map = maps
            .iter()
            .find(|m| m["method"] == explanation["method"])
            .expect("the method's map");
        let outputs = [
            &explanation["output_sop_instance_uid"],
            &map["output_sop_instance_uid"],
        ];
        assert_eq!(
            group["outputs"].as_array().expect("outputs"),
            &outputs.map(Value::clone)
        );
    }
    assert!(
        groups.next().is_none(),
        "no group beyond report.json's: {read}"
    );
    sop.to_string()
}

#[test]
fn formats_are_checked() {
    let work = tempfile::tempdir().expect("temporary folder");
    for (formats, words) in [
        (r#"["pmap"]"#, "must include \"sc\""),
        (r#"["sc", "png"]"#, "unknown format"),
        (r#"["sc", "sc"]"#, "listed twice"),
    ] {
        let config = write_config(work.path(), formats);
        let output = dicom_xai(&["config".as_ref(), "check".as_ref(), config.as_os_str()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{formats}: {stderr}");
        assert!(stderr.contains("output.formats"), "{formats}: {stderr}");
        assert!(stderr.contains(words), "{formats}: {stderr}");
    }
}

/// `method_slices`: Grad-CAM and saliency on every slice, occlusion on the top 2 only. Each
/// method's map has a frame for each slice it explained, and each method's overlays form one
/// series however many slices it explained (occlusion records the class probability of each
/// slice among its parameters: a measurement, not a setting, so it must not split the
/// series); the summary images too, though slices have two or three methods.
#[test]
fn method_slices_give_each_method_its_slices_and_one_series_per_method() {
    let work = tempfile::tempdir().expect("temporary folder");
    let study = common::generate_study_seeded("ordering", 7);
    let config = write_config(work.path(), r#"["sc", "pmap"]"#);
    let text = std::fs::read_to_string(&config)
        .expect("configuration")
        .replace(
            "methods = [\"gradcam\", \"saliency\"]\nslices = \"all\"",
            "methods = [\"gradcam\", \"saliency\", \"occlusion\"]\nslices = \"all\"\n\
         method_slices = { occlusion = \"top-k\" }\ntop_k = 2\n\n\
         [methods.occlusion]\npatch = 112\nstride = 112",
        );
    let text = text.replace("summary = false", "summary = true");
    std::fs::write(&config, text).expect("configuration");
    let out = work.path().join("out");
    run(&config, &out, &study.root);
    let report = report_of(&out);
    assert_eq!(report["status"], "ok", "{report}");
    // a summary image per slice (each has two or three methods), all in one series
    let summaries = common::model_entries(&report, "summaries");
    let summary_series: BTreeSet<&str> = summaries
        .iter()
        .filter_map(|s| s["output_series_instance_uid"].as_str())
        .collect();
    assert_eq!(summary_series.len(), 1, "{summary_series:?}");
    let axial = &report["series"][0];
    let slice_count = axial["slice_count"].as_u64().expect("slice count") as usize;
    let explanations = common::model_entries(&report, "explanations");
    assert_eq!(summaries.len(), slice_count);
    for (method, slices) in [("gradcam", slice_count), ("occlusion", 2)] {
        let mine: Vec<&Value> = explanations
            .iter()
            .filter(|e| e["method"] == method)
            .collect();
        assert_eq!(mine.len(), slices, "{method}: {report}");
        let series: BTreeSet<&str> = mine
            .iter()
            .filter_map(|e| e["output_series_instance_uid"].as_str())
            .collect();
        assert_eq!(
            series.len(),
            1,
            "{method}: one overlay series, not {series:?}"
        );
        let map = maps_of(&report)
            .into_iter()
            .find(|m| m["method"] == method)
            .expect("a map per method");
        let frames: BTreeSet<&str> = map["frames"]
            .as_array()
            .expect("frames")
            .iter()
            .filter_map(|f| f["sop_instance_uid"].as_str())
            .collect();
        let explained: BTreeSet<&str> = mine
            .iter()
            .filter_map(|e| e["sop_instance_uid"].as_str())
            .collect();
        assert_eq!(frames, explained, "{method}: a frame per explained slice");
    }
    // the top 2: the slices of highest tumour probability
    let slices = common::model_entries(&report, "slices");
    let mut by_tumour: Vec<(f64, &str)> = slices
        .iter()
        .map(|s| {
            let p = &s["probabilities"];
            let tumour = ["glioma", "meningioma", "pituitary"]
                .iter()
                .filter_map(|c| p[*c].as_f64())
                .fold(0.0, f64::max);
            (tumour, s["sop_instance_uid"].as_str().unwrap_or(""))
        })
        .collect();
    by_tumour.sort_by(|a, b| b.0.total_cmp(&a.0));
    let occluded: BTreeSet<&str> = explanations
        .iter()
        .filter(|e| e["method"] == "occlusion")
        .filter_map(|e| e["sop_instance_uid"].as_str())
        .collect();
    let top: BTreeSet<&str> = by_tumour.iter().take(2).map(|(_, uid)| *uid).collect();
    assert_eq!(occluded, top);
}
