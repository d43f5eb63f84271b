//! `dicom-xai audit` on a labelled set made from the committed evaluation subset (5 held-out
//! test images per label, wrapped as DICOM MR by pydicom, in the Kaggle `Testing/` layout with
//! the data set's `no_tumor` spelling, and one file that is not an image): the figures of
//! audit.json are checked against onnxruntime-python, scikit-learn and NumPy
//! (tests/support/audit_reference.py), the broken file is listed without stopping the audit,
//! the page is self-contained, and a second run resumes from the journal instead of
//! measuring again. The `sae` method runs with the SAEs shipped for both models.

mod common;

use std::path::Path;

/// Images per label taken from the evaluation subset.
const PER_LABEL: usize = 5;

fn audit(data: &Path, out: &Path) -> std::process::Output {
    common::binary()
        .args(["audit", "--config"])
        .arg(common::root().join("config/default.toml"))
        .args([
            "--models",
            "densenet169,vit_b_16",
            "--methods",
            "gradcam,saliency,sae",
            "--out",
        ])
        .arg(out)
        .arg(data)
        .output()
        .expect("dicom-xai runs")
}

fn classified_lines(journal: &Path) -> usize {
    std::fs::read_to_string(journal)
        .expect("the journal")
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|record| record["error"].is_null())
        .count()
}

#[test]
fn audit_figures_match_the_references_and_a_second_run_resumes() {
    let work = tempfile::tempdir().expect("temporary folder");
    let picked = work.path().join("picked");
    for label in ["glioma", "meningioma", "notumor", "pituitary"] {
        let source = common::root()
            .join("tests/fixtures/eval-subset")
            .join(label);
        let mut images: Vec<_> = std::fs::read_dir(&source)
            .expect("the subset")
            .map(|e| e.expect("entry").path())
            .collect();
        images.sort();
        let target = picked.join(if label == "notumor" {
            "no_tumor"
        } else {
            label
        });
        std::fs::create_dir_all(&target).expect("folder");
        for image in images.iter().take(PER_LABEL) {
            std::fs::copy(image, target.join(image.file_name().expect("a name"))).expect("copy");
        }
    }
    let data = work.path().join("data");
    let written = common::run_support_script(
        "wrap_as_dicom.py",
        &[picked.as_os_str(), data.join("Testing").as_os_str()],
    );
    assert_eq!(String::from_utf8_lossy(&written.stdout).trim(), "20");
    // a training split beside it is not audited
    std::fs::create_dir_all(data.join("Training/glioma")).expect("folder");
    std::fs::write(data.join("Training/glioma/ignored.dcm"), b"not read").expect("file");
    let broken = data.join("Testing/glioma/broken.dcm");
    std::fs::write(&broken, b"DICM? no: a file cut short by a transfer").expect("file");
    let before = common::checksums(&data);

    let out = work.path().join("audit");
    let first = audit(&data, &out);
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(
        first.status.code(),
        Some(3),
        "a failed image gives 3:\n{stderr}"
    );
    assert!(
        stderr.contains("broken.dcm"),
        "the failure names the file:\n{stderr}"
    );
    assert_eq!(
        common::checksums(&data),
        before,
        "inputs are never modified"
    );

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("audit.json")).expect("audit.json"))
            .expect("JSON");
    let failures = report["failures"].as_array().expect("failures");
    assert_eq!(
        failures.len(),
        2,
        "the broken file, once per model: {failures:?}"
    );
    assert!(failures.iter().all(|f| {
        f["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.dcm"))
    }));
    for model in report["models"].as_array().expect("models") {
        assert_eq!(model["images"], 20, "{}", model["model"]);
        assert_eq!(model["trained"], true);
        for method in model["methods"].as_array().expect("methods") {
            assert_eq!(
                method["explained"], 20,
                "{} {}",
                model["model"], method["method"]
            );
        }
    }
    let checked = common::run_support_script(
        "audit_reference.py",
        &[
            out.as_os_str(),
            common::root()
                .join("models/densenet169/densenet169.toml")
                .as_os_str(),
            common::root()
                .join("models/vit_b_16/vit_b_16.toml")
                .as_os_str(),
        ],
    );
    eprintln!("{}", String::from_utf8_lossy(&checked.stdout));

    let page = std::fs::read_to_string(out.join("audit.html")).expect("audit.html");
    assert!(page.contains("NOT FOR DIAGNOSTIC USE"));
    for attribute in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.contains(attribute), "the page loads {attribute}...");
    }
    let pictures: usize = report["models"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["methods"].as_array().into_iter().flatten())
        .map(|m| m["gallery"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(
        page.matches("src=\"data:image/jpeg;base64,").count(),
        pictures,
        "every gallery picture is embedded"
    );

    // the second run measures nothing again: no new record of a classified image
    let journal = out.join("audit-records.jsonl");
    let measured = classified_lines(&journal);
    assert_eq!(measured, 40, "20 images for each of the two models");
    let second = audit(&data, &out);
    assert_eq!(second.status.code(), Some(3));
    assert_eq!(
        classified_lines(&journal),
        measured,
        "resumed, not measured again"
    );
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("audit.json")).expect("audit.json"))
            .expect("JSON");
    assert_eq!(again["models"], report["models"], "the same figures");
}

#[test]
fn a_data_folder_with_an_unknown_label_is_a_usage_error() {
    let work = tempfile::tempdir().expect("temporary folder");
    let data = work.path().join("data");
    std::fs::create_dir_all(data.join("astrocytoma")).expect("folder");
    std::fs::write(data.join("astrocytoma/a.png"), b"x").expect("file");
    let out = work.path().join("audit");
    let output = audit(&data, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("astrocytoma"), "{stderr}");
}
