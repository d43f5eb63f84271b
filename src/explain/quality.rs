//! Is an explanation plausible, and is it faithful?
//!
//! - [`brain_mask`]: the brain of a windowed slice, from the slice alone.
//! - [`in_brain_fraction`]: the share of a map's mass inside that mask. The research this
//!   product grew from found correct predictions resting on pixels outside the brain; a map
//!   whose fraction is below the site's threshold is flagged `evidence-outside-brain`.
//! - [`Faithfulness`]: deletion and insertion curves (Petsiuk et al., 2018) of the class
//!   probability as the map's most important pixels are removed from the input or revealed
//!   on a black image, against the same curves for a random order of the pixels; a map that
//!   does no better than random on both is flagged `unfaithful`.
//! - [`rank_correlation`]: Spearman's correlation between two maps; methods whose maps of the
//!   same slice disagree are flagged `methods-disagree`.
//!
//! # The brain mask, step by step
//!
//! 1. The lower of Otsu's two three-class thresholds on the windowed grey levels (256 bins)
//!    separates tissue from air and bone, which are dark on T1, T2 and FLAIR alike. One
//!    two-class threshold is not enough: on T2 the fluid (ventricles, eyes, CSF) is the
//!    brightest class, and a single threshold falls between it and the brain, keeping an eye
//!    as "the brain". Three classes put air and bone below, and the brain and fluid above.
//! 2. The head is every tissue pixel with the holes filled (what the air outside cannot
//!    reach). Its equivalent radius R = sqrt(area / π).
//! 3. Scalp and skull lie in a shell about 10-15 mm thick under the head's edge: the head
//!    is eroded by 0.1 R (a chamfer distance transform), which removes skin, fat and muscle
//!    and leaves at most thin pieces of marrow.
//! 4. The brain is the largest connected tissue component (4-neighbourhood) inside the
//!    eroded head, with every other component at least a fifth of its size that lies at
//!    least 0.2 R deep somewhere (low slices cut the temporal lobes and the cerebellum
//!    apart; scalp fragments that survive the erosion stay shallow), its holes (ventricles, sulci) filled,
//!    closed with radius 0.05 R (the sulci open to the surface), then dilated by 0.015 R so
//!    the cortical surface, darker than the threshold where it meets the CSF, counts too.
//!
//! The result is the intracranial space (brain and the CSF around it, inside the skull):
//! evidence there is plausible; evidence on bone, scalp or air is not.

use ndarray::{Array2, ArrayView2, ArrayView3, Axis, Zip};

use super::gradient::black;
use super::params::{ParamProblem, fraction};
use super::{ExplainError, Method, ModelMap, NoiseSource, channels_last, model_failed, to_slice};
use crate::model::Classifier;

/// The 256-bin histogram of values in [0, 1].
fn histogram(grey: ArrayView2<'_, f32>) -> [u64; 256] {
    let mut histogram = [0u64; 256];
    for &v in grey {
        let bin = (v.clamp(0.0, 1.0) * 255.0).round() as usize;
        histogram[bin] += 1;
    }
    histogram
}

/// Otsu's threshold of values in [0, 1] (256 bins); `None` for a constant image.
pub fn otsu_threshold(grey: ArrayView2<'_, f32>) -> Option<f32> {
    let histogram = histogram(grey);
    let total: u64 = histogram.iter().sum();
    let weighted_total: f64 = histogram
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut below, mut weighted_below) = (0u64, 0.0f64);
    let mut best: Option<(f64, usize)> = None;
    for (i, &count) in histogram.iter().enumerate() {
        below += count;
        weighted_below += i as f64 * count as f64;
        let above = total - below;
        if below == 0 || above == 0 {
            continue;
        }
        let mean_below = weighted_below / below as f64;
        let mean_above = (weighted_total - weighted_below) / above as f64;
        let between = below as f64 * above as f64 * (mean_below - mean_above).powi(2);
        if best.is_none_or(|(b, _)| between > b) {
            best = Some((between, i));
        }
    }
    // the threshold lies between bin i and i + 1
    best.map(|(_, i)| (i as f32 + 0.5) / 255.0)
}

/// Otsu's two thresholds (three classes) of values in [0, 1] (256 bins), lower first;
/// `None` when the image has fewer than three distinct levels.
pub fn otsu_thresholds_three(grey: ArrayView2<'_, f32>) -> Option<(f32, f32)> {
    let histogram = histogram(grey);
    // prefix sums of counts and of bin-weighted counts: any class's weight and mean in O(1)
    let mut counts = [0f64; 257];
    let mut moments = [0f64; 257];
    for (i, &c) in histogram.iter().enumerate() {
        counts[i + 1] = counts[i] + c as f64;
        moments[i + 1] = moments[i] + i as f64 * c as f64;
    }
    // a class of bins [a, b) contributes weight * mean^2 = moment^2 / weight
    let class = |a: usize, b: usize| {
        let weight = counts[b] - counts[a];
        if weight > 0.0 {
            Some((moments[b] - moments[a]).powi(2) / weight)
        } else {
            None
        }
    };
    let mut best: Option<(f64, usize, usize)> = None;
    for low in 1..255 {
        let Some(first) = class(0, low) else { continue };
        for high in low + 1..256 {
            let (Some(second), Some(third)) = (class(low, high), class(high, 256)) else {
                continue;
            };
            let score = first + second + third;
            if best.is_none_or(|(b, _, _)| score > b) {
                best = Some((score, low, high));
            }
        }
    }
    // the thresholds lie between bins low - 1 and low, and high - 1 and high
    best.map(|(_, low, high)| ((low as f32 - 0.5) / 255.0, (high as f32 - 0.5) / 255.0))
}

/// The pixels of `mask` connected (4-neighbourhood) to any `seed` pixel.
fn flood(mask: &Array2<bool>, seeds: impl IntoIterator<Item = (usize, usize)>) -> Array2<bool> {
    let (rows, columns) = mask.dim();
    let mut reached = Array2::<bool>::from_elem((rows, columns), false);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    for (r, c) in seeds {
        if mask[[r, c]] && !reached[[r, c]] {
            reached[[r, c]] = true;
            stack.push((r, c));
        }
    }
    while let Some((r, c)) = stack.pop() {
        let neighbours = [
            (r.wrapping_sub(1), c),
            (r + 1, c),
            (r, c.wrapping_sub(1)),
            (r, c + 1),
        ];
        for (nr, nc) in neighbours {
            if nr < rows && nc < columns && mask[[nr, nc]] && !reached[[nr, nc]] {
                reached[[nr, nc]] = true;
                stack.push((nr, nc));
            }
        }
    }
    reached
}

/// `mask` with every hole (background the border cannot reach) filled.
pub fn fill_holes(mask: &Array2<bool>) -> Array2<bool> {
    let (rows, columns) = mask.dim();
    let background = mask.mapv(|v| !v);
    let border = (0..rows)
        .flat_map(|r| [(r, 0), (r, columns.saturating_sub(1))])
        .chain((0..columns).flat_map(|c| [(0, c), (rows.saturating_sub(1), c)]));
    let outside = flood(&background, border);
    outside.mapv(|v| !v)
}

/// Labels of the 4-connected components of `mask` (0: background) and their sizes
/// (indexed by label; `sizes[0]` is unused).
fn components(mask: &Array2<bool>) -> (Array2<u32>, Vec<usize>) {
    let (rows, columns) = mask.dim();
    let mut labels = Array2::<u32>::zeros((rows, columns));
    let mut sizes: Vec<usize> = vec![0];
    let mut stack = Vec::new();
    for start in 0..rows * columns {
        let (r0, c0) = (start / columns, start % columns);
        if !mask[[r0, c0]] || labels[[r0, c0]] != 0 {
            continue;
        }
        let label = sizes.len() as u32;
        let mut size = 0;
        labels[[r0, c0]] = label;
        stack.push((r0, c0));
        while let Some((r, c)) = stack.pop() {
            size += 1;
            for (nr, nc) in [
                (r.wrapping_sub(1), c),
                (r + 1, c),
                (r, c.wrapping_sub(1)),
                (r, c + 1),
            ] {
                if nr < rows && nc < columns && mask[[nr, nc]] && labels[[nr, nc]] == 0 {
                    labels[[nr, nc]] = label;
                    stack.push((nr, nc));
                }
            }
        }
        sizes.push(size);
    }
    (labels, sizes)
}

/// The largest 4-connected component of `mask` (empty when `mask` is).
pub fn largest_component(mask: &Array2<bool>) -> Array2<bool> {
    let (labels, sizes) = components(mask);
    let best = (1..sizes.len()).max_by_key(|&l| sizes[l]).unwrap_or(0) as u32;
    labels.mapv(|l| best != 0 && l == best)
}

/// The largest component of `mask`, and every other one at least `share` times its size
/// that reaches `depth` somewhere (scalp fragments surviving the erosion stay shallow).
fn major_components(
    mask: &Array2<bool>,
    share: f32,
    depth_map: &Array2<f32>,
    depth: f32,
) -> Array2<bool> {
    let (labels, sizes) = components(mask);
    let Some(largest) = (1..sizes.len()).max_by_key(|&l| sizes[l]) else {
        return labels.mapv(|_| false);
    };
    let mut deepest = vec![0.0f32; sizes.len()];
    Zip::from(&labels).and(depth_map).for_each(|&l, &d| {
        deepest[l as usize] = deepest[l as usize].max(d);
    });
    let keep: Vec<bool> = (0..sizes.len())
        .map(|l| {
            l == largest
                || (l != 0
                    && sizes[l] as f32 >= share * sizes[largest] as f32
                    && deepest[l] >= depth)
        })
        .collect();
    labels.mapv(|l| keep[l as usize])
}

/// Chamfer (3-4) distance, in pixels, from every pixel to the nearest pixel where `mask` is
/// false (0 there); pixels beyond the image border count as false.
pub fn distance_to_outside(mask: &Array2<bool>) -> Array2<f32> {
    let (rows, columns) = mask.dim();
    const STRAIGHT: f32 = 3.0;
    const DIAGONAL: f32 = 4.0;
    let far = 3.0 * (rows + columns) as f32;
    let mut d = mask.mapv(|inside| if inside { far } else { 0.0 });
    let at = |d: &Array2<f32>, r: isize, c: isize| -> f32 {
        if r < 0 || c < 0 || r as usize >= rows || c as usize >= columns {
            0.0
        } else {
            d[[r as usize, c as usize]]
        }
    };
    for r in 0..rows as isize {
        for c in 0..columns as isize {
            let here = d[[r as usize, c as usize]];
            if here == 0.0 {
                continue;
            }
            let best = here
                .min(at(&d, r - 1, c) + STRAIGHT)
                .min(at(&d, r, c - 1) + STRAIGHT)
                .min(at(&d, r - 1, c - 1) + DIAGONAL)
                .min(at(&d, r - 1, c + 1) + DIAGONAL);
            d[[r as usize, c as usize]] = best;
        }
    }
    for r in (0..rows as isize).rev() {
        for c in (0..columns as isize).rev() {
            let here = d[[r as usize, c as usize]];
            if here == 0.0 {
                continue;
            }
            let best = here
                .min(at(&d, r + 1, c) + STRAIGHT)
                .min(at(&d, r, c + 1) + STRAIGHT)
                .min(at(&d, r + 1, c + 1) + DIAGONAL)
                .min(at(&d, r + 1, c - 1) + DIAGONAL);
            d[[r as usize, c as usize]] = best;
        }
    }
    d.mapv_inplace(|v| v / STRAIGHT);
    d
}

/// Erosion depth removing scalp and skull, as a share of the head's equivalent radius.
const SCALP_AND_SKULL: f32 = 0.1;
/// Components kept beside the largest, as a share of its size: low slices cut the temporal
/// lobes and the cerebellum apart.
const LOBE_SHARE: f32 = 0.2;
/// Closing radius filling sulci open to the surface, same unit.
const CLOSING: f32 = 0.05;
/// Final dilation: the cortex surface the erosion may have grazed, same unit.
const MARGIN: f32 = 0.015;

/// `mask` grown by `radius` pixels.
fn dilate(mask: &Array2<bool>, radius: f32) -> Array2<bool> {
    distance_to_outside(&mask.mapv(|v| !v)).mapv(|d| d <= radius)
}

/// `mask` shrunk by `radius` pixels.
fn erode(mask: &Array2<bool>, radius: f32) -> Array2<bool> {
    distance_to_outside(mask).mapv(|d| d > radius)
}

/// The brain of a windowed slice (grey levels in [0, 1]); see the module documentation.
pub fn brain_mask(grey: ArrayView2<'_, f32>) -> Array2<bool> {
    let empty = || Array2::from_elem(grey.dim(), false);
    let Some(threshold) = otsu_thresholds_three(grey)
        .map(|(low, _)| low)
        .or_else(|| otsu_threshold(grey))
    else {
        return empty();
    };
    let tissue = grey.mapv(|v| v > threshold);
    let head = fill_holes(&tissue);
    let area = head.iter().filter(|&&v| v).count() as f32;
    if area == 0.0 {
        return empty();
    }
    let radius = (area / std::f32::consts::PI).sqrt();
    let depth = distance_to_outside(&head);
    let inner = Zip::from(&tissue)
        .and(&depth)
        .map_collect(|&t, &d| t && d > SCALP_AND_SKULL * radius);
    let lobes = major_components(&inner, LOBE_SHARE, &depth, 2.0 * SCALP_AND_SKULL * radius);
    let brain = fill_holes(&lobes);
    // closing: the sulci that open onto the surface are brain too
    let closed = dilate(&brain, CLOSING * radius);
    let closed = fill_holes(&erode(&closed, CLOSING * radius));
    dilate(&closed, MARGIN * radius)
}

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
    /// layout) in `steps` steps per curve, all in one batch of 4 (steps + 1) inputs.
    pub fn measure(
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        heat: ArrayView2<'_, f32>,
        class: usize,
        steps: usize,
        seed: u64,
    ) -> Result<Faithfulness, ExplainError> {
        const METHOD: &str = "faithfulness";
        let spec = &model.manifest().input;
        let (height, width) = heat.dim();
        if steps == 0 || height != spec.height || width != spec.width {
            return Err(ExplainError::Parameters {
                method: METHOD,
                message: format!(
                    "{steps} steps on a {height}x{width} map for a {}x{} input",
                    spec.height, spec.width
                ),
            });
        }
        let pixels = height * width;
        let mut by_heat: Vec<usize> = (0..pixels).collect();
        let flat: Vec<f32> = heat.iter().copied().collect();
        // most important first; ties broken by position so the order is deterministic
        by_heat.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
        let mut random: Vec<usize> = (0..pixels).collect();
        let mut noise = NoiseSource::new(seed);
        for i in (1..pixels).rev() {
            let j = (noise.uniform() * (i + 1) as f64) as usize;
            random.swap(i, j.min(i));
        }
        let baseline = black(spec);
        let (channels_first, hwc_dim) = (input.dim(), channels_last(input, spec.layout).dim());
        let mut batch = ndarray::Array4::<f32>::zeros((
            4 * (steps + 1),
            channels_first.0,
            channels_first.1,
            channels_first.2,
        ));
        for (curve, order) in [&by_heat, &by_heat, &random, &random].iter().enumerate() {
            let deleting = curve % 2 == 0;
            for step in 0..=steps {
                let changed = pixels * step / steps;
                let mut item = batch.index_axis_mut(Axis(0), curve * (steps + 1) + step);
                item.assign(&input);
                let mut hwc = channels_last(item.view_mut(), spec.layout);
                let mut is_changed = vec![false; pixels];
                for &p in &order[..changed] {
                    is_changed[p] = true;
                }
                for (p, &changed_here) in is_changed.iter().enumerate() {
                    // deletion blacks out the changed pixels; insertion blacks out the rest
                    if changed_here == deleting {
                        let (r, c) = (p / width, p % width);
                        for (k, b) in baseline.iter().enumerate().take(hwc_dim.2) {
                            hwc[[r, c, k]] = *b;
                        }
                    }
                }
            }
        }
        let probabilities = model.predict(batch.view()).map_err(model_failed(METHOD))?;
        let auc = |curve: usize| -> f32 {
            let values: Vec<f32> = (0..=steps)
                .map(|s| probabilities[[curve * (steps + 1) + s, class]])
                .collect();
            values.windows(2).map(|w| (w[0] + w[1]) / 2.0).sum::<f32>() / steps as f32
        };
        Ok(Faithfulness {
            deletion_auc: auc(0),
            insertion_auc: auc(1),
            random_deletion_auc: auc(2),
            random_insertion_auc: auc(3),
            passes: 4 * (steps + 1),
        })
    }
}

/// The quality checks' parameters (`[quality]`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityPolicy {
    /// In-brain fraction below which `evidence-outside-brain` is flagged.
    pub in_brain_threshold: f32,
    /// Steps of each faithfulness curve; 0 skips the curves (they cost 4 (steps + 1)
    /// model passes per explanation).
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
    /// Threshold 0.5 (DESIGN.md 4.2); 8 steps per curve (36 passes, a few seconds per
    /// explanation on the CPU for VGG16); agreement 0.3, below which two maps share little
    /// more than their blur.
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
    /// The report's form (DESIGN.md 4.2); agreement comes later, across methods.
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
    mask: &Array2<bool>,
    class: usize,
    policy: &QualityPolicy,
) -> Result<Assessment, ExplainError> {
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
            0,
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
/// `mask`, the slice's brain) and assesses it: what `run`, `explain` and `audit` do with
/// every explanation.
pub fn explain_and_assess(
    model: &Classifier,
    method: &dyn Method,
    input: ArrayView3<'_, f32>,
    class: usize,
    mask: &Array2<bool>,
    policy: &QualityPolicy,
) -> Result<AssessedMap, ExplainError> {
    let map = method.explain(model, input, class)?;
    let (rows, columns) = mask.dim();
    let heat = to_slice(map.heat.view(), rows, columns);
    let assessment = assess(
        model,
        input,
        map.heat.view(),
        heat.view(),
        mask,
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
    fn otsu_splits_two_levels() {
        let mut grey = Array2::<f32>::from_elem((10, 10), 0.2);
        grey.slice_mut(ndarray::s![..5, ..]).fill(0.8);
        let t = otsu_threshold(grey.view()).expect("a threshold");
        assert!(t > 0.2 && t < 0.8, "{t}");
        assert!(otsu_threshold(Array2::<f32>::zeros((4, 4)).view()).is_none());
    }

    #[test]
    fn three_class_otsu_splits_air_tissue_and_fluid() {
        // a T2-like slice: half air, a third brain, the rest bright fluid
        let mut grey = Array2::<f32>::from_elem((12, 12), 0.02);
        grey.slice_mut(ndarray::s![6.., ..]).fill(0.35);
        grey.slice_mut(ndarray::s![10.., ..]).fill(0.9);
        let (low, high) = otsu_thresholds_three(grey.view()).expect("thresholds");
        assert!(low > 0.02 && low < 0.35, "{low}");
        assert!(high > 0.35 && high < 0.9, "{high}");
        // with two levels only there is no third class
        let mut two = Array2::<f32>::from_elem((4, 4), 0.1);
        two.slice_mut(ndarray::s![..2, ..]).fill(0.7);
        assert!(otsu_thresholds_three(two.view()).is_none());
    }

    #[test]
    fn holes_are_filled_and_the_largest_component_kept() {
        let mut mask = Array2::from_elem((9, 9), false);
        mask.slice_mut(ndarray::s![1..6, 1..6]).fill(true);
        mask[[3, 3]] = false; // a hole
        mask[[8, 8]] = true; // a speck
        let filled = fill_holes(&mask);
        assert!(filled[[3, 3]]);
        let largest = largest_component(&filled);
        assert!(!largest[[8, 8]] && largest[[1, 1]]);
        assert_eq!(largest.iter().filter(|&&v| v).count(), 25);
    }

    #[test]
    fn chamfer_distance_is_close_to_euclidean() {
        // far from the border (which counts as outside)
        let mut mask = Array2::from_elem((81, 81), true);
        mask[[40, 40]] = false;
        let d = distance_to_outside(&mask);
        assert!((d[[40, 50]] - 10.0).abs() < 0.01);
        // diagonal: 10 sqrt 2 = 14.14; chamfer 3-4 gives 13.33
        assert!((d[[50, 50]] - 14.14).abs() < 1.0);
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
