//! `dicom-xai explain` (docs/design.md section 2) on a known-answer model: heatmap.npy of the image's
//! size with the evidence where it was planted, overlay.png, explain.json; DICOM and PNG
//! inputs; usage errors exit 2, unreadable images exit 1.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use ndarray::Array2;
use ndarray_npy::read_npy;
use serde_json::Value;

/// The toy model's planted region (rows, columns) in its 64 x 64 input.
const REGION: (usize, usize, usize, usize) = (20, 36, 36, 52);

struct Setup {
    dir: tempfile::TempDir,
    config: PathBuf,
    manifest: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    common::run_support_script("make_toy_model.py", &[dir.path().as_os_str()]);
    let manifest = dir.path().join("toy.toml");
    let config = dir.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[runtime]
intra_threads = 2

[[models]]
manifest = "{}"

[explain]
methods = ["occlusion"]
colour_map = "viridis"

[methods.occlusion]
patch = 8
stride = 4
baseline = "zero"

[[rules]]
name = "all"
[rules.select]
modality = ["MR"]
"#,
            manifest.display()
        ),
    )
    .unwrap();
    Setup {
        dir,
        config,
        manifest,
    }
}

fn explain(setup: &Setup, model: &str, extra: &[&str], image: &Path, out: &Path) -> Output {
    common::binary()
        .args(["explain", "--config"])
        .arg(&setup.config)
        .args(["--model", model, "--method", "occlusion"])
        .args(extra)
        .arg(image)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

fn grey_png(path: &Path, size: u32, value: u8) {
    image::GrayImage::from_pixel(size, size, image::Luma([value]))
        .save(path)
        .unwrap();
}

#[test]
fn a_png_is_explained_where_the_evidence_was_planted() {
    let setup = setup();
    let png = setup.dir.path().join("slice.png");
    grey_png(&png, 64, 128);
    let out = setup.dir.path().join("out");
    let output = explain(&setup, "toy-known-answer", &[], &png, &out);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let heat: Array2<f32> = read_npy(out.join("heatmap.npy")).unwrap();
    assert_eq!(heat.dim(), (64, 64));
    assert!(heat.iter().all(|v| *v >= 0.0 && v.is_finite()));
    let (peak, _) =
        heat.indexed_iter().fold(
            ((0, 0), f32::MIN),
            |b, (i, v)| if *v > b.1 { (i, *v) } else { b },
        );
    let (r0, r1, c0, c1) = REGION;
    assert!(
        (r0..r1).contains(&peak.0) && (c0..c1).contains(&peak.1),
        "peak at {peak:?}"
    );

    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("explain.json")).unwrap()).unwrap();
    assert_eq!(report["prediction"]["label"], "lesion");
    let p = report["prediction"]["probability"].as_f64().unwrap();
    // the grey level of 8-bit 128 is 128/255; the lesion logit is 8 times it, the other 0
    let logit: f64 = 8.0 * 128.0 / 255.0;
    assert!((p - 1.0 / (1.0 + (-logit).exp())).abs() < 1e-5, "{p}");
    assert_eq!(report["class"], "lesion");
    assert_eq!(report["method"], "occlusion");
    assert_eq!(report["parameters"]["patch"], 8);
    assert_eq!(report["model"]["trained"], false);
    for key in [
        "in_brain_fraction",
        "deletion_auc",
        "insertion_auc",
        "flags",
    ] {
        assert!(report["quality"].get(key).is_some(), "quality.{key}");
    }
    let overlay = image::open(out.join("overlay.png")).unwrap();
    assert!(overlay.width() >= 512 && overlay.width().is_multiple_of(64));
}

#[test]
fn a_dicom_slice_and_a_manifest_path_work_and_maps_follow_the_image_size() {
    let setup = setup();
    // MR_small is 64 x 64: the model sees it as it is
    let out = setup.dir.path().join("dicom");
    let mr = common::asset("pydicom/MR_small.dcm");
    let output = explain(
        &setup,
        setup.manifest.to_str().unwrap(),
        &["--class", "notumor"],
        &mr,
        &out,
    );
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("explain.json")).unwrap()).unwrap();
    assert_eq!(report["class"], "notumor");
    let heat: Array2<f32> = read_npy(out.join("heatmap.npy")).unwrap();
    assert_eq!(heat.dim(), (64, 64));

    // a 128 x 128 picture: the map comes back at 128 x 128, the region scaled with it
    let png = setup.dir.path().join("big.png");
    grey_png(&png, 128, 128);
    let out = setup.dir.path().join("big");
    let output = explain(&setup, "toy-known-answer", &[], &png, &out);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let heat: Array2<f32> = read_npy(out.join("heatmap.npy")).unwrap();
    assert_eq!(heat.dim(), (128, 128));
    let (r0, r1, c0, c1) = REGION;
    let inside: f32 = heat
        .slice(ndarray::s![r0 * 2..r1 * 2, c0 * 2..c1 * 2])
        .sum();
    assert!(inside / heat.sum() > 0.6);
}

#[test]
fn bad_requests_exit_2_and_unreadable_images_exit_1() {
    let setup = setup();
    let png = setup.dir.path().join("slice.png");
    grey_png(&png, 64, 128);
    let out = setup.dir.path().join("out");
    for (model, extra, expected) in [
        ("toy-known-answer", &["--class", "banana"][..], "banana"),
        ("no-such-model", &[][..], "no-such-model"),
    ] {
        let output = explain(&setup, model, extra, &png, &out);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
    }
    let output = common::binary()
        .args(["explain", "--config"])
        .arg(&setup.config)
        .args(["--model", "toy-known-answer", "--method", "telepathy"])
        .arg(&png)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let missing = setup.dir.path().join("missing.png");
    let output = explain(&setup, "toy-known-answer", &[], &missing, &out);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("missing.png"), "{stderr}");
}
