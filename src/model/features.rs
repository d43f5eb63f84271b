//! The feature tensor a manifest names (`[explain] feature_tensor`), read as a grid of
//! channels x rows x columns whatever the model's layout: what CAM methods, Score-CAM and the
//! sparse autoencoders work on.

use ndarray::{Array3, ArrayD, Axis, Ix3};
use snafu::Snafu;

use super::manifest::FeatureLayout;

/// Why a feature tensor could not be read as a grid.
#[derive(Debug, Snafu)]
#[snafu(display("feature tensor shape {shape:?}: {reason}"))]
pub struct FeatureGridError {
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// What does not fit.
    pub reason: String,
}

/// One sample's feature tensor (`[1, ...]`) as channels x h x w, per `layout`; a token
/// tensor drops its class token and lays the patch tokens out on their square grid.
pub fn grid(tensor: &ArrayD<f32>, layout: FeatureLayout) -> Result<Array3<f32>, FeatureGridError> {
    let shape = tensor.shape().to_vec();
    let bad = |reason: String| FeatureGridError {
        shape: shape.clone(),
        reason,
    };
    match (layout, shape.as_slice()) {
        (FeatureLayout::Nchw, [1, _, _, _]) => Ok(tensor
            .index_axis(Axis(0), 0)
            .into_dimensionality::<Ix3>()
            .map_err(|e| bad(e.to_string()))?
            .to_owned()),
        (FeatureLayout::Nhwc, [1, _, _, _]) => Ok(tensor
            .index_axis(Axis(0), 0)
            .into_dimensionality::<Ix3>()
            .map_err(|e| bad(e.to_string()))?
            .permuted_axes([2, 0, 1])
            .as_standard_layout()
            .into_owned()),
        (FeatureLayout::Tokens, [1, tokens, channels]) => {
            let patches = tokens.saturating_sub(1);
            let side = (patches as f64).sqrt().round() as usize;
            if side * side != patches || side == 0 {
                return Err(bad(format!(
                    "{patches} patch tokens after the class token do not form a square grid"
                )));
            }
            let tokens_view = tensor.index_axis(Axis(0), 0);
            let mut grid = Array3::<f32>::zeros((*channels, side, side));
            for (p, token) in tokens_view.outer_iter().skip(1).enumerate() {
                grid.slice_mut(ndarray::s![.., p / side, p % side])
                    .assign(&token);
            }
            Ok(grid)
        }
        _ => Err(bad(format!("does not fit feature_layout {layout:?}"))),
    }
}
