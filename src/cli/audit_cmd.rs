//! `dicom-xai audit`: the models and methods over a labelled set of images, written as
//! `audit.json` and `audit.html` (DESIGN.md 4.1).

use std::path::PathBuf;

use clap::Args;

use super::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, non_empty};
use crate::audit::{self, AuditRequest, Progress};

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

/// A progress bar on standard error when it is a terminal.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn stage(&self, name: &str, total: usize) {
        self.0.set_length(total as u64);
        self.0.set_position(0);
        self.0.set_prefix(name.to_string());
    }
    fn step(&self, message: &str) {
        self.0
            .set_message(crate::logging::redact(message).into_owned());
        self.0.inc(1);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
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
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(0)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {prefix} {pos}/{len} images [{elapsed}, {eta} left] {wide_msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    match audit::audit(&settings, &request, &Bar(bar)) {
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
