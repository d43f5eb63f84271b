//! `dicom-xai watch`: the daemon, and `dicom-xai status`: what its journal holds and, with
//! a broker, the dead jobs of the work queue.

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
    /// Publish each settled study as a job on this RabbitMQ broker instead of processing
    /// it here (`amqp://HOST:PORT/VHOST`; `dicom-xai worker` processes them).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
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
    let dispatch = args
        .broker
        .as_deref()
        .map(|url| Box::new(crate::queue::Publisher::new(url)) as Box<dyn watch::Dispatch>);
    match watch::watch(&options, dispatch) {
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
    #[arg(long, value_name = "DIR", required_unless_present = "broker")]
    state: Option<PathBuf>,
    /// The work queue's broker: the jobs waiting and the dead jobs too
    /// (`amqp://HOST:PORT/VHOST`).
    #[arg(long, value_name = "URL")]
    broker: Option<String>,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `status`; returns the exit code.
pub fn status(args: &StatusArgs) -> u8 {
    let queue = match &args.broker {
        Some(url) => match crate::queue::Broker::connect(url).and_then(|broker| {
            let listed = broker
                .counts()
                .and_then(|(waiting, _)| Ok((waiting, broker.dead_jobs()?)));
            broker.close();
            listed
        }) {
            Ok(listed) => Some(listed),
            Err(error) => {
                eprintln!("error: {error}");
                return super::EXIT_FATAL;
            }
        },
        None => None,
    };
    let journal = match &args.state {
        Some(state) => match journal_summary(state) {
            Ok(summary) => Some(summary),
            Err(code) => return code,
        },
        None => None,
    };
    if args.json {
        let mut value = journal
            .as_ref()
            .map_or_else(|| serde_json::json!({}), JournalSummary::json);
        if let Some((waiting, dead)) = &queue {
            value["jobs_waiting"] = serde_json::json!(waiting);
            value["dead_jobs"] = serde_json::json!(dead);
        }
        println!("{value}");
        return super::EXIT_OK;
    }
    if let Some(summary) = &journal {
        summary.print();
    }
    if let Some((waiting, dead)) = &queue {
        println!("jobs waiting for a worker: {waiting}");
        println!("dead jobs ({})", dead.len());
        for job in dead {
            println!(
                "  {}  job {}: {}",
                job.study_instance_uid.as_deref().unwrap_or("?"),
                job.job_id.as_deref().unwrap_or("?"),
                job.error
            );
        }
    }
    super::EXIT_OK
}

/// What the journal holds.
struct JournalSummary {
    studies: Vec<crate::watch::journal::StudyRow>,
    problems: Vec<(String, String, String)>,
    deliveries: Vec<(String, String, u64)>,
}

/// Reads the journal in `state`; the exit code when it cannot.
fn journal_summary(state: &std::path::Path) -> Result<JournalSummary, u8> {
    if !state.join(crate::watch::journal::FILE_NAME).is_file() {
        eprintln!(
            "error: {}: no journal here (is this the state folder of dicom-xai watch?)",
            state.display()
        );
        return Err(super::EXIT_USAGE);
    }
    let journal = Journal::open_read_only(state).map_err(|error| {
        eprintln!("error: {error}");
        super::EXIT_FATAL
    })?;
    let gathered = journal.studies().and_then(|studies| {
        Ok(JournalSummary {
            studies,
            problems: journal.problem_files()?,
            deliveries: journal.delivery_counts()?,
        })
    });
    gathered.map_err(|error| {
        eprintln!("error: {error}");
        super::EXIT_FATAL
    })
}

impl JournalSummary {
    fn json(&self) -> serde_json::Value {
        let studies = &self.studies;
        serde_json::json!({
            "studies": studies,
            "counts": StudyState::ALL.iter().map(|s| {
                (s.name().to_string(),
                 serde_json::Value::from(studies.iter().filter(|r| r.state == *s).count()))
            }).collect::<serde_json::Map<_, _>>(),
            "problem_files": self.problems.iter().map(|(path, kind, reason)| {
                serde_json::json!({"file": path, "kind": kind, "reason": reason})
            }).collect::<Vec<_>>(),
            "deliveries": self.deliveries.iter().map(|(destination, state, n)| {
                serde_json::json!({"destination": destination, "state": state, "count": n})
            }).collect::<Vec<_>>(),
        })
    }

    fn print(&self) {
        for state in StudyState::ALL {
            let rows: Vec<_> = self.studies.iter().filter(|r| r.state == state).collect();
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
        if !self.problems.is_empty() {
            println!("files not used ({})", self.problems.len());
            for (path, kind, reason) in &self.problems {
                println!("  {kind}: {path}: {reason}");
            }
        }
        for (destination, state, n) in &self.deliveries {
            println!("deliveries to {destination}: {n} {state}");
        }
    }
}
