//! Preprocessing per manifest: the windowed [0, 1] slice resized to the model's size with
//! Pillow's bilinear filter, replicated to the model's channels, normalised with the
//! manifest's mean and standard deviation, in the manifest's layout.
//!
//! The resize reproduces Pillow's `Image.resize(..., BILINEAR)` on a float image: a separable
//! triangle filter whose support widens with the reduction factor (so downscaling averages,
//! as Pillow does, instead of sampling), horizontal pass first, in double precision. Models
//! trained on PIL-resized images then see the same pixels here.

use ndarray::{Array2, Array3, Array4, ArrayView2, ArrayView3, Axis};

use super::manifest::{InputSpec, Layout};

/// Pillow's bilinear (triangle) filter.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

/// For each output index, the first input index and the normalised weights.
fn resample_weights(input: usize, output: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    (0..output)
        .map(|out| {
            let center = (out as f64 + 0.5) * scale;
            // C truncation as in Pillow; clamped to the image
            let first = ((center - support + 0.5).trunc().max(0.0)) as usize;
            let last = ((center + support + 0.5).trunc() as usize).min(input);
            let mut weights: Vec<f64> = (first..last)
                .map(|x| triangle((x as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (first, weights)
        })
        .collect()
}

/// Resizes a plane to `height` x `width` exactly as Pillow's BILINEAR does for mode "F".
pub fn resize_bilinear(plane: ArrayView2<'_, f32>, height: usize, width: usize) -> Array2<f32> {
    let (rows, columns) = plane.dim();
    let horizontal = resample_weights(columns, width);
    let mut across = Array2::<f64>::zeros((rows, width));
    for (row, mut out_row) in across.outer_iter_mut().enumerate() {
        for (out, (first, weights)) in out_row.iter_mut().zip(&horizontal) {
            *out = weights
                .iter()
                .enumerate()
                .map(|(i, w)| w * f64::from(plane[[row, first + i]]))
                .sum();
        }
    }
    // Pillow stores the intermediate image in the image's own type: float32 for mode "F"
    across.mapv_inplace(|v| f64::from(v as f32));
    let vertical = resample_weights(rows, height);
    let mut out = Array2::<f32>::zeros((height, width));
    for (out_row, (first, weights)) in vertical.iter().enumerate() {
        for column in 0..width {
            let value: f64 = weights
                .iter()
                .enumerate()
                .map(|(i, w)| w * across[[first + i, column]])
                .sum();
            out[[out_row, column]] = value as f32;
        }
    }
    out
}

/// One model input from a windowed [0, 1] slice: resized, replicated, normalised, laid out
/// as the manifest says (`[H, W, C]` for NHWC, `[C, H, W]` for NCHW).
pub fn model_input(grey: ArrayView2<'_, f32>, spec: &InputSpec) -> Array3<f32> {
    let resized = resize_bilinear(grey, spec.height, spec.width);
    let channel = |c: usize| resized.mapv(|v| (v - spec.mean[c]) / spec.std[c]);
    let planes: Vec<Array2<f32>> = (0..spec.channels).map(channel).collect();
    let views: Vec<ArrayView2<f32>> = planes.iter().map(|p| p.view()).collect();
    let axis = match spec.layout {
        Layout::Nhwc => Axis(2),
        Layout::Nchw => Axis(0),
    };
    // stacking equal-shaped planes cannot fail
    ndarray::stack(axis, &views).unwrap_or_else(|_| Array3::zeros((0, 0, 0)))
}

/// A batch from single inputs (all of one model's shape).
pub fn batch(inputs: &[ArrayView3<'_, f32>]) -> Array4<f32> {
    ndarray::stack(Axis(0), inputs).unwrap_or_else(|_| Array4::zeros((0, 0, 0, 0)))
}

/// The grey value (windowed [0, 1]) that a model-space value of channel `c` came from.
pub fn to_grey(value: f32, spec: &InputSpec, c: usize) -> f32 {
    value * spec.std[c] + spec.mean[c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_size_is_identity() {
        let plane = Array2::from_shape_fn((7, 5), |(r, c)| (r * 5 + c) as f32 / 34.0);
        assert_eq!(resize_bilinear(plane.view(), 7, 5), plane);
    }

    #[test]
    fn constant_stays_constant_and_weights_sum_to_one() {
        let plane = Array2::from_elem((64, 64), 0.25f32);
        for (h, w) in [(240, 240), (17, 31), (64, 200)] {
            let out = resize_bilinear(plane.view(), h, w);
            assert!(out.iter().all(|v| (v - 0.25).abs() < 1e-6), "{h}x{w}");
        }
        for (input, output) in [(512, 240), (64, 240), (240, 240)] {
            for (_, weights) in resample_weights(input, output) {
                assert!((weights.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            }
        }
    }
}
