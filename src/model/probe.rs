//! Probes: what explanation methods read besides the class scores, the gradient at the input,
//! the feature tensor and its gradient, the attention probabilities (and their gradients).
//!
//! A probe runs a derived model: a gradient model of the [`crate::autodiff`] transform, or
//! the forward model with extra outputs. Each is built once per model file and request,
//! stored in the on-disk [`GradientCache`](crate::autodiff::cache::GradientCache), and opened once per
//! [`Classifier`](super::Classifier) on first use.
//! The score differentiated is the transform's default: the logits (the input of a final
//! Softmax when the model outputs probabilities).
//!
//! Methods declare their probes before they run ([`Classifier::plan_probes`](super::Classifier::plan_probes)); when a CAM
//! method and a gradient method are both planned, one gradient model differentiates with
//! respect to the input and the feature tensor together, and its recent single-input runs
//! are kept, so the second method on a slice reads the first one's backward pass.
//!
//! This file holds what a probe is and the sessions a classifier keeps for them;
//! the `probing` file runs them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, ArrayD};

use crate::runtime::LoadedSession;

/// What a method reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Probe {
    /// d logit / d input.
    InputGradient,
    /// The manifest's feature tensor and d logit / d it.
    FeatureGradient,
    /// Every attention tensor of the manifest and d logit / d it.
    AttentionGradient,
    /// Every attention tensor, forward only.
    Attention,
}

impl Probe {
    /// The probe's name in reports (`providers` of report.json).
    pub fn name(self) -> &'static str {
        match self {
            Probe::InputGradient => "input-gradient",
            Probe::FeatureGradient => "feature-gradient",
            Probe::AttentionGradient => "attention-gradient",
            Probe::Attention => "attention",
        }
    }

    /// Whether the probe runs a gradient model (and so needs a class per input).
    pub fn differentiates(self) -> bool {
        !matches!(self, Probe::Attention)
    }
}

/// The result of a probe over a batch of inputs.
#[derive(Debug, Clone)]
pub struct ProbeRun {
    /// Class probabilities `[N, labels]` (softmax applied to logits, as in `predict`).
    pub probabilities: Array2<f32>,
    /// The differentiated scores `[N, labels]` (the logits); for [`Probe::Attention`], the
    /// model's output as it is.
    pub scores: Array2<f32>,
    /// The probed tensors' values, `[N, ...]` each, in the order of [`Classifier::probed`](super::Classifier::probed)
    /// (empty for [`Probe::InputGradient`]: the input is the caller's).
    pub values: Vec<ArrayD<f32>>,
    /// d logit\[class\] / d tensor, `[N, ...]` each (empty for [`Probe::Attention`]).
    pub gradients: Vec<ArrayD<f32>>,
}

/// The sessions of a classifier's probes, opened on first use.
#[derive(Default)]
pub(crate) struct ProbeSessions {
    pub(super) sessions: Mutex<HashMap<Probe, ProbeSession>>,
    pub(super) planned: Mutex<HashSet<Probe>>,
    pub(super) runs: AtomicUsize,
}

impl ProbeSessions {
    /// The execution provider of every derived model opened so far, by probe.
    pub(crate) fn providers(&self) -> Vec<(Probe, &'static str)> {
        let Ok(sessions) = self.sessions.lock() else {
            return Vec::new();
        };
        sessions
            .iter()
            .filter_map(|(probe, session)| {
                session
                    .loaded
                    .lock()
                    .ok()
                    .map(|loaded| (*probe, loaded.provider))
            })
            .collect()
    }
}

/// An open derived model, the name of its score output and its latest single-input runs.
#[derive(Clone)]
pub(super) struct ProbeSession {
    pub(super) loaded: Arc<Mutex<LoadedSession>>,
    pub(super) score: String,
    pub(super) recent: Arc<Mutex<VecDeque<RecentRun>>>,
}

/// The outputs of one single-input run, kept so that a second method asking the same
/// derived model about the same input and class (Grad-CAM, then saliency, on one slice)
/// does not run it again.
pub(super) struct RecentRun {
    pub(super) input: Vec<f32>,
    pub(super) class: usize,
    pub(super) outputs: HashMap<String, ArrayD<f32>>,
}

/// How many single-input runs a derived model keeps: the slices one model explains per
/// series (`top_k` is 3 by default) with room to spare; each holds an input-sized gradient.
pub(super) const RECENT_RUNS: usize = 8;
