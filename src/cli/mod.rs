//! The command-line interface: arguments are parsed here, and each command (one file each)
//! calls the library.
//!
//! Exit codes (docs/design.md section 2): 0 all done; 3 finished but some inputs failed;
//! 2 usage or configuration error; 1 any other fatal error.

mod audit_cmd;
mod config_cmd;
mod explain_cmd;
mod grad_cmd;
mod inspect;
mod progress;
mod rules_cmd;
mod run_cmd;
mod sae_cmd;
mod watch_cmd;
mod worker_cmd;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Exit status: everything done.
pub const EXIT_OK: u8 = 0;
/// Exit status: a fatal error.
pub const EXIT_FATAL: u8 = 1;
/// Exit status: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit status: finished, but some inputs failed (each one reported).
pub const EXIT_PARTIAL: u8 = 3;

/// The exit status of a run that finished.
pub(crate) fn outcome_status(outcome: crate::pipeline::Outcome) -> u8 {
    match outcome {
        crate::pipeline::Outcome::Complete => EXIT_OK,
        crate::pipeline::Outcome::Partial => EXIT_PARTIAL,
    }
}

/// The exit status of a run that stopped: the site's configuration and models are its to
/// fix (usage), anything else is fatal.
pub(crate) fn run_error_status(error: &crate::pipeline::RunError) -> u8 {
    use crate::pipeline::RunError;
    match error {
        RunError::Configuration { .. } | RunError::Model { .. } => EXIT_USAGE,
        _ => EXIT_FATAL,
    }
}

/// The exit status of a daemon that stopped.
pub(crate) fn watch_error_status(error: &crate::watch::WatchError) -> u8 {
    use crate::watch::WatchError;
    match error {
        WatchError::Start { source } => run_error_status(source),
        WatchError::Configuration { .. } => EXIT_USAGE,
        _ => EXIT_FATAL,
    }
}

/// Explainability for brain-MRI classifiers in DICOM workflows.
#[derive(Debug, Parser)]
#[command(name = "dicom-xai", version, about, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    logging: Logging,
    #[command(subcommand)]
    command: Command,
}

/// Logging options, shared by every command.
#[derive(Debug, Args)]
struct Logging {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log line format on standard error.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// Append the log to this file instead of standard error.
    #[arg(long, value_name = "FILE", global = true)]
    log_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Summarise DICOM files: transfer syntax, SOP class, size, frames, photometric
    /// interpretation, and statistics of the pixel values after the modality LUT.
    Inspect(inspect::InspectArgs),
    /// Process every study under the inputs once: classify, explain, write overlays and
    /// report.json per study.
    Run(run_cmd::RunArgs),
    /// The daemon: process every new study in the drop folder once, deliver the outputs,
    /// keep a journal; SIGTERM/SIGINT stop it cleanly, SIGHUP reloads the configuration.
    Watch(watch_cmd::WatchArgs),
    /// A work-queue worker: process the jobs that `watch --broker` publishes, one at a time;
    /// SIGTERM/SIGINT finish the job in hand and stop.
    Worker(worker_cmd::WorkerArgs),
    /// What the daemon's journal holds: studies by state, unusable files, deliveries; with
    /// --broker, the work queue's dead jobs.
    Status(watch_cmd::StatusArgs),
    /// Explain one image (DICOM, PNG or JPEG) with one model and one method: heatmap.npy,
    /// overlay.png and explain.json in the output folder.
    Explain(explain_cmd::ExplainArgs),
    /// Write a gradient model: the forward ONNX graph plus its backward pass in standard ONNX operators.
    Grad(grad_cmd::GradArgs),
    /// Audit models and methods on a labelled set of images: accuracy, calibration, and how
    /// often correct predictions rest on evidence outside the brain (audit.json, audit.html).
    Audit(audit_cmd::AuditArgs),
    /// Sparse autoencoders: `sae train` on a model's activations, `sae describe FILE`.
    #[command(subcommand)]
    Sae(sae_cmd::SaeCommand),
    /// Site configuration files: `config check FILE` validates one and summarises it.
    #[command(subcommand)]
    Config(config_cmd::ConfigCommand),
    /// Site rules: `rules test --config FILE STUDY_DIR...` shows which rule takes each series.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
}

/// Parses the command line, installs logging, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging(&cli.logging);
    let code = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
        Command::Run(args) => run_cmd::run(&args),
        Command::Watch(args) => watch_cmd::run(&args),
        Command::Worker(args) => worker_cmd::run(&args),
        Command::Status(args) => watch_cmd::status(&args),
        Command::Explain(args) => explain_cmd::run(&args),
        Command::Grad(args) => grad_cmd::run(&args),
        Command::Audit(args) => audit_cmd::run(&args),
        Command::Config(command) => config_cmd::run(&command),
        Command::Sae(command) => sae_cmd::run(&command),
        Command::Rules(command) => rules_cmd::run(&command),
    };
    ExitCode::from(code)
}

fn install_logging(logging: &Logging) {
    // ONNX Runtime's own log is verbose at info: only its warnings unless asked for more
    let default = match logging.verbose {
        0 => "info,ort=warn",
        1 => "debug,ort=info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let file = logging.log_file.as_ref().and_then(|path| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| eprintln!("warning: {}: cannot open the log file: {e}", path.display()))
            .ok()
    });
    // every line passes through the path policy the command sets once it has its settings
    let writer = match file {
        Some(file) => tracing_subscriber::fmt::writer::BoxMakeWriter::new(
            crate::logging::Redacting(std::sync::Mutex::new(file)),
        ),
        None => tracing_subscriber::fmt::writer::BoxMakeWriter::new(crate::logging::Redacting(
            std::io::stderr,
        )),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(logging.log_file.is_none())
        .with_writer(writer);
    match logging.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Loads and validates a site configuration; on failure prints the error (file, key, value)
/// and gives the usage exit status.
fn load_settings(path: &std::path::Path) -> Result<crate::config::Settings, u8> {
    crate::config::Settings::load(path).map_err(|error| {
        eprintln!("error: {error}");
        EXIT_USAGE
    })
}

/// Loads the settings of a one-shot command over `inputs` and sets how log lines show paths
/// under them (`[logging] paths`, full paths unless configured).
fn load_settings_for_inputs(
    path: &std::path::Path,
    inputs: &[std::path::PathBuf],
) -> Result<crate::config::Settings, u8> {
    let settings = load_settings(path)?;
    crate::logging::set_path_policy(
        settings
            .log_paths
            .unwrap_or(crate::logging::PathStyle::Full),
        inputs,
    );
    Ok(settings)
}

/// A `--models a,b` style list without empty items; `None` when absent or empty.
fn non_empty(list: &Option<Vec<String>>) -> Option<Vec<String>> {
    let items: Vec<String> = list
        .iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    (!items.is_empty()).then_some(items)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_comma_separated_overrides() {
        use clap::Parser;
        let cli = super::Cli::try_parse_from([
            "dicom-xai",
            "run",
            "--config",
            "c.toml",
            "--models",
            "a,b",
            "--methods",
            "occlusion",
            "in",
        ])
        .expect("valid command line");
        let super::Command::Run(args) = cli.command else {
            panic!("not run");
        };
        assert_eq!(
            super::non_empty(&args.models),
            Some(vec!["a".to_string(), "b".to_string()])
        );
    }
}
