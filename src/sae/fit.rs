//! Fitting an SAE to a model, end to end (what `dicom-xai sae train` does): the vectors of
//! the model's feature tensor over grey slices, scaled to unit mean squared norm so one
//! learning rate suits every layer; the SAE trained on them; its concepts measured by
//! per-class gradients on a spread of the slices; its header filled in.

use ndarray::Array2;

use super::activations::{self, SliceActivations};
use super::train::{self, TrainReport, TrainSettings};
use super::{SaeError, SaeHeader, SparseAutoencoder, Sparsity, concepts};
use crate::model::Classifier;
use crate::progress::Progress;

/// What to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitRequest {
    /// The tensor encoded (the manifest's feature tensor, or another of the same layout).
    pub tensor: String,
    /// Latents; `None`: 8 x the tensor's channels.
    pub latents: Option<usize>,
    /// Active latents per vector (TopK; also sizes the auxiliary loss).
    pub k: usize,
    /// ReLU with this L1 coefficient instead of TopK.
    pub relu_l1: Option<f32>,
    /// Passes over the training vectors.
    pub epochs: usize,
    /// Seed of initialisation, split and shuffles.
    pub seed: u64,
    /// Vectors per step; `None`: a 32nd of the vectors, between 64 and 1024, so every epoch
    /// takes at least 32 steps.
    pub batch: Option<usize>,
    /// Adam's learning rate.
    pub learning_rate: f32,
    /// Slices whose per-class gradients measure the concepts (one gradient pass per class
    /// and slice: the costly part).
    pub concept_slices: usize,
}

/// A fitted SAE and how its training went.
#[derive(Debug)]
pub struct Fitted {
    /// The SAE, header and concepts filled in.
    pub sae: SparseAutoencoder,
    /// Training's measurements.
    pub report: TrainReport,
    /// The batch trained with.
    pub batch: usize,
    /// Slices whose vectors were trained on, and slices that measured the concepts.
    pub slices: (usize, usize),
}

/// Fits an SAE to `model`'s tensor over `slices` (source name, windowed grey levels);
/// stages `activations`, `training` and `concepts` are told to `progress`.
pub fn fit(
    model: &Classifier,
    slices: &[(String, Array2<f32>)],
    request: &FitRequest,
    progress: &dyn Progress,
) -> Result<Fitted, SaeError> {
    let manifest = model.manifest();
    progress.stage("activations", slices.len());
    let collected = collect(model, slices, false, progress)?;
    let raw = activations::stack(&collected);
    drop(collected);
    let dimensions = raw.ncols();
    let mean_square = raw
        .rows()
        .into_iter()
        .map(|r| f64::from(r.dot(&r)))
        .sum::<f64>()
        / raw.nrows().max(1) as f64;
    let scale = if mean_square > 0.0 {
        (1.0 / mean_square.sqrt()) as f32
    } else {
        1.0
    };
    let data = raw.mapv(|v| v * scale);
    drop(raw);

    let latents = request.latents.unwrap_or(8 * dimensions);
    let batch = request.batch.unwrap_or((data.nrows() / 32).clamp(64, 1024));
    let mut settings = TrainSettings::top_k(latents, request.k, request.seed);
    if let Some(l1) = request.relu_l1 {
        settings.sparsity = Sparsity::Relu { l1 };
    }
    settings.epochs = request.epochs;
    settings.batch = batch;
    settings.learning_rate = request.learning_rate;
    settings.dead_after = (data.nrows() / 2).clamp(1, 50_000);
    let steps = data.nrows().div_ceil(batch.max(1)) * request.epochs;
    progress.stage("training", steps);
    let (mut sae, report) = train::train(&data, &settings, |epoch, _, _, loss| {
        progress.step(&format!("epoch {} loss {loss:.4}", epoch + 1));
    })?;
    drop(data);

    let step = (slices.len() / request.concept_slices.max(1)).max(1);
    let chosen: Vec<(String, Array2<f32>)> = slices
        .iter()
        .step_by(step)
        .take(request.concept_slices)
        .cloned()
        .collect();
    progress.stage("concepts", chosen.len());
    let labelled = collect(model, &chosen, true, progress)?;
    progress.finish();

    let layout = manifest
        .explain
        .feature_layout
        .map(|l| format!("{l:?}"))
        .unwrap_or_default();
    sae.header = SaeHeader {
        model: manifest.name.clone(),
        model_sha256: manifest.sha256.clone(),
        tensor: request.tensor.clone(),
        layout,
        dimensions,
        latents,
        sparsity: settings.sparsity,
        scale,
        labels: manifest.labels.clone(),
        training: serde_json::json!({
            "r2": report.r2, "l0": report.l0, "dead_fraction": report.dead_fraction,
            "vectors": report.vectors, "held_out": report.held_out, "epochs": report.epochs,
            "seed": request.seed, "batch": batch, "learning_rate": request.learning_rate,
            "slices": slices.len(), "concept_slices": chosen.len(),
            "seconds": report.seconds, "losses": report.losses,
        }),
    };
    sae.concepts = concepts::compute(&sae, &labelled, manifest.labels.len());
    Ok(Fitted {
        sae,
        report,
        batch,
        slices: (slices.len(), chosen.len()),
    })
}

/// The activations of `slices`, in the model's batches, one progress step per slice.
fn collect(
    model: &Classifier,
    slices: &[(String, Array2<f32>)],
    gradients: bool,
    progress: &dyn Progress,
) -> Result<Vec<SliceActivations>, SaeError> {
    let mut told = 0;
    activations::collect(model, slices, gradients, model.batch_size(), |done, _| {
        while told < done {
            progress.step("");
            told += 1;
        }
    })
}
