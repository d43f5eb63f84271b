//! The activation vectors of a tensor of a model, one per spatial position (CNN feature
//! maps, `C x H x W` → `H*W` vectors of `C`) or per patch token (ViT, class token left out),
//! over DICOM studies (through the site's rules and the same decoding, windowing and
//! preprocessing as `run`) or PNG/JPEG slices (grey, taken as already windowed).

use std::path::PathBuf;

use ndarray::{Array2, ArrayView3, Axis};

use super::SaeError;
use crate::dicom::scan::{self, Series};
use crate::dicom::slices::{self, is_picture, load_grey};
use crate::model::features;
use crate::model::{Classifier, Probe, preprocess};

/// One slice's vectors and what the concepts need of it.
#[derive(Debug, Clone)]
pub struct SliceActivations {
    /// Where it came from (file, or SOPInstanceUID and frame).
    pub source: String,
    /// One vector per position, `[positions, channels]`, as the model computed them.
    pub vectors: Array2<f32>,
    /// The feature grid (rows, columns); positions are row-major.
    pub grid: (usize, usize),
    /// The model's predicted class.
    pub predicted: usize,
    /// Whether each position lies inside the brain mask of the slice.
    pub inside: Vec<bool>,
    /// d logit_c / d vector for each class c, `[positions, channels]` each (empty when not
    /// collected).
    pub gradients: Vec<Array2<f32>>,
}

/// The grey slices under `inputs`: PNG/JPEG files as images, everything else as DICOM,
/// grouped into series, of the series `take` accepts (the site's rules, as `run` would, or
/// every series but our own overlays). Unreadable inputs go to `errors`.
pub fn grey_slices(
    inputs: &[PathBuf],
    take: impl Fn(&Series) -> bool,
    errors: &mut Vec<String>,
) -> Vec<(String, Array2<f32>)> {
    let mut slices = Vec::new();
    let (files, issues) = scan::files_under(inputs);
    errors.extend(issues.into_iter().map(|i| i.message));
    let (pictures, dicom): (Vec<PathBuf>, Vec<PathBuf>) =
        files.into_iter().partition(|p| is_picture(p));
    for picture in pictures {
        match load_grey(&picture) {
            Ok(grey) => slices.push((picture.display().to_string(), grey)),
            Err(error) => errors.push(error.to_string()),
        }
    }
    let scanned = scan::scan(&dicom);
    errors.extend(
        scanned
            .issues
            .iter()
            .filter(|i| i.disposition == scan::Disposition::Failed)
            .map(|i| i.message.clone()),
    );
    for study in &scanned.studies {
        for series in &study.series {
            if !take(series) {
                continue;
            }
            let mut failures = Vec::new();
            for slice in slices::load(series, &mut failures) {
                let source = format!("{} frame {}", slice.sop_instance_uid, slice.frame);
                slices.push((source, slice.grey));
            }
            errors.extend(failures.into_iter().map(|f| f.error.to_string()));
        }
    }
    slices
}

/// Runs `model` on `slices` in batches and collects the vectors of its feature tensor, the
/// prediction, the brain mask on the feature grid, and (with `gradients`) the gradient of
/// every class's logit. `progress(done, total)` after each batch.
pub fn collect(
    model: &Classifier,
    slices: &[(String, Array2<f32>)],
    gradients: bool,
    batch: usize,
    mut progress: impl FnMut(usize, usize),
) -> Result<Vec<SliceActivations>, SaeError> {
    let manifest = model.manifest();
    let layout = manifest
        .explain
        .feature_layout
        .ok_or_else(|| SaeError::Model {
            message: format!(
                "{}: the manifest has no [explain] feature_tensor/feature_layout",
                manifest.name
            ),
        })?;
    let classes = manifest.labels.len();
    let mut out = Vec::with_capacity(slices.len());
    for chunk in slices.chunks(batch.max(1)) {
        let inputs: Vec<_> = chunk
            .iter()
            .map(|(_, grey)| preprocess::model_input(grey.view(), &manifest.input))
            .collect();
        let views: Vec<ArrayView3<f32>> = inputs.iter().map(|i| i.view()).collect();
        let tensor = preprocess::batch(&views);
        let failed = |e: crate::model::ModelError| SaeError::Model {
            message: format!("{} ({} ...): {e}", manifest.name, chunk[0].0),
        };
        let class_runs: Vec<usize> = if gradients {
            (0..classes).collect()
        } else {
            vec![0]
        };
        let mut runs = Vec::new();
        for class in class_runs {
            let run = model
                .probe(
                    Probe::FeatureGradient,
                    tensor.view(),
                    &vec![class; chunk.len()],
                )
                .map_err(failed)?;
            runs.push(run);
        }
        let first = &runs[0];
        for (i, (source, grey)) in chunk.iter().enumerate() {
            let one =
                |t: &ndarray::ArrayD<f32>| t.index_axis(Axis(0), i).insert_axis(Axis(0)).to_owned();
            let bad = |e: features::FeatureGridError| SaeError::Model {
                message: format!("{source}: {e}"),
            };
            let grid = features::grid(&one(&first.values[0]), layout).map_err(bad)?;
            let (channels, h, w) = grid.dim();
            let vectors = to_vectors(grid);
            let mut class_gradients = Vec::new();
            if gradients {
                for run in &runs {
                    let g = features::grid(&one(&run.gradients[0]), layout).map_err(bad)?;
                    class_gradients.push(to_vectors(g));
                }
            }
            let predicted = first
                .probabilities
                .row(i)
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(c, _)| c);
            let mask = crate::anatomy::brain_mask(grey.view());
            out.push(SliceActivations {
                source: source.clone(),
                vectors,
                grid: (h, w),
                predicted,
                inside: mask_on_grid(&mask, h, w),
                gradients: class_gradients,
            });
            debug_assert_eq!(out.last().map(|s| s.vectors.ncols()), Some(channels));
        }
        progress(out.len(), slices.len());
    }
    Ok(out)
}

/// `[C, h, w]` → `[h*w, C]`, row-major positions.
fn to_vectors(grid: ndarray::Array3<f32>) -> Array2<f32> {
    let (channels, h, w) = grid.dim();
    let mut vectors = Array2::<f32>::zeros((h * w, channels));
    for (c, plane) in grid.outer_iter().enumerate() {
        for ((y, x), v) in plane.indexed_iter() {
            vectors[[y * w + x, c]] = *v;
        }
    }
    vectors
}

/// Whether each cell of an `h x w` grid laid over the slice is mostly inside `mask`.
pub fn mask_on_grid(mask: &Array2<bool>, h: usize, w: usize) -> Vec<bool> {
    let (rows, columns) = mask.dim();
    let mut inside = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let (r0, r1) = (y * rows / h, ((y + 1) * rows / h).max(y * rows / h + 1));
            let (c0, c1) = (
                x * columns / w,
                ((x + 1) * columns / w).max(x * columns / w + 1),
            );
            let cell = mask.slice(ndarray::s![r0..r1.min(rows), c0..c1.min(columns)]);
            let count = cell.iter().filter(|v| **v).count();
            inside.push(count * 2 > cell.len());
        }
    }
    inside
}

/// Every slice's vectors stacked, `[vectors, channels]`.
pub fn stack(slices: &[SliceActivations]) -> Array2<f32> {
    let views: Vec<_> = slices.iter().map(|s| s.vectors.view()).collect();
    ndarray::concatenate(Axis(0), &views).unwrap_or_else(|_| Array2::zeros((0, 0)))
}
