//! Pixel decoding against pydicom: for every pydicom test file that both read, the values
//! after the Modality LUT must equal pydicom's `pixel_array` (after its rescale), and the
//! [0, 1] grey levels must equal a numpy implementation of the same VOI rules.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use dicom_xai::dicom::{file, pixels, voi};
use ndarray::{ArrayD, Axis};
use ndarray_npy::read_npy;

/// Lossless syntaxes must match exactly; f32 storage of rescaled values rounds at 2^-24.
const LOSSLESS_RELATIVE: f64 = 1e-6;
/// Lossy codecs: two conforming decoders may differ by an IDCT rounding step or two.
const LOSSY_MAX_ABS: f64 = 4.0;
/// Grey levels in [0, 1] against the numpy VOI reference.
const UNIT_ABS: f64 = 1e-6;

/// Files pydicom decodes and we do not, each with the reason: the gaps of the codecs we
/// build on. Anything else that fails is a test failure.
const KNOWN_GAPS: &[(&str, &str)] = &[
    (
        "JPGExtended.dcm",
        "12-bit JPEG Extended: jpeg-decoder supports 8-bit precision only",
    ),
    (
        "SC_rgb_jpeg.dcm",
        "dicom-object cannot parse this file's encapsulated pixel data item",
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

const LOSSY_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91",
];

#[derive(serde::Deserialize)]
struct Entry {
    file: PathBuf,
    id: usize,
    ok: bool,
    #[serde(default)]
    transfer_syntax: Option<String>,
    #[serde(default)]
    has_unit: bool,
}

fn max_abs_diff(ours: &ArrayD<f64>, theirs: &ArrayD<f64>, relative: bool) -> f64 {
    ours.iter()
        .zip(theirs.iter())
        .map(|(a, b)| {
            let d = (a - b).abs();
            if relative { d / b.abs().max(1.0) } else { d }
        })
        .fold(0.0, f64::max)
}

#[test]
fn pixel_values_and_grey_levels_match_pydicom() {
    let files = common::files_under(&common::asset("pydicom"));
    let out = tempfile::tempdir().unwrap();
    let mut args: Vec<&OsStr> = vec![out.path().as_os_str()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    common::run_support_script("pydicom_reference.py", &args);
    let index: Vec<Entry> =
        serde_json::from_slice(&std::fs::read(out.path().join("index.json")).unwrap()).unwrap();
    let gaps: BTreeMap<&str, &str> = KNOWN_GAPS.iter().copied().collect();

    let mut compared = 0;
    let mut syntaxes = BTreeSet::new();
    let mut failures = Vec::new();
    for entry in index.iter().filter(|e| e.ok) {
        let name = entry
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let outcome = compare(entry, out.path());
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

/// Decodes one file and compares it with pydicom's values and the numpy grey levels.
fn compare(entry: &Entry, references: &Path) -> Result<(), String> {
    let dicom = file::open(&entry.file, file::Depth::Full)
        .map_err(|e| format!("pydicom decodes it, we fail: {e}"))?;
    let frames = pixels::decode(&dicom).map_err(|e| format!("pydicom decodes it, we fail: {e}"))?;
    let theirs: ArrayD<f64> =
        read_npy(references.join(format!("{}.values.npy", entry.id))).unwrap();
    let ours = frames.values.mapv(f64::from).into_dyn();
    if ours.shape() != theirs.shape() {
        return Err(format!(
            "shape {:?} vs pydicom {:?}",
            ours.shape(),
            theirs.shape()
        ));
    }
    let ts = entry.transfer_syntax.clone().unwrap_or_default();
    let lossy = LOSSY_SYNTAXES.contains(&ts.as_str());
    let diff = max_abs_diff(&ours, &theirs, !lossy);
    let limit = if lossy {
        LOSSY_MAX_ABS
    } else {
        LOSSLESS_RELATIVE
    };
    if diff > limit {
        return Err(format!(
            "({ts}) values differ from pydicom by {diff} (limit {limit})"
        ));
    }
    if entry.has_unit && !lossy {
        let reference: ArrayD<f64> =
            read_npy(references.join(format!("{}.unit.npy", entry.id))).unwrap();
        for (frame, expected) in reference.axis_iter(Axis(0)).enumerate() {
            let grey = voi::unit_grey(&dicom, &frames, frame).map_err(|e| e.to_string())?;
            let diff = max_abs_diff(
                &grey.mapv(f64::from).into_dyn(),
                &expected.to_owned(),
                false,
            );
            if diff > UNIT_ABS {
                return Err(format!(
                    "frame {frame}: [0,1] grey differs from numpy VOI by {diff}"
                ));
            }
        }
    }
    Ok(())
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
