//! `make bench`: what the pipeline costs on this machine, as medians of repeated runs after a
//! warm-up. Prints a table and writes `target/bench/summary.json`:
//! `{"machine": {...}, "rows": [{"name", "unit", "ours", "runs"}]}`.
//!
//! Rows: decoding and preprocessing per slice, forward throughput of each configured model at
//! batch 1, 8 and 32, occlusion per explained slice, and `dicom-xai run` end to end on the
//! demo study (wall time and peak resident memory of the whole process).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::explain::Method;
use dicom_xai::explain::occlusion::Occlusion;
use dicom_xai::model::preprocess;
use dicom_xai::model::runtime::RuntimeOptions;
use dicom_xai::model::{Classifier, Manifest, Runtime};
use ndarray::{Array2, Array3, ArrayView3};
use serde_json::json;

struct Row {
    name: String,
    unit: &'static str,
    ours: f64,
    runs: usize,
}

/// Median of `runs` timed calls of `work` after one untimed warm-up call.
fn median_seconds(runs: usize, mut work: impl FnMut()) -> f64 {
    work();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let started = Instant::now();
            work();
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn demo_slices() -> Vec<PathBuf> {
    let dir = root().join("assets/demo/study");
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(&dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} is empty: run `make demo` (make bench does)",
        dir.display()
    );
    files
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let gpu = Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "cpu": cpu,
        "gpu": gpu,
        "memory_gib": std::fs::read_to_string("/proc/meminfo").ok().and_then(|t| {
            t.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<f64>().ok())
        }).map(|kb| (kb / 1024.0 / 1024.0 * 10.0).round() / 10.0),
    })
}

/// Runs a command to completion, sampling its peak resident set (VmHWM) meanwhile.
fn run_measured(command: &mut Command) -> (Duration, f64, bool) {
    let started = Instant::now();
    let mut child = command.spawn().expect("cannot start dicom-xai");
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0.0f64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file)
            && let Some(kib) = text
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (started.elapsed(), peak_kib / 1024.0, status.success())
}

fn main() {
    let mut rows: Vec<Row> = Vec::new();
    let files = demo_slices();

    // decoding + VOI per slice
    let seconds = median_seconds(3, || {
        for path in &files {
            let dicom = file::open(path, Depth::Full).expect("demo slice");
            let frames = pixels::decode(&dicom).expect("decodes");
            std::hint::black_box(voi::unit_grey(&dicom, &frames, 0).expect("grey"));
        }
    });
    rows.push(Row {
        name: "decode-and-window".into(),
        unit: "ms/slice",
        ours: seconds * 1e3 / files.len() as f64,
        runs: 3,
    });
    let greys: Vec<Array2<f32>> = files
        .iter()
        .map(|p| {
            let dicom = file::open(p, Depth::Full).expect("demo slice");
            let frames = pixels::decode(&dicom).expect("decodes");
            voi::unit_grey(&dicom, &frames, 0).expect("grey")
        })
        .collect();

    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime (make setup)");
    let manifests = [root().join("onnx/manifests/vgg16-kaggle.toml")];
    for manifest_path in manifests.iter().filter(|p| p.is_file()) {
        let manifest = Manifest::load(manifest_path).expect("manifest");
        let name = manifest.name.clone();
        let spec = manifest.input.clone();
        let seconds = median_seconds(3, || {
            for grey in &greys {
                std::hint::black_box(preprocess::model_input(grey.view(), &spec));
            }
        });
        rows.push(Row {
            name: format!("preprocess-{name}"),
            unit: "ms/slice",
            ours: seconds * 1e3 / greys.len() as f64,
            runs: 3,
        });
        let inputs: Vec<Array3<f32>> = greys
            .iter()
            .map(|g| preprocess::model_input(g.view(), &spec))
            .collect();
        for batch in [1usize, 8, 32] {
            let model = Classifier::load(&runtime, manifest.clone(), batch).expect("model loads");
            let views: Vec<ArrayView3<f32>> = inputs
                .iter()
                .cycle()
                .take(batch)
                .map(|i| i.view())
                .collect();
            let tensor = preprocess::batch(&views);
            let runs = if batch == 32 { 3 } else { 5 };
            let seconds = median_seconds(runs, || {
                std::hint::black_box(model.predict(tensor.view()).expect("runs"));
            });
            rows.push(Row {
                name: format!("forward-{name}-batch-{batch}"),
                unit: "ms/image",
                ours: seconds * 1e3 / batch as f64,
                runs,
            });
        }
        let model = Classifier::load(&runtime, manifest.clone(), 8).expect("model loads");
        let occlusion = Occlusion::default();
        let middle = &inputs[inputs.len() / 2];
        let mut passes = 0;
        let seconds = median_seconds(2, || {
            passes = occlusion
                .explain(&model, middle.view(), 0)
                .expect("explains")
                .passes;
        });
        rows.push(Row {
            name: format!("occlusion-{name}"),
            unit: "s/slice",
            ours: seconds,
            runs: 2,
        });
        rows.push(Row {
            name: format!("occlusion-{name}-passes"),
            unit: "passes/slice",
            ours: passes as f64,
            runs: 1,
        });
    }

    // the whole process, as a site runs it
    let out = tempfile::tempdir().expect("temp dir");
    let binary = env!("CARGO_BIN_EXE_dicom-xai");
    let study = root().join("assets/demo/study");
    let config = root().join("config/default.toml");
    let mut wall = Vec::new();
    let mut peak = 0.0f64;
    for _ in 0..2 {
        let (elapsed, peak_mib, ok) = run_measured(
            Command::new(binary)
                .args(["run", "--config"])
                .arg(&config)
                .arg("--out")
                .arg(out.path())
                .arg(&study)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        );
        assert!(ok, "dicom-xai run failed on the demo study");
        wall.push(elapsed.as_secs_f64());
        peak = peak.max(peak_mib);
    }
    wall.sort_by(f64::total_cmp);
    let name = format!(
        "end-to-end-demo-{}-slices-vgg16-occlusion-top3",
        files.len()
    );
    rows.push(Row {
        name: name.clone(),
        unit: "s",
        ours: wall[0],
        runs: 2,
    });
    rows.push(Row {
        name: format!("{name}-peak-rss"),
        unit: "MiB",
        ours: peak,
        runs: 2,
    });

    println!("{:<60} {:>12} {:>14}", "benchmark", "ours", "unit");
    for row in &rows {
        println!("{:<60} {:>12.3} {:>14}", row.name, row.ours, row.unit);
    }
    let summary = json!({
        "machine": machine(),
        "rows": rows.iter().map(|r| json!({"name": r.name, "unit": r.unit, "ours": r.ours, "runs": r.runs})).collect::<Vec<_>>(),
    });
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("json"))
        .expect("write summary");
    println!("\nwritten {}", Path::new(&path).display());
}
