//! `dicom-xai explain`: one image, one model, one method, written as `heatmap.npy`,
//! `overlay.png` and `explain.json`.

use std::path::PathBuf;

use clap::Args;

use super::EXIT_OK;
use crate::pipeline::{ExplainRequest, explain_image};

/// Arguments of `explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The site configuration (runtime, method parameters, colour map).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// A model name of the configuration, or a model manifest (.toml).
    #[arg(long, value_name = "NAME|MANIFEST.toml")]
    model: String,
    /// The explanation method.
    #[arg(long, value_name = "M")]
    method: String,
    /// The class to explain (default: the predicted one).
    #[arg(long, value_name = "LABEL")]
    class: Option<String>,
    /// A sparse autoencoder for the `sae` method.
    #[arg(long, value_name = "FILE")]
    sae: Option<PathBuf>,
    /// The image: DICOM, or PNG/JPEG taken as grey levels already windowed to [0, 1].
    #[arg(value_name = "IMAGE")]
    image: PathBuf,
    /// Output folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

/// Runs `explain`; returns the exit code.
pub fn run(args: &ExplainArgs) -> u8 {
    let settings = match super::load_settings(&args.config) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if args.sae.is_some() && args.method != "sae" {
        eprintln!("error: --sae is only used by the sae method");
        return super::EXIT_USAGE;
    }
    let request = ExplainRequest {
        model: args.model.clone(),
        method: args.method.clone(),
        class: args.class.clone(),
        image: args.image.clone(),
        out: args.out.clone(),
        sae: args.sae.clone(),
    };
    match explain_image(&settings, &request) {
        Ok(report) => {
            println!("{}", report.display());
            EXIT_OK
        }
        Err(error) => {
            eprintln!("error: {error}");
            super::run_error_status(&error)
        }
    }
}
