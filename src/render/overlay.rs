//! The overlay: the heat map normalised, coloured and blended over the grey slice, upscaled
//! onto a canvas with the legend band below it.
//!
//! ## Blending
//!
//! The heat map is divided by its maximum, so `t = heat / max(heat)` is in [0, 1] and the
//! strongest evidence of every slice reads the same. Each pixel is then
//!
//! ```text
//! alpha = opacity * t
//! out   = (1 - alpha) * grey + alpha * colour_map(t)
//! ```
//!
//! Alpha proportional to the evidence keeps the anatomy visible: where the evidence is weak
//! the overlay is nearly transparent and the slice shows through unchanged, and even at the
//! strongest evidence `1 - opacity` of the grey remains. A constant alpha would tint the whole
//! slice with the map's "low" colour and hide the anatomy the radiologist needs to judge the
//! evidence against. A heat map that is zero everywhere colours nothing, and the legend says
//! "no evidence".
//!
//! Grey levels become bytes as `round(255 * clamp(grey, 0, 1))`; blending is done in floating
//! point on those bytes and rounded once.
//!
//! ## Canvas
//!
//! The slice is upscaled by the smallest integer factor that makes it at least [`MIN_WIDTH`]
//! pixels wide ([`upscale_factor`]), nearest neighbour: each source pixel becomes a k x k
//! block, so no value shown is interpolated. The legend band ([`super::legend`]) follows below
//! the image, never over it.

use image::RgbImage as Canvas;
use ndarray::ArrayView2;
use snafu::ensure;

use super::colour::ColourMap;
use super::font::Font;
use super::legend::{self, Legend};
use super::text::blend;
use super::{
    CanvasTooLargeSnafu, EmptySliceSnafu, NegativeHeatSnafu, NonFiniteGreySnafu,
    NonFiniteHeatSnafu, OpacitySnafu, RenderError, ShapeMismatchSnafu,
};
use crate::dicom::secondary_capture::RgbImage;

/// The narrowest image region: slices narrower than this are upscaled.
pub const MIN_WIDTH: u32 = 512;

/// The largest canvas side a DICOM image can hold (Rows and Columns are 16-bit).
const MAX_SIDE: u64 = u16::MAX as u64;

/// How the heat map is drawn.
#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    /// The colour map for the heat.
    pub colour_map: ColourMap,
    /// The alpha of the strongest evidence, in [0, 1] (0 shows the grey slice alone).
    pub opacity: f32,
}

/// The integer factor that makes `columns` at least [`MIN_WIDTH`] wide (1 when it already
/// is).
pub fn upscale_factor(columns: usize) -> u32 {
    let columns = columns.max(1) as u64;
    MIN_WIDTH.div_ceil(columns.min(u64::from(MIN_WIDTH)) as u32)
}

/// Renders the overlay of `heat` on `grey` (both rows x columns; grey in [0, 1], heat >= 0),
/// with the legend band below. See the module documentation for the blending and the canvas.
pub fn render_overlay(
    grey: ArrayView2<f32>,
    heat: ArrayView2<f32>,
    style: &Style,
    legend: &Legend,
    font: &Font,
) -> Result<RgbImage, RenderError> {
    let (rows, columns) = grey.dim();
    let max_heat = validate(grey, heat, style)?;
    let has_evidence = max_heat > 0.0;

    let k = upscale_factor(columns);
    let width = columns as u64 * u64::from(k);
    let image_height = rows as u64 * u64::from(k);
    ensure!(
        width <= MAX_SIDE,
        CanvasTooLargeSnafu {
            rows: image_height,
            columns: width,
        }
    );
    let band = legend::layout(legend, has_evidence, width as u32, font)?;
    let height = image_height + u64::from(band.height);
    ensure!(
        height <= MAX_SIDE,
        CanvasTooLargeSnafu {
            rows: height,
            columns: width,
        }
    );

    let mut canvas = Canvas::new(width as u32, height as u32);
    paint(&mut canvas, grey, heat, max_heat, style, k, (0, 0));
    legend::draw(
        &mut canvas,
        &band,
        image_height as u32,
        &style.colour_map,
        font,
    );
    Ok(RgbImage {
        rows: height as u32,
        columns: width as u32,
        pixels: canvas.into_raw(),
    })
}

/// Checks that `grey` and `heat` can be drawn together with `style`; the heat's maximum.
pub(crate) fn validate(
    grey: ArrayView2<f32>,
    heat: ArrayView2<f32>,
    style: &Style,
) -> Result<f32, RenderError> {
    let (rows, columns) = grey.dim();
    ensure!(
        grey.dim() == heat.dim(),
        ShapeMismatchSnafu {
            grey: grey.dim(),
            heat: heat.dim(),
        }
    );
    ensure!(rows > 0 && columns > 0, EmptySliceSnafu { rows, columns });
    ensure!(
        (0.0..=1.0).contains(&style.opacity),
        OpacitySnafu {
            opacity: style.opacity
        }
    );
    if let Some(((row, column), &value)) = grey.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return NonFiniteGreySnafu { row, column, value }.fail();
    }
    let mut max_heat = 0.0_f32;
    for ((row, column), &value) in heat.indexed_iter() {
        ensure!(value.is_finite(), NonFiniteHeatSnafu { row, column, value });
        ensure!(value >= 0.0, NegativeHeatSnafu { row, column, value });
        max_heat = max_heat.max(value);
    }
    Ok(max_heat)
}

/// Paints `heat` blended over `grey` onto `canvas`, each pixel a `k` x `k` block, the
/// top-left corner at `origin` (x, y). A zero `max_heat` paints the grey slice alone.
pub(crate) fn paint(
    canvas: &mut Canvas,
    grey: ArrayView2<f32>,
    heat: ArrayView2<f32>,
    max_heat: f32,
    style: &Style,
    k: u32,
    origin: (u32, u32),
) {
    let has_evidence = max_heat > 0.0;
    for ((row, column), &g) in grey.indexed_iter() {
        let level = (g.clamp(0.0, 1.0) * 255.0).round() as u8;
        let grey_rgb = [level; 3];
        let rgb = if has_evidence {
            let t = heat[[row, column]] / max_heat;
            blend(grey_rgb, style.colour_map.rgb(t), style.opacity * t)
        } else {
            grey_rgb
        };
        let (x0, y0) = (origin.0 + column as u32 * k, origin.1 + row as u32 * k);
        for y in y0..y0 + k {
            for x in x0..x0 + k {
                canvas.put_pixel(x, y, image::Rgb(rgb));
            }
        }
    }
}
