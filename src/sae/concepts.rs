//! What each latent of an SAE is for, measured on labelled slices:
//!
//! - `mean_activation[c]`: its mean activation over the vectors of slices predicted as class
//!   `c` (which classes it belongs to);
//! - `in_brain_share`: the share of its activation (summed over all vectors) at positions
//!   inside the slice's brain mask ([`crate::anatomy::brain_mask`], brought to the
//!   feature grid): near 0 for a concept that lives on the scalp, the skull or the background;
//! - `contribution[c]`: its contribution to class `c`'s logit per slice, `sum_p z_pj (w_dec_j .
//!   g_pc) / scale` over the slice's positions, averaged over slices, with `g_pc` the gradient
//!   of the logit at position p (from the gradient models): the first-order change of the
//!   logit if the concept were removed;
//! - `frequency`: the share of vectors where it is active.
//!
//! A concept that drives a class (large positive contribution) with most of its activation
//! outside the brain is the research's finding made visible per concept: `sae describe`
//! marks it.

use ndarray::Array2;

use super::SparseAutoencoder;
use super::activations::SliceActivations;

/// The name of the concept table in the safetensors file.
pub const TABLE: &str = "concepts";

/// Below this share of its activation inside the brain, a concept lives outside it.
pub const OUTSIDE_BRAIN: f32 = 0.5;

/// One latent's figures.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Concept {
    /// The latent's index.
    pub latent: usize,
    /// Mean activation per predicted class (the model's label order).
    pub mean_activation: Vec<f32>,
    /// Share of its activation inside the brain mask (`None` when it never fired).
    pub in_brain_share: Option<f32>,
    /// Contribution to each class's logit per slice (mean over slices).
    pub contribution: Vec<f32>,
    /// Share of vectors where it is active.
    pub frequency: f32,
}

impl Concept {
    /// The class it drives most, and by how much.
    pub fn strongest(&self) -> Option<(usize, f32)> {
        self.contribution
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Whether most of its activation lies outside the brain.
    pub fn outside_brain(&self) -> bool {
        self.in_brain_share.is_some_and(|s| s < OUTSIDE_BRAIN)
    }

    /// A label in the list of concepts that raise `class`, e.g. `concept 17: glioma +0.042
    /// (pituitary most, +0.310), 31% inside the brain`: what it adds to that class, and the
    /// class it drives most when that is another.
    pub fn label_for(&self, class: usize, labels: &[String]) -> String {
        let name = |c: usize| labels.get(c).map_or("?", String::as_str);
        let here = self.contribution.get(class).copied().unwrap_or(f32::NAN);
        let most = match self.strongest() {
            Some((strongest, value)) if strongest != class && value > 0.0 => {
                format!(" ({} most, {value:+.3})", name(strongest))
            }
            _ => String::new(),
        };
        let place = match self.in_brain_share {
            Some(share) => format!("{:.0}% inside the brain", 100.0 * share),
            None => "never active".to_string(),
        };
        format!(
            "concept {}: {} {here:+.3}{most}, {place}",
            self.latent,
            name(class)
        )
    }

    /// A short label, e.g. `concept 17: drives glioma (+0.042), 31% inside the brain`.
    pub fn label(&self, labels: &[String]) -> String {
        let drives = match self.strongest() {
            Some((class, value)) if value > 0.0 => format!(
                "drives {} ({value:+.3})",
                labels.get(class).map_or("?", String::as_str)
            ),
            _ => "drives no class".to_string(),
        };
        let place = match self.in_brain_share {
            Some(share) => format!("{:.0}% inside the brain", 100.0 * share),
            None => "never active".to_string(),
        };
        format!("concept {}: {drives}, {place}", self.latent)
    }
}

/// Columns of the concept table for `classes` classes.
pub fn columns(classes: usize) -> usize {
    2 * classes + 2
}

/// The concepts as one `[latents, 2 classes + 2]` table (empty when there are none): mean
/// activations, contributions, in-brain share (NaN when never active), frequency.
pub fn to_tensors(concepts: &[Concept], classes: usize) -> Vec<(String, Array2<f32>)> {
    if concepts.is_empty() {
        return Vec::new();
    }
    let mut table = Array2::<f32>::zeros((concepts.len(), columns(classes)));
    for (mut row, concept) in table.rows_mut().into_iter().zip(concepts) {
        for c in 0..classes {
            row[c] = concept.mean_activation.get(c).copied().unwrap_or(0.0);
            row[classes + c] = concept.contribution.get(c).copied().unwrap_or(0.0);
        }
        row[2 * classes] = concept.in_brain_share.unwrap_or(f32::NAN);
        row[2 * classes + 1] = concept.frequency;
    }
    vec![(TABLE.to_string(), table)]
}

/// The concepts of a table written by [`to_tensors`].
pub fn from_table(table: &Array2<f32>) -> Vec<Concept> {
    let classes = (table.ncols().saturating_sub(2)) / 2;
    table
        .rows()
        .into_iter()
        .enumerate()
        .map(|(latent, row)| Concept {
            latent,
            mean_activation: (0..classes).map(|c| row[c]).collect(),
            contribution: (0..classes).map(|c| row[classes + c]).collect(),
            in_brain_share: Some(row[2 * classes]).filter(|v| v.is_finite()),
            frequency: row[2 * classes + 1],
        })
        .collect()
}

/// Measures every latent's concept on `slices` (with gradients for every class).
pub fn compute(
    sae: &SparseAutoencoder,
    slices: &[SliceActivations],
    classes: usize,
) -> Vec<Concept> {
    let n = sae.latents();
    let mut per_class_sum = vec![vec![0.0f64; n]; classes];
    let mut per_class_vectors = vec![0usize; classes];
    let mut contribution = vec![vec![0.0f64; n]; classes];
    let mut inside = vec![0.0f64; n];
    let mut total = vec![0.0f64; n];
    let mut fired = vec![0usize; n];
    let mut vectors = 0usize;
    let scale = f64::from(sae.header.scale);
    for slice in slices {
        let z = sae.encode(sae.normalise(slice.vectors.clone()).view());
        vectors += z.nrows();
        if let Some(count) = per_class_vectors.get_mut(slice.predicted) {
            *count += z.nrows();
        }
        for (p, row) in z.rows().into_iter().enumerate() {
            for (j, &value) in row.iter().enumerate() {
                if value <= 0.0 {
                    continue;
                }
                let value = f64::from(value);
                fired[j] += 1;
                total[j] += value;
                if slice.inside.get(p).copied().unwrap_or(false) {
                    inside[j] += value;
                }
                if let Some(sums) = per_class_sum.get_mut(slice.predicted) {
                    sums[j] += value;
                }
                for (c, gradient) in slice.gradients.iter().enumerate().take(classes) {
                    let along = f64::from(sae.w_dec.row(j).dot(&gradient.row(p)));
                    contribution[c][j] += value * along / scale;
                }
            }
        }
    }
    let vectors = vectors.max(1) as f64;
    let slice_count = slices.len().max(1) as f64;
    (0..n)
        .map(|j| Concept {
            latent: j,
            mean_activation: (0..classes)
                .map(|c| (per_class_sum[c][j] / per_class_vectors[c].max(1) as f64) as f32)
                .collect(),
            in_brain_share: (total[j] > 0.0).then(|| (inside[j] / total[j]) as f32),
            contribution: (0..classes)
                .map(|c| (contribution[c][j] / slice_count) as f32)
                .collect(),
            frequency: (fired[j] as f64 / vectors) as f32,
        })
        .collect()
}
