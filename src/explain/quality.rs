//! Is an explanation plausible, and is it faithful?
//!
//! - [`crate::anatomy::brain_mask`]: the brain of a windowed slice, from the slice alone.
//! - [`in_brain_fraction`]: the share of a map's mass inside that mask. The research this
//!   product grew from found correct predictions resting on pixels outside the brain; a map
//!   whose fraction is below the site's threshold is flagged `evidence-outside-brain`.
//! - [`Faithfulness`]: deletion and insertion curves (Petsiuk et al., 2018) of the class
//!   probability as the map's most important pixels are removed from the input or revealed
//!   on a black image, against the same curves for a random order of the pixels; a map that
//!   does no better than random on both is flagged `unfaithful`.
//! - [`rank_correlation`]: Spearman's correlation between two maps; methods whose maps of the
//!   same slice disagree are flagged `methods-disagree`.

use ndarray::{Array2, ArrayView2, ArrayView3, Axis, Zip};

use super::gradient::black;
use super::params::{ParamProblem, fraction};
use super::{ExplainError, Method, ModelMap, channels_last, model_failed, to_slice};
use crate::model::Classifier;
use crate::noise::NoiseSource;

/// The share of `heat`'s mass inside `mask` (same size); `None` when the map is all zero.
pub fn in_brain_fraction(heat: ArrayView2<'_, f32>, mask: &Array2<bool>) -> Option<f32> {
    let total: f64 = heat.iter().map(|&v| f64::from(v.max(0.0))).sum();
    if total <= 0.0 {
        return None;
    }
    let inside: f64 =
        Zip::from(&heat).and(mask).fold(
            0.0,
            |sum, &v, &m| if m { sum + f64::from(v.max(0.0)) } else { sum },
        );
    Some((inside / total) as f32)
}

/// Spearman's rank correlation of two maps of the same size (ties share their mean rank);
/// `None` when either is constant.
pub fn rank_correlation(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>) -> Option<f32> {
    fn ranks(values: &[f32]) -> Vec<f64> {
        let mut order: Vec<usize> = (0..values.len()).collect();
        order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
        let mut ranks = vec![0.0; values.len()];
        let mut start = 0;
        while start < order.len() {
            let mut end = start + 1;
            while end < order.len() && values[order[end]] == values[order[start]] {
                end += 1;
            }
            let mean = (start + end - 1) as f64 / 2.0;
            for &i in &order[start..end] {
                ranks[i] = mean;
            }
            start = end;
        }
        ranks
    }
    let (ra, rb) = (
        ranks(&a.iter().copied().collect::<Vec<_>>()),
        ranks(&b.iter().copied().collect::<Vec<_>>()),
    );
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut cov, mut va, mut vb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        cov += (x - ma) * (y - mb);
        va += (x - ma).powi(2);
        vb += (y - mb).powi(2);
    }
    (va > 0.0 && vb > 0.0).then(|| (cov / (va * vb).sqrt()) as f32)
}

/// Deletion and insertion curves of a map, and of a random order of the same pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Faithfulness {
    /// Area under the class probability as the most important pixels are blacked out
    /// (lower: the map found what the model needs).
    pub deletion_auc: f32,
    /// Area under the class probability as they are revealed on black (higher is better).
    pub insertion_auc: f32,
    /// The same for a random order.
    pub random_deletion_auc: f32,
    /// The same for a random order.
    pub random_insertion_auc: f32,
    /// Model passes spent.
    pub passes: usize,
}

impl Faithfulness {
    /// No better than random on both curves.
    pub fn unfaithful(&self) -> bool {
        self.deletion_auc >= self.random_deletion_auc
            && self.insertion_auc <= self.random_insertion_auc
    }

    /// Measures `heat` (model-input height x width) for `class` on `input` (the model's
    /// layout) in `steps` steps per curve: 2 (steps - 1) passes, the curves' ends and the
    /// random order coming from `slice` (measured there on the slice's first map).
    pub fn measure(
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        heat: ArrayView2<'_, f32>,
        class: usize,
        steps: usize,
        slice: &mut SliceCheck,
    ) -> Result<Faithfulness, ExplainError> {
        let spec = &model.manifest().input;
        let (height, width) = heat.dim();
        if steps == 0 || height != spec.height || width != spec.width {
            return Err(ExplainError::Parameters {
                method: FAITHFULNESS,
                message: format!(
                    "{steps} steps on a {height}x{width} map for a {}x{} input",
                    spec.height, spec.width
                ),
            });
        }
        let (reference, reference_passes) = slice.reference(model, input, class, steps)?;
        let flat: Vec<f32> = heat.iter().copied().collect();
        let mut by_heat: Vec<usize> = (0..flat.len()).collect();
        // most important first; ties broken by position so the order is deterministic
        by_heat.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
        let [deletion, insertion] = curves(model, input, &by_heat, class, steps, reference.ends)?;
        Ok(Faithfulness {
            deletion_auc: deletion,
            insertion_auc: insertion,
            random_deletion_auc: reference.random_deletion_auc,
            random_insertion_auc: reference.random_insertion_auc,
            passes: 2 * (steps - 1) + reference_passes,
        })
    }
}

const FAITHFULNESS: &str = "faithfulness";

/// What every map of a slice shares in its checks: the slice's brain mask and, per explained
/// class, the ends of the faithfulness curves (the input, and the input all black) and the
/// curves of a random pixel order, which depend on no map: measured once, on first use.
pub struct SliceCheck {
    /// The brain of the slice, on the slice's grid.
    pub mask: Array2<bool>,
    /// (class, steps) -> the curves' shared parts.
    references: Vec<((usize, usize), Reference)>,
}

/// The parts of a slice's faithfulness curves that no map changes.
#[derive(Debug, Clone, Copy)]
struct Reference {
    ends: Ends,
    random_deletion_auc: f32,
    random_insertion_auc: f32,
}

/// The class probability of the input and of the all-black input: where every curve starts
/// or ends (deletion from the input to black, insertion the other way round).
#[derive(Debug, Clone, Copy)]
struct Ends {
    original: f32,
    black: f32,
}

impl SliceCheck {
    /// The checks of a slice whose brain is `mask`.
    pub fn new(mask: Array2<bool>) -> Self {
        Self {
            mask,
            references: Vec::new(),
        }
    }

    /// The shared curve parts for `class`, and the passes spent on them now (0 when known).
    fn reference(
        &mut self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
        steps: usize,
    ) -> Result<(Reference, usize), ExplainError> {
        if let Some((_, known)) = self.references.iter().find(|(k, _)| *k == (class, steps)) {
            return Ok((*known, 0));
        }
        let spec = &model.manifest().input;
        let mut ends =
            ndarray::Array4::<f32>::zeros((2, input.dim().0, input.dim().1, input.dim().2));
        ends.index_axis_mut(Axis(0), 0).assign(&input);
        // insertion with nothing revealed yet: all black
        ends.index_axis_mut(Axis(0), 1)
            .assign(&perturbed(input, spec, &[], false));
        let probabilities = model
            .predict(ends.view())
            .map_err(model_failed(FAITHFULNESS))?;
        let ends = Ends {
            original: probabilities[[0, class]],
            black: probabilities[[1, class]],
        };
        let pixels = spec.height * spec.width;
        let mut random: Vec<usize> = (0..pixels).collect();
        let mut noise = NoiseSource::new(RANDOM_ORDER_SEED);
        for i in (1..pixels).rev() {
            let j = (noise.uniform() * (i + 1) as f64) as usize;
            random.swap(i, j.min(i));
        }
        let [deletion, insertion] = curves(model, input, &random, class, steps, ends)?;
        let reference = Reference {
            ends,
            random_deletion_auc: deletion,
            random_insertion_auc: insertion,
        };
        self.references.push(((class, steps), reference));
        Ok((reference, 2 + 2 * (steps - 1)))
    }
}

/// Seed of the random pixel order every map is compared with.
const RANDOM_ORDER_SEED: u64 = 0;

/// The deletion and insertion AUCs of pixel `order` (most important first): the 2 (steps - 1)
/// inner points in one batch, the ends given.
fn curves(
    model: &Classifier,
    input: ArrayView3<'_, f32>,
    order: &[usize],
    class: usize,
    steps: usize,
    ends: Ends,
) -> Result<[f32; 2], ExplainError> {
    let spec = &model.manifest().input;
    let pixels = order.len();
    let inner = steps.saturating_sub(1);
    let mut batch =
        ndarray::Array4::<f32>::zeros((2 * inner, input.dim().0, input.dim().1, input.dim().2));
    for (curve, deleting) in [true, false].into_iter().enumerate() {
        for step in 1..steps {
            let changed = &order[..pixels * step / steps];
            batch
                .index_axis_mut(Axis(0), curve * inner + step - 1)
                .assign(&perturbed(input, spec, changed, deleting));
        }
    }
    // one step (no inner point): both curves are their ends
    let probabilities = if inner > 0 {
        model
            .predict(batch.view())
            .map_err(model_failed(FAITHFULNESS))?
    } else {
        ndarray::Array2::zeros((0, 0))
    };
    let point = |curve: usize, step: usize| -> f32 {
        let deleting = curve == 0;
        match step {
            0 if deleting => ends.original,
            0 => ends.black,
            s if s == steps && deleting => ends.black,
            s if s == steps => ends.original,
            s => probabilities[[curve * inner + s - 1, class]],
        }
    };
    let auc = |curve: usize| -> f32 {
        let values: Vec<f32> = (0..=steps).map(|s| point(curve, s)).collect();
        values.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f32>() / steps as f32
    };
    Ok([auc(0), auc(1)])
}

/// `input` with the `changed` pixels blacked out (deletion) or every other pixel blacked out
/// (insertion).
fn perturbed(
    input: ArrayView3<'_, f32>,
    spec: &crate::model::manifest::InputSpec,
    changed: &[usize],
    deleting: bool,
) -> ndarray::Array3<f32> {
    let baseline = black(spec);
    let mut item = input.to_owned();
    let mut hwc = channels_last(item.view_mut(), spec.layout);
    let (_, width, depth) = hwc.dim();
    let mut is_changed = vec![false; spec.height * spec.width];
    for &p in changed {
        is_changed[p] = true;
    }
    for (p, &changed_here) in is_changed.iter().enumerate() {
        if changed_here == deleting {
            let (r, c) = (p / width, p % width);
            for (k, b) in baseline.iter().enumerate().take(depth) {
                hwc[[r, c, k]] = *b;
            }
        }
    }
    item
}

/// The quality checks' parameters (`[quality]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityPolicy {
    /// In-brain fraction below which `evidence-outside-brain` is flagged.
    pub in_brain_threshold: f32,
    /// Steps of each faithfulness curve; 0 skips the curves. They cost 2 (steps - 1) model
    /// passes a map, plus 2 steps for the first map of a slice (its ends and random order).
    pub faithfulness_steps: usize,
    /// Mean rank correlation with the other methods of a slice below which
    /// `methods-disagree` is flagged.
    pub agreement_threshold: f32,
}

impl QualityPolicy {
    /// What is wrong with these parameters (keys as written under `[quality]`).
    pub fn problems(&self) -> Vec<ParamProblem> {
        [
            fraction("in_brain_threshold", self.in_brain_threshold),
            fraction("agreement_threshold", self.agreement_threshold),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

impl Default for QualityPolicy {
    /// Threshold 0.5 (docs/design.md section 3); 8 steps per curve (14 passes a map, a second
    /// or two per explanation on the CPU for VGG16); agreement 0.3, below which two maps share
    /// little more than their blur.
    fn default() -> Self {
        QualityPolicy {
            in_brain_threshold: 0.5,
            faithfulness_steps: 8,
            agreement_threshold: 0.3,
        }
    }
}

/// The plausibility and faithfulness of one map.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// Share of the map's mass in the brain mask (`None`: an empty map or no brain found).
    pub in_brain_fraction: Option<f32>,
    /// The faithfulness curves, when measured.
    pub faithfulness: Option<Faithfulness>,
    /// Flags so far (`empty-map`, `evidence-outside-brain`, `unfaithful`).
    pub flags: Vec<&'static str>,
}

impl Assessment {
    /// The report's form (docs/design.md section 3); agreement comes later, across methods.
    pub fn to_report(&self) -> crate::output::Quality {
        let f = self.faithfulness;
        crate::output::Quality {
            in_brain_fraction: self.in_brain_fraction,
            deletion_auc: f.map(|f| f.deletion_auc),
            insertion_auc: f.map(|f| f.insertion_auc),
            random_deletion_auc: f.map(|f| f.random_deletion_auc),
            random_insertion_auc: f.map(|f| f.random_insertion_auc),
            agreement: None,
            flags: self.flags.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// Model passes the checks spent.
    pub fn passes(&self) -> usize {
        self.faithfulness.map_or(0, |f| f.passes)
    }
}

/// Flags an explanation whose evidence lies mostly outside the brain.
pub const EVIDENCE_OUTSIDE_BRAIN: &str = "evidence-outside-brain";
/// Flags an explanation no more faithful than a random map.
pub const UNFAITHFUL: &str = "unfaithful";
/// Flags an explanation that disagrees with the other methods on its slice.
pub const METHODS_DISAGREE: &str = "methods-disagree";
/// Flags a map that is zero or constant on its slice: nothing to show, never an explanation.
pub const EMPTY_MAP: &str = "empty-map";

/// Whether a map shows nothing: no finite positive value, or the same value everywhere
/// (within a millionth of its largest value).
pub fn is_empty_map(heat: ArrayView2<'_, f32>) -> bool {
    let (low, high) = heat
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    // without a finite value, `high` stays at minus infinity
    high <= 0.0 || high - low <= 1e-6 * high
}

/// Assesses one map: `model_heat` in model-input space (what the network saw, for the
/// faithfulness curves), `slice_heat` and `mask` on the slice.
pub fn assess(
    model: &Classifier,
    input: ArrayView3<'_, f32>,
    model_heat: ArrayView2<'_, f32>,
    slice_heat: ArrayView2<'_, f32>,
    slice: &mut SliceCheck,
    class: usize,
    policy: &QualityPolicy,
) -> Result<Assessment, ExplainError> {
    let mask = &slice.mask;
    let has_brain = mask.iter().any(|&m| m);
    let in_brain_fraction = if has_brain {
        in_brain_fraction(slice_heat, mask)
    } else {
        None
    };
    let mut flags = Vec::new();
    if is_empty_map(slice_heat) {
        flags.push(EMPTY_MAP);
    }
    if in_brain_fraction.is_some_and(|f| f < policy.in_brain_threshold) {
        flags.push(EVIDENCE_OUTSIDE_BRAIN);
    }
    let faithfulness = if policy.faithfulness_steps > 0 && model_heat.iter().any(|&v| v > 0.0) {
        let measured = Faithfulness::measure(
            model,
            input,
            model_heat,
            class,
            policy.faithfulness_steps,
            slice,
        )?;
        if measured.unfaithful() {
            flags.push(UNFAITHFUL);
        }
        Some(measured)
    } else {
        None
    };
    Ok(Assessment {
        in_brain_fraction,
        faithfulness,
        flags,
    })
}

/// One method's map of a slice with its checks.
#[derive(Debug, Clone)]
pub struct AssessedMap {
    /// The map in model-input space, with what produced it.
    pub map: ModelMap,
    /// The same map on the slice's grid.
    pub heat: Array2<f32>,
    /// Its plausibility and faithfulness.
    pub assessment: Assessment,
}

impl AssessedMap {
    /// Model evaluations the method and its checks spent.
    pub fn passes(&self) -> usize {
        self.map.passes + self.assessment.passes()
    }
}

/// Explains `class` of `input` with `method`, brings the map to the slice (the grid of
/// `slice`'s brain mask) and assesses it: what `run`, `explain` and `audit` do with every
/// explanation. The maps of one slice share `slice`, and with it part of their checks.
pub fn explain_and_assess(
    model: &Classifier,
    method: &dyn Method,
    input: ArrayView3<'_, f32>,
    class: usize,
    slice: &mut SliceCheck,
    policy: &QualityPolicy,
) -> Result<AssessedMap, ExplainError> {
    let map = method.explain(model, input, class)?;
    let (rows, columns) = slice.mask.dim();
    let heat = to_slice(map.heat.view(), rows, columns);
    let assessment = assess(
        model,
        input,
        map.heat.view(),
        heat.view(),
        slice,
        class,
        policy,
    )?;
    Ok(AssessedMap {
        map,
        heat,
        assessment,
    })
}

/// Side of the grid maps are compared on: rank correlation of every pixel of a 512 x 512
/// slice would sort 262144 values per pair for no gain in what "agree" means.
const AGREEMENT_GRID: usize = 32;

/// For maps of the same slice (same size), each one's mean rank correlation with the others
/// (`None` with fewer than two maps or for a constant map).
pub fn agreement(maps: &[ArrayView2<'_, f32>]) -> Vec<Option<f32>> {
    if maps.len() < 2 {
        return vec![None; maps.len()];
    }
    let small: Vec<Array2<f32>> = maps
        .iter()
        .map(|m| crate::model::preprocess::resize_bilinear(*m, AGREEMENT_GRID, AGREEMENT_GRID))
        .collect();
    (0..small.len())
        .map(|i| {
            let correlations: Vec<f32> = (0..small.len())
                .filter(|&j| j != i)
                .filter_map(|j| rank_correlation(small[i].view(), small[j].view()))
                .collect();
            (!correlations.is_empty())
                .then(|| correlations.iter().sum::<f32>() / correlations.len() as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_constant_and_non_finite_maps_are_empty_and_a_single_hot_pixel_is_not() {
        let zero = Array2::<f32>::zeros((8, 8));
        assert!(is_empty_map(zero.view()));
        assert!(is_empty_map(Array2::from_elem((8, 8), 0.3).view()));
        assert!(is_empty_map(Array2::from_elem((8, 8), f32::NAN).view()));
        let mut hot = zero.clone();
        hot[[3, 4]] = 1e-9;
        assert!(!is_empty_map(hot.view()));
        let mut almost = Array2::from_elem((8, 8), 1.0f32);
        almost[[0, 0]] = 1.0 - 1e-8;
        assert!(
            is_empty_map(almost.view()),
            "a millionth of the peak is no structure"
        );
    }

    #[test]
    fn rank_correlation_of_monotone_maps_is_one() {
        let a = Array2::from_shape_fn((4, 4), |(i, j)| (i * 4 + j) as f32);
        let b = a.mapv(|v| v * v + 1.0);
        assert!((rank_correlation(a.view(), b.view()).expect("defined") - 1.0).abs() < 1e-6);
        let c = a.mapv(|v| -v);
        assert!((rank_correlation(a.view(), c.view()).expect("defined") + 1.0).abs() < 1e-6);
        assert!(rank_correlation(a.view(), Array2::zeros((4, 4)).view()).is_none());
    }
}
