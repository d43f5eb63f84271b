//! `dicom-xai grad`: writes the gradient model of an ONNX classifier (docs/design.md
//! section 11).

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{EXIT_FATAL, EXIT_OK, EXIT_USAGE};
use crate::autodiff::{AutodiffError, GradRequest, gradient_model};
use crate::onnx::Model;
use crate::runtime::{Provider, Runtime, RuntimeOptions};

/// Arguments of `grad`.
#[derive(Debug, Args)]
#[command(
    after_help = "The output model has every input and output of MODEL, plus the input \
    grad_seed ([N, K], like the score), each --wrt tensor T as an output, and grad:T = \
    d(sum(grad_seed * score))/dT. Only standard ONNX operators are emitted."
)]
pub struct GradArgs {
    /// The forward model.
    #[arg(value_name = "MODEL.onnx")]
    model: PathBuf,
    /// A tensor to differentiate with respect to: a graph input or any intermediate tensor
    /// (repeat for several).
    #[arg(long, value_name = "TENSOR", required = true)]
    wrt: Vec<String>,
    /// The score tensor ([N, K]); default: the input of a final Softmax, else the first output.
    #[arg(long, value_name = "TENSOR")]
    score: Option<String>,
    /// Where to write the gradient model.
    #[arg(long, value_name = "OUT.onnx")]
    out: PathBuf,
    /// The ONNX Runtime library (default: as `run` finds it), used to learn tensor shapes.
    #[arg(long, value_name = "FILE")]
    onnxruntime: Option<PathBuf>,
}

/// Runs `grad`; returns the exit code.
pub fn run(args: &GradArgs) -> u8 {
    let started = Instant::now();
    let runtime = match Runtime::init(RuntimeOptions {
        library: args.onnxruntime.clone(),
        providers: vec![Provider::Cpu],
        ..RuntimeOptions::default()
    }) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_FATAL;
        }
    };
    let model = match Model::load(&args.model) {
        Ok(model) => model,
        Err(error) => {
            eprintln!("error: {error}");
            return EXIT_FATAL;
        }
    };
    let mut request = GradRequest::new(args.wrt.iter().cloned());
    if let Some(score) = &args.score {
        request = request.with_score(score.clone());
    }
    let gradient = match gradient_model(&runtime, &model, &request) {
        Ok(gradient) => gradient,
        Err(error) => {
            eprintln!("error: {error}");
            return match error {
                AutodiffError::BadRequest { .. } => EXIT_USAGE,
                _ => EXIT_FATAL,
            };
        }
    };
    if let Err(error) = gradient.model.save(&args.out) {
        eprintln!("error: {error}");
        return EXIT_FATAL;
    }
    let summary = serde_json::json!({
        "model": args.model,
        "out": args.out,
        "score": gradient.score,
        "wrt": gradient.wrt,
        "outputs": gradient.wrt.iter().map(|t| format!("grad:{t}")).collect::<Vec<_>>(),
        "forward_nodes": gradient.forward_nodes,
        "backward_nodes": gradient.backward_nodes,
        "seconds": started.elapsed().as_secs_f64(),
    });
    println!("{summary}");
    EXIT_OK
}
