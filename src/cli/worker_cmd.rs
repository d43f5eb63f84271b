//! `dicom-xai worker`: one worker of the work queue (docs/design.md section 14).

use std::path::PathBuf;

use clap::Args;

use super::non_empty;
use crate::pipeline::Overrides;
use crate::queue::{self, WorkerError, WorkerOptions};

/// Test hook (never set in production): seconds a worker waits after writing a job's
/// report and before acknowledging it, so that a test can kill it there.
const PAUSE_BEFORE_ACK: &str = "DICOM_XAI_TEST_PAUSE_BEFORE_ACK";

/// Arguments of `worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The site configuration (TOML): models, rules, methods, [output] dir (the shared
    /// output folder).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The RabbitMQ broker (`amqp://HOST:PORT/VHOST`).
    #[arg(long, value_name = "URL")]
    broker: String,
    /// Models to use instead of the rules' (manifest names, comma-separated).
    #[arg(long, value_name = "A,B", value_delimiter = ',', num_args = 1)]
    models: Option<Vec<String>>,
    /// Methods to use instead of the rules' (comma-separated).
    #[arg(long, value_name = "M,N", value_delimiter = ',', num_args = 1)]
    methods: Option<Vec<String>>,
    /// The GPU of this worker (instead of [runtime] cuda_device): one worker per GPU.
    #[arg(long, value_name = "N")]
    cuda_device: Option<i32>,
    /// Serve this worker's metrics here (instead of [watch] metrics), e.g. 127.0.0.1:9101.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
}

/// Runs `worker` until SIGTERM/SIGINT; returns the exit code.
pub fn run(args: &WorkerArgs) -> u8 {
    let options = WorkerOptions {
        config: args.config.clone(),
        broker: args.broker.clone(),
        overrides: Overrides {
            models: non_empty(&args.models),
            methods: non_empty(&args.methods),
        },
        cuda_device: args.cuda_device,
        metrics: args.metrics,
        pause_before_ack: std::env::var(PAUSE_BEFORE_ACK)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .map(std::time::Duration::from_secs_f64),
    };
    match queue::run_worker(&options) {
        Ok(()) => super::EXIT_OK,
        Err(error) => {
            eprintln!("error: {error}");
            match error {
                WorkerError::Configuration { .. } => super::EXIT_USAGE,
                WorkerError::Start { source } => super::run_error_status(&source),
                _ => super::EXIT_FATAL,
            }
        }
    }
}
