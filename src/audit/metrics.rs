//! Classification and calibration figures of an audit, computed from (true label, predicted
//! probabilities) pairs; and the small statistics of the per-method summaries.
//!
//! Conventions are scikit-learn's, so a site can check them with it: precision of a class
//! never predicted is 0 (`zero_division=0`), and so is recall of a class without support.
//! The expected calibration error (Guo et al. 2017) bins the confidence (the top probability)
//! into [`CALIBRATION_BINS`] equal-width bins and averages |accuracy - confidence| over the
//! bins, weighted by their share of the images.

use serde::Serialize;

use crate::model::classifier::argmax;

/// Equal-width confidence bins of the calibration error and the reliability diagram.
pub const CALIBRATION_BINS: usize = 10;

/// Precision, recall, F1 and support of one class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    /// True positives over predicted positives (0 when never predicted).
    pub precision: f64,
    /// True positives over actual positives (0 without support).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 when both are 0).
    pub f1: f64,
    /// Images whose true label is the class.
    pub support: usize,
}

/// One bin of the reliability diagram.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReliabilityBin {
    /// Lower edge of the confidence bin (exclusive, but 0 is inclusive).
    pub lower: f64,
    /// Upper edge (inclusive).
    pub upper: f64,
    /// Images whose confidence falls in the bin.
    pub count: usize,
    /// Their mean confidence (`None` for an empty bin).
    pub confidence: Option<f64>,
    /// Their accuracy (`None` for an empty bin).
    pub accuracy: Option<f64>,
}

/// The classification figures of one model on the audited images.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// Correct predictions over images.
    pub accuracy: f64,
    /// Per class, in label order.
    pub per_class: Vec<ClassMetrics>,
    /// Rows true label, columns predicted label, in label order.
    pub confusion: Vec<Vec<usize>>,
    /// Expected calibration error.
    pub ece: f64,
    /// The reliability diagram's bins.
    pub reliability: Vec<ReliabilityBin>,
}

/// The figures of `outcomes` (true class index, probabilities over `classes` classes).
/// `None` without outcomes.
pub fn classification(outcomes: &[(usize, &[f32])], classes: usize) -> Option<Classification> {
    if outcomes.is_empty() || classes == 0 {
        return None;
    }
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut bins = vec![(0usize, 0.0f64, 0usize); CALIBRATION_BINS];
    for &(truth, probabilities) in outcomes {
        let predicted = argmax(probabilities.iter().copied());
        if truth < classes && predicted < classes {
            confusion[truth][predicted] += 1;
        }
        let confidence = f64::from(probabilities.get(predicted).copied().unwrap_or(0.0));
        // (lower, upper] bins, with 0 in the first
        let bin = ((confidence * CALIBRATION_BINS as f64).ceil() as usize)
            .saturating_sub(1)
            .min(CALIBRATION_BINS - 1);
        bins[bin].0 += 1;
        bins[bin].1 += confidence;
        bins[bin].2 += usize::from(predicted == truth);
    }
    let total = outcomes.len() as f64;
    let correct: usize = (0..classes).map(|c| confusion[c][c]).sum();
    let per_class = (0..classes)
        .map(|c| {
            let true_positives = confusion[c][c] as f64;
            let predicted: usize = confusion.iter().map(|row| row[c]).sum();
            let support: usize = confusion[c].iter().sum();
            let ratio = |n: f64, d: usize| if d == 0 { 0.0 } else { n / d as f64 };
            let precision = ratio(true_positives, predicted);
            let recall = ratio(true_positives, support);
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            ClassMetrics {
                precision,
                recall,
                f1,
                support,
            }
        })
        .collect();
    let mut ece = 0.0;
    let reliability = bins
        .iter()
        .enumerate()
        .map(|(i, &(count, confidence_sum, hits))| {
            let (confidence, accuracy) = if count == 0 {
                (None, None)
            } else {
                let confidence = confidence_sum / count as f64;
                let accuracy = hits as f64 / count as f64;
                ece += count as f64 / total * (accuracy - confidence).abs();
                (Some(confidence), Some(accuracy))
            };
            ReliabilityBin {
                lower: i as f64 / CALIBRATION_BINS as f64,
                upper: (i + 1) as f64 / CALIBRATION_BINS as f64,
                count,
                confidence,
                accuracy,
            }
        })
        .collect();
    Some(Classification {
        accuracy: correct as f64 / total,
        per_class,
        confusion,
        ece,
        reliability,
    })
}

/// The median of `values` (the mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    })
}

/// Counts of `values` in [0, 1] over `bins` equal-width bins (1 falls in the last).
pub fn histogram(values: &[f64], bins: usize) -> Vec<usize> {
    let mut counts = vec![0; bins.max(1)];
    for &v in values.iter().filter(|v| v.is_finite()) {
        let bin = ((v.clamp(0.0, 1.0) * counts.len() as f64) as usize).min(counts.len() - 1);
        counts[bin] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tolerance of hand-computed fractions.
    const EXACT: f64 = 1e-12;

    #[test]
    fn figures_of_a_small_known_case() {
        // truth 0,0,1,1,2 ; predicted 0,1,1,1,0
        let rows: [(usize, [f32; 3]); 5] = [
            (0, [0.95, 0.03, 0.02]),
            (0, [0.3, 0.62, 0.08]),
            (1, [0.2, 0.74, 0.06]),
            (1, [0.1, 0.85, 0.05]),
            (2, [0.45, 0.1, 0.4]),
        ];
        let outcomes: Vec<(usize, &[f32])> = rows.iter().map(|(t, p)| (*t, &p[..])).collect();
        let figures = classification(&outcomes, 3).expect("figures");
        assert!((figures.accuracy - 0.6).abs() < EXACT);
        assert_eq!(
            figures.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 0]]
        );
        let glioma = figures.per_class[0];
        assert!((glioma.precision - 0.5).abs() < EXACT && (glioma.recall - 0.5).abs() < EXACT);
        let second = figures.per_class[1];
        assert!(
            (second.precision - 2.0 / 3.0).abs() < EXACT && (second.recall - 1.0).abs() < EXACT
        );
        assert!((second.f1 - 0.8).abs() < EXACT);
        // never predicted: precision 0, recall 0, F1 0
        assert_eq!(figures.per_class[2].f1, 0.0);
        // one image per bin: |correct - confidence| averaged
        let ece = ((1.0 - f64::from(0.95f32))
            + f64::from(0.62f32)
            + (1.0 - f64::from(0.74f32))
            + (1.0 - f64::from(0.85f32))
            + f64::from(0.45f32))
            / 5.0;
        assert!((figures.ece - ece).abs() < 1e-9, "{} vs {ece}", figures.ece);
        assert_eq!(
            figures.reliability.iter().map(|b| b.count).sum::<usize>(),
            5
        );
    }

    #[test]
    fn medians_and_histograms() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(
            histogram(&[0.0, 0.05, 0.5, 1.0], 10),
            vec![2, 0, 0, 0, 0, 1, 0, 0, 0, 1]
        );
    }
}
