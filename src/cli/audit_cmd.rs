//! `dicom-xai audit`: the models and methods over a labelled set of images, written as
//! `audit.json` and `audit.html` (docs/design.md section 9).

use std::path::PathBuf;

use clap::Args;

use super::progress::Bar;
use super::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, non_empty};
use crate::audit::{self, AuditRequest};

/// Arguments of `audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// The site configuration (models, method parameters, quality thresholds).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Models to audit (manifest names, comma-separated; default: the configuration's).
    #[arg(long, value_name = "A,B", value_delimiter = ',', num_args = 1)]
    models: Option<Vec<String>>,
    /// Methods to audit (comma-separated; default: the configuration's [explain] methods).
    #[arg(long, value_name = "M,N", value_delimiter = ',', num_args = 1)]
    methods: Option<Vec<String>>,
    /// At most N images per label (the first in path order).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,
    /// Output folder: audit.json, audit.html and the journal that lets an interrupted audit
    /// resume.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Labelled data folders: one subfolder per label, or a Testing/ folder laid out so.
    #[arg(required = true, value_name = "DATA")]
    data: Vec<PathBuf>,
}

/// Runs `audit`; returns the exit code.
pub fn run(args: &AuditArgs) -> u8 {
    let settings = match super::load_settings_for_inputs(&args.config, &args.data) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let request = AuditRequest {
        models: non_empty(&args.models),
        methods: non_empty(&args.methods),
        limit: args.limit.map(|n| n as usize),
        out: args.out.clone(),
        data: args.data.clone(),
    };
    match audit::audit(&settings, &request, &Bar::new("images")) {
        Ok(outcome) => {
            for model in &outcome.report.models {
                let accuracy = model
                    .accuracy
                    .map_or_else(|| "n/a".to_string(), |a| format!("{:.3}", a));
                println!(
                    "{}: accuracy {accuracy} on {} images",
                    model.model, model.images
                );
                for method in &model.methods {
                    match (&method.error, method.outside_brain_share_correct) {
                        (Some(error), _) => println!("  {}: not run: {error}", method.method),
                        (None, Some(share)) => println!(
                            "  {}: {:.1}% of correct predictions rest mostly outside the brain",
                            method.method,
                            100.0 * share
                        ),
                        (None, None) => println!("  {}: nothing explained", method.method),
                    }
                }
            }
            for failure in &outcome.report.failures {
                eprintln!(
                    "failed: {}: {}",
                    crate::logging::redact(&failure.file.display().to_string()),
                    crate::logging::redact(&failure.message)
                );
            }
            println!("{}", outcome.json.display());
            println!("{}", outcome.html.display());
            if outcome.report.failures.is_empty() {
                EXIT_OK
            } else {
                EXIT_PARTIAL
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            if error.is_usage() {
                EXIT_USAGE
            } else {
                EXIT_FATAL
            }
        }
    }
}
