//! `make bench`: what the pipeline costs on this machine, as medians of repeated runs after a
//! warm-up. Prints a table and writes `target/bench/summary.json`:
//! `{"machine": {...}, "rows": [{"name", "unit", "ours", "runs"}]}`.
//!
//! Rows: decoding and preprocessing per slice, forward throughput of each model (VGG16,
//! DenseNet169, ViT-B/16) at batch 1, 8 and 32, the gradient models' cost (forward + gradient
//! time over forward time at batch 1 and 8, the transform's own time, the extra peak memory),
//! every method that applies to each model (seconds and model passes per slice, default
//! parameters), and `dicom-xai run` end to end on the demo study (wall time and peak
//! resident memory of the whole process).
//!
//! `pipeline memory-probe MODEL.onnx BATCH [gradient]` (used by the suite itself) runs one
//! model three times in a fresh process and prints its peak resident memory in MiB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dicom_xai::autodiff::{GRAD_PREFIX, GRAD_SEED, GradRequest, gradient_model};
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::explain::{MethodSet, method_by_name};
use dicom_xai::model::manifest::{InputSpec, Layout};
use dicom_xai::model::preprocess;
use dicom_xai::model::runtime::RuntimeOptions;
use dicom_xai::model::{Classifier, Manifest, Runtime};
use dicom_xai::onnx::Model;
use ndarray::{Array2, Array3, ArrayD, ArrayView3, IxDyn};
use ort::session::Session;
use ort::value::Tensor;
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

/// The peak resident memory of this process so far, in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// A random model input of `batch` images for `spec`, and a one-hot seed over `classes`.
fn random_feeds(spec: &InputSpec, batch: usize, classes: usize) -> (ArrayD<f32>, ArrayD<f32>) {
    let shape = match spec.layout {
        Layout::Nchw => vec![batch, spec.channels, spec.height, spec.width],
        Layout::Nhwc => vec![batch, spec.height, spec.width, spec.channels],
    };
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let input = ArrayD::from_shape_fn(IxDyn(&shape), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 40) as f32 / (1u64 << 24) as f32
    });
    let seed = ArrayD::from_shape_fn(IxDyn(&[batch, classes]), |i| {
        f32::from(u8::from(i[1] == i[0] % classes))
    });
    (input, seed)
}

/// One run of a forward (`seed` = None) or gradient model, reading `output`.
fn run_once(
    session: &mut Session,
    input_name: &str,
    input: &ArrayD<f32>,
    seed: Option<&ArrayD<f32>>,
    output: &str,
) {
    let mut feeds = vec![(
        input_name.to_string(),
        Tensor::from_array(input.clone())
            .expect("tensor")
            .into_dyn(),
    )];
    if let Some(seed) = seed {
        feeds.push((
            GRAD_SEED.to_string(),
            Tensor::from_array(seed.clone()).expect("tensor").into_dyn(),
        ));
    }
    let outputs = session.run(feeds).expect("the model runs");
    std::hint::black_box(&outputs[output]);
}

/// `memory-probe MANIFEST BATCH [GRADIENT.onnx]`: the peak RSS of a process that runs the
/// manifest's model (or its gradient model) three times.
fn memory_probe(args: &[String]) {
    let manifest = Manifest::load(Path::new(&args[0])).expect("manifest");
    let batch: usize = args[1].parse().expect("batch");
    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime");
    let (input, seed) = random_feeds(&manifest.input, batch, manifest.labels.len());
    let input_name = &manifest.input.name;
    let (model, seed, output) = match args.get(2) {
        Some(gradient) => (
            PathBuf::from(gradient),
            Some(&seed),
            format!("{GRAD_PREFIX}{input_name}"),
        ),
        None => (manifest.onnx.clone(), None, manifest.output.name.clone()),
    };
    let mut session = runtime.session(&model).expect("session").session;
    for _ in 0..3 {
        run_once(&mut session, input_name, &input, seed, &output);
    }
    println!("{}", peak_rss_mib());
}

/// Peak RSS in MiB of a fresh process running the model of `manifest` (or `gradient`).
fn probe_memory(manifest: &Path, batch: usize, gradient: Option<&Path>) -> f64 {
    let exe = std::env::current_exe().expect("this benchmark's path");
    let mut command = Command::new(exe);
    command
        .arg("memory-probe")
        .arg(manifest)
        .arg(batch.to_string());
    if let Some(gradient) = gradient {
        command.arg(gradient);
    }
    let output = command.output().expect("memory probe");
    assert!(
        output.status.success(),
        "memory probe of {} failed: {}",
        manifest.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("memory probe prints MiB")
}

/// Gradient rows of one model: transform time, (forward + gradient) / forward at batch 1 and
/// 8, and the extra peak memory of the gradient model at batch 8.
fn gradient_rows(runtime: &Runtime, manifest: &Manifest, rows: &mut Vec<Row>) {
    let name = &manifest.name;
    let model = Model::load(&manifest.onnx).expect("the model");
    let input_name = manifest.input.name.clone();
    let started = Instant::now();
    let gradient = gradient_model(runtime, &model, &GradRequest::new([input_name.clone()]))
        .expect("the gradient model");
    let transform = started.elapsed().as_secs_f64();
    rows.push(Row {
        name: format!("gradient-transform-{name}"),
        unit: "s",
        ours: transform,
        runs: 1,
    });
    let dir = root().join("target/bench/gradients");
    std::fs::create_dir_all(&dir).expect("target/bench/gradients");
    let gradient_path = dir.join(format!("{name}.onnx"));
    gradient
        .model
        .save(&gradient_path)
        .expect("save the gradient model");
    let mut forward = runtime.session(&manifest.onnx).expect("session").session;
    let mut backward = runtime.session(&gradient_path).expect("session").session;
    let output = manifest.output.name.clone();
    let grad_output = format!("{GRAD_PREFIX}{input_name}");
    for batch in [1usize, 8] {
        let (input, seed) = random_feeds(&manifest.input, batch, manifest.labels.len());
        let runs = if batch == 1 { 7 } else { 3 };
        let forward_seconds = median_seconds(runs, || {
            run_once(&mut forward, &input_name, &input, None, &output);
        });
        let gradient_seconds = median_seconds(runs, || {
            run_once(
                &mut backward,
                &input_name,
                &input,
                Some(&seed),
                &grad_output,
            );
        });
        let suffix = if batch == 1 {
            String::new()
        } else {
            format!("-batch-{batch}")
        };
        rows.push(Row {
            name: format!("gradient-overhead-{name}{suffix}"),
            unit: "x forward",
            ours: gradient_seconds / forward_seconds,
            runs,
        });
        rows.push(Row {
            name: format!("gradient-{name}-batch-{batch}"),
            unit: "ms/image",
            ours: gradient_seconds * 1e3 / batch as f64,
            runs,
        });
    }
    let forward_peak = probe_memory(&manifest.path, 8, None);
    let gradient_peak = probe_memory(&manifest.path, 8, Some(&gradient_path));
    rows.push(Row {
        name: format!("gradient-extra-memory-{name}-batch-8"),
        unit: "MiB",
        ours: gradient_peak - forward_peak,
        runs: 1,
    });
}

/// Every method that applies to the model, with its default parameters, on one slice:
/// seconds (one timed call after a warm-up that builds and caches the gradient model: RISE
/// and Score-CAM cost a minute per call on VGG16) and model passes. The quality checks are
/// not included.
fn method_rows(runtime: &Runtime, manifest: &Manifest, input: &Array3<f32>, rows: &mut Vec<Row>) {
    let name = &manifest.name;
    let model = Classifier::load(runtime, manifest.clone(), 8).expect("model loads");
    let methods = MethodSet::default();
    let vit = !manifest.explain.attention_tensors.is_empty();
    for method_name in dicom_xai::explain::available() {
        if matches!(method_name, "rollout" | "attn-grad") && !vit || method_name == "sae" {
            continue; // sae: its own rows (it needs a trained autoencoder)
        }
        let method = method_by_name(method_name, &methods).expect("available");
        let mut passes = 0;
        let seconds = median_seconds(1, || {
            passes = method
                .explain(&model, input.view(), 0)
                .expect("explains")
                .passes;
        });
        rows.push(Row {
            name: format!("method-{method_name}-{name}"),
            unit: "s/slice",
            ours: seconds,
            runs: 1,
        });
        rows.push(Row {
            name: format!("method-{method_name}-{name}-passes"),
            unit: "passes/slice",
            ours: passes as f64,
            runs: 1,
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "memory-probe") {
        memory_probe(&args[1..]);
        return;
    }
    let mut rows: Vec<Row> = Vec::new();
    let files = demo_slices();

    // decoding + VOI per slice
    if wanted("decode") {
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
    }
    let greys: Vec<Array2<f32>> = files
        .iter()
        .map(|p| {
            let dicom = file::open(p, Depth::Full).expect("demo slice");
            let frames = pixels::decode(&dicom).expect("decodes");
            voi::unit_grey(&dicom, &frames, 0).expect("grey")
        })
        .collect();

    let runtime = Runtime::init(RuntimeOptions::default()).expect("ONNX Runtime (make setup)");
    let manifests = [
        root().join("onnx/manifests/vgg16-kaggle.toml"),
        root().join("assets/models/densenet169-legacy/densenet169.toml"),
        root().join("assets/models/vit_b_16-legacy/vit_b_16.toml"),
    ];
    for manifest_path in &manifests {
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
        for batch in [1usize, 8, 32].into_iter().filter(|_| wanted("forward")) {
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
        if wanted("gradient") {
            gradient_rows(&runtime, &manifest, &mut rows);
        }
        if wanted("method") {
            method_rows(&runtime, &manifest, &inputs[inputs.len() / 2], &mut rows);
        }
    }

    if wanted("end-to-end") {
        end_to_end_rows(files.len(), &mut rows);
    }
    if wanted("daemon") {
        daemon_rows(&mut rows);
    }
    finish(&rows);
}

/// The whole process, as a site runs it: `dicom-xai run` on the demo study.
fn end_to_end_rows(slices: usize, rows: &mut Vec<Row>) {
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
    let name = format!("end-to-end-demo-{slices}-slices-vgg16-occlusion-top3");
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
}

/// A line of `/proc/<pid>/status` in KiB (VmRSS, VmHWM), as MiB.
fn proc_status_mib(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

/// `dicom-xai status --json` of a state folder.
fn daemon_status(state: &Path) -> serde_json::Value {
    Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
        .args(["status", "--json", "--state"])
        .arg(state)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice(&o.stdout).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// Waits until `done` studies are done; the time it took.
fn wait_done(state: &Path, done: u64, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let status = daemon_status(state);
        if status["counts"]["done"].as_u64() == Some(done) {
            return started.elapsed();
        }
        assert!(
            status["counts"]["failed"].as_u64().unwrap_or(0) == 0,
            "a study failed: {status:#}"
        );
        assert!(
            started.elapsed() < limit,
            "the daemon took too long: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The daemon: idle memory, a burst of 100 single-slice studies (studies per minute, peak
/// memory), and the latency from the last file of the 24-slice demo study to its report.
fn daemon_rows(rows: &mut Vec<Row>) {
    let work = tempfile::tempdir().expect("temp dir");
    let (drop, state, out) = (
        work.path().join("drop"),
        work.path().join("state"),
        work.path().join("out"),
    );
    std::fs::create_dir_all(&drop).expect("drop");
    let settle = 2.0;
    let config = work.path().join("site.toml");
    std::fs::write(
        &config,
        format!(
            r#"[runtime]
intra_threads = 2
[[models]]
manifest = "{manifest}"
[quality]
faithfulness_steps = 0
[explain]
methods = ["gradcam"]
slices = "top-k"
top_k = 1
[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]
[watch]
stable = "500ms"
settle = "{settle}s"
"#,
            manifest = root().join("onnx/manifests/vgg16-kaggle.toml").display()
        ),
    )
    .expect("config");
    let staging = work.path().join("staging");
    let python = root().join(".venv/bin/python");
    let made = Command::new(&python)
        .arg(root().join("tests/support/make_burst.py"))
        .arg("--source")
        .arg(root().join("assets/pydicom/MR_small.dcm"))
        .arg("--out")
        .arg(&staging)
        .args(["--count", "100"])
        .status()
        .expect("python");
    assert!(made.success(), "make_burst.py failed");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
        .arg("--log-file")
        .arg(work.path().join("daemon.log"))
        .args(["watch", "--config"])
        .arg(&config)
        .arg("--drop")
        .arg(&drop)
        .arg("--out")
        .arg(&out)
        .arg("--state")
        .arg(&state)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dicom-xai watch");
    let pid = daemon.id();
    std::thread::sleep(Duration::from_secs(5));
    let idle = proc_status_mib(pid, "VmRSS:");

    std::fs::rename(&staging, drop.join("burst")).expect("burst into the drop folder");
    let burst = wait_done(&state, 100, Duration::from_secs(1800));
    let per_minute = 100.0 * 60.0 / burst.as_secs_f64();

    // latency: the 24-slice demo study, file by file, then time to its report
    for file in demo_slices() {
        let target = drop.join("demo").join(file.file_name().expect("name"));
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&file, &target).expect("copy");
    }
    let latency = wait_done(&state, 101, Duration::from_secs(600)).as_secs_f64();
    let busy = proc_status_mib(pid, "VmHWM:");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = daemon.wait();

    for (name, unit, ours) in [
        ("daemon-burst-100-studies", "studies/min", per_minute),
        ("daemon-latency-24-slices-last-file-to-report", "s", latency),
        (
            "daemon-latency-24-slices-after-settle",
            "s",
            latency - settle,
        ),
        ("daemon-idle-rss", "MiB", idle),
        ("daemon-peak-rss", "MiB", busy),
    ] {
        rows.push(Row {
            name: name.to_string(),
            unit,
            ours,
            runs: 1,
        });
    }
}

/// Whether the section whose rows contain `section` runs (`BENCH_ONLY`).
fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.is_empty() || section.contains(&only) || only.contains(section)
    })
}

/// Prints the table and writes `target/bench/summary.json`.
fn finish(rows: &[Row]) {
    println!("{:<60} {:>12} {:>14}", "benchmark", "ours", "unit");
    for row in rows {
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
