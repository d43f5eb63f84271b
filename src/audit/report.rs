//! `audit.json` (docs/design.md section 9): per model the classification figures and, per
//! method, how often and how far its evidence leaves the brain. Built from the journal's
//! records of the audited images only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::journal::ImageRecord;
use super::metrics::{self, ClassMetrics, ReliabilityBin};
use crate::explain::quality::{EMPTY_MAP, EVIDENCE_OUTSIDE_BRAIN, UNFAITHFUL};

/// Bins of the in-brain fraction histograms.
pub const IN_BRAIN_BINS: usize = 10;

/// The whole audit.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// What the figures are not.
    pub notice: String,
    /// This software and its version.
    pub software: String,
    /// The data folders audited.
    pub data: Vec<PathBuf>,
    /// At most this many images per label, when limited.
    pub limit: Option<usize>,
    /// In-brain fraction below which `evidence-outside-brain` is flagged.
    pub in_brain_threshold: f32,
    /// Steps of each deletion/insertion curve (0: not measured).
    pub faithfulness_steps: usize,
    /// One per model.
    pub models: Vec<ModelAudit>,
    /// Images or explanations that failed, each with its file and why.
    pub failures: Vec<Failure>,
}

/// A failed image or explanation.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// The image file.
    pub file: PathBuf,
    /// The model.
    pub model: String,
    /// The method, when an explanation failed.
    pub method: Option<String>,
    /// What went wrong.
    pub message: String,
}

/// One model's audit.
#[derive(Debug, Clone, Serialize)]
pub struct ModelAudit {
    /// The manifest's name.
    pub model: String,
    /// The manifest's version.
    pub version: String,
    /// Whether the manifest says the model is trained.
    pub trained: bool,
    /// The model file's sha256.
    pub sha256: String,
    /// The model's labels, the order of `confusion`.
    pub labels: Vec<String>,
    /// Images classified.
    pub images: usize,
    /// Correct predictions over images (`None` without images).
    pub accuracy: Option<f64>,
    /// Per label.
    pub per_class: BTreeMap<String, ClassMetrics>,
    /// Rows true label, columns predicted, in `labels` order.
    pub confusion: Vec<Vec<usize>>,
    /// Expected calibration error (10 equal-width confidence bins).
    pub ece: Option<f64>,
    /// The reliability diagram.
    pub reliability: Vec<ReliabilityBin>,
    /// One per method.
    pub methods: Vec<MethodAudit>,
}

/// One method's figures on one model's predictions (each image explained for its predicted
/// class).
#[derive(Debug, Clone, Serialize)]
pub struct MethodAudit {
    /// The method's name.
    pub method: String,
    /// Images explained.
    pub explained: usize,
    /// Median in-brain fraction over the explained images with one.
    pub median_in_brain_fraction: Option<f64>,
    /// The same over correct predictions.
    pub median_in_brain_fraction_correct: Option<f64>,
    /// The same over wrong predictions.
    pub median_in_brain_fraction_wrong: Option<f64>,
    /// Share of correct predictions flagged `evidence-outside-brain` (the research's
    /// finding, as a number).
    pub outside_brain_share_correct: Option<f64>,
    /// Correct predictions explained, the denominator of the share above.
    pub correct_explained: usize,
    /// Share of explanations flagged `empty-map`.
    pub empty_map_share: Option<f64>,
    /// Share of explanations flagged `unfaithful`.
    pub unfaithful_share: Option<f64>,
    /// Median deletion AUC (lower: the map found what the model needs).
    pub median_deletion_auc: Option<f64>,
    /// Median insertion AUC (higher is better).
    pub median_insertion_auc: Option<f64>,
    /// In-brain fractions of correct predictions, [`IN_BRAIN_BINS`] bins over [0, 1].
    pub in_brain_histogram_correct: Vec<usize>,
    /// The same for wrong predictions.
    pub in_brain_histogram_wrong: Vec<usize>,
    /// Per true label: the share of its correct predictions flagged
    /// `evidence-outside-brain`.
    pub outside_brain_share_by_label: BTreeMap<String, Option<f64>>,
    /// `sae` only: per true label, the mean share of a correct prediction's SAE evidence
    /// carried by concepts whose activation lies mostly outside the brain (empty for other
    /// methods).
    pub outside_concept_share_by_label: BTreeMap<String, Option<f64>>,
    /// Why the method could not run on this model at all, when it could not.
    pub error: Option<String>,
    /// The correct predictions whose evidence lies furthest outside the brain.
    pub gallery: Vec<GalleryEntry>,
}

/// One picture of the gallery.
#[derive(Debug, Clone, Serialize)]
pub struct GalleryEntry {
    /// The image file.
    pub image: PathBuf,
    /// Its true (and predicted) label.
    pub label: String,
    /// The predicted probability.
    pub probability: f32,
    /// The map's in-brain fraction.
    pub in_brain_fraction: f32,
    /// The slice and the map side by side (JPEG), for the HTML page only.
    #[serde(skip)]
    pub jpeg: Vec<u8>,
}

fn share(count: usize, of: usize) -> Option<f64> {
    (of > 0).then(|| count as f64 / of as f64)
}

/// The classification figures of `records` (one model's, classified ones) under `labels`.
pub fn model_figures(records: &[&ImageRecord], labels: &[String]) -> ModelAudit {
    let outcomes: Vec<(usize, &[f32])> = records
        .iter()
        .filter_map(|r| {
            let truth = labels.iter().position(|l| *l == r.label)?;
            (r.probabilities.len() == labels.len()).then_some((truth, r.probabilities.as_slice()))
        })
        .collect();
    let figures = metrics::classification(&outcomes, labels.len());
    ModelAudit {
        model: String::new(),
        version: String::new(),
        trained: false,
        sha256: String::new(),
        labels: labels.to_vec(),
        images: outcomes.len(),
        accuracy: figures.as_ref().map(|f| f.accuracy),
        per_class: figures
            .as_ref()
            .map(|f| {
                labels
                    .iter()
                    .cloned()
                    .zip(f.per_class.iter().copied())
                    .collect()
            })
            .unwrap_or_default(),
        confusion: figures
            .as_ref()
            .map(|f| f.confusion.clone())
            .unwrap_or_else(|| vec![vec![0; labels.len()]; labels.len()]),
        ece: figures.as_ref().map(|f| f.ece),
        reliability: figures.map(|f| f.reliability).unwrap_or_default(),
        methods: Vec::new(),
    }
}

/// One method's figures over `records` (one model's, classified ones).
pub fn method_figures(method: &str, records: &[&ImageRecord], labels: &[String]) -> MethodAudit {
    let mut in_brain = Vec::new();
    let mut correct_in_brain = Vec::new();
    let mut wrong_in_brain = Vec::new();
    let mut deletion = Vec::new();
    let mut insertion = Vec::new();
    let (mut explained, mut correct_explained) = (0, 0);
    let (mut outside_correct, mut empty, mut unfaithful) = (0, 0, 0);
    let mut by_label: BTreeMap<String, (usize, usize)> =
        labels.iter().map(|l| (l.clone(), (0, 0))).collect();
    let mut concept_shares: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for record in records {
        let Some(explanation) = record.explanation(method).filter(|e| e.error.is_none()) else {
            continue;
        };
        let Some(predicted) = record.predicted() else {
            continue;
        };
        let correct = labels.get(predicted) == Some(&record.label);
        let flagged = |flag: &str| explanation.flags.iter().any(|f| f == flag);
        explained += 1;
        empty += usize::from(flagged(EMPTY_MAP));
        unfaithful += usize::from(flagged(UNFAITHFUL));
        if let Some(f) = explanation.in_brain_fraction.map(f64::from) {
            in_brain.push(f);
            if correct {
                correct_in_brain.push(f)
            } else {
                wrong_in_brain.push(f)
            }
        }
        if correct {
            if let Some(share) = explanation.outside_concept_share {
                concept_shares
                    .entry(record.label.clone())
                    .or_default()
                    .push(f64::from(share));
            }
            correct_explained += 1;
            let outside = usize::from(flagged(EVIDENCE_OUTSIDE_BRAIN));
            outside_correct += outside;
            if let Some(counts) = by_label.get_mut(&record.label) {
                counts.0 += outside;
                counts.1 += 1;
            }
        }
        deletion.extend(explanation.deletion_auc.map(f64::from));
        insertion.extend(explanation.insertion_auc.map(f64::from));
    }
    MethodAudit {
        method: method.to_string(),
        explained,
        median_in_brain_fraction: metrics::median(&in_brain),
        median_in_brain_fraction_correct: metrics::median(&correct_in_brain),
        median_in_brain_fraction_wrong: metrics::median(&wrong_in_brain),
        outside_brain_share_correct: share(outside_correct, correct_explained),
        correct_explained,
        empty_map_share: share(empty, explained),
        unfaithful_share: share(unfaithful, explained),
        median_deletion_auc: metrics::median(&deletion),
        median_insertion_auc: metrics::median(&insertion),
        in_brain_histogram_correct: metrics::histogram(&correct_in_brain, IN_BRAIN_BINS),
        in_brain_histogram_wrong: metrics::histogram(&wrong_in_brain, IN_BRAIN_BINS),
        outside_brain_share_by_label: by_label
            .into_iter()
            .map(|(label, (outside, of))| (label, share(outside, of)))
            .collect(),
        outside_concept_share_by_label: concept_shares
            .into_iter()
            .map(|(label, shares)| {
                let mean = shares.iter().sum::<f64>() / shares.len() as f64;
                (label, Some(mean))
            })
            .collect(),
        error: None,
        gallery: Vec::new(),
    }
}

/// The correct predictions of `records` whose `method` map has the lowest in-brain
/// fraction (below `threshold`), at most `count`, lowest first; ties by image path.
pub fn gallery_candidates<'a>(
    method: &str,
    records: &[&'a ImageRecord],
    labels: &[String],
    threshold: f32,
    count: usize,
) -> Vec<(&'a ImageRecord, f32)> {
    let mut candidates: Vec<(&ImageRecord, f32)> = records
        .iter()
        .filter(|r| r.predicted().and_then(|p| labels.get(p)) == Some(&r.label))
        .filter_map(|r| {
            let fraction = r.explanation(method)?.in_brain_fraction?;
            (fraction < threshold).then_some((*r, fraction))
        })
        .collect();
    candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.image.cmp(&b.0.image)));
    candidates.truncate(count);
    candidates
}
