//! `sae`: the concepts of a sparse autoencoder ([`crate::sae`]) that drive the class, and
//! where they are on the slice.
//!
//! The feature tensor of the slice is encoded position by position; each active latent `j`
//! at position `p` contributes `z_pj (w_dec_j . g_p) / scale` to the class logit (`g_p` its
//! gradient there: the first-order effect of the concept). The latents with the largest
//! total positive contribution are kept (`top`, default 8), and the map is the sum of their
//! positive contributions per position, upsampled to the model input like a CAM. The report
//! lists those concepts with their labels (what each is for, and how much of it lies inside
//! the brain), so a reader sees *which* learnt concept the prediction rests on.
//!
//! The SAE is the manifest's `[explain] sae` file, or the one named by `explain --sae`; it
//! must have been trained on the manifest's feature tensor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ndarray::{Array2, ArrayView3, Axis};

use super::cam::feature_grid;
use super::{ExplainError, MapPart, Method, ModelMap, check_finite, model_failed};
use crate::model::preprocess::resize_bilinear;
use crate::model::{Classifier, Probe};
use crate::sae::SparseAutoencoder;

const NAME: &str = "sae";

/// The `sae` method.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SaeMethod {
    /// Concepts kept in the map (0: the default, 8).
    pub top: usize,
    /// An SAE file that replaces the manifest's (`explain --sae`).
    pub file: Option<PathBuf>,
}

/// SAEs already read, by path: a series explains many slices with one.
fn loaded(path: &Path) -> Result<Arc<SparseAutoencoder>, ExplainError> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Arc<SparseAutoencoder>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(sae) = cache.lock().ok().and_then(|c| c.get(path).cloned()) {
        return Ok(sae);
    }
    let sae = Arc::new(
        SparseAutoencoder::load(path).map_err(|e| ExplainError::Parameters {
            method: NAME,
            message: e.to_string(),
        })?,
    );
    if let Ok(mut cache) = cache.lock() {
        cache.insert(path.to_path_buf(), Arc::clone(&sae));
    }
    Ok(sae)
}

/// One concept's share of an explanation.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConceptShare {
    /// The latent.
    pub latent: usize,
    /// Its contribution to the class logit on this slice.
    pub contribution: f32,
    /// What it is for (from the SAE's concept table), when known.
    pub label: Option<String>,
    /// Share of its activation inside the brain, over the training slices.
    pub in_brain_share: Option<f32>,
    /// Share of its activation on this slice that lies inside the brain is not computed
    /// here; `outside_brain` repeats the training verdict.
    pub outside_brain: bool,
}

impl Method for SaeMethod {
    fn name(&self) -> &'static str {
        NAME
    }

    fn probes(&self) -> &'static [Probe] {
        &[Probe::FeatureGradient]
    }

    fn explain(
        &self,
        model: &Classifier,
        input: ArrayView3<'_, f32>,
        class: usize,
    ) -> Result<ModelMap, ExplainError> {
        let manifest = model.manifest();
        let bad = |message: String| ExplainError::Parameters {
            method: NAME,
            message,
        };
        let path = self
            .file
            .clone()
            .or_else(|| manifest.explain.sae.clone())
            .ok_or_else(|| {
                bad(format!(
                    "{}: no sparse autoencoder: set [explain] sae in the manifest, or pass \
                     --sae FILE (train one with `dicom-xai sae train`)",
                    manifest.name
                ))
            })?;
        let sae = loaded(&path)?;
        let feature = manifest.explain.feature_tensor.clone().unwrap_or_default();
        if sae.header.tensor != feature {
            return Err(bad(format!(
                "{}: trained on tensor {:?}, but {}'s feature tensor is {feature:?}",
                path.display(),
                sae.header.tensor,
                manifest.name
            )));
        }
        let layout = manifest
            .explain
            .feature_layout
            .ok_or_else(|| bad(format!("{}: no [explain] feature_layout", manifest.name)))?;
        let batch = input.insert_axis(Axis(0));
        let run = model
            .probe(Probe::FeatureGradient, batch.view(), &[class])
            .map_err(model_failed(NAME))?;
        let activations = feature_grid(&run.values[0], layout, NAME)?;
        let gradients = feature_grid(&run.gradients[0], layout, NAME)?;
        let (channels, h, w) = activations.dim();
        if channels != sae.dimensions() {
            return Err(bad(format!(
                "{}: encodes {} dimensions, the feature tensor has {channels}",
                path.display(),
                sae.dimensions()
            )));
        }
        let positions = h * w;
        let flat = |grid: &ndarray::Array3<f32>| -> Array2<f32> {
            let mut v = Array2::<f32>::zeros((positions, channels));
            for (c, plane) in grid.outer_iter().enumerate() {
                for ((y, x), value) in plane.indexed_iter() {
                    v[[y * w + x, c]] = *value;
                }
            }
            v
        };
        let vectors = flat(&activations);
        let g = flat(&gradients);
        let z = sae.encode(sae.normalise(vectors).view());
        // contribution of latent j at position p
        let mut per_latent = vec![0.0f32; sae.latents()];
        let mut cells: Vec<(usize, usize, f32)> = Vec::new();
        for (p, row) in z.rows().into_iter().enumerate() {
            for (j, &value) in row.iter().enumerate() {
                if value > 0.0 {
                    let c = value * sae.w_dec.row(j).dot(&g.row(p)) / sae.header.scale;
                    per_latent[j] += c;
                    cells.push((p, j, c));
                }
            }
        }
        let top = if self.top == 0 { 8 } else { self.top };
        let mut order: Vec<usize> = (0..per_latent.len())
            .filter(|j| per_latent[*j] > 0.0)
            .collect();
        order.sort_by(|a, b| per_latent[*b].total_cmp(&per_latent[*a]).then(a.cmp(b)));
        order.truncate(top);
        let upsample = |grid: &Array2<f32>| {
            resize_bilinear(grid.view(), manifest.input.height, manifest.input.width)
                .mapv(|v| v.max(0.0))
        };
        let mut grid = Array2::<f32>::zeros((h, w));
        let mut leading: Vec<Array2<f32>> = vec![Array2::zeros((h, w)); order.len().min(3)];
        for &(p, j, c) in &cells {
            if c <= 0.0 {
                continue;
            }
            if let Some(rank) = order.iter().position(|o| *o == j) {
                grid[[p / w, p % w]] += c;
                if let Some(part) = leading.get_mut(rank) {
                    part[[p / w, p % w]] += c;
                }
            }
        }
        let heat = upsample(&grid);
        check_finite(NAME, &heat)?;
        let concepts: Vec<ConceptShare> = order
            .iter()
            .map(|&j| {
                let concept = sae.concepts.get(j);
                ConceptShare {
                    latent: j,
                    contribution: per_latent[j],
                    label: concept.map(|c| c.label(&sae.header.labels)),
                    in_brain_share: concept.and_then(|c| c.in_brain_share),
                    outside_brain: concept.is_some_and(|c| c.outside_brain()),
                }
            })
            .collect();
        Ok(ModelMap {
            heat,
            target_layer: Some(feature),
            parameters: serde_json::json!({
                "sae": path.display().to_string(),
                "latents": sae.latents(),
                "sparsity": sae.header.sparsity,
                "top": top,
                "concepts": concepts,
            }),
            passes: 2,
            parts: leading
                .iter()
                .zip(&concepts)
                .map(|(part, concept)| MapPart {
                    name: concept
                        .label
                        .clone()
                        .unwrap_or_else(|| format!("concept {}", concept.latent)),
                    outside_brain: concept.outside_brain,
                    heat: upsample(part),
                })
                .collect(),
        })
    }
}
