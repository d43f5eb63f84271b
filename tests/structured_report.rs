//! The TID 1500 Structured Report writer on slices of a generated study: the file passes
//! dciodvfy, and highdicom reads it as a Measurement Report whose groups, findings and values
//! are the ones written (`tests/support/check_structured_report.py`).

mod common;

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::secondary_capture::Timestamp;
use dicom_xai::dicom::structured_report::{
    self, Code, ExplanationFinding, Referenced, SeriesFinding,
};
use serde_json::Value;

fn referenced(path: &std::path::Path) -> Referenced {
    let object = file::open(path, Depth::Full).expect("a slice");
    let text = |tag| dicom_xai::dicom::attrs::string(object.dataset(), tag).expect("attribute");
    Referenced {
        class_uid: text(dicom_dictionary_std::tags::SOP_CLASS_UID),
        instance_uid: text(dicom_dictionary_std::tags::SOP_INSTANCE_UID),
        series_uid: text(dicom_dictionary_std::tags::SERIES_INSTANCE_UID),
    }
}

#[test]
fn the_report_is_valid_and_reads_back_as_tid_1500() {
    let study = common::generate_study_seeded("test", 3);
    let files = study.dicom_files();
    let slices: Vec<Referenced> = files.iter().take(2).map(|p| referenced(p)).collect();
    let source = file::open(&files[0], Depth::Full).expect("a slice");
    let labels = ["glioma", "meningioma", "notumor", "pituitary"];
    let probabilities = [0.81_f32, 0.12, 0.05, 0.02];
    let overlay = Referenced {
        class_uid: "1.2.840.10008.5.1.4.1.1.7".into(),
        instance_uid: "2.25.1234".into(),
        series_uid: "2.25.5678".into(),
    };
    let finding = SeriesFinding {
        series_uid: slices[0].series_uid.clone(),
        model: ("densenet169".into(), "1".into(), "ab".repeat(32), true),
        finding: Code::private("glioma", "glioma"),
        decided_on: Some((slices[0].clone(), (256, 256))),
        probabilities: labels
            .iter()
            .zip(probabilities)
            .map(|(label, p)| (Code::private(label, label), p))
            .collect(),
        explanations: vec![ExplanationFinding {
            method: "gradcam".into(),
            class: Code::private("glioma", "glioma"),
            source: slices[0].clone(),
            source_size: Some((256, 256)),
            in_brain_fraction: Some(0.42),
            deletion_auc: Some(0.1),
            insertion_auc: Some(0.7),
            flags: vec!["evidence-outside-brain".into()],
            outputs: vec![overlay],
        }],
    };
    let created = Timestamp::from_unix(1_795_703_941, 0);
    let (object, uids) =
        structured_report::build(source.dataset(), &[finding], &slices, 9999, &created)
            .expect("the report");
    let dir = tempfile::tempdir().expect("temporary folder");
    let path = dir.path().join("sr.dcm");
    dicom_xai::dicom::secondary_capture::write_atomically(&object, &path).expect("written");
    common::assert_no_dciodvfy_errors(&path);
    let checked = common::run_support_script("check_structured_report.py", &[path.as_os_str()]);
    let read: Value = serde_json::from_slice(&checked.stdout).expect("the check's JSON");
    println!("{read}");
    assert_eq!(read["sop_instance_uid"], uids.instance.as_str());
    assert_eq!(read["groups"].as_array().map(Vec::len), Some(2), "{read}");
    let series_group = &read["groups"][0];
    assert_eq!(series_group["finding"], "glioma");
    let values: Vec<f64> = series_group["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .map(|m| m["value"].as_f64().expect("a value"))
        .collect();
    assert_eq!(values.len(), 4);
    for (read, written) in values.iter().zip(probabilities) {
        assert!((read - f64::from(written)).abs() < 1e-6, "{read} {written}");
    }
    let explanation = &read["groups"][1];
    assert_eq!(explanation["qualitative"][0], "OUTSIDE-BRAIN");
    assert_eq!(explanation["measurements"][0]["value"], 0.42);
    assert_eq!(
        explanation["source_images"][0],
        slices[0].instance_uid.as_str()
    );
}
