//! `make bench`: what the pipeline costs on this machine, as medians of repeated runs after a
//! warm-up, beside the Python stack a site would otherwise build (bench/peer/) where there is
//! one. Prints a table and writes `target/bench/summary.json`: `{"machine": {...}, "rows":
//! [{"name", "unit", "ours", "peer", "speedup", "runs"}], "peer_check": {...}}`, where `peer`
//! and `speedup` (peer / ours: above 1, we are faster or smaller) appear only on rows with a
//! peer, and `ours` is null on a stage only the peer reports. docs/performance.md explains
//! every row.
//!
//! Rows: decoding and preprocessing per slice, forward throughput of each model (VGG16,
//! DenseNet169, ViT-B/16) at batch 1, 8 and 32, the gradient models' cost (forward + gradient
//! time over forward time at batch 1 and 8, the transform's own time, the extra peak memory;
//! PyTorch autograd at batch 1 as the peer: `gradient-overhead-<model>` and
//! `gradient-vs-pytorch-<model>`), every method that applies to each model (seconds and model
//! passes per slice, default parameters), `dicom-xai run` end to end on the demo study (wall
//! time and peak resident memory of the whole process), and the side-by-side comparison
//! `end-to-end-24-slices` with the Python peer `bench/peer/run_peer.py` (pydicom,
//! onnxruntime, PyTorch + pytorch-grad-cam, numpy, highdicom) doing the same work with
//! `bench/end-to-end-24-slices.toml`: wall time, peak RSS and time per stage of both, then
//! checks that both produced the same labels and correlated maps (`peer_check`).
//!
//! Sections (`BENCH_ONLY=<section>`, several separated by commas): `decode`, `forward`,
//! `gradient`, `method`, `sae` (training throughput and the `sae` method per slice),
//! `end-to-end` (the `make run` job and the peer comparison), `peer` (the peer comparison
//! alone), `daemon`, `queue` (studies per hour through the work queue with 1, 2 and 3
//! workers: a RabbitMQ of its own, the known-answer model of `make_toy_model.py`).
//! `BENCH_PEER_RUNS` (default 3) sets the timed runs of each side after one warm-up each.
//!
//! `pipeline memory-probe MODEL.onnx BATCH [gradient]` (used by the suite itself) runs one
//! model three times in a fresh process and prints its peak resident memory in MiB.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dicom_xai::autodiff::{GRAD_PREFIX, GRAD_SEED, GradRequest, gradient_model};
use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use dicom_xai::explain::sae::SaeMethod;
use dicom_xai::explain::{Method, MethodSet, method_by_name};
use dicom_xai::model::manifest::{InputSpec, Layout};
use dicom_xai::model::preprocess;
use dicom_xai::model::{Classifier, Manifest};
use dicom_xai::onnx::Model;
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use ndarray::{Array2, Array3, ArrayD, ArrayView3, IxDyn};
use ort::session::Session;
use ort::value::Tensor;
use serde_json::json;

#[path = "../tests/support/rabbit.rs"]
mod rabbit;

struct Row {
    name: String,
    unit: &'static str,
    /// Our figure; NaN (`null` in summary.json) for a stage only the peer reports.
    ours: f64,
    runs: usize,
    /// The Python peer's figure (bench/peer/), where there is one.
    peer: Option<f64>,
}

impl Row {
    /// peer / ours, where both are known (above 1: we are faster or smaller).
    fn speedup(&self) -> Option<f64> {
        let peer = self.peer?;
        (self.ours.is_finite() && self.ours > 0.0 && peer.is_finite()).then(|| peer / self.ours)
    }
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

/// The 1, 5 and 15 minute load averages: the machine may be shared.
fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Runs a command to completion, sampling its peak resident set (VmHWM) meanwhile.
fn run_measured(command: &mut Command) -> (Duration, f64, bool) {
    let started = Instant::now();
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", command.get_program()));
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

/// PyTorch autograd on the CPU for the torchvision model behind `manifest` (the random-weight
/// exports of `assets/models/`): (forward ms, forward + input gradient ms) at batch 1, medians
/// of `bench/peer/torch_gradient.py`; None for models with no PyTorch twin (VGG16 is Keras).
fn pytorch_gradient(manifest: &Manifest) -> Option<(f64, f64)> {
    if !["densenet169", "vit_b_16"].contains(&manifest.name.as_str()) {
        return None;
    }
    let output = Command::new(peer_python())
        .arg(root().join("bench/peer/torch_gradient.py"))
        .args(["--arch", &manifest.name, "--runs", "7"])
        .output()
        .expect("the .venv Python (make setup)");
    assert!(
        output.status.success(),
        "bench/peer/torch_gradient.py --arch {} failed: {}",
        manifest.name,
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("torch_gradient.py prints JSON");
    Some((
        result["forward_ms"].as_f64()?,
        result["forward_backward_ms"].as_f64()?,
    ))
}

/// Gradient rows of one model: transform time, (forward + gradient) / forward at batch 1 and
/// 8, and the extra peak memory of the gradient model at batch 8. For DenseNet169 and
/// ViT-B/16, PyTorch autograd is the peer at batch 1: its (forward + backward) / forward in
/// `gradient-overhead-<model>`, and its milliseconds against those of our gradient model in
/// `gradient-vs-pytorch-<model>`.
fn gradient_rows(runtime: &Runtime, manifest: &Manifest, rows: &mut Vec<Row>) {
    let name = &manifest.name;
    let pytorch = pytorch_gradient(manifest);
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
        peer: None,
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
        let pytorch = pytorch.filter(|_| batch == 1);
        rows.push(Row {
            name: format!("gradient-overhead-{name}{suffix}"),
            unit: "x forward",
            ours: gradient_seconds / forward_seconds,
            runs,
            peer: pytorch.map(|(forward, both)| both / forward),
        });
        rows.push(Row {
            name: format!("gradient-{name}-batch-{batch}"),
            unit: "ms/image",
            ours: gradient_seconds * 1e3 / batch as f64,
            runs,
            peer: None,
        });
        if let Some((_, both)) = pytorch {
            rows.push(Row {
                name: format!("gradient-vs-pytorch-{name}"),
                unit: "ms/image",
                ours: gradient_seconds * 1e3,
                runs,
                peer: Some(both),
            });
        }
    }
    let forward_peak = probe_memory(&manifest.path, 8, None);
    let gradient_peak = probe_memory(&manifest.path, 8, Some(&gradient_path));
    rows.push(Row {
        name: format!("gradient-extra-memory-{name}-batch-8"),
        unit: "MiB",
        ours: gradient_peak - forward_peak,
        runs: 1,
        peer: None,
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
            peer: None,
        });
        rows.push(Row {
            name: format!("method-{method_name}-{name}-passes"),
            unit: "passes/slice",
            ours: passes as f64,
            runs: 1,
            peer: None,
        });
    }
}

/// Sparse autoencoders on `manifest`'s feature tensor: `dicom-xai sae train` on the demo
/// study's activations (8 x channels latents, TopK 32, 2 epochs; training vectors per second
/// as it reports them), then the `sae` method with that file, seconds per slice.
fn sae_rows(runtime: &Runtime, manifest: &Manifest, grey: &Array2<f32>, rows: &mut Vec<Row>) {
    let name = &manifest.name;
    let work = tempfile::tempdir().expect("temp dir");
    let file = work.path().join(format!("{name}.safetensors"));
    let output = Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
        .args(["sae", "train", "--model"])
        .arg(&manifest.path)
        .args(["--epochs", "2", "--concept-slices", "4", "--out"])
        .arg(&file)
        .arg(root().join("assets/demo/study"))
        .output()
        .expect("dicom-xai sae train runs");
    assert!(
        output.status.success(),
        "sae train {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("sae train prints its figures as JSON");
    let figure = |key: &str| summary[key].as_f64().unwrap_or(f64::NAN);
    rows.push(Row {
        name: format!("sae-train-{name}"),
        unit: "vectors/s",
        ours: figure("vectors_per_second"),
        runs: 1,
        peer: None,
    });
    rows.push(Row {
        name: format!("sae-train-{name}-r2"),
        unit: "R2",
        ours: figure("r2"),
        runs: 1,
        peer: None,
    });
    let model = Classifier::load(runtime, manifest.clone(), 8).expect("model loads");
    let input = preprocess::model_input(grey.view(), &manifest.input);
    let method = SaeMethod {
        top: 0,
        file: Some(file.clone()),
    };
    let seconds = median_seconds(3, || {
        std::hint::black_box(method.explain(&model, input.view(), 0).expect("explains"));
    });
    rows.push(Row {
        name: format!("method-sae-{name}"),
        unit: "s/slice",
        ours: seconds,
        runs: 3,
        peer: None,
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "memory-probe") {
        memory_probe(&args[1..]);
        return;
    }
    let mut rows: Vec<Row> = Vec::new();
    let mut extra = serde_json::Map::new();
    extra.insert("load_average_at_start".into(), json!(load_average()));
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
            peer: None,
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
        let printed = rows.len();
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
            peer: None,
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
                peer: None,
            });
        }
        if wanted("gradient") {
            gradient_rows(&runtime, &manifest, &mut rows);
        }
        if wanted("method") {
            method_rows(&runtime, &manifest, &inputs[inputs.len() / 2], &mut rows);
        }
        // as they come: the whole suite takes long, and an interrupted one keeps these
        for row in &rows[printed..] {
            eprintln!("{}: {:.3} {}", row.name, row.ours, row.unit);
        }
    }

    if wanted("end-to-end") {
        end_to_end_rows(files.len(), &mut rows);
    }
    if wanted("end-to-end") || wanted("peer") {
        peer_rows(files.len(), &mut rows, &mut extra);
    }
    if wanted("sae") {
        let printed = rows.len();
        for manifest_path in &manifests {
            let manifest = Manifest::load(manifest_path).expect("manifest");
            sae_rows(&runtime, &manifest, &greys[greys.len() / 2], &mut rows);
        }
        for row in &rows[printed..] {
            eprintln!("{}: {:.3} {}", row.name, row.ours, row.unit);
        }
    }
    if wanted("daemon") {
        daemon_rows(&mut rows);
    }
    if wanted("queue") {
        queue_rows(&mut rows);
    }
    finish(&rows, extra);
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
    let name = format!("end-to-end-demo-{slices}-slices-make-run");
    rows.push(Row {
        name: name.clone(),
        unit: "s",
        ours: wall[0],
        runs: 2,
        peer: None,
    });
    rows.push(Row {
        name: format!("{name}-peak-rss"),
        unit: "MiB",
        ours: peak,
        runs: 2,
        peer: None,
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
            peer: None,
        });
    }
}

/// The work queue (docs/design.md section 14) on this machine: `watch --broker` and 1, 2
/// then 3 `dicom-xai worker`s on a RabbitMQ of the bench's own, with the known-answer model
/// of `make_toy_model.py` (occlusion on the one slice), a burst of 30 single-slice studies
/// each time; studies per hour from the burst to its last report.
fn queue_rows(rows: &mut Vec<Row>) {
    const STUDIES: usize = 30;
    let work = tempfile::tempdir().expect("temp dir");
    let python = root().join(".venv/bin/python");
    let model = work.path().join("model");
    let made = Command::new(&python)
        .arg(root().join("tests/support/make_toy_model.py"))
        .arg(&model)
        .status()
        .expect("python");
    assert!(made.success(), "make_toy_model.py failed");
    let mut broker = rabbit::Rabbit::start(work.path());
    let url = broker.url();
    for workers in 1..=3usize {
        let run = work.path().join(format!("workers-{workers}"));
        let (drop, out, state) = (run.join("drop"), run.join("out"), run.join("state"));
        std::fs::create_dir_all(&drop).expect("drop");
        let config = run.join("site.toml");
        std::fs::write(
            &config,
            format!(
                r#"[runtime]
intra_threads = 1
[[models]]
manifest = "{manifest}"
[output]
# the overlays alone, as in the figures of docs/performance.md
formats = ["sc"]
dir = "{out}"
[quality]
faithfulness_steps = 0
[explain]
methods = ["occlusion"]
slices = "top-k"
top_k = 1
[[rules]]
name = "brain-mr"
[rules.select]
modality = ["MR"]
[watch]
drop = "{drop}"
state = "{state}"
stable = "300ms"
settle = "1s"
"#,
                manifest = model.join("toy.toml").display(),
                out = out.display(),
                drop = drop.display(),
                state = state.display(),
            ),
        )
        .expect("config");
        let staging = run.join("staging");
        let made = Command::new(&python)
            .arg(root().join("tests/support/make_burst.py"))
            .arg("--source")
            .arg(root().join("assets/pydicom/MR_small.dcm"))
            .arg("--out")
            .arg(&staging)
            .args(["--count", &STUDIES.to_string()])
            .status()
            .expect("python");
        assert!(made.success(), "make_burst.py failed");
        let spawn = |command: &str, log: &str| {
            Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
                .arg("--log-file")
                .arg(run.join(log))
                .args([command, "--config"])
                .arg(&config)
                .args(["--broker", &url])
                .env("DICOM_XAI_CACHE", work.path().join("cache"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("dicom-xai")
        };
        let mut children: Vec<_> = (0..workers)
            .map(|i| spawn("worker", &format!("worker-{i}.log")))
            .collect();
        // the models loaded and every worker consuming before the clock starts
        let ready = Instant::now();
        while (0..workers).any(|i| {
            !std::fs::read_to_string(run.join(format!("worker-{i}.log")))
                .unwrap_or_default()
                .contains("consuming jobs")
        }) {
            assert!(
                ready.elapsed() < Duration::from_secs(300),
                "workers not ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        children.push(spawn("watch", "watcher.log"));
        std::thread::sleep(Duration::from_secs(3));
        let started = Instant::now();
        std::fs::rename(&staging, drop.join("burst")).expect("burst into the drop folder");
        let reports = || {
            std::fs::read_dir(&out)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|e| e.path().join("report.json").is_file())
                        .count()
                })
                .unwrap_or(0)
        };
        while reports() < STUDIES {
            assert!(
                started.elapsed() < Duration::from_secs(900),
                "the work queue took too long"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let seconds = started.elapsed().as_secs_f64();
        for child in &mut children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
        let name = format!("queue-toy-{STUDIES}-studies-{workers}-workers");
        eprintln!("{name}: {:.0} studies/h", STUDIES as f64 * 3600.0 / seconds);
        rows.push(Row {
            name,
            unit: "studies/h",
            ours: STUDIES as f64 * 3600.0 / seconds,
            runs: 1,
            peer: None,
        });
    }
    broker.stop();
}

/// Whether the section whose rows contain `section` runs (`BENCH_ONLY`).
fn wanted(section: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.is_empty() || section.contains(&only) || only.contains(section)
    })
}

/// Prints the table and writes `target/bench/summary.json`.
/// `extra` holds what the suite learnt besides rows: the load average when it started, the
/// peer's software and the checks of its outputs against ours (`peer_check`), written into
/// `machine` and beside the rows.
fn finish(rows: &[Row], mut extra: serde_json::Map<String, serde_json::Value>) {
    let figure = |v: Option<f64>| {
        v.filter(|v| v.is_finite())
            .map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
    };
    println!(
        "{:<60} {:>12} {:>12} {:>8} {:>14}",
        "benchmark", "ours", "peer", "speedup", "unit"
    );
    for row in rows {
        println!(
            "{:<60} {:>12} {:>12} {:>8} {:>14}",
            row.name,
            figure(Some(row.ours)),
            figure(row.peer),
            row.speedup()
                .map_or_else(|| "-".to_string(), |s| format!("{s:.2}x")),
            row.unit
        );
    }
    let mut machine = machine();
    for key in ["load_average_at_start", "peer_software"] {
        if let Some(value) = extra.remove(key) {
            machine[key] = value;
        }
    }
    machine["load_average_at_end"] = json!(load_average());
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut row = json!({"name": r.name, "unit": r.unit, "runs": r.runs});
            // serde_json writes a NaN as null: a stage we have no figure for
            row["ours"] = json!(r.ours);
            if let Some(peer) = r.peer {
                row["peer"] = json!(peer);
            }
            if let Some(speedup) = r.speedup() {
                row["speedup"] = json!(speedup);
            }
            row
        })
        .collect();
    let mut summary = json!({"machine": machine, "rows": rows});
    for (key, value) in extra {
        summary[key] = value;
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary).expect("json"))
        .expect("write summary");
    println!("\nwritten {}", Path::new(&path).display());
}

/// The Python peer (bench/peer/run_peer.py) runs in the project's virtual environment.
fn peer_python() -> PathBuf {
    root().join(".venv/bin/python")
}

/// The site configuration both sides run in the side-by-side comparison.
const PEER_CONFIG: &str = "bench/end-to-end-24-slices.toml";

/// Stages of the end-to-end work, in order, as the peer reports them; we report `load`
/// (start-up and model loading together), `classify` and the three methods.
const PEER_STAGES: [&str; 7] = [
    "startup-and-load",
    "decode",
    "classify",
    "gradcam",
    "saliency",
    "occlusion",
    "write",
];

/// One measured run of either side: wall time, peak RSS and seconds per stage.
struct Measured {
    wall: f64,
    peak_mib: f64,
    stages: std::collections::BTreeMap<&'static str, f64>,
}

/// The median of some figures (the upper one of an even count; NaN for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Seconds since midnight UTC of now, and of a log timestamp `2026-11-27T08:43:10.737418Z`.
fn seconds_of_day_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        .rem_euclid(86_400.0)
}

fn seconds_of_day(timestamp: &str) -> Option<f64> {
    let time = timestamp.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':').map(|p| p.parse::<f64>().ok());
    Some(parts.next()?? * 3600.0 + parts.next()?? * 60.0 + parts.next()??)
}

/// The one study folder `dicom-xai run` (or the peer) wrote under `out`, holding report.json.
fn study_report(out: &Path) -> serde_json::Value {
    let path = walkdir::WalkDir::new(out)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .find(|p| p.file_name().is_some_and(|n| n == "report.json"))
        .unwrap_or_else(|| panic!("no report.json under {}", out.display()));
    serde_json::from_slice(&std::fs::read(&path).expect("report.json")).expect("report.json")
}

/// `dicom-xai run` on the study with the comparison's configuration, logging JSON to a file:
/// wall time, peak RSS, and the stages it reports (`classify` from its log, each method's
/// seconds summed from report.json, start-up and model loading up to its last "model
/// loaded" log line).
fn run_ours(config: &Path, study: &Path, out: &Path) -> Measured {
    let log = out.with_extension("log");
    let spawned = seconds_of_day_now();
    let (elapsed, peak_mib, ok) = run_measured(
        Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
            .args(["--log-format", "json", "--log-file"])
            .arg(&log)
            .args(["run", "--config"])
            .arg(config)
            .arg("--out")
            .arg(out)
            .arg(study)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    assert!(
        ok,
        "dicom-xai run --config {} failed; its log: {}",
        config.display(),
        log.display()
    );
    let mut stages = std::collections::BTreeMap::new();
    let mut loaded = f64::NAN;
    let mut classify = 0.0;
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let fields = &entry["fields"];
        match fields["message"].as_str() {
            Some("model loaded") => {
                if let Some(at) = entry["timestamp"].as_str().and_then(seconds_of_day) {
                    loaded = (at - spawned).rem_euclid(86_400.0);
                }
            }
            Some("classified") => {
                classify += fields["seconds_per_slice"].as_f64().unwrap_or(f64::NAN)
                    * fields["slices"].as_f64().unwrap_or(f64::NAN);
            }
            _ => {}
        }
    }
    stages.insert("startup-and-load", loaded);
    stages.insert("classify", classify);
    let report = study_report(out);
    for method in ["gradcam", "saliency", "occlusion"] {
        let seconds: f64 = report["series"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["models"].as_array().into_iter().flatten())
            .flat_map(|m| m["explanations"].as_array().into_iter().flatten())
            .filter(|e| e["method"] == method)
            .filter_map(|e| e["seconds"].as_f64())
            .sum();
        stages.insert(method, seconds);
    }
    Measured {
        wall: elapsed.as_secs_f64(),
        peak_mib,
        stages,
    }
}

/// The peer on the study with the same configuration: wall time and peak RSS measured as
/// for `dicom-xai run`, its stages from the `timings.json` it writes; its software versions.
fn run_peer(config: &Path, study: &Path, out: &Path) -> (Measured, serde_json::Value) {
    let stderr = out.with_extension("stderr.txt");
    let (elapsed, peak_mib, ok) = run_measured(
        Command::new(peer_python())
            .arg(root().join("bench/peer/run_peer.py"))
            .arg("--config")
            .arg(config)
            .arg("--out")
            .arg(out)
            .arg(study)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&stderr).expect("peer stderr file")),
    );
    assert!(
        ok,
        "bench/peer/run_peer.py failed:\n{}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let timings: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("timings.json")).expect("timings.json"))
            .expect("timings.json");
    let seconds = &timings["seconds"];
    let stage = |name: &str| seconds[name].as_f64().unwrap_or(f64::NAN);
    let mut stages = std::collections::BTreeMap::new();
    stages.insert("startup-and-load", stage("startup") + stage("load"));
    for name in &PEER_STAGES[1..] {
        stages.insert(*name, stage(name));
    }
    (
        Measured {
            wall: elapsed.as_secs_f64(),
            peak_mib,
            stages,
        },
        timings["software"].clone(),
    )
}

/// Pearson correlation of two maps of the same shape; None when either is constant.
fn pearson(a: &Array2<f32>, b: &Array2<f32>) -> Option<f64> {
    if a.dim() != b.dim() || a.is_empty() {
        return None;
    }
    let n = a.len() as f64;
    let mean = |m: &Array2<f32>| m.iter().map(|v| f64::from(*v)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x) - ma, f64::from(*y) - mb);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (aa > 0.0 && bb > 0.0).then(|| ab / (aa * bb).sqrt())
}

/// dciodvfy's "Error" lines over every .dcm file under `dir`: (files, error lines, the
/// distinct messages); None without dciodvfy.
fn dciodvfy_under(dir: &Path) -> Option<(usize, usize, Vec<String>)> {
    Command::new("dciodvfy").arg("-version").output().ok()?;
    let (mut files, mut errors) = (0, 0);
    let mut messages = std::collections::BTreeSet::new();
    for path in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
    {
        files += 1;
        let output = Command::new("dciodvfy").arg(&path).output().ok()?;
        let text = String::from_utf8_lossy(&output.stderr).to_string()
            + &String::from_utf8_lossy(&output.stdout);
        for line in text.lines().filter(|l| l.starts_with("Error")) {
            errors += 1;
            messages.insert(line.to_string());
        }
    }
    Some((files, errors, messages.into_iter().collect()))
}

/// The least Pearson correlation expected between the two sides' maps of a method: Grad-CAM
/// and saliency compute the same thing on both sides; our occlusion weights each patch with
/// a smooth window where the peer averages plainly.
fn correlation_floor(method: &str) -> f64 {
    if method == "occlusion" { 0.9 } else { 0.99 }
}

/// Checks the last runs' outputs against each other (not timed): the same labels on every
/// slice, the same slices explained for the same classes, each map of the peer against ours
/// from `dicom-xai explain` on the same slice and class (Pearson on the slice grid), every
/// overlay through dciodvfy, PyTorch's logits against onnxruntime's inside the peer.
fn peer_check(config: &Path, ours_out: &Path, peer_out: &Path) -> serde_json::Value {
    let report = study_report(ours_out);
    let results: serde_json::Value = serde_json::from_slice(
        &std::fs::read(peer_out.join("results.json")).expect("the peer's results.json"),
    )
    .expect("results.json");
    let our_models: Vec<&serde_json::Value> = report["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["models"].as_array().into_iter().flatten())
        .collect();
    let explain_dir = tempfile::tempdir().expect("temp dir");
    let mut models = Vec::new();
    let mut all_pass = true;
    for (series_index, series) in results["series"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for peer_model in series["models"].as_array().into_iter().flatten() {
            let name = peer_model["model"].as_str().unwrap_or_default();
            let ours = our_models
                .iter()
                .find(|m| m["model"] == name)
                .unwrap_or_else(|| panic!("no model {name} in our report.json"));
            // labels of every slice
            let our_labels: std::collections::HashMap<&str, &str> = ours["slices"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| Some((s["sop_instance_uid"].as_str()?, s["label"].as_str()?)))
                .collect();
            let peer_slices = peer_model["slices"].as_array().cloned().unwrap_or_default();
            let same_labels = peer_slices
                .iter()
                .filter(|s| {
                    s["sop_instance_uid"]
                        .as_str()
                        .and_then(|uid| our_labels.get(uid))
                        .is_some_and(|label| s["label"].as_str() == Some(label))
                })
                .count();
            // the slices explained, and each map against ours
            let explained = |list: &serde_json::Value| {
                let mut chosen: Vec<(String, String, String)> = list
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["method"].as_str().unwrap_or_default().to_string(),
                            e["sop_instance_uid"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                            e["class"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                chosen.sort();
                chosen
            };
            let same_explained =
                explained(&ours["explanations"]) == explained(&peer_model["explanations"]);
            let mut maps = Vec::new();
            for (n, e) in peer_model["explanations"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let method = e["method"].as_str().unwrap_or_default();
                let class = e["class"].as_str().unwrap_or_default();
                let out = explain_dir
                    .path()
                    .join(format!("{series_index}-{name}-{n}"));
                let status = Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
                    .args(["explain", "--config"])
                    .arg(config)
                    .args(["--model", name, "--method", method, "--class", class])
                    .arg(e["file"].as_str().unwrap_or_default())
                    .arg("--out")
                    .arg(&out)
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status()
                    .expect("dicom-xai explain");
                assert!(status.success(), "dicom-xai explain failed on {e}");
                let our_map: Array2<f32> =
                    ndarray_npy::read_npy(out.join("heatmap.npy")).expect("our heatmap.npy");
                let peer_map: Array2<f32> =
                    ndarray_npy::read_npy(peer_out.join(e["map"].as_str().unwrap_or_default()))
                        .expect("the peer's map");
                let both_zero =
                    our_map.iter().all(|v| *v == 0.0) && peer_map.iter().all(|v| *v == 0.0);
                let correlation = pearson(&our_map, &peer_map);
                let pass = both_zero || correlation.is_some_and(|r| r >= correlation_floor(method));
                all_pass &= pass;
                maps.push(json!({
                    "method": method,
                    "sop_instance_uid": e["sop_instance_uid"],
                    "class": class,
                    "pearson": correlation,
                    "both_zero": both_zero,
                    "floor": correlation_floor(method),
                    "pass": pass,
                }));
            }
            all_pass &= same_labels == peer_slices.len() && same_explained;
            models.push(json!({
                "model": name,
                "slices": peer_slices.len(),
                "same_labels": same_labels,
                "same_slices_and_classes_explained": same_explained,
                "max_logit_difference_torch_vs_onnxruntime":
                    peer_model["max_logit_difference_torch_vs_onnxruntime"],
                "maps": maps,
            }));
        }
    }
    let validate = |dir: &Path| {
        dciodvfy_under(dir).map(|(files, errors, messages)| {
            json!({"files": files, "error_lines": errors, "errors": messages})
        })
    };
    let (ours_dciodvfy, peer_dciodvfy) = (validate(ours_out), validate(peer_out));
    json!({
        "all_pass": all_pass,
        "models": models,
        "dciodvfy": {"ours": ours_dciodvfy, "peer": peer_dciodvfy},
    })
}

/// The side-by-side comparison with the Python peer: `dicom-xai run` and
/// `bench/peer/run_peer.py` on the demo study with `bench/end-to-end-24-slices.toml`, each
/// once to warm up and then `BENCH_PEER_RUNS` (default 3) times, alternately; medians of
/// wall time, peak RSS and each stage; then the checks of the last outputs.
fn peer_rows(
    slices: usize,
    rows: &mut Vec<Row>,
    extra: &mut serde_json::Map<String, serde_json::Value>,
) {
    // BENCH_PEER_CONFIG: another site configuration to compare with (a quicker one while
    // working on the peer); the rows keep their names
    let config = std::env::var_os("BENCH_PEER_CONFIG")
        .map_or_else(|| root().join(PEER_CONFIG), PathBuf::from);
    let study = root().join("assets/demo/study");
    let runs: usize = std::env::var("BENCH_PEER_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(3);
    let work = tempfile::tempdir().expect("temp dir");
    let int8_config = int8_occlusion_config(&config, work.path());
    let (mut ours, mut ours_int8, mut peer) = (Vec::new(), Vec::new(), Vec::new());
    let mut software = serde_json::Value::Null;
    for run in 0..=runs {
        let (ours_out, int8_out, peer_out) = (
            work.path().join(format!("ours-{run}")),
            work.path().join(format!("ours-int8-{run}")),
            work.path().join(format!("peer-{run}")),
        );
        let mine = run_ours(&config, &study, &ours_out);
        let mine_int8 = run_ours(&int8_config, &study, &int8_out);
        let (theirs, versions) = run_peer(&config, &study, &peer_out);
        eprintln!(
            "end-to-end {}: ours {:.1} s, {:.0} MiB; ours with int8 occlusion {:.1} s, {:.0} MiB; \
             peer {:.1} s, {:.0} MiB",
            if run == 0 {
                "warm-up".to_string()
            } else {
                format!("run {run}")
            },
            mine.wall,
            mine.peak_mib,
            mine_int8.wall,
            mine_int8.peak_mib,
            theirs.wall,
            theirs.peak_mib
        );
        software = versions;
        if run > 0 {
            ours.push(mine);
            ours_int8.push(mine_int8);
            peer.push(theirs);
        }
    }
    let name = format!("end-to-end-{slices}-slices");
    let medians = |side: &[Measured], figure: &dyn Fn(&Measured) -> f64| {
        median(side.iter().map(figure).collect())
    };
    // one side's medians against the peer's: wall time, peak memory, then `stages`
    let mut compare = |name: &str, ours: &[Measured], stages: &[&str]| {
        let mut push = |row: String, unit, figure: &dyn Fn(&Measured) -> f64| {
            rows.push(Row {
                name: row,
                unit,
                ours: medians(ours, figure),
                runs,
                peer: Some(medians(&peer, figure)),
            });
        };
        push(name.to_string(), "s", &|m| m.wall);
        push(format!("{name}-peak-rss"), "MiB", &|m| m.peak_mib);
        for stage in stages {
            let of = |m: &Measured| m.stages.get(*stage).copied().unwrap_or(f64::NAN);
            push(format!("{name}-stage-{stage}"), "s", &of);
        }
    };
    compare(&name, &ours, &PEER_STAGES);
    // the same work with occlusion on the 8-bit copies, against the same peer runs
    compare(
        &format!("{name}-int8-occlusion"),
        &ours_int8,
        &["occlusion"],
    );
    let peer_out = work.path().join(format!("peer-{runs}"));
    let check = peer_check(
        &config,
        &work.path().join(format!("ours-{runs}")),
        &peer_out,
    );
    eprintln!("peer check: {check:#}");
    let int8_check = peer_check(
        &int8_config,
        &work.path().join(format!("ours-int8-{runs}")),
        &peer_out,
    );
    eprintln!("peer check, int8 occlusion: {int8_check:#}");
    extra.insert("peer_software".into(), software);
    extra.insert("peer_check".into(), check);
    extra.insert("peer_check_int8_occlusion".into(), int8_check);
}

/// `config` with `precision = "int8"` under `[methods.occlusion]`, written into `dir`, its
/// relative manifest paths made absolute (they are resolved against the file's folder).
fn int8_occlusion_config(config: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(config).expect("the comparison's configuration");
    let folder = config
        .parent()
        .expect("a folder")
        .canonicalize()
        .expect("folder");
    let mut out = String::new();
    for line in text.lines() {
        match line.trim().strip_prefix("manifest = \"") {
            Some(relative) => {
                let relative = relative.trim_end_matches('"');
                out += &format!(
                    "manifest = {:?}\n",
                    folder.join(relative).display().to_string()
                );
            }
            None => out += &format!("{line}\n"),
        }
        if line.trim() == "[methods.occlusion]" {
            out += "precision = \"int8\"\n";
        }
    }
    assert!(
        out.contains("precision = \"int8\""),
        "{}: no [methods.occlusion]",
        config.display()
    );
    let path = dir.join("int8-occlusion.toml");
    std::fs::write(&path, out).expect("written");
    path
}
