//! Parametric Maps (`[output] formats = ["sc", "pmap"]`) end to end with the trained
//! DenseNet169: every slice of a generated axial series (instances stored shuffled) explained
//! by Grad-CAM and saliency; each map passes dciodvfy and is read back by pydicom and highdicom
//! (`tests/support/check_parametric_map.py`), its frames on their source slices' positions
//! (1e-3 mm) in the series' spatial order, its values equal to what `dicom-xai explain`
//! writes for the same slice; report.json names it; a rerun replaces rather than adds.

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
    let config = write_config(work.path(), r#"["sc", "pmap"]"#);
    let out = work.path().join("out");
    run(&config, &out, &study.root);
    let report = report_of(&out);
    assert_eq!(report["status"], "ok", "{report}");
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
    }

    // a rerun writes the same maps again, and nothing beside them
    let before = common::overlay_file_uids(&study_dir);
    run(&config, &out, &study.root);
    assert_eq!(common::overlay_file_uids(&study_dir), before);
    assert_eq!(maps_of(&report_of(&out)).len(), METHODS.len());

    // without pmap the maps of the earlier run are superseded and removed
    let sc_only = write_config(work.path(), r#"["sc"]"#);
    run(&sc_only, &out, &study.root);
    let report = report_of(&out);
    assert!(maps_of(&report).is_empty(), "{report}");
    let removed = common::superseded_uids(&report);
    for map in &maps {
        let uid = map["output_sop_instance_uid"].as_str().expect("UID");
        assert!(removed.contains(uid), "{uid} superseded: {report}");
        assert!(!common::overlay_file_uids(&study_dir).contains(uid));
    }
}

#[test]
fn formats_are_checked() {
    let work = tempfile::tempdir().expect("temporary folder");
    for (formats, words) in [
        (r#"["pmap"]"#, "must include \"sc\""),
        (r#"["sc", "sr"]"#, "not built yet"),
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
