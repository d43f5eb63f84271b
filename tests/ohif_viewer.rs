//! A study processed by dicom-xai in a real viewer: OHIF v3 (`@ohif/app` 3.13.2's built
//! `dist/`, fetched into `assets/ohif/` by `make setup`) in headless Chromium, reading a
//! real Orthanc through DICOMweb. The trained DenseNet169's Grad-CAM Parametric Map of
//! every slice of a generated axial series is uploaded with its source series; OHIF must
//! show the source volume with the map fused over it, its colours where the map is high
//! and none where it is zero. Compared on screen point by point: sample points of the map's
//! frame on the shown slice are placed on the screenshot by the viewport's own
//! world-to-canvas transform, in a fused picture and in the same viewport with the map's
//! layer hidden (`tests/support/ohif_viewer.py` drives the browser; the verdict is here).
//! The study's Structured Report is opened too: OHIF's parser must read the class
//! probabilities report.json holds (see `structured_report_in_ohif` for what its viewport
//! does with them).
//!
//! Screenshots are kept in `target/test-artefacts/ohif/`; `DICOM_XAI_UPDATE_DOCS=1` also
//! copies the fused one to `docs/ohif-pmap.png`.

mod common;
#[path = "support/orthanc.rs"]
mod orthanc;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// The map's value below which a sample point counts as "high", as a share of the frame's
/// largest value.
const HIGH: f64 = 0.5;

fn write_config(dir: &Path) -> PathBuf {
    let manifest = common::root().join("models/densenet169/densenet169.toml");
    assert!(
        manifest.exists(),
        "{} is missing: run `make setup` (it exports the shipped DenseNet169)",
        manifest.display()
    );
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
formats = ["sc", "pmap", "sr"]

[quality]
faithfulness_steps = 0

[explain]
methods = ["gradcam"]
slices = "all"

[[rules]]
name = "axial-t1"
[rules.select]
modality = ["MR"]
"#,
        manifest.display()
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).expect("configuration");
    path
}

/// `target/` of the build these tests belong to (target/<profile>/deps/<test>).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.ancestors()
        .nth(3)
        .expect("target/<profile>/deps/<test>")
        .to_path_buf()
}

/// A JSON array of numbers.
fn numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_f64().expect("a number"))
        .collect()
}

fn rgb(image: &image::RgbImage, x: u32, y: u32) -> [i32; 3] {
    let p = image.get_pixel(x, y);
    [i32::from(p[0]), i32::from(p[1]), i32::from(p[2])]
}

/// Largest channel difference between two pictures over the 3 x 3 pixels around (x, y).
fn difference(a: &image::RgbImage, b: &image::RgbImage, x: u32, y: u32) -> i32 {
    let mut largest = 0;
    for dy in 0..3 {
        for dx in 0..3 {
            let (p, q) = (
                rgb(a, x + dx - 1, y + dy - 1),
                rgb(b, x + dx - 1, y + dy - 1),
            );
            for c in 0..3 {
                largest = largest.max((p[c] - q[c]).abs());
            }
        }
    }
    largest
}

/// Colourfulness of a pixel: its largest channel less its smallest (0 for grey).
fn chroma(image: &image::RgbImage, x: u32, y: u32) -> i32 {
    let p = rgb(image, x, y);
    p.iter().max().expect("3 channels") - p.iter().min().expect("3 channels")
}

/// Ranks (ties share their mean rank).
fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|a, b| values[*a].total_cmp(&values[*b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start;
        while end + 1 < order.len() && values[order[end + 1]] == values[order[start]] {
            end += 1;
        }
        for index in &order[start..=end] {
            ranks[*index] = (start + end) as f64 / 2.0;
        }
        start = end + 1;
    }
    ranks
}

/// Spearman's rank correlation.
fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn median(mut values: Vec<i32>) -> i32 {
    values.sort_unstable();
    values.get(values.len() / 2).copied().unwrap_or(0)
}

#[test]
fn ohif_fuses_the_map_over_its_series_and_reads_the_structured_report() {
    let dist = common::asset("ohif/dist");
    assert!(
        dist.join("index.html").exists(),
        "OHIF is missing: run `make setup` (scripts/fetch_ohif.py, which needs npm)"
    );
    let work = tempfile::tempdir().expect("temporary folder");
    let study = common::generate_study_seeded("demo", 11);
    let config = write_config(work.path());
    let out = work.path().join("out");
    let run = common::binary()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .arg(&study.root)
        .output()
        .expect("dicom-xai runs");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report_path = common::files_under(&out)
        .into_iter()
        .find(|p| p.ends_with("report.json"))
        .expect("report.json");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report_path).expect("report")).expect("JSON");
    let study_uid = report["study_instance_uid"].as_str().expect("study UID");
    let source_series = report["series"][0]["series_instance_uid"]
        .as_str()
        .expect("series UID");
    let maps = common::model_entries(&report, "parametric_maps");
    assert_eq!(maps.len(), 1, "one map: {report}");
    let map_file = out
        .join(study_uid)
        .join(maps[0]["output_file"].as_str().expect("output file"));
    let sr = &report["structured_report"];
    let sr_file = out.join(study_uid).join(
        sr["output_file"]
            .as_str()
            .expect("the Structured Report's file"),
    );
    let sr_series = sr["output_series_instance_uid"]
        .as_str()
        .expect("the Structured Report's series");

    // Orthanc with DICOMweb: the source series, the map and the Structured Report
    let dicomweb = Path::new(orthanc::DICOMWEB);
    assert!(
        dicomweb.exists(),
        "{} is missing: run `make setup` (Debian package orthanc-dicomweb)",
        orthanc::DICOMWEB
    );
    let server = orthanc::Orthanc::start(&[dicomweb], 60, json!({}));
    for file in study.dicom_files().iter().chain([&map_file, &sr_file]) {
        let answer = server.store(file);
        assert_eq!(answer["Status"], "Success", "{}: {answer}", file.display());
    }

    let artefacts = target_dir().join("test-artefacts/ohif");
    let _ = std::fs::remove_dir_all(&artefacts);
    let browser = common::run_support_script(
        "ohif_viewer.py",
        &[
            "--dist".as_ref(),
            dist.as_os_str(),
            "--orthanc".as_ref(),
            server.url("").as_ref(),
            "--study".as_ref(),
            study_uid.as_ref(),
            "--source-series".as_ref(),
            source_series.as_ref(),
            "--map".as_ref(),
            map_file.as_os_str(),
            "--sr-series".as_ref(),
            sr_series.as_ref(),
            "--out".as_ref(),
            artefacts.as_os_str(),
        ],
    );
    let seen: Value = serde_json::from_slice(&browser.stdout).unwrap_or_else(|e| {
        panic!(
            "ohif_viewer.py printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&browser.stdout),
            String::from_utf8_lossy(&browser.stderr)
        )
    });
    let summary = json!({
        "error": seen["error"], "console": seen["console"], "proxy_errors": seen["proxy_errors"],
        "frame": seen["frame"], "actors": seen["actors"], "seconds": seen["seconds"],
        "notifications": seen["notifications"], "sr_notifications": seen["sr_notifications"],
        "failure_screenshot": seen["failure_screenshot"],
    });
    eprintln!("OHIF: {summary:#}");
    assert!(seen["error"].is_null(), "OHIF failed: {summary:#}");
    assert_eq!(
        seen["map_modality"], "PMAP",
        "OHIF read the map as a Parametric Map"
    );
    let exceptions: Vec<&Value> = seen["console"]
        .as_array()
        .expect("console")
        .iter()
        .filter(|line| line.as_str().is_some_and(|l| l.starts_with("exception")))
        .collect();
    assert!(exceptions.is_empty(), "OHIF threw: {exceptions:#?}");
    // OHIF's own notice that it shows the map's values times 100, and no error
    let notifications = &seen["notifications"];
    assert!(
        notifications.to_string().contains("multiplied by 100")
            && !notifications.to_string().contains("went wrong"),
        "OHIF's notifications: {notifications}"
    );
    assert!(
        seen["frame"]["off_mm"].as_f64().expect("offset") < 0.5,
        "the viewport shows a slice of the map: {summary:#}"
    );

    let fused = image::open(seen["screenshots"]["fused"].as_str().expect("fused"))
        .expect("fused PNG")
        .to_rgb8();
    let unfused = image::open(seen["screenshots"]["unfused"].as_str().expect("unfused"))
        .expect("unfused PNG")
        .to_rgb8();
    let rect = numbers(&seen["viewport"]);
    let largest = seen["frame"]["max"].as_f64().expect("max");
    assert!(largest > 0.0, "the shown frame of the map is not empty");

    // sample points inside the viewport: (difference fused/unfused, fused chroma,
    // unfused chroma) where the map is high, and the difference where it is zero around;
    // and at every point inside, the difference and the point's index
    let (mut high, mut zero, mut everywhere) = (Vec::new(), Vec::new(), Vec::new());
    for (index, probe) in seen["probes"]
        .as_array()
        .expect("probes")
        .iter()
        .enumerate()
    {
        let p = numbers(probe);
        let (x, y, value, near) = (p[0].floor(), p[1].floor(), p[2], p[3]);
        let inside = x >= rect[0] + 2.0
            && y >= rect[1] + 2.0
            && x < rect[0] + rect[2] - 2.0
            && y < rect[1] + rect[3] - 2.0
            && x < f64::from(fused.width()) - 2.0
            && y < f64::from(fused.height()) - 2.0;
        if !inside {
            continue;
        }
        let (x, y) = (x as u32, y as u32);
        everywhere.push((index, f64::from(difference(&fused, &unfused, x, y))));
        if value >= HIGH * largest {
            high.push((
                difference(&fused, &unfused, x, y),
                chroma(&fused, x, y),
                chroma(&unfused, x, y),
            ));
        } else if near == 0.0 {
            zero.push(difference(&fused, &unfused, x, y));
        }
    }
    let verdict = json!({
        "high_points": high.len(),
        "high_median_difference": median(high.iter().map(|h| h.0).collect()),
        "high_median_fused_chroma": median(high.iter().map(|h| h.1).collect()),
        "high_median_unfused_chroma": median(high.iter().map(|h| h.2).collect()),
        "zero_points": zero.len(),
        "zero_changed": zero.iter().filter(|d| **d > 4).count(),
    });
    eprintln!("on screen: {verdict:#}");
    assert!(high.len() >= 20, "too few high points on screen: {verdict}");
    assert!(zero.len() >= 20, "too few zero points on screen: {verdict}");
    // the map's colours where it is high...
    assert!(
        median(high.iter().map(|h| h.0).collect()) >= 40,
        "the map does not show where it is high: {verdict}"
    );
    assert!(
        high.iter().filter(|h| h.0 >= 15).count() * 10 >= high.len() * 9,
        "the map does not show at every high point: {verdict}"
    );
    assert!(
        median(high.iter().map(|h| h.1).collect()) >= 40
            && median(high.iter().map(|h| h.2).collect()) <= 4,
        "colour over a grey source where the map is high: {verdict}"
    );
    // ...and none where it is zero
    assert!(
        zero.iter().filter(|d| **d > 4).count() * 50 <= zero.len(),
        "the map colours where it is zero: {verdict}"
    );

    // the picture is this slice's map, not another slice's: the colour's strength follows
    // the shown frame's values, and any frame whose map disagrees with it explains the
    // picture clearly worse (a reversed slice order or a map put on the wrong slice fails)
    let frames: Vec<Vec<f64>> = seen["frame_values"]
        .as_array()
        .expect("frame values")
        .iter()
        .map(|f| {
            let all = numbers(f);
            everywhere.iter().map(|(i, _)| all[*i]).collect()
        })
        .collect();
    let on_screen: Vec<f64> = everywhere.iter().map(|(_, d)| *d).collect();
    let shown = seen["frame"]["index"].as_u64().expect("index") as usize;
    let agreement: Vec<f64> = frames.iter().map(|f| spearman(f, &on_screen)).collect();
    eprintln!("agreement of each frame's map with the picture: {agreement:.2?}");
    assert!(
        agreement[shown] >= 0.8,
        "the colour does not follow the map: {:.2}",
        agreement[shown]
    );
    let mut others = 0;
    for (index, frame) in frames.iter().enumerate() {
        if spearman(frame, &frames[shown]) < 0.5 {
            others += 1;
            assert!(
                agreement[index] < agreement[shown] - 0.3,
                "the picture agrees with frame {index}'s map ({:.2}) as well as with the \
                 shown frame {shown}'s ({:.2})",
                agreement[index],
                agreement[shown]
            );
        }
    }
    assert!(
        others >= 3,
        "too few slices whose map differs to tell the slice shown"
    );

    structured_report_in_ohif(&seen, &report);

    if std::env::var_os("DICOM_XAI_UPDATE_DOCS").is_some() {
        std::fs::copy(
            seen["screenshots"]["fused"].as_str().expect("fused"),
            common::root().join("docs/ohif-pmap.png"),
        )
        .expect("docs");
    }
}

/// The Structured Report as OHIF reads it: its parser (OHIF's cornerstone-dicom-sr
/// extension) must find the series' measurement group with every class probability of
/// report.json, the predicted class's the highest, and its viewport must show the predicted
/// class without an error notice. (OHIF 3.13.2 places every measurement group on an image
/// region: each value is inferred from its whole slice, a polyline along the slice's edges;
/// without one its viewport failed with a TypeError reading `coords[0].ReferencedSOPSequence`.)
fn structured_report_in_ohif(seen: &Value, report: &Value) {
    let read = &seen["sr_read"];
    assert_eq!(
        read["imaging_measurement_report"], true,
        "OHIF reads a TID 1500 Measurement Report: {read}"
    );
    let model = &report["series"][0]["models"][0];
    let prediction = &model["series_prediction"];
    let predicted = prediction["label"].as_str().expect("predicted class");
    let written = common::deciding_probabilities(model);
    let group = read["measurements"]
        .as_array()
        .expect("measurements")
        .iter()
        .find(|m| {
            m["labels"]
                .as_array()
                .is_some_and(|l| l.len() == written.len())
        })
        .unwrap_or_else(|| panic!("no group with {} probabilities: {read}", written.len()));
    let mut shown = Vec::new();
    for label in group["labels"].as_array().expect("labels") {
        let name = label[0].as_str().expect("label");
        // OHIF writes the value with 2 decimals before its unit, and nothing for a zero
        let text = label[1].as_str().expect("value");
        let (number, unit) = text.split_once(' ').unwrap_or(("", text));
        assert_eq!(unit, "{ratio}", "{label}");
        let value: f64 = if number.is_empty() {
            0.0
        } else {
            number
                .parse()
                .unwrap_or_else(|_| panic!("a number: {label}"))
        };
        shown.push((name.to_string(), value));
    }
    for (class, p) in written {
        let name = format!("Probability of {class}");
        let (_, value) = shown
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("OHIF does not read {name:?}: {group}"));
        let p = p.as_f64().expect("probability");
        assert!(
            (value - p).abs() < 0.006,
            "{name}: {value} in OHIF, {p} in report.json"
        );
    }
    let highest = shown
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a probability");
    assert_eq!(
        highest.0,
        format!("Probability of {predicted}"),
        "the predicted class has the highest probability: {group}"
    );

    let text = seen["sr_text"].as_str().unwrap_or_default();
    let details = seen["sr_error_details"].as_str().unwrap_or_default();
    let viewport_text = text.split("XAI findings").last().unwrap_or_default();
    assert!(
        viewport_text.contains(predicted),
        "OHIF does not show the predicted class {predicted:?}:\n{text}\n{details}"
    );
    assert_eq!(
        seen["sr_notifications"],
        serde_json::json!([]),
        "OHIF's notices on the Structured Report: {details}"
    );
}
