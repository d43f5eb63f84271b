//! Pixel decoding against pydicom: for every pydicom test file that both read, the values
//! after the Modality LUT must equal pydicom's `pixel_array` (after its rescale), and the
//! [0, 1] grey levels must equal a numpy implementation of the same VOI rules.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::reference::References;
use dicom_xai::dicom::{file, pixels};

/// Files pydicom decodes and we do not, each with the reason: the gaps of the codecs we
/// build on. Anything else that fails is a test failure.
const KNOWN_GAPS: &[(&str, &str)] = &[
    (
        "JPGExtended.dcm",
        "12-bit JPEG Extended: jpeg-decoder supports 8-bit precision only",
    ),
    (
        "SC_rgb_jpeg.dcm",
        "its data set is implicit VR under an explicit-VR syntax; dicom-object reads it as \
         explicit, and a garbage length of 1.2 GB is refused",
    ),
    (
        "SC_rgb_rle_32bit.dcm",
        "RLE with BitsAllocated 32: dicom-pixeldata's RLE decoder stops at 16",
    ),
    (
        "SC_rgb_rle_32bit_2frame.dcm",
        "RLE with BitsAllocated 32: as above",
    ),
    ("rtdose_rle.dcm", "RLE with BitsAllocated 32: as above"),
    (
        "rtdose_rle_1frame.dcm",
        "RLE with BitsAllocated 32: as above",
    ),
    (
        "SC_jpeg_no_color_transform.dcm",
        "JPEG of RGB without colour transform (Adobe APP14 transform 0): jpeg-decoder converts it as YCbCr",
    ),
    (
        "SC_ybr_full_422_uncompressed.dcm",
        "uncompressed YBR_FULL_422 (chroma-subsampled) storage",
    ),
];

#[test]
fn pixel_values_and_grey_levels_match_pydicom() {
    let files = common::files_under(&common::asset("pydicom"));
    let references = References::compute(&files);
    let gaps: BTreeMap<&str, &str> = KNOWN_GAPS.iter().copied().collect();

    let mut compared = 0;
    let mut syntaxes = BTreeSet::new();
    let mut failures = Vec::new();
    for entry in references.entries.iter().filter(|e| e.ok) {
        let name = entry
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let outcome = references.compare(entry);
        match (outcome, gaps.get(name)) {
            (Ok(()), None) => {
                compared += 1;
                syntaxes.insert(entry.transfer_syntax.clone().unwrap_or_default());
            }
            (Err(error), Some(reason)) => eprintln!("known gap {name}: {reason} ({error})"),
            (Ok(()), Some(_)) => failures.push(format!(
                "{name}: listed as a known gap but matches now: remove it"
            )),
            (Err(error), None) => failures.push(format!("{name}: {error}")),
        }
    }
    eprintln!("compared {compared} files; transfer syntaxes: {syntaxes:?}");
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
    for required in [
        "1.2.840.10008.1.2",      // implicit VR little endian
        "1.2.840.10008.1.2.1",    // explicit VR little endian
        "1.2.840.10008.1.2.2",    // explicit VR big endian
        "1.2.840.10008.1.2.1.99", // deflated
        "1.2.840.10008.1.2.5",    // RLE
        "1.2.840.10008.1.2.4.50", // JPEG baseline
        "1.2.840.10008.1.2.4.70", // JPEG lossless SV1
        "1.2.840.10008.1.2.4.80", // JPEG-LS lossless
        "1.2.840.10008.1.2.4.81", // JPEG-LS near-lossless
        "1.2.840.10008.1.2.4.90", // JPEG 2000 lossless
        "1.2.840.10008.1.2.4.91", // JPEG 2000
    ] {
        assert!(
            syntaxes.contains(required),
            "no file of {required} was compared"
        );
    }
    assert!(compared >= 40, "only {compared} files compared");
}

#[test]
fn files_pydicom_rejects_get_a_clear_error_naming_them() {
    // every file under the test folder either decodes or fails with its own path in the message
    for path in common::files_under(&common::asset("pydicom")) {
        let result = file::open(&path, file::Depth::Full)
            .map_err(|e| e.to_string())
            .and_then(|f| pixels::decode(&f).map(|_| ()).map_err(|e| e.to_string()));
        if let Err(message) = result {
            assert!(
                message.contains(&path.display().to_string()),
                "message does not name the file: {message}"
            );
        }
    }
}
