//! The command-line interface: arguments are parsed here, and each command (one file each)
//! calls the library.
//!
//! Exit codes (DESIGN.md 4.1): 0 all done; 3 finished but some inputs failed; 2 usage or
//! configuration error; 1 any other fatal error.

mod inspect;

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
}

/// Parses the command line, installs logging, runs the command and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logging(&cli.logging);
    let code = match cli.command {
        Command::Inspect(args) => inspect::run(&args),
    };
    ExitCode::from(code)
}

fn install_logging(logging: &Logging) {
    let default = match logging.verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match logging.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
