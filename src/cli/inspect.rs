//! `dicom-xai inspect`: per-file summaries, as text or JSON Lines.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::{EXIT_FATAL, EXIT_OK, EXIT_PARTIAL};
use crate::dicom::inspect as summary;
use crate::dicom::scan::files_under;

/// Arguments of `inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// One JSON object per file (JSON Lines) instead of text.
    #[arg(long)]
    json: bool,
    /// Files or folders (searched recursively).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

/// Runs `inspect`; returns the exit code.
pub fn run(args: &InspectArgs) -> u8 {
    let (files, walk_issues) = files_under(&args.files);
    let mut failures = walk_issues.len();
    for issue in &walk_issues {
        tracing::error!("{}", issue.message);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for path in files {
        let summary = summary::inspect(&path);
        failures += usize::from(summary.error.is_some());
        let written = if args.json {
            serde_json::to_string(&summary)
                .map_err(std::io::Error::other)
                .and_then(|line| writeln!(out, "{line}"))
        } else {
            write!(out, "{}", summary.to_text())
        };
        if let Err(error) = written {
            // a closed pipe (e.g. `| head`) ends the listing, it is not an input failure
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return EXIT_OK;
            }
            tracing::error!("cannot write to standard output: {error}");
            return EXIT_FATAL;
        }
    }
    if failures > 0 { EXIT_PARTIAL } else { EXIT_OK }
}
