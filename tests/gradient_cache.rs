//! The gradient-model cache: a model is transformed once, then found by its checksum and the
//! request; a hit reads the score from the entry's sidecar instead of parsing the graph, and
//! a damaged entry (truncated file, sidecar missing or stale) is detected and rebuilt.

mod common;

use dicom_xai::autodiff::{GradRequest, GradientCache};
use dicom_xai::runtime::Runtime;
use dicom_xai::runtime::RuntimeOptions;
use dicom_xai::runtime::checksum::sha256_file_with_store;

#[test]
fn entries_are_found_and_damaged_ones_rebuilt() {
    let models = tempfile::tempdir().unwrap();
    common::run_support_script("make_toy_model.py", &[models.path().as_os_str()]);
    let toy = models.path().join("toy.onnx");
    let runtime = Runtime::init(RuntimeOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = GradientCache::new(dir.path().to_path_buf());
    let request = GradRequest::new(["x".to_string()]).exposing_score();

    let built = cache.get_or_build(&runtime, &toy, &request).unwrap();
    assert!(built.built);
    assert_eq!(built.score, "logits");
    let sidecar = built.path.with_extension("score");
    let length = std::fs::metadata(&built.path).unwrap().len();
    assert_eq!(
        std::fs::read_to_string(&sidecar).unwrap(),
        format!("{length}\nlogits")
    );

    let found = cache.get_or_build(&runtime, &toy, &request).unwrap();
    assert!(!found.built);
    assert_eq!(
        (found.path.as_path(), found.score.as_str()),
        (built.path.as_path(), "logits")
    );

    // without its sidecar the entry is parsed, still found, and the sidecar written again
    std::fs::remove_file(&sidecar).unwrap();
    let parsed = cache.get_or_build(&runtime, &toy, &request).unwrap();
    assert!(!parsed.built && parsed.score == "logits");
    assert!(sidecar.is_file());

    // a truncated model no longer matches its sidecar's length: rebuilt, not trusted
    let bytes = std::fs::read(&built.path).unwrap();
    std::fs::write(&built.path, &bytes[..bytes.len() / 2]).unwrap();
    let rebuilt = cache.get_or_build(&runtime, &toy, &request).unwrap();
    assert!(rebuilt.built && rebuilt.score == "logits");
    assert_eq!(std::fs::read(&built.path).unwrap(), bytes);

    // a copy of the model (the same content) is the same entry
    let copy = models.path().join("copy.onnx");
    std::fs::copy(&toy, &copy).unwrap();
    let same_content = cache.get_or_build(&runtime, &copy, &request).unwrap();
    assert_eq!(
        same_content.path, built.path,
        "the key is the content's checksum"
    );
}

#[test]
fn a_file_rewritten_in_place_is_hashed_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    let store = dir.path().join("checksums");
    let sha256_file = |path: &std::path::Path| sha256_file_with_store(path, Some(&store));
    std::fs::write(&path, b"first version").unwrap();
    // references: sha256sum of the same bytes
    let first = sha256_file(&path).unwrap();
    assert_eq!(
        first,
        "80d8f975e768eecac59d22a788bf8e811e51ca85e309ee47f1e821e3e58280f2"
    );
    assert_eq!(sha256_file(&path).unwrap(), first, "remembered");
    std::thread::sleep(std::time::Duration::from_millis(20));
    std::fs::write(&path, b"other version").unwrap();
    assert_eq!(
        sha256_file(&path).unwrap(),
        "e2eb5819d249f80a4a944556e67f65ed5c35ff5fa9284c70939ec0e52e45436b"
    );
}

/// Logits of `x` through a session of DenseNet169 (input "input", output "logits").
fn densenet_logits(
    loaded: &mut dicom_xai::runtime::LoadedSession,
    x: &ndarray::Array4<f32>,
) -> Vec<f32> {
    let tensor = ort::value::TensorRef::from_array_view(x.view()).unwrap();
    let outputs = loaded.session.run(ort::inputs!["input" => tensor]).unwrap();
    let logits = outputs["logits"].try_extract_array::<f32>().unwrap();
    logits.iter().copied().collect()
}

/// ONNX Runtime's optimised graph of a model is kept after the first session and loaded,
/// without optimising again, by the next; the logits stay those of a plain session. A damaged
/// graph is rebuilt, and a model file that changes gets a new entry in place of the old one.
#[test]
fn optimised_graphs_are_kept_reused_and_rebuilt() {
    let runtime = Runtime::init(RuntimeOptions::default()).unwrap();
    let models = tempfile::tempdir().unwrap();
    let model = models.path().join("densenet169.onnx");
    std::fs::copy(
        common::asset("models/densenet169-legacy/densenet169.onnx"),
        &model,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let optimized = dir.path().join("optimized");
    let entries = || {
        let mut names: Vec<String> = std::fs::read_dir(&optimized)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let x = ndarray::Array4::from_shape_fn((2, 3, 224, 224), |(n, c, h, w)| {
        ((n * 7 + c * 5 + h * 3 + w) % 17) as f32 / 8.0 - 1.0
    });
    let reference = densenet_logits(&mut runtime.session(&model).unwrap(), &x);
    // Element-wise, against the plain session: the same kernels on the same graph.
    let close = |logits: &[f32]| {
        logits
            .iter()
            .zip(&reference)
            .all(|(a, b)| (a - b).abs() <= 1e-5 * b.abs().max(1.0))
    };

    let built = densenet_logits(&mut runtime.cached_session(&model, &optimized).unwrap(), &x);
    assert!(close(&built), "{built:?} against {reference:?}");
    let kept = entries();
    // the graph and its weights, in a file ONNX Runtime maps: nothing partial left
    let (graph, weights) = match kept.as_slice() {
        [a, b] if a.ends_with(".data") && b.ends_with(".onnx") => {
            (optimized.join(b), optimized.join(a))
        }
        _ => panic!("one graph and one weights file: {kept:?}"),
    };
    let model_bytes = std::fs::metadata(&model).unwrap().len();
    assert!(
        std::fs::metadata(&weights).unwrap().len() > model_bytes * 9 / 10,
        "the weights are in the weights file"
    );
    assert!(std::fs::metadata(&graph).unwrap().len() < model_bytes / 10);
    let written = std::fs::metadata(&graph).unwrap().modified().unwrap();
    let graph_bytes = std::fs::metadata(&graph).unwrap().len();

    let reused = densenet_logits(&mut runtime.cached_session(&model, &optimized).unwrap(), &x);
    assert!(close(&reused), "{reused:?} against {reference:?}");
    assert_eq!(entries(), kept);
    assert_eq!(
        std::fs::metadata(&graph).unwrap().modified().unwrap(),
        written,
        "reused, not rewritten"
    );

    // a damaged entry (graph or weights) does not load: removed, the model optimised again
    // and kept again, with no file of the damaged one left
    for damage_the_weights in [false, true] {
        let before = entries();
        let damaged = optimized.join(&before[usize::from(!damage_the_weights)]);
        let bytes = std::fs::read(&damaged).unwrap();
        std::fs::write(&damaged, &bytes[..bytes.len() / 3]).unwrap();
        let rebuilt = densenet_logits(&mut runtime.cached_session(&model, &optimized).unwrap(), &x);
        assert!(close(&rebuilt), "{rebuilt:?} against {reference:?}");
        let now = entries();
        assert!(
            now.len() == 2 && now[1] == kept[1] && now[0] != before[0],
            "a new graph and weights file, the damaged ones gone: {now:?} after {before:?}"
        );
        assert_eq!(std::fs::metadata(&graph).unwrap().len(), graph_bytes);
    }

    // a model file that is replaced gets a new entry, which supersedes the old one
    std::fs::remove_file(&model).unwrap();
    std::fs::copy(
        common::asset("models/densenet169-legacy/densenet169.onnx"),
        &model,
    )
    .unwrap();
    runtime.cached_session(&model, &optimized).unwrap();
    let replaced = entries();
    assert!(
        replaced.len() == 2 && replaced[1] != kept[1] && replaced[0] != kept[0],
        "{replaced:?} after {kept:?}"
    );
}
