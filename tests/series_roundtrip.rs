//! Realistic MR studies generated from the MNI152 template (`tests/support/make_series.py`)
//! come back through the reader: grouped into the right studies and series, slices in
//! spatial order (oblique planes, shuffled InstanceNumbers, random file names, sub-folders,
//! multi-frame frames stored in reverse), every file decoded to pydicom's values.

mod common;

use std::collections::HashMap;

use std::sync::OnceLock;

use common::GeneratedStudy;
use common::reference::References;
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::scan::{self, Disposition};
use dicom_xai::dicom::secondary_capture::{self, Derivation, Placement, RgbImage, Timestamp};

fn test_preset() -> &'static GeneratedStudy {
    static GENERATED: OnceLock<GeneratedStudy> = OnceLock::new();
    GENERATED.get_or_init(|| common::generate_study("test"))
}

fn ordering_preset() -> &'static GeneratedStudy {
    static GENERATED: OnceLock<GeneratedStudy> = OnceLock::new();
    GENERATED.get_or_init(|| common::generate_study("ordering"))
}

/// Scans a generated study and checks grouping and slice order against the manifest.
fn assert_round_trip(generated: &GeneratedStudy) {
    let scanned = scan::scan(std::slice::from_ref(&generated.root));
    // the manifest is the only non-DICOM file, and it is skipped, not failed
    assert_eq!(scanned.issues.len(), 1, "{:#?}", scanned.issues);
    assert_eq!(scanned.issues[0].disposition, Disposition::Skipped);

    let studies = generated.manifest["studies"].as_array().unwrap();
    assert_eq!(scanned.studies.len(), studies.len());
    for expected_study in studies {
        let study_uid = expected_study["study_instance_uid"].as_str().unwrap();
        let study = scanned
            .studies
            .iter()
            .find(|s| s.uid == study_uid)
            .expect(study_uid);
        let expected_series = expected_study["series"].as_array().unwrap();
        assert_eq!(study.series.len(), expected_series.len());
        for expected in expected_series {
            let uid = expected["series_instance_uid"].as_str().unwrap();
            let series = study.series.iter().find(|s| s.uid == uid).expect(uid);
            let ours: Vec<(String, u64)> = series
                .slices
                .iter()
                .map(|s| {
                    let (instance, frame) = series.slice(*s);
                    (instance.sop_instance_uid.clone(), u64::from(frame))
                })
                .collect();
            let theirs: Vec<(String, u64)> = expected["ordered_frames"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    (
                        pair[0].as_str().unwrap().to_string(),
                        pair[1].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(
                ours, theirs,
                "slice order of series {} ({})",
                expected["description"], expected["orientation"]
            );
            assert_eq!(series.header.number, expected["series_number"].as_i64());
        }
    }
}

#[test]
fn test_study_groups_and_orders_every_series() {
    let generated = test_preset();
    let series = generated.manifest["studies"][0]["series"]
        .as_array()
        .unwrap();
    assert!(
        series.len() >= 7,
        "the test preset covers axial, coronal, sagittal and multi-frame"
    );
    assert_round_trip(generated);
}

#[test]
fn oblique_and_scrambled_series_come_back_in_spatial_order() {
    assert_round_trip(ordering_preset());
}

#[test]
fn every_generated_file_decodes_to_pydicom_values_and_numpy_grey_levels() {
    let generated = test_preset();
    let files = generated.dicom_files();
    let references = References::compute(&files);
    let mut syntaxes: HashMap<String, usize> = HashMap::new();
    for entry in &references.entries {
        assert!(
            entry.ok,
            "pydicom cannot decode generated {}",
            entry.file.display()
        );
        if let Err(error) = references.compare(entry) {
            panic!("{}: {error}", entry.file.display());
        }
        *syntaxes
            .entry(entry.transfer_syntax.clone().unwrap())
            .or_default() += 1;
    }
    eprintln!("generated files compared per transfer syntax: {syntaxes:?}");
    assert!(syntaxes.len() >= 6, "{syntaxes:?}");
}

#[test]
fn overlay_of_an_enhanced_mr_frame_references_that_frame() {
    let generated = test_preset();
    let multiframe = generated.manifest["studies"][0]["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["multiframe"].as_bool() == Some(true))
        .expect("a multi-frame series");
    let path = generated
        .root
        .join(multiframe["files"][0].as_str().unwrap());
    let source = file::open(&path, Depth::Full).unwrap();
    let (rows, columns) = (
        multiframe["rows"].as_u64().unwrap() as u32,
        multiframe["columns"].as_u64().unwrap() as u32,
    );
    let image = RgbImage {
        rows,
        columns,
        pixels: vec![128; (rows * columns * 3) as usize],
    };
    let derivation = Derivation {
        model_name: "vit-b16".into(),
        model_version: "1".into(),
        model_sha256: None,
        trained: false,
        method: "rollout".into(),
        parameters: "{}".into(),
        target_layer: None,
        class_label: "notumor".into(),
        probability: 0.5,
        colour_map: "inferno".into(),
        quality: None,
    };
    let placement = Placement {
        source_frame: 4,
        instance_number: 5,
        series_number: 9902,
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
    let written = out.path().join("frame.dcm");
    secondary_capture::write_atomically(&object, &written).unwrap();
    common::assert_no_dciodvfy_errors(&written);
    let npy = written.with_extension("npy");
    let output = common::run_support_script(
        "read_with_pydicom.py",
        &[written.as_os_str(), npy.as_os_str()],
    );
    let attributes: HashMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        attributes["SourceImageSequence[0].ReferencedFrameNumber"],
        "5"
    );
    assert_eq!(
        attributes["SourceImageSequence[0].ReferencedSOPClassUID"],
        "1.2.840.10008.5.1.4.1.1.4.1"
    );
    let patient =
        dicom_xai::dicom::attrs::string(source.dataset(), dicom_dictionary_std::tags::PATIENT_NAME);
    assert_eq!(Some(&attributes["PatientName"]), patient.as_ref());
}
