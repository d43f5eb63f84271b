//! Training a sparse autoencoder: mini-batch Adam on hand-written gradients.
//!
//! Loss of a batch of `B` normalised vectors (`e = x_hat - x`):
//!
//! ```text
//! L = (1/B) sum_b ||e_b||^2                                  reconstruction
//!   + l1 (1/B) sum_b sum_j z_bj                              ReLU variant only
//!   + aux (1/B) sum_b ||(x_b - x_hat_b) - W_dec^T z_aux_b||^2  TopK variant, when latents are dead
//! ```
//!
//! The auxiliary term (AuxK, after Gao et al. 2024) asks the `k_aux` largest pre-activations
//! of the *dead* latents (not active on any of the last `dead_after` training vectors) to
//! explain what the active ones missed; its target is a constant, so only the dead latents
//! learn from it, and they come back to life. Decoder rows are kept at unit norm: the
//! gradient's component along each row is removed before the step and rows are renormalised
//! after it (otherwise the L1 penalty, or the TopK scale, could shrink codes by growing rows).
//!
//! Backward, for the active set `A_b` of each vector (only those latents carry gradient):
//!
//! ```text
//! G_b        = 2 e_b / B
//! dz_bj      = G_b . W_dec_j (+ l1 / B)                  j in A_b
//! dW_dec_j  += z_bj G_b           db_pre += sum_b G_b
//! dW_enc_j  += dz_bj (x_b - b_pre)   db_enc_j += dz_bj   db_pre -= dz_bj W_enc_j
//! ```
//!
//! Only the encoder's forward product is dense (`B x d x n`); everything else costs
//! `B x k x d`. Each gradient is checked against central differences in the tests.

use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView2, Axis, s};

use super::{SaeHeader, SparseAutoencoder, Sparsity, sparsify};
use crate::noise::NoiseSource;

/// How to train.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSettings {
    /// Latents (dictionary size).
    pub latents: usize,
    /// TopK or ReLU + L1.
    pub sparsity: Sparsity,
    /// Passes over the training vectors.
    pub epochs: usize,
    /// Vectors per step.
    pub batch: usize,
    /// Adam's learning rate (decayed linearly to zero over the last fifth of the steps).
    pub learning_rate: f32,
    /// Coefficient of the auxiliary loss (TopK only).
    pub aux_coefficient: f32,
    /// Latents revived at once by the auxiliary loss, per vector.
    pub aux_k: usize,
    /// A latent not active on this many consecutive training vectors is dead.
    pub dead_after: usize,
    /// Share of the vectors held out for the figures.
    pub held_out: f32,
    /// Seed of the initialisation, the split and the shuffles.
    pub seed: u64,
}

impl TrainSettings {
    /// Defaults for `latents` and `k`: 8 epochs of batches of 1024, Adam at 1e-3, AuxK with
    /// 1/32 and `2k` latents, dead after 20,000 vectors, 10% held out.
    pub fn top_k(latents: usize, k: usize, seed: u64) -> TrainSettings {
        TrainSettings {
            latents,
            sparsity: Sparsity::TopK { k },
            epochs: 8,
            batch: 1024,
            learning_rate: 1e-3,
            aux_coefficient: 1.0 / 32.0,
            aux_k: 2 * k,
            dead_after: 20_000,
            held_out: 0.1,
            seed,
        }
    }
}

/// What training achieved, on the held-out vectors.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TrainReport {
    /// Fraction of the variance of the held-out vectors explained.
    pub r2: f64,
    /// Mean number of active latents per held-out vector.
    pub l0: f64,
    /// Share of latents never active on the held-out vectors.
    pub dead_fraction: f64,
    /// Training vectors.
    pub vectors: usize,
    /// Held-out vectors.
    pub held_out: usize,
    /// Epochs run.
    pub epochs: usize,
    /// Mean training loss of each epoch.
    pub losses: Vec<f64>,
    /// Wall time of training.
    pub seconds: f64,
    /// Training vectors processed per second (all epochs).
    pub vectors_per_second: f64,
}

/// Gradients of the loss with respect to every parameter.
#[derive(Debug, Clone)]
pub struct Gradients {
    /// d L / d W_enc.
    pub w_enc: Array2<f32>,
    /// d L / d b_enc.
    pub b_enc: Array1<f32>,
    /// d L / d W_dec.
    pub w_dec: Array2<f32>,
    /// d L / d b_pre.
    pub b_pre: Array1<f32>,
}

/// An untrained SAE for `dimensions`-dimensional vectors: random unit decoder rows, the
/// encoder their transpose, `b_pre` the mean of `data`.
pub fn initialise(
    dimensions: usize,
    latents: usize,
    sparsity: Sparsity,
    data: &Array2<f32>,
    seed: u64,
) -> SparseAutoencoder {
    let mut noise = NoiseSource::new(seed);
    let mut w_dec = Array2::from_shape_simple_fn((latents, dimensions), || noise.normal());
    normalise_rows(&mut w_dec);
    let b_pre = data
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(dimensions));
    SparseAutoencoder {
        header: SaeHeader {
            model: String::new(),
            model_sha256: None,
            tensor: String::new(),
            layout: String::new(),
            dimensions,
            latents,
            sparsity,
            scale: 1.0,
            labels: Vec::new(),
            training: serde_json::Value::Null,
        },
        w_enc: w_dec.clone(),
        b_enc: Array1::zeros(latents),
        w_dec,
        b_pre,
        concepts: Vec::new(),
    }
}

fn normalise_rows(w: &mut Array2<f32>) {
    for mut row in w.rows_mut() {
        let norm = row.dot(&row).sqrt();
        if norm > 0.0 {
            row.mapv_inplace(|v| v / norm);
        }
    }
}

/// The active latents of each row of `z`: (latent, value) with value > 0.
fn active(z: &Array2<f32>) -> Vec<Vec<(usize, f32)>> {
    z.rows()
        .into_iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|(_, v)| **v > 0.0)
                .map(|(j, v)| (j, *v))
                .collect()
        })
        .collect()
}

/// `sum_j z_bj W_dec_j` for each row b (no bias).
fn decode_sparse(codes: &[Vec<(usize, f32)>], w_dec: &Array2<f32>) -> Array2<f32> {
    let mut out = Array2::<f32>::zeros((codes.len(), w_dec.ncols()));
    for (mut row, code) in out.rows_mut().into_iter().zip(codes) {
        for &(j, z) in code {
            row.scaled_add(z, &w_dec.row(j));
        }
    }
    out
}

/// The loss of a batch and its gradients; `dead` marks the dead latents (for AuxK).
pub fn loss_and_gradients(
    sae: &SparseAutoencoder,
    x: ArrayView2<f32>,
    dead: &[bool],
    settings: &TrainSettings,
) -> (f64, Gradients, Vec<Vec<(usize, f32)>>) {
    loss_with_target(sae, x, dead, settings, None)
}

/// [`loss_and_gradients`], with the auxiliary target given (the gradient treats it as a
/// constant; the tests hold it fixed to check that).
fn loss_with_target(
    sae: &SparseAutoencoder,
    x: ArrayView2<f32>,
    dead: &[bool],
    settings: &TrainSettings,
    aux_target: Option<&Array2<f32>>,
) -> (f64, Gradients, Vec<Vec<(usize, f32)>>) {
    let batch = x.nrows().max(1) as f32;
    let centred = &x - &sae.b_pre.view().insert_axis(Axis(0));
    let mut pre = centred.dot(&sae.w_enc.t());
    pre += &sae.b_enc.view().insert_axis(Axis(0));
    let mut z = pre.clone();
    sparsify(&mut z, settings.sparsity);
    let codes = active(&z);
    let mut reconstruction = decode_sparse(&codes, &sae.w_dec);
    reconstruction += &sae.b_pre.view().insert_axis(Axis(0));
    let error = &reconstruction - &x;
    let mut loss: f64 = error.iter().map(|e| f64::from(*e).powi(2)).sum::<f64>() / f64::from(batch);
    let l1 = match settings.sparsity {
        Sparsity::Relu { l1 } => l1,
        Sparsity::TopK { .. } => 0.0,
    };
    if l1 > 0.0 {
        let total: f64 = codes.iter().flatten().map(|(_, v)| f64::from(*v)).sum();
        loss += f64::from(l1) * total / f64::from(batch);
    }
    let mut grads = Gradients {
        w_enc: Array2::zeros(sae.w_enc.raw_dim()),
        b_enc: Array1::zeros(sae.b_enc.raw_dim()),
        w_dec: Array2::zeros(sae.w_dec.raw_dim()),
        b_pre: Array1::zeros(sae.b_pre.raw_dim()),
    };
    let g = error.mapv(|e| 2.0 * e / batch);
    grads.b_pre += &g.sum_axis(Axis(0));
    backward_codes(sae, &codes, &g, &centred, l1 / batch, &mut grads);

    // AuxK: the dead latents explain what the live ones missed
    let any_dead = dead.iter().any(|d| *d);
    if let (Sparsity::TopK { .. }, true) = (settings.sparsity, any_dead)
        && settings.aux_coefficient > 0.0
        && settings.aux_k > 0
    {
        let mut aux = pre;
        for mut row in aux.rows_mut() {
            for (v, is_dead) in row.iter_mut().zip(dead) {
                if !is_dead {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        sparsify(&mut aux, Sparsity::TopK { k: settings.aux_k });
        aux.mapv_inplace(|v| if v.is_finite() { v } else { 0.0 });
        let aux_codes = active(&aux);
        // what the live latents missed: a constant target
        let residual = aux_target.cloned().unwrap_or_else(|| &x - &reconstruction);
        let aux_error = &decode_sparse(&aux_codes, &sae.w_dec) - &residual;
        let alpha = settings.aux_coefficient;
        loss += f64::from(alpha) * aux_error.iter().map(|e| f64::from(*e).powi(2)).sum::<f64>()
            / f64::from(batch);
        let g_aux = aux_error.mapv(|e| 2.0 * alpha * e / batch);
        backward_codes(sae, &aux_codes, &g_aux, &centred, 0.0, &mut grads);
    }
    (loss, grads, codes)
}

/// Accumulates the gradients that flow from output gradients `g` through the codes.
fn backward_codes(
    sae: &SparseAutoencoder,
    codes: &[Vec<(usize, f32)>],
    g: &Array2<f32>,
    centred: &Array2<f32>,
    l1_per_vector: f32,
    grads: &mut Gradients,
) {
    for (b, code) in codes.iter().enumerate() {
        let g_b = g.row(b);
        let x_b = centred.row(b);
        for &(j, z) in code {
            let dz = g_b.dot(&sae.w_dec.row(j)) + l1_per_vector;
            grads.w_dec.row_mut(j).scaled_add(z, &g_b);
            grads.w_enc.row_mut(j).scaled_add(dz, &x_b);
            grads.b_enc[j] += dz;
            grads.b_pre.scaled_add(-dz, &sae.w_enc.row(j));
        }
    }
}

/// Adam's moments of one tensor.
struct Moments<D: ndarray::Dimension> {
    m: ndarray::Array<f32, D>,
    v: ndarray::Array<f32, D>,
}

impl<D: ndarray::Dimension> Moments<D> {
    fn new(shape: D) -> Self {
        Moments {
            m: ndarray::Array::zeros(shape.clone()),
            v: ndarray::Array::zeros(shape),
        }
    }

    fn step(
        &mut self,
        parameter: &mut ndarray::Array<f32, D>,
        gradient: &ndarray::Array<f32, D>,
        lr: f32,
        t: i32,
    ) {
        const BETA1: f32 = 0.9;
        const BETA2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        let c1 = 1.0 - BETA1.powi(t);
        let c2 = 1.0 - BETA2.powi(t);
        ndarray::Zip::from(parameter)
            .and(&mut self.m)
            .and(&mut self.v)
            .and(gradient)
            .for_each(|p, m, v, g| {
                *m = BETA1 * *m + (1.0 - BETA1) * g;
                *v = BETA2 * *v + (1.0 - BETA2) * g * g;
                *p -= lr * (*m / c1) / ((*v / c2).sqrt() + EPS);
            });
    }
}

/// Trains on `data` (normalised vectors, one per row). `progress(epoch, done, total, loss)`
/// is called after each step.
pub fn train(
    data: &Array2<f32>,
    settings: &TrainSettings,
    mut progress: impl FnMut(usize, usize, usize, f64),
) -> Result<(SparseAutoencoder, TrainReport), super::SaeError> {
    let (count, dimensions) = data.dim();
    let training = |message: String| super::SaeError::Training { message };
    if count < 10 {
        return Err(training(format!(
            "{count} vectors: at least 10 are needed to train and hold out"
        )));
    }
    if let Sparsity::TopK { k } = settings.sparsity
        && (k == 0 || k > settings.latents)
    {
        return Err(training(format!(
            "k = {k} must be between 1 and the number of latents ({})",
            settings.latents
        )));
    }
    if settings.latents == 0 || settings.batch == 0 || settings.epochs == 0 {
        return Err(training(
            "latents, batch and epochs must be at least 1".to_string(),
        ));
    }
    // a seeded split: the held-out vectors are never trained on
    let mut noise = NoiseSource::new(settings.seed ^ 0x5EED_5A1E);
    let mut order: Vec<usize> = (0..count).collect();
    shuffle(&mut order, &mut noise);
    let held = ((count as f32 * settings.held_out).round() as usize).clamp(1, count - 1);
    let held_out = data.select(Axis(0), &order[..held]);
    let train_rows: Vec<usize> = order[held..].to_vec();
    let train_data = data.select(Axis(0), &train_rows);
    let n_train = train_data.nrows();

    let mut sae = initialise(
        dimensions,
        settings.latents,
        settings.sparsity,
        &train_data,
        settings.seed,
    );
    let mut adam_w_enc = Moments::new(sae.w_enc.raw_dim());
    let mut adam_b_enc = Moments::new(sae.b_enc.raw_dim());
    let mut adam_w_dec = Moments::new(sae.w_dec.raw_dim());
    let mut adam_b_pre = Moments::new(sae.b_pre.raw_dim());
    let mut since_fired = vec![0usize; settings.latents];
    let steps_per_epoch = n_train.div_ceil(settings.batch);
    let total_steps = steps_per_epoch * settings.epochs;
    let decay_from = total_steps * 4 / 5;
    let mut t = 0;
    let mut losses = Vec::new();
    let started = Instant::now();
    let mut indices: Vec<usize> = (0..n_train).collect();
    for epoch in 0..settings.epochs {
        shuffle(&mut indices, &mut noise);
        let mut epoch_loss = 0.0;
        for (step, chunk) in indices.chunks(settings.batch).enumerate() {
            let x = train_data.select(Axis(0), chunk);
            let dead: Vec<bool> = since_fired
                .iter()
                .map(|s| *s >= settings.dead_after)
                .collect();
            let (loss, mut grads, codes) = loss_and_gradients(&sae, x.view(), &dead, settings);
            for s in since_fired.iter_mut() {
                *s += chunk.len();
            }
            for &(j, _) in codes.iter().flatten() {
                since_fired[j] = 0;
            }
            // keep the decoder rows on the unit sphere: no gradient along them
            for (mut g, w) in grads.w_dec.rows_mut().into_iter().zip(sae.w_dec.rows()) {
                let along = g.dot(&w);
                g.scaled_add(-along, &w);
            }
            t += 1;
            let lr = if t > decay_from {
                settings.learning_rate * (total_steps - t + 1) as f32
                    / (total_steps - decay_from).max(1) as f32
            } else {
                settings.learning_rate
            };
            adam_w_enc.step(&mut sae.w_enc, &grads.w_enc, lr, t as i32);
            adam_b_enc.step(&mut sae.b_enc, &grads.b_enc, lr, t as i32);
            adam_w_dec.step(&mut sae.w_dec, &grads.w_dec, lr, t as i32);
            adam_b_pre.step(&mut sae.b_pre, &grads.b_pre, lr, t as i32);
            normalise_rows(&mut sae.w_dec);
            epoch_loss += loss * chunk.len() as f64;
            progress(epoch, step + 1, steps_per_epoch, loss);
        }
        losses.push(epoch_loss / n_train as f64);
    }
    let seconds = started.elapsed().as_secs_f64();
    let (r2, l0, dead_fraction) = evaluate(&sae, &held_out);
    let report = TrainReport {
        r2,
        l0,
        dead_fraction,
        vectors: n_train,
        held_out: held,
        epochs: settings.epochs,
        losses,
        seconds,
        vectors_per_second: (n_train * settings.epochs) as f64 / seconds.max(1e-9),
    };
    Ok((sae, report))
}

/// Held-out figures: r2 (1 - residual / total variance), mean active latents, share of
/// latents never active.
pub fn evaluate(sae: &SparseAutoencoder, held_out: &Array2<f32>) -> (f64, f64, f64) {
    let mean = held_out
        .mean_axis(Axis(0))
        .unwrap_or_else(|| Array1::zeros(held_out.ncols()));
    let mut residual = 0.0f64;
    let mut total = 0.0f64;
    let mut active_count = 0usize;
    let mut fired = vec![false; sae.latents()];
    for start in (0..held_out.nrows()).step_by(1024) {
        let end = (start + 1024).min(held_out.nrows());
        let x = held_out.slice(s![start..end, ..]);
        let z = sae.encode(x);
        for row in z.rows() {
            for (j, v) in row.iter().enumerate() {
                if *v > 0.0 {
                    active_count += 1;
                    fired[j] = true;
                }
            }
        }
        let reconstruction = sae.decode(z.view());
        residual += (&reconstruction - &x)
            .iter()
            .map(|e| f64::from(*e).powi(2))
            .sum::<f64>();
        total += (&x - &mean.view().insert_axis(Axis(0)))
            .iter()
            .map(|e| f64::from(*e).powi(2))
            .sum::<f64>();
    }
    let n = held_out.nrows().max(1) as f64;
    let r2 = if total > 0.0 {
        1.0 - residual / total
    } else {
        0.0
    };
    let dead = fired.iter().filter(|f| !**f).count() as f64 / fired.len().max(1) as f64;
    (r2, active_count as f64 / n, dead)
}

fn shuffle(items: &mut [usize], noise: &mut NoiseSource) {
    for i in (1..items.len()).rev() {
        let j = (noise.uniform() * (i + 1) as f64) as usize;
        items.swap(i, j.min(i));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small SAE with distinct pre-activations, so that small steps keep the active set.
    fn fixture(sparsity: Sparsity) -> (SparseAutoencoder, Array2<f32>, TrainSettings) {
        let mut noise = NoiseSource::new(3);
        let data = Array2::from_shape_simple_fn((5, 6), || noise.normal());
        let mut sae = initialise(6, 10, sparsity, &data, 11);
        sae.b_enc = Array1::from_shape_simple_fn(10, || 0.3 * noise.normal());
        sae.b_pre.mapv_inplace(|v| v + 0.1);
        let mut settings = TrainSettings::top_k(10, 3, 0);
        settings.sparsity = sparsity;
        settings.aux_k = 2;
        settings.aux_coefficient = 0.5;
        (sae, data, settings)
    }

    /// Central differences of the loss along each parameter, against the analytic gradient.
    fn check(sparsity: Sparsity, dead: &[bool]) {
        let (sae, data, settings) = fixture(sparsity);
        let (_, grads, codes) = loss_and_gradients(&sae, data.view(), dead, &settings);
        // the auxiliary target is a constant of the step: hold it at its value here
        let mut target = data.clone();
        target -= &decode_sparse(&codes, &sae.w_dec);
        target -= &sae.b_pre.view().insert_axis(Axis(0));
        let loss = |s: &SparseAutoencoder| {
            loss_with_target(s, data.view(), dead, &settings, Some(&target)).0
        };
        let eps = 1e-3f32;
        let mut worst = 0.0f64;
        let mut compare = |analytic: f32, plus: f64, minus: f64, what: &str| {
            let numeric = (plus - minus) / (2.0 * f64::from(eps));
            let error = (numeric - f64::from(analytic)).abs() / (1e-2 + numeric.abs());
            assert!(
                error < 2e-2,
                "{what}: analytic {analytic}, numeric {numeric}"
            );
            worst = worst.max(error);
        };
        for index in [(0, 0), (3, 2), (7, 5), (9, 1)] {
            for which in ["w_enc", "w_dec"] {
                let mut plus = sae.clone();
                let mut minus = sae.clone();
                let (p, m, g) = match which {
                    "w_enc" => (&mut plus.w_enc, &mut minus.w_enc, &grads.w_enc),
                    _ => (&mut plus.w_dec, &mut minus.w_dec, &grads.w_dec),
                };
                p[index] += eps;
                m[index] -= eps;
                compare(
                    g[index],
                    loss(&plus),
                    loss(&minus),
                    &format!("{which}{index:?}"),
                );
            }
        }
        for i in 0..6 {
            let mut plus = sae.clone();
            let mut minus = sae.clone();
            plus.b_pre[i] += eps;
            minus.b_pre[i] -= eps;
            compare(
                grads.b_pre[i],
                loss(&plus),
                loss(&minus),
                &format!("b_pre[{i}]"),
            );
        }
        for j in 0..10 {
            let mut plus = sae.clone();
            let mut minus = sae.clone();
            plus.b_enc[j] += eps;
            minus.b_enc[j] -= eps;
            compare(
                grads.b_enc[j],
                loss(&plus),
                loss(&minus),
                &format!("b_enc[{j}]"),
            );
        }
    }

    #[test]
    fn topk_gradients_match_central_differences() {
        check(Sparsity::TopK { k: 3 }, &[false; 10]);
    }

    #[test]
    fn auxk_gradients_match_central_differences() {
        let dead: Vec<bool> = (0..10).map(|j| j % 3 == 0).collect();
        check(Sparsity::TopK { k: 3 }, &dead);
    }

    #[test]
    fn relu_l1_gradients_match_central_differences() {
        check(Sparsity::Relu { l1: 0.05 }, &[false; 10]);
    }

    /// Vectors made of k of N known atoms: training finds the atoms.
    #[test]
    fn training_recovers_a_known_sparse_dictionary() {
        let (atoms_n, d, k, count) = (24, 16, 3, 6000);
        let mut noise = NoiseSource::new(42);
        let mut atoms = Array2::from_shape_simple_fn((atoms_n, d), || noise.normal());
        normalise_rows(&mut atoms);
        let mut data = Array2::<f32>::zeros((count, d));
        for mut row in data.rows_mut() {
            let mut chosen = Vec::new();
            while chosen.len() < k {
                let a = (noise.uniform() * atoms_n as f64) as usize % atoms_n;
                if !chosen.contains(&a) {
                    chosen.push(a);
                }
            }
            for a in chosen {
                let c = 0.5 + noise.uniform() as f32;
                row.scaled_add(c, &atoms.row(a));
            }
            row.mapv_inplace(|v| v + 0.01 * noise.normal());
        }
        let mut settings = TrainSettings::top_k(48, k, 1);
        settings.epochs = 30;
        settings.batch = 256;
        settings.learning_rate = 3e-3;
        settings.dead_after = 2000;
        let (sae, report) = train(&data, &settings, |_, _, _, _| {}).expect("trains");
        let cosines: Vec<f32> = atoms
            .rows()
            .into_iter()
            .map(|atom| {
                sae.w_dec
                    .rows()
                    .into_iter()
                    .map(|row| row.dot(&atom))
                    .fold(f32::MIN, f32::max)
            })
            .collect();
        let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
        assert!(
            mean > 0.9,
            "mean best cosine {mean}: {cosines:?}; {report:?}"
        );
        assert!(report.r2 > 0.8, "{report:?}");
        assert!(report.l0 <= k as f64 + 1e-9, "{report:?}");
        assert!(report.losses.last() < report.losses.first(), "{report:?}");
    }
}
