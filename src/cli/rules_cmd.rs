//! `dicom-xai rules test --config FILE STUDY_DIR...`: which rule takes each series, and why
//! every earlier rule did not. Prints series-level attributes only, never patient ones.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{EXIT_FATAL, EXIT_OK, EXIT_USAGE};
use crate::config::plane_name;
use crate::dicom::scan::{self, Disposition, Series};

/// `rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Scan study folders and show, per series, which rule takes it and why each earlier rule
    /// did not (nothing is decoded, classified or written).
    Test(TestArgs),
}

/// Arguments of `rules test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The configuration file (TOML).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Study folders or files (searched recursively).
    #[arg(required = true, value_name = "STUDY_DIR")]
    inputs: Vec<PathBuf>,
}

/// Runs a `rules` subcommand; returns the exit code.
pub fn run(command: &RulesCommand) -> u8 {
    match command {
        RulesCommand::Test(args) => test(args),
    }
}

fn test(args: &TestArgs) -> u8 {
    let settings = match super::load_settings(&args.config) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    if let Some(missing) = args.inputs.iter().find(|p| !p.exists()) {
        eprintln!("error: {}: no such file or folder", missing.display());
        return EXIT_USAGE;
    }
    let scanned = scan::scan(&args.inputs);
    let mut text = String::new();
    let (mut total, mut matched) = (0, 0);
    for study in &scanned.studies {
        text += &format!("study {} ({} series)\n", study.uid, study.series.len());
        for series in &study.series {
            total += 1;
            text += &format!("  series {}\n", describe(series));
            let verdict = settings.evaluate(series);
            if verdict.own_overlay {
                text += "    skipped: one of our own overlays (Modality OT, \
                         \"NOT FOR DIAGNOSTIC USE\"), never processed\n";
                continue;
            }
            for (rule, reason) in &verdict.rejected {
                text += &format!("    rule {}: no: {reason}\n", rule.name);
            }
            match verdict.rule {
                Some(rule) => {
                    matched += 1;
                    text += &format!("    rule {}: MATCH: {}\n", rule.name, rule.plan);
                }
                None => text += "    no rule matched: not processed\n",
            }
        }
    }
    let skipped = count(&scanned.issues, Disposition::Skipped);
    let failed = count(&scanned.issues, Disposition::Failed);
    text += &format!(
        "{total} series, {matched} matched a rule; files not used: {skipped} skipped \
         (not DICOM), {failed} failed\n"
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match out.write_all(text.as_bytes()) {
        Ok(()) => EXIT_OK,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(error) => {
            tracing::error!("cannot write to standard output: {error}");
            EXIT_FATAL
        }
    }
}

fn count(issues: &[scan::FileIssue], disposition: Disposition) -> usize {
    issues
        .iter()
        .filter(|i| i.disposition == disposition)
        .count()
}

/// UID, number, description, modality, plane and slice count (no patient attributes).
fn describe(series: &Series) -> String {
    let header = &series.header;
    let number = header
        .number
        .map_or_else(|| "#-".to_string(), |n| format!("#{n}"));
    let description = header
        .description
        .as_deref()
        .map_or_else(|| "(no description)".to_string(), |d| format!("{d:?}"));
    let modality = header.modality.as_deref().unwrap_or("(no modality)");
    let plane = series.plane().map_or("plane unknown", plane_name);
    let slices = series.slices.len();
    format!(
        "{} {number} {description} {modality} {plane} {slices} slice{}",
        series.uid,
        if slices == 1 { "" } else { "s" }
    )
}
