//! Execution providers: CUDA listed where it cannot run (no GPU, no driver, or the CPU
//! wheel) falls back to the CPU with ONNX Runtime's reason logged, and `require_gpu` turns
//! that into an error naming the model and the reason. On a machine with a GPU and
//! `make setup GPU=1`, the same configuration runs on CUDA (checked by scripts/gpu_check.sh).

mod common;

use dicom_xai::runtime::{Provider, Runtime, RuntimeError, RuntimeOptions};

fn has_gpu() -> bool {
    std::path::Path::new("/dev/nvidia0").exists()
}

#[test]
fn cuda_that_cannot_run_falls_back_to_the_cpu_or_is_an_error_when_required() {
    if has_gpu() {
        eprintln!("skipped: this machine has a GPU (scripts/gpu_check.sh covers it)");
        return;
    }
    let model = common::asset("models/densenet169-legacy/densenet169.onnx");
    let options = RuntimeOptions {
        providers: vec![Provider::Cuda, Provider::Cpu],
        ..RuntimeOptions::default()
    };
    let runtime = Runtime::init(options.clone()).unwrap();
    let loaded = runtime.session(&model).unwrap();
    assert_eq!(loaded.provider, "cpu");

    let required = Runtime::init(RuntimeOptions {
        require_gpu: true,
        ..options
    })
    .unwrap();
    match required.session(&model) {
        Err(error @ RuntimeError::GpuRequired { .. }) => {
            let message = error.to_string();
            assert!(
                message.contains("densenet169.onnx")
                    && message.contains("CUDA execution provider is required"),
                "{message}"
            );
            // the reason is ONNX Runtime's (or this build's), never empty
            let reason = message.rsplit(": ").next().unwrap_or_default();
            assert!(reason.len() > 10, "{message}");
        }
        Err(other) => panic!("expected GpuRequired, got {other}"),
        Ok(loaded) => panic!("CUDA required but a session ran on {}", loaded.provider),
    }
}
