//! `dicom-xai run`: process every study under the inputs once.

use super::progress::Bar;
use std::path::PathBuf;

use clap::Args;

use super::non_empty;
use crate::pipeline::{self, Engine, Overrides};

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The site configuration (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Output folder (default: the configuration's [output] dir).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Models to use instead of the rules' (manifest names, comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',', num_args = 1)]
    pub(crate) models: Option<Vec<String>>,
    /// Methods to use instead of the rules' (comma-separated).
    #[arg(long, value_name = "M,N", value_delimiter = ',', num_args = 1)]
    methods: Option<Vec<String>>,
    /// Print where the seconds went: loading, then each stage summed over the studies
    /// (report.json holds each study's under `timings`).
    #[arg(long)]
    timings: bool,
    /// DICOM files or folders (searched recursively).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

/// Runs `run`; returns the exit code.
pub fn run(args: &RunArgs) -> u8 {
    let settings = match super::load_settings_for_inputs(&args.config, &args.inputs) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| settings.output.dir.clone());
    let overrides = Overrides {
        models: non_empty(&args.models),
        methods: non_empty(&args.methods),
    };
    let started = std::time::Instant::now();
    let engine = match Engine::new(settings, overrides) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: {error}");
            return super::run_error_status(&error);
        }
    };
    let loaded = started.elapsed().as_secs_f64();
    match pipeline::run(&engine, &args.inputs, &out, &Bar::new("studies")) {
        Ok(summary) => {
            for issue in &summary.file_issues {
                let message = crate::logging::redact(&issue.message);
                eprintln!("{:?}: {message}", issue.disposition);
            }
            println!(
                "{} studies processed, {} with errors; reports: {}",
                summary.studies,
                summary.studies_with_errors,
                out.join("<StudyInstanceUID>/report.json").display()
            );
            for report in &summary.reports {
                println!("  {}", report.display());
            }
            if args.timings {
                print_timings(loaded, &summary.timings, started.elapsed().as_secs_f64());
            }
            super::outcome_status(summary.outcome())
        }
        Err(error) => {
            eprintln!("error: {error}");
            super::run_error_status(&error)
        }
    }
}

/// The table of `--timings`: loading, each stage (largest first), what no stage covers
/// (scanning, reading headers, report files), and the total, with shares of the total.
fn print_timings(loaded: f64, stages: &std::collections::BTreeMap<String, f64>, total: f64) {
    let mut rows: Vec<(&str, f64)> = stages.iter().map(|(s, t)| (s.as_str(), *t)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let covered = loaded + rows.iter().map(|(_, t)| t).sum::<f64>();
    let share = |seconds: f64| 100.0 * seconds / total.max(f64::EPSILON);
    println!("{:<28} {:>10} {:>7}", "stage", "seconds", "share");
    let line = |stage: &str, seconds: f64| {
        println!("{stage:<28} {seconds:>10.3} {:>6.1}%", share(seconds));
    };
    line("load (runtime, models)", loaded);
    for (stage, seconds) in rows {
        line(stage, seconds);
    }
    line("other", (total - covered).max(0.0));
    line("total", total);
}
