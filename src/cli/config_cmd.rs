//! `dicom-xai config check FILE`: validate a site configuration and summarise it.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{EXIT_FATAL, EXIT_OK};
use crate::config::Settings;
use crate::explain::occlusion::Baseline;

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file: print a summary (models, rules, methods) and exit 0, or
    /// print every problem (file, key, value) and exit 2.
    Check(CheckArgs),
}

/// Arguments of `config check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file (TOML).
    #[arg(value_name = "FILE")]
    file: PathBuf,
}

/// Runs a `config` subcommand; returns the exit code.
pub fn run(command: &ConfigCommand) -> u8 {
    match command {
        ConfigCommand::Check(args) => check(args),
    }
}

fn check(args: &CheckArgs) -> u8 {
    let settings = match super::load_settings(&args.file) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match write!(out, "{}", summary(&settings)) {
        Ok(()) => EXIT_OK,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(error) => {
            tracing::error!("cannot write to standard output: {error}");
            EXIT_FATAL
        }
    }
}

/// What `config check` prints for a valid file.
fn summary(settings: &Settings) -> String {
    let mut text = format!("{}: valid\n", settings.source.display());
    let runtime = &settings.runtime;
    let providers: Vec<&str> = runtime
        .execution_providers
        .iter()
        .map(|p| p.name())
        .collect();
    let library = runtime.onnxruntime.as_ref().map_or_else(
        || "ORT_DYLIB_PATH or the loader's search path".to_string(),
        |p| p.display().to_string(),
    );
    let threads = match runtime.intra_threads {
        0 => "ONNX Runtime's default".to_string(),
        n => n.to_string(),
    };
    text += &format!(
        "runtime: execution providers {}{}{}; batch size {}; intra-op threads {threads}; \
         library {library}\n",
        providers.join(", "),
        if runtime
            .execution_providers
            .contains(&crate::config::ExecutionProviderKind::Cuda)
        {
            format!(" (CUDA device {})", runtime.cuda_device)
        } else {
            String::new()
        },
        if runtime.require_gpu {
            "; GPU required"
        } else {
            ""
        },
        runtime.batch_size,
    );
    text += &format!("models ({}):\n", settings.models.len());
    for model in &settings.models {
        text += &format!(
            "  {} ({}): {}\n",
            model.name,
            if model.enabled { "enabled" } else { "disabled" },
            model.manifest.display()
        );
    }
    text += &format!(
        "output: {} (overlay series numbers from {}; summary images {})\n",
        settings.output.dir.display(),
        settings.output.series_number_base,
        if settings.output.summary { "on" } else { "off" }
    );
    text += &format!(
        "thresholds: tumour probability {}; brain on a slice {}; in-brain evidence {}\n",
        settings.prediction.tumour_threshold,
        settings.prediction.min_brain_fraction,
        settings.quality.in_brain_threshold
    );
    let watch = &settings.watch;
    text += &format!(
        "watch: drop {} ({}), state {}; stable {:?}, settle {:?}, force after {:?}; deliver to {}; \
         inputs {}; {} worker(s)\n",
        watch.drop.display(),
        watch
            .poll
            .map_or("inotify".to_string(), |p| format!("polled every {p:?}")),
        watch.state.display(),
        watch.stable,
        watch.settle,
        watch.force_after,
        watch
            .deliver
            .iter()
            .map(|d| match (d, &watch.pacs) {
                (crate::config::Destination::Pacs, Some(p)) => {
                    format!("pacs {}@{}:{}", p.called_ae, p.host, p.port)
                }
                _ => d.name().to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        match &watch.after {
            crate::config::AfterProcessing::Keep => "kept".to_string(),
            crate::config::AfterProcessing::Delete => "deleted".to_string(),
            crate::config::AfterProcessing::Move(dir) => format!("moved to {}", dir.display()),
        },
        watch.workers
    );
    let occlusion = &settings.methods.occlusion;
    let baseline = match occlusion.baseline {
        Baseline::Mean => "mean".to_string(),
        Baseline::Zero => "zero".to_string(),
        Baseline::Value(v) => v.to_string(),
    };
    text += &format!(
        "occlusion: patch {}, stride {}, baseline {baseline}, {}\n",
        occlusion.patch,
        occlusion.stride,
        occlusion.precision.name()
    );
    text += &format!("defaults ([explain]): {}\n", settings.defaults);
    text += &format!("rules ({}, first match wins):\n", settings.rules.len());
    for (i, rule) in settings.rules.iter().enumerate() {
        let disabled = if rule.enabled { "" } else { " (disabled)" };
        text += &format!("  {}. {}{disabled}\n", i + 1, rule.name);
        text += &format!("     select: {}\n", rule.selector);
        text += &format!("     explain: {}\n", rule.plan);
    }
    text
}
