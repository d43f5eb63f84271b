//! The Secondary Capture writer against real validators: dciodvfy (no errors), dcmj2pnm
//! (renders), pydicom (reads the same pixels and the contract's attributes).

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::path::Path;

use dicom_xai::dicom::attrs;
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::secondary_capture::{
    self, Derivation, NOT_FOR_DIAGNOSTIC_USE, OverlayUids, Placement, RgbImage, Timestamp,
};
use ndarray::Array3;
use ndarray_npy::read_npy;

fn derivation(trained: bool) -> Derivation {
    Derivation {
        model_name: "densenet169-brain".into(),
        model_version: "3".into(),
        model_sha256: Some("ab".repeat(32)),
        trained,
        method: "gradcam".into(),
        parameters: "{}".into(),
        target_layer: Some("features.norm5".into()),
        class_label: "glioma".into(),
        probability: 0.973,
        colour_map: "jet".into(),
        quality: None,
    }
}

/// A plain picture: red rising along columns, green along rows, blue a checkerboard.
fn picture(rows: u32, columns: u32) -> RgbImage {
    let mut pixels = Vec::with_capacity((rows * columns * 3) as usize);
    for r in 0..rows {
        for c in 0..columns {
            pixels.push((c * 255 / columns.max(2).saturating_sub(1).max(1)).min(255) as u8);
            pixels.push((r * 255 / rows.max(2).saturating_sub(1).max(1)).min(255) as u8);
            pixels.push(if (r / 8 + c / 8) % 2 == 0 { 200 } else { 30 });
        }
    }
    RgbImage {
        rows,
        columns,
        pixels,
    }
}

struct Written {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    image: RgbImage,
    uids: OverlayUids,
}

fn write_overlay(source_path: &Path, frame: u32, trained: bool) -> Written {
    let source = file::open(source_path, Depth::Full).unwrap();
    let ds = source.dataset();
    let rows = attrs::int(ds, dicom_dictionary_std::tags::ROWS).unwrap() as u32;
    let columns = attrs::int(ds, dicom_dictionary_std::tags::COLUMNS).unwrap() as u32;
    let image = picture(rows, columns);
    let placement = Placement {
        source_frame: frame,
        instance_number: 7,
        series_number: 9901,
    };
    let created = Timestamp::from_unix(1_795_703_941, 0);
    let object =
        secondary_capture::build(ds, &image, &derivation(trained), placement, &created).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("overlay.dcm");
    secondary_capture::write_atomically(&object, &path).unwrap();
    let series = attrs::string(ds, dicom_dictionary_std::tags::SERIES_INSTANCE_UID).unwrap();
    let sop = source.sop_instance_uid().unwrap();
    let uids = OverlayUids::derive(&series, &sop, frame, &derivation(trained));
    Written {
        _dir: dir,
        path,
        image,
        uids,
    }
}

fn pydicom_view(path: &Path) -> (HashMap<String, String>, Array3<u8>) {
    let npy = path.with_extension("npy");
    let output =
        common::run_support_script("read_with_pydicom.py", &[path.as_os_str(), npy.as_os_str()]);
    let attributes: HashMap<String, String> = serde_json::from_slice(&output.stdout).unwrap();
    let pixels: Array3<u8> = read_npy(&npy).unwrap();
    (attributes, pixels)
}

#[test]
fn overlay_passes_dciodvfy_renders_and_reads_back_in_pydicom() {
    let source = common::asset("pydicom/MR_small.dcm");
    let written = write_overlay(&source, 0, true);

    let errors = common::dciodvfy_errors(&written.path);
    assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));

    let png = written.path.with_extension("png");
    let rendered = common::tool(
        "dcmj2pnm",
        &[OsStr::new("+on"), written.path.as_os_str(), png.as_os_str()],
    );
    assert!(
        rendered.status.success(),
        "dcmj2pnm: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let decoded = image_size_of_png(&png);
    assert_eq!(decoded, (written.image.columns, written.image.rows));

    let (a, pixels) = pydicom_view(&written.path);
    let expected = Array3::from_shape_vec(
        (
            written.image.rows as usize,
            written.image.columns as usize,
            3,
        ),
        written.image.pixels.clone(),
    )
    .unwrap();
    assert_eq!(pixels, expected, "pydicom reads different pixels");

    let source_ds = file::open(&source, Depth::Header).unwrap();
    let same = |keyword: &str, tag| {
        let ours = a.get(keyword).cloned().unwrap_or_default();
        let theirs = attrs::string(source_ds.dataset(), tag).unwrap_or_default();
        assert_eq!(
            ours.trim(),
            theirs.trim(),
            "{keyword} must be copied from the source"
        );
    };
    use dicom_dictionary_std::tags;
    same("StudyInstanceUID", tags::STUDY_INSTANCE_UID);
    same("PatientName", tags::PATIENT_NAME);
    same("PatientID", tags::PATIENT_ID);
    same("PatientBirthDate", tags::PATIENT_BIRTH_DATE);
    same("PatientSex", tags::PATIENT_SEX);
    same("StudyDate", tags::STUDY_DATE);
    same("AccessionNumber", tags::ACCESSION_NUMBER);

    let expect = |keyword: &str, value: &str| {
        assert_eq!(a.get(keyword).map(String::as_str), Some(value), "{keyword}");
    };
    expect("SOPClassUID", "1.2.840.10008.5.1.4.1.1.7");
    expect("SOPInstanceUID", &written.uids.instance);
    expect(
        "file_meta.MediaStorageSOPInstanceUID",
        &written.uids.instance,
    );
    expect("file_meta.TransferSyntaxUID", "1.2.840.10008.1.2.1");
    expect("SeriesInstanceUID", &written.uids.series);
    expect("Modality", "OT");
    expect("ConversionType", "WSD");
    expect("ImageType", "DERIVED\\SECONDARY");
    expect("BurnedInAnnotation", "YES");
    expect("SamplesPerPixel", "3");
    expect("PhotometricInterpretation", "RGB");
    expect("PlanarConfiguration", "0");
    expect("BitsAllocated", "8");
    expect("SeriesNumber", "9901");
    expect(
        "SourceImageSequence[0].ReferencedSOPInstanceUID",
        &source_ds.sop_instance_uid().unwrap(),
    );
    expect(
        "ReferencedSeriesSequence[0].SeriesInstanceUID",
        &attrs::string(source_ds.dataset(), tags::SERIES_INSTANCE_UID).unwrap(),
    );
    expect(
        "ContributingEquipmentSequence[0].ManufacturerModelName",
        "densenet169-brain",
    );
    assert!(a["ContributingEquipmentSequence[0].SoftwareVersions"].contains("model 3"));
    assert!(a["SeriesDescription"].contains(NOT_FOR_DIAGNOSTIC_USE));
    assert!(!a["SeriesDescription"].contains("UNTRAINED"));
    for part in ["gradcam", "features.norm5", "glioma", "jet"] {
        assert!(
            a["DerivationDescription"].contains(part),
            "DerivationDescription lacks {part}"
        );
    }
}

#[test]
fn overlay_uids_are_deterministic_and_untrained_models_say_so() {
    let source = common::asset("pydicom/MR_small.dcm");
    let first = write_overlay(&source, 0, false);
    let second = write_overlay(&source, 0, false);
    let read = |p: &Path| file::open(p, Depth::Full).unwrap();
    let (a, b) = (read(&first.path), read(&second.path));
    assert_eq!(a.sop_instance_uid(), b.sop_instance_uid());
    assert_eq!(
        a.sop_instance_uid().as_deref(),
        Some(first.uids.instance.as_str())
    );
    let description =
        attrs::string(a.dataset(), dicom_dictionary_std::tags::SERIES_DESCRIPTION).unwrap();
    assert!(description.contains("UNTRAINED"), "{description}");
    assert!(
        description.contains(NOT_FOR_DIAGNOSTIC_USE),
        "{description}"
    );
    // a different method is a different series and instance
    let mut other = derivation(false);
    other.method = "saliency".into();
    let series =
        attrs::string(a.dataset(), dicom_dictionary_std::tags::SERIES_INSTANCE_UID).unwrap();
    assert_ne!(series, OverlayUids::derive("x", "y", 0, &other).series);
}

#[test]
fn overlay_of_a_frame_of_a_single_frame_class_validates_without_frame_number() {
    // a (non-conforming) two-frame file of the single-frame SC class: frame 2 of 2
    let source = common::asset("pydicom/SC_rgb_rle_2frame.dcm");
    let written = write_overlay(&source, 1, true);
    let errors = common::dciodvfy_errors(&written.path);
    assert!(errors.is_empty(), "dciodvfy errors:\n{}", errors.join("\n"));
    let (a, _) = pydicom_view(&written.path);
    assert_eq!(a.get("SourceImageSequence[0].ReferencedFrameNumber"), None);
    assert_eq!(
        a.get("SourceImageSequence[0].ReferencedSOPClassUID")
            .map(String::as_str),
        Some("1.2.840.10008.5.1.4.1.1.7")
    );
}

/// Width and height of a PNG, from its IHDR chunk.
fn image_size_of_png(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[1..4], b"PNG", "{} is not a PNG", path.display());
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}
