//! `dicom-xai sae train` and `dicom-xai sae describe`: sparse autoencoders on a model's
//! activations.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::progress::Bar;
use crate::config::DEFAULT_BATCH_SIZE;
use crate::dicom::secondary_capture::is_own_overlay;
use crate::model::{Classifier, Manifest};
use crate::runtime::Runtime;
use crate::sae::activations;
use crate::sae::fit::{self, FitRequest};
use crate::sae::{SaeError, SparseAutoencoder, concepts};

/// `sae` subcommands.
#[derive(Debug, Subcommand)]
pub enum SaeCommand {
    /// Train a sparse autoencoder on the activations of a model's tensor over the inputs.
    Train(TrainArgs),
    /// List the concepts of a trained sparse autoencoder, per class.
    Describe(DescribeArgs),
}

/// Arguments of `sae train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The site configuration: its runtime, its model names and its rules (which series of
    /// DICOM inputs are used).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// A model name of the configuration, or a manifest file (.toml).
    #[arg(long, value_name = "NAME|MANIFEST")]
    model: String,
    /// The tensor to encode (default: the manifest's [explain] feature_tensor; it is read
    /// with the manifest's feature_layout).
    #[arg(long, value_name = "TENSOR")]
    layer: Option<String>,
    /// Where to write the SAE (.safetensors).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Latents (default: 8 x the tensor's channels).
    #[arg(long, value_name = "N")]
    latents: Option<usize>,
    /// Active latents per vector (TopK).
    #[arg(long, value_name = "K", default_value_t = 32)]
    k: usize,
    /// ReLU with this L1 coefficient instead of TopK.
    #[arg(long, value_name = "L1", conflicts_with = "k")]
    relu_l1: Option<f32>,
    /// Passes over the training vectors.
    #[arg(long, value_name = "E", default_value_t = 8)]
    epochs: usize,
    /// Seed of initialisation, split and shuffles.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Vectors per step (default: a 32nd of the vectors, between 64 and 1024, so that
    /// every epoch takes at least 32 steps).
    #[arg(long, value_name = "B")]
    batch: Option<usize>,
    /// Adam's learning rate.
    #[arg(long, value_name = "LR", default_value_t = 1e-3)]
    learning_rate: f32,
    /// Slices whose per-class gradients measure the concepts (the most costly part: one
    /// gradient pass per class and slice).
    #[arg(long, value_name = "N", default_value_t = 200)]
    concept_slices: usize,
    /// DICOM files or folders (through the configuration's rules when given), PNG or JPEG
    /// slices.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

/// Arguments of `sae describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The SAE (.safetensors) written by `sae train`.
    file: PathBuf,
    /// Concepts listed per class.
    #[arg(long, default_value_t = 5)]
    top: usize,
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs an `sae` subcommand; returns the exit code.
pub fn run(command: &SaeCommand) -> u8 {
    match command {
        SaeCommand::Train(args) => train_command(args),
        SaeCommand::Describe(args) => describe(args),
    }
}

fn fail(code: u8, message: impl std::fmt::Display) -> u8 {
    eprintln!("error: {message}");
    code
}

fn train_command(args: &TrainArgs) -> u8 {
    let settings = match &args.config {
        Some(path) => match super::load_settings(path) {
            Ok(settings) => Some(settings),
            Err(code) => return code,
        },
        None => None,
    };
    let manifest = match (&settings, &args.model) {
        (Some(settings), model) => {
            crate::pipeline::manifest_for(settings, model).map_err(|e| e.to_string())
        }
        (None, model) if model.ends_with(".toml") => {
            Manifest::load(model.as_ref()).map_err(|e| e.to_string())
        }
        (None, model) => Err(format!(
            "model {model:?}: give a manifest .toml file, or --config with a model of that name"
        )),
    };
    let mut manifest = match manifest {
        Ok(manifest) => manifest,
        Err(message) => return fail(super::EXIT_USAGE, message),
    };
    if let Some(layer) = &args.layer {
        manifest.explain.feature_tensor = Some(layer.clone());
    }
    let Some(tensor) = manifest.explain.feature_tensor.clone() else {
        return fail(
            super::EXIT_USAGE,
            format!(
                "{}: no [explain] feature_tensor in the manifest; name one with --layer",
                manifest.path.display()
            ),
        );
    };
    let options = settings
        .as_ref()
        .map(crate::pipeline::runtime_options)
        .unwrap_or_default();
    let runtime = match Runtime::init(options) {
        Ok(runtime) => runtime,
        Err(error) => return fail(super::EXIT_FATAL, error),
    };
    let batch_size = settings
        .as_ref()
        .map_or(DEFAULT_BATCH_SIZE, |s| s.runtime.batch_size);
    let model = match Classifier::load(&runtime, manifest, batch_size) {
        Ok(model) => model,
        Err(error) => return fail(super::EXIT_USAGE, error),
    };

    // the series `run` would explain: the site's rules, or every series but our overlays
    let take = |series: &crate::dicom::Series| match &settings {
        Some(settings) => settings.rule_for(series).is_some(),
        None => !is_own_overlay(&series.header),
    };
    let mut errors = Vec::new();
    let slices = activations::grey_slices(&args.inputs, take, &mut errors);
    for error in &errors {
        eprintln!("warning: {error}");
    }
    if slices.is_empty() {
        return fail(super::EXIT_USAGE, "no usable slice in the inputs");
    }
    let request = FitRequest {
        tensor,
        latents: args.latents,
        k: args.k,
        relu_l1: args.relu_l1,
        epochs: args.epochs,
        seed: args.seed,
        batch: args.batch,
        learning_rate: args.learning_rate,
        concept_slices: args.concept_slices,
    };
    let fitted = match fit::fit(&model, &slices, &request, &Bar::new("")) {
        Ok(fitted) => fitted,
        // the data or the settings cannot train: the user's to change
        Err(error @ SaeError::Training { .. }) => return fail(super::EXIT_USAGE, error),
        Err(error) => return fail(super::EXIT_FATAL, error),
    };
    if let Err(error) = fitted.sae.save(&args.out) {
        return fail(super::EXIT_FATAL, error);
    }
    let header = &fitted.sae.header;
    let report = &fitted.report;
    let summary = serde_json::json!({
        "r2": report.r2,
        "l0": report.l0,
        "dead_fraction": report.dead_fraction,
        "vectors": report.vectors,
        "held_out": report.held_out,
        "slices": fitted.slices.0,
        "latents": header.latents,
        "dimensions": header.dimensions,
        "sparsity": header.sparsity,
        "epochs": report.epochs,
        "seconds": report.seconds,
        "vectors_per_second": report.vectors_per_second,
        "out": args.out.display().to_string(),
    });
    println!("{summary}");
    super::EXIT_OK
}

fn describe(args: &DescribeArgs) -> u8 {
    let sae = match SparseAutoencoder::load(&args.file) {
        Ok(sae) => sae,
        Err(error) => return fail(super::EXIT_USAGE, error),
    };
    let labels = &sae.header.labels;
    let top_per_class: Vec<(String, Vec<&concepts::Concept>)> = labels
        .iter()
        .enumerate()
        .map(|(class, label)| {
            let mut ranked: Vec<&concepts::Concept> = sae
                .concepts
                .iter()
                .filter(|c| c.contribution.get(class).is_some_and(|v| *v > 0.0))
                .collect();
            ranked.sort_by(|a, b| b.contribution[class].total_cmp(&a.contribution[class]));
            ranked.truncate(args.top);
            (label.clone(), ranked)
        })
        .collect();
    let outside: Vec<&concepts::Concept> = sae
        .concepts
        .iter()
        .filter(|c| c.outside_brain() && c.strongest().is_some_and(|(_, v)| v > 0.0))
        .collect();
    if args.json {
        let value = serde_json::json!({
            "header": sae.header,
            "classes": top_per_class.iter().map(|(label, concepts)| serde_json::json!({
                "label": label,
                "concepts": concepts.iter().map(|c| serde_json::json!({
                    "concept": c, "label": c.label(labels), "outside_brain": c.outside_brain(),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "outside_brain": outside.iter().map(|c| c.latent).collect::<Vec<_>>(),
        });
        println!("{value}");
        return super::EXIT_OK;
    }
    let h = &sae.header;
    println!(
        "{}: {} latents over {} ({} dims, {}) of model {}; {:?}",
        args.file.display(),
        h.latents,
        h.tensor,
        h.dimensions,
        h.layout,
        h.model,
        h.sparsity
    );
    let t = &h.training;
    println!(
        "held out: r2 {:.3}, l0 {:.1}, dead {:.1}%, {} training vectors",
        t["r2"].as_f64().unwrap_or(f64::NAN),
        t["l0"].as_f64().unwrap_or(f64::NAN),
        100.0 * t["dead_fraction"].as_f64().unwrap_or(f64::NAN),
        t["vectors"]
    );
    if sae.concepts.is_empty() {
        println!("no concept table in this file");
        return super::EXIT_OK;
    }
    for (class, (label, ranked)) in top_per_class.iter().enumerate() {
        println!("\n{label}: concepts that raise its score most");
        if ranked.is_empty() {
            println!("  (none)");
        }
        for c in ranked {
            let marker = if c.outside_brain() {
                "  <- OUTSIDE THE BRAIN"
            } else {
                ""
            };
            println!(
                "  {}; active on {:.1}% of positions{marker}",
                c.label_for(class, labels),
                100.0 * c.frequency
            );
        }
    }
    println!(
        "\n{} concept(s) drive a class from outside the brain (less than {:.0}% of their \
         activation inside the brain mask)",
        outside.len(),
        100.0 * concepts::OUTSIDE_BRAIN
    );
    super::EXIT_OK
}
