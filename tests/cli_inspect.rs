//! `dicom-xai inspect` as a user runs it: JSON fields of docs/design.md section 2, pixel statistics equal
//! to pydicom's, errors that name the file, and the exit codes.

mod common;

use common::reference::References;
use serde_json::Value;

const FILES: &[&str] = &[
    "MR_small.dcm",
    "CT_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "SC_rgb_rle.dcm",
    "ExplVR_BigEnd.dcm",
];

/// Statistics are of f32 values summed in f64: agree with numpy far below a grey level.
const STATS_RELATIVE: f64 = 1e-9;

fn inspect_json(paths: &[std::path::PathBuf]) -> (Option<i32>, Vec<Value>) {
    let output = common::binary()
        .arg("inspect")
        .arg("--json")
        .args(paths)
        .output()
        .unwrap();
    let lines = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (output.status.code(), lines)
}

#[test]
fn json_summaries_match_pydicom_statistics() {
    let paths: Vec<_> = FILES
        .iter()
        .map(|f| common::asset(&format!("pydicom/{f}")))
        .collect();
    let references = References::compute(&paths);

    let (code, summaries) = inspect_json(&paths);
    assert_eq!(code, Some(0));
    assert_eq!(summaries.len(), FILES.len());
    for (n, summary) in summaries.iter().enumerate() {
        for key in [
            "transfer_syntax",
            "sop_class_uid",
            "rows",
            "columns",
            "frames",
            "photometric_interpretation",
        ] {
            assert!(!summary[key].is_null(), "{}: {key} missing", FILES[n]);
        }
        assert!(
            summary["error"].is_null(),
            "{}: {}",
            FILES[n],
            summary["error"]
        );
        let values = references.values(&references.entries[n]);
        let expected = [
            ("min", values.iter().copied().fold(f64::INFINITY, f64::min)),
            (
                "max",
                values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ),
            ("mean", values.mean().unwrap()),
        ];
        for (key, want) in expected {
            let got = summary["pixel_stats"][key].as_f64().unwrap();
            assert!(
                (got - want).abs() <= STATS_RELATIVE * want.abs().max(1.0),
                "{}: pixel_stats.{key} {got} vs pydicom {want}",
                FILES[n]
            );
        }
    }
    let ct = &summaries[1];
    assert_eq!(ct["transfer_syntax"], "1.2.840.10008.1.2.1");
    assert_eq!(ct["rows"], 128);
    assert_eq!(summaries[5]["photometric_interpretation"], "RGB");
}

#[test]
fn failures_are_reported_per_file_with_exit_code_3() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("cut.dcm");
    let good = std::fs::read(common::asset("pydicom/MR_small.dcm")).unwrap();
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    let good_path = common::asset("pydicom/MR_small.dcm");
    let (code, summaries) = inspect_json(&[good_path, truncated.clone()]);
    assert_eq!(code, Some(3));
    assert!(summaries[0]["error"].is_null());
    let error = summaries[1]["error"].as_str().unwrap();
    assert!(error.contains(&truncated.display().to_string()), "{error}");
}

#[test]
fn usage_errors_exit_2_and_text_output_names_the_syntax() {
    let status = common::binary().arg("inspect").output().unwrap().status;
    assert_eq!(status.code(), Some(2));
    let output = common::binary()
        .arg("inspect")
        .arg(common::asset("pydicom/MR_small_RLE.dcm"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("RLE Lossless"), "{text}");
    assert!(
        !text.contains("CompressedSamples"),
        "patient name must not be printed: {text}"
    );
}
