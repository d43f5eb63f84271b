//! Shared helpers of the integration tests: where the project's Python, assets and binary
//! are, and how to run the Python reference scripts.
#![allow(dead_code)] // each test binary uses a different subset

pub mod gradcheck;
pub mod known_answer;
pub mod receiver;
pub mod reference;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A folder under `assets/` (fetched by `make setup`), which must exist.
pub fn asset(relative: &str) -> PathBuf {
    let path = root().join("assets").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first (it fetches the test assets)",
        path.display()
    );
    path
}

/// The project's Python (`.venv`, made by `make setup`), or DICOM_XAI_PYTHON.
pub fn python() -> PathBuf {
    let path = std::env::var_os("DICOM_XAI_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run `make setup` first (it creates .venv)",
        path.display()
    );
    path
}

/// Runs a script of `tests/support/` with the project's Python; panics with its output when
/// it fails.
pub fn run_support_script(script: &str, args: &[&std::ffi::OsStr]) -> Output {
    run_python(&root().join("tests/support").join(script), args)
}

/// Runs a Python script with the project's Python; panics with its output when it fails.
pub fn run_python(script: &Path, args: &[&std::ffi::OsStr]) -> Output {
    let output = Command::new(python())
        .arg(script)
        .args(args)
        .output()
        .expect("cannot start python");
    assert!(
        output.status.success(),
        "{} failed:\n{}\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The dicom-xai binary built for these tests.
pub fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dicom-xai"))
}

/// Runs `dicom-xai grad MODEL --wrt T... --out OUT` and returns its output (not checked).
pub fn grad_command(model: &Path, wrt: &[&str], out: &Path) -> Output {
    let mut command = binary();
    command.arg("grad").arg(model).arg("--out").arg(out);
    for tensor in wrt {
        command.arg("--wrt").arg(tensor);
    }
    command.output().expect("cannot run dicom-xai grad")
}

/// [`grad_command`] that must succeed; its JSON summary.
pub fn grad_summary(model: &Path, wrt: &[&str], out: &Path) -> serde_json::Value {
    let output = grad_command(model, wrt, out);
    assert!(
        output.status.success(),
        "dicom-xai grad {} failed:\n{}",
        model.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("dicom-xai grad prints a JSON summary")
}

/// ONNX Runtime on the CPU with two threads (the reference machine's cores).
pub fn cpu_runtime() -> dicom_xai::runtime::Runtime {
    dicom_xai::runtime::Runtime::init(dicom_xai::runtime::RuntimeOptions {
        intra_threads: 2,
        ..dicom_xai::runtime::RuntimeOptions::default()
    })
    .expect("ONNX Runtime")
}

/// A model of the default domain at opset 17 around `graph`, as the tests build by hand.
pub fn opset17_model(
    graph: dicom_xai::onnx::proto::GraphProto,
) -> dicom_xai::onnx::proto::ModelProto {
    dicom_xai::onnx::proto::ModelProto {
        ir_version: Some(8),
        producer_name: Some("dicom-xai tests".into()),
        opset_import: vec![dicom_xai::onnx::proto::OperatorSetIdProto::new("", 17)],
        graph: Some(graph),
        ..dicom_xai::onnx::proto::ModelProto::default()
    }
}

/// The manifest of the shipped trained model `arch` (models/, exported by `make setup`).
pub fn shipped_manifest(arch: &str) -> dicom_xai::model::Manifest {
    let path = root().join(format!("models/{arch}/{arch}.toml"));
    assert!(
        path.exists(),
        "{} is missing: run `make setup`",
        path.display()
    );
    let manifest = dicom_xai::model::Manifest::load(&path).expect("manifest");
    assert!(manifest.trained, "{arch}: the shipped model");
    manifest
}

/// The committed evaluation subset's images (tests/fixtures/eval-subset), every `step`-th in
/// path order.
pub fn eval_subset(step: usize) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = files_under(&root().join("tests/fixtures/eval-subset"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
        .collect();
    images.sort();
    images.into_iter().step_by(step).collect()
}

/// Pearson correlation of two maps of the same size, in f64.
pub fn pearson(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (f64::from(x) - ma, f64::from(y) - mb);
        ab += dx * dy;
        aa += dx * dx;
        bb += dy * dy;
    }
    ab / (aa.sqrt() * bb.sqrt())
}

/// Every regular file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    files.sort();
    files
}

/// Runs a program that must be installed (by `make setup`) and returns its output.
pub fn tool(program: &str, args: &[&std::ffi::OsStr]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}): run `make setup` first"))
}

/// A study written by `tests/support/make_series.py` and its ground-truth manifest.
pub struct GeneratedStudy {
    _dir: tempfile::TempDir,
    /// The study folder.
    pub root: PathBuf,
    /// `manifest.json`: series, slice order, geometry.
    pub manifest: serde_json::Value,
}

impl GeneratedStudy {
    /// The DICOM files of the study (the manifest left out), sorted.
    pub fn dicom_files(&self) -> Vec<PathBuf> {
        files_under(&self.root)
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "dcm"))
            .collect()
    }
}

/// Generates a study of `preset` (demo, test, ordering) from the MNI152 template.
pub fn generate_study(preset: &str) -> GeneratedStudy {
    generate_study_seeded(preset, 0)
}

/// Generates a study of `preset`; each seed gives another patient and other UIDs.
pub fn generate_study_seeded(preset: &str, seed: u64) -> GeneratedStudy {
    let dir = tempfile::tempdir().expect("temporary folder");
    let root = dir.path().join(preset);
    let template = asset("mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz");
    run_support_script(
        "make_series.py",
        &[
            "--template".as_ref(),
            template.as_os_str(),
            "--out".as_ref(),
            root.as_os_str(),
            "--preset".as_ref(),
            preset.as_ref(),
            "--seed".as_ref(),
            seed.to_string().as_ref(),
        ],
    );
    let manifest = std::fs::read(root.join("manifest.json")).expect("manifest.json");
    let manifest = serde_json::from_slice(&manifest).expect("manifest.json is JSON");
    GeneratedStudy {
        _dir: dir,
        root,
        manifest,
    }
}

/// The "Error" lines dciodvfy prints for a file (empty when it is valid).
pub fn dciodvfy_errors(path: &Path) -> Vec<String> {
    let output = tool("dciodvfy", &[path.as_os_str()]);
    let text = String::from_utf8_lossy(&output.stderr).into_owned()
        + &String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter(|l| l.starts_with("Error"))
        .map(str::to_string)
        .collect()
}

/// Fails the test when dciodvfy reports errors for `path`.
pub fn assert_no_dciodvfy_errors(path: &Path) {
    let errors = dciodvfy_errors(path);
    assert!(
        errors.is_empty(),
        "{}: dciodvfy errors:\n{}",
        path.display(),
        errors.join("\n")
    );
}

/// SHA-256 of every file under `dir`, to prove inputs were not modified.
pub fn checksums(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    use sha2::Digest;
    files_under(dir)
        .into_iter()
        .map(|p| {
            let digest = sha2::Sha256::digest(std::fs::read(&p).expect("readable")).to_vec();
            (p, digest)
        })
        .collect()
}

/// StudyInstanceUIDs an attacker (or a broken exporter) may put in a file, each of which
/// would make a naive `out.join(uid)` land elsewhere or break a path; none is a DICOM UID.
pub const HOSTILE_UIDS: [&str; 6] = [
    "../../escape",
    "/abs/escape",
    "1.2..3",
    "1111111111111111111111111111111111111111111111111111111111111111.1",
    "",
    "1.2\0.3",
];

/// Writes one copy of pydicom's MR_small.dcm per [`HOSTILE_UIDS`] into `dir` (`hostile-N.dcm`,
/// the hostile value as StudyInstanceUID, valid series and instance UIDs of their own); the
/// files written.
pub fn write_hostile_uid_files(dir: &Path) -> Vec<PathBuf> {
    use dicom_dictionary_std::tags;
    use dicom_object::mem::InMemElement;
    std::fs::create_dir_all(dir).expect("mkdir");
    HOSTILE_UIDS
        .iter()
        .enumerate()
        .map(|(index, uid)| {
            let mut object =
                dicom_object::open_file(asset("pydicom/MR_small.dcm")).expect("MR_small");
            for (tag, value) in [
                (tags::STUDY_INSTANCE_UID, uid.to_string()),
                (
                    tags::SERIES_INSTANCE_UID,
                    format!("1.2.826.0.1.3680043.99.{index}"),
                ),
                (
                    tags::SOP_INSTANCE_UID,
                    format!("1.2.826.0.1.3680043.99.{index}.1"),
                ),
            ] {
                object.put(InMemElement::new(
                    tag,
                    dicom_core::VR::UI,
                    dicom_core::PrimitiveValue::from(value),
                ));
            }
            let path = dir.join(format!("hostile-{index}.dcm"));
            object.write_to_file(&path).expect("write");
            path
        })
        .collect()
}

/// Asserts that a run over `work` wrote nothing outside the folders `allowed` (inside
/// `work`), by listing the whole tree, and that no hostile UID made a file appear beside
/// `work` or at an absolute path.
pub fn assert_nothing_written_outside(work: &Path, allowed: &[&Path]) {
    let strays: Vec<PathBuf> = files_under(work)
        .into_iter()
        .filter(|f| !allowed.iter().any(|a| f.starts_with(a)))
        .collect();
    assert!(
        strays.is_empty(),
        "files written outside the allowed folders: {strays:?}"
    );
    for escaped in [
        work.parent().map(|p| p.join("escape")),
        Some(PathBuf::from("/abs/escape")),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
}

/// A file's StudyInstanceUID.
pub fn study_uid_of(path: &Path) -> String {
    dicom_object::open_file(path)
        .expect("DICOM")
        .element(dicom_dictionary_std::tags::STUDY_INSTANCE_UID)
        .expect("StudyInstanceUID")
        .to_str()
        .expect("text")
        .trim_end_matches('\0')
        .to_string()
}

/// A file's SOPInstanceUID, `None` when it is not a DICOM file.
pub fn sop_instance_uid_of(path: &Path) -> Option<String> {
    let object = dicom_object::open_file(path).ok()?;
    let uid = object
        .element(dicom_dictionary_std::tags::SOP_INSTANCE_UID)
        .ok()?
        .to_str()
        .ok()?;
    Some(uid.trim_end_matches('\0').to_string())
}

/// The explanations a report.json names, over every series and model.
pub fn explanations(report: &serde_json::Value) -> Vec<serde_json::Value> {
    model_entries(report, "explanations")
}

/// The entries of list `key` of every model's report (`explanations`, `parametric_maps`),
/// over every series.
pub fn model_entries(report: &serde_json::Value, key: &str) -> Vec<serde_json::Value> {
    report["series"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["models"].as_array().cloned().unwrap_or_default())
        .flat_map(|m| m[key].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The output SOPInstanceUIDs of the explanations a report.json names.
pub fn explanation_output_uids(report: &serde_json::Value) -> std::collections::BTreeSet<String> {
    explanations(report)
        .iter()
        .filter_map(|e| e["output_sop_instance_uid"].as_str().map(str::to_string))
        .collect()
}

/// Every output SOPInstanceUID a report.json names: overlays, summaries, Parametric Maps
/// and the study's Structured Report.
pub fn output_uids(report: &serde_json::Value) -> std::collections::BTreeSet<String> {
    ["explanations", "summaries", "parametric_maps"]
        .into_iter()
        .flat_map(|key| model_entries(report, key))
        .chain(std::iter::once(report["structured_report"].clone()))
        .filter_map(|e| e["output_sop_instance_uid"].as_str().map(str::to_string))
        .collect()
}

/// The class probabilities (label order) of the slice a model's series call rests on
/// (`series_prediction.decided_by`), from a model entry of report.json.
pub fn deciding_probabilities(
    model: &serde_json::Value,
) -> serde_json::Map<String, serde_json::Value> {
    let decided_by = &model["series_prediction"]["decided_by"]["sop_instance_uid"];
    model["slices"]
        .as_array()
        .expect("slices")
        .iter()
        .find(|s| s["sop_instance_uid"] == *decided_by)
        .expect("the deciding slice")["probabilities"]
        .as_object()
        .expect("probabilities")
        .clone()
}

/// The output SOPInstanceUIDs a report.json lists as superseded.
pub fn superseded_uids(report: &serde_json::Value) -> std::collections::BTreeSet<String> {
    report["superseded"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["output_sop_instance_uid"].as_str().map(str::to_string))
        .collect()
}

/// The SOPInstanceUIDs of the overlay files under a folder (their file names).
pub fn overlay_file_uids(dir: &Path) -> std::collections::BTreeSet<String> {
    files_under(dir)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "dcm"))
        .filter_map(|f| Some(f.file_stem()?.to_str()?.to_string()))
        .collect()
}

/// The model of `original` with the weights of its last `count` weight layers (Conv, MatMul
/// and Gemm nodes whose weight is an initializer, counted from the graph's end) replaced by
/// Gaussian values of the same root mean square (seeded by `count`), saved in `dir` with a
/// manifest named `<name>-random-<count>`: the cascading model randomisation of Adebayo et
/// al. (2018). Returns the manifest and how many weight layers the model has.
pub fn randomise_top_layers(
    original: &dicom_xai::model::Manifest,
    count: usize,
    dir: &Path,
) -> (dicom_xai::model::Manifest, usize) {
    use dicom_xai::onnx::Model;
    use dicom_xai::onnx::tensor::{Storage, from_array};
    let mut model = Model::load(&original.onnx).expect("the model");
    let initializers: std::collections::HashSet<String> = model
        .graph()
        .initializer
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let weights: Vec<String> = model
        .graph()
        .node
        .iter()
        .filter(|n| matches!(n.op_type(), "Conv" | "MatMul" | "Gemm"))
        .map(|n| n.input[1].clone())
        .filter(|w| initializers.contains(w))
        .collect();
    let mut noise = dicom_xai::noise::NoiseSource::new(count as u64);
    for name in weights.iter().rev().take(count) {
        let values = model
            .initializer_f32(name)
            .expect("readable weights")
            .expect("a weight initializer");
        let rms = (values.mapv(|v| v * v).mean().unwrap_or(0.0)).sqrt();
        let random: ndarray::ArrayD<f32> = values.mapv(|_| rms * noise.normal());
        let tensor = from_array(name, &random, Storage::Raw);
        let slot = model
            .graph_mut()
            .initializer
            .iter_mut()
            .find(|t| t.name() == name)
            .expect("the initializer");
        *slot = tensor;
    }
    let name = format!("{}-random-{}", original.name, count.min(999));
    let path = dir.join(format!("{name}.onnx"));
    model.save(&path).expect("save");
    let mut manifest = original.clone();
    manifest.onnx = path;
    manifest.sha256 = None;
    manifest.name = name;
    (manifest, weights.len())
}

/// Sends SIGTERM to `child` and waits at most `timeout` for it to exit; its exit code (-1
/// when a signal ended it). `log` is shown when it does not exit in time.
pub fn terminate(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
    log: impl Fn() -> String,
) -> i32 {
    let pid = child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status();
    assert!(sent.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
