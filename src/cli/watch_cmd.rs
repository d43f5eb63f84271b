//! `dicom-xai watch`: the daemon, and `dicom-xai status`: what its journal holds.

use std::path::PathBuf;

use clap::Args;

use super::non_empty;
use crate::pipeline::Overrides;
use crate::watch::journal::{Journal, StudyState};
use crate::watch::{self, WatchOptions};

/// Arguments of `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The site configuration (TOML); a change to it is reloaded while running.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The drop folder (default: the configuration's [watch] drop).
    #[arg(long, value_name = "DIR")]
    drop: Option<PathBuf>,
    /// Output folder (default: the configuration's [output] dir).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The journal's folder (default: the configuration's [watch] state).
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Models to use instead of the rules' (manifest names, comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',', num_args = 1)]
    models: Option<Vec<String>>,
    /// Methods to use instead of the rules' (comma-separated).
    #[arg(long, value_name = "M,N", value_delimiter = ',', num_args = 1)]
    methods: Option<Vec<String>>,
}

/// Runs `watch` until SIGTERM/SIGINT; returns the exit code.
pub fn run(args: &WatchArgs) -> u8 {
    let options = WatchOptions {
        config: args.config.clone(),
        drop: args.drop.clone(),
        out: args.out.clone(),
        state: args.state.clone(),
        overrides: Overrides {
            models: non_empty(&args.models),
            methods: non_empty(&args.methods),
        },
    };
    match watch::watch(&options) {
        Ok(()) => super::EXIT_OK,
        Err(error) => {
            eprintln!("error: {error}");
            super::watch_error_status(&error)
        }
    }
}

/// Arguments of `status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The daemon's state folder (holding journal.sqlite).
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `status`; returns the exit code.
pub fn status(args: &StatusArgs) -> u8 {
    if !args.state.join(crate::watch::journal::FILE_NAME).is_file() {
        eprintln!(
            "error: {}: no journal here (is this the state folder of dicom-xai watch?)",
            args.state.display()
        );
        return super::EXIT_USAGE;
    }
    let journal = match Journal::open_read_only(&args.state) {
        Ok(journal) => journal,
        Err(error) => {
            eprintln!("error: {error}");
            return super::EXIT_FATAL;
        }
    };
    let gathered = journal.studies().and_then(|studies| {
        Ok((
            studies,
            journal.problem_files()?,
            journal.delivery_counts()?,
        ))
    });
    let (studies, problems, deliveries) = match gathered {
        Ok(all) => all,
        Err(error) => {
            eprintln!("error: {error}");
            return super::EXIT_FATAL;
        }
    };
    if args.json {
        let value = serde_json::json!({
            "studies": studies,
            "counts": StudyState::ALL.iter().map(|s| {
                (s.name().to_string(),
                 serde_json::Value::from(studies.iter().filter(|r| r.state == *s).count()))
            }).collect::<serde_json::Map<_, _>>(),
            "problem_files": problems.iter().map(|(path, kind, reason)| {
                serde_json::json!({"file": path, "kind": kind, "reason": reason})
            }).collect::<Vec<_>>(),
            "deliveries": deliveries.iter().map(|(destination, state, n)| {
                serde_json::json!({"destination": destination, "state": state, "count": n})
            }).collect::<Vec<_>>(),
        });
        println!("{value}");
        return super::EXIT_OK;
    }
    for state in StudyState::ALL {
        let rows: Vec<_> = studies.iter().filter(|r| r.state == state).collect();
        println!("{} ({})", state.name(), rows.len());
        for row in rows {
            let mut line = format!("  {}  {} files", row.uid, row.files);
            if let Some(status) = &row.status {
                line += &format!(", report {status}");
            }
            if let Some(seconds) = row.seconds {
                line += &format!(", {seconds:.1} s");
            }
            if row.attempts > 0 && state != StudyState::Done {
                line += &format!(", attempt {}", row.attempts);
            }
            if let Some(reason) = &row.reason {
                line += &format!(": {reason}");
            }
            println!("{line}");
        }
    }
    if !problems.is_empty() {
        println!("files not used ({})", problems.len());
        for (path, kind, reason) in &problems {
            println!("  {kind}: {path}: {reason}");
        }
    }
    for (destination, state, n) in &deliveries {
        println!("deliveries to {destination}: {n} {state}");
    }
    super::EXIT_OK
}
