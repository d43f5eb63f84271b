//! The summary picture of one explained slice: the slice and every method's map side by side,
//! each titled, with the legend band below, so a viewer compares the methods at a glance.
//!
//! ```text
//! +------------+------------+------------+------------+
//! | slice      | gradcam    | saliency   | occlusion  |  title (bold) and caption
//! | (caption)  | in brain.. | in brain.. | in brain.. |  (quality, wrapped)
//! | [grey]     | [overlay]  | [overlay]  | [overlay]  |  tiles: the slice upscaled by
//! +------------+------------+------------+------------+  an integer factor, nearest
//! | ...        |            |            |            |  neighbour, as in the overlay
//! +---------------------------------------------------+
//! | NOT FOR DIAGNOSTIC USE / UNTRAINED MODEL / ...    |  the legend band of [`super::legend`]
//! +---------------------------------------------------+
//! ```
//!
//! Every tile is blended exactly as a single overlay ([`super::overlay`]): each map is
//! normalised by its own maximum, so the tiles show where each method puts its evidence,
//! not how much. At most [`MAX_COLUMNS`] tiles per row.

use image::{Rgb, RgbImage as Canvas};
use ndarray::ArrayView2;
use snafu::ensure;

use super::font::Font;
use super::legend::{self, BACKGROUND, Legend};
use super::overlay::{self, Style};
use super::text::{self, Face};
use super::{CanvasTooLargeSnafu, RenderError};
use crate::dicom::secondary_capture::RgbImage;

/// Tiles per row, at most.
pub const MAX_COLUMNS: usize = 4;
/// The narrowest tile: slices narrower than this are upscaled by an integer factor.
pub const MIN_TILE_WIDTH: u32 = 256;

const TITLE_TEXT: [u8; 3] = [240, 240, 240];
const CAPTION_TEXT: [u8; 3] = [185, 190, 198];
const FLAG_TEXT: [u8; 3] = [255, 196, 87];

/// One method's tile.
#[derive(Debug, Clone)]
pub struct Panel<'a> {
    /// The method's name, the tile's title.
    pub title: String,
    /// A short line under the title (e.g. the quality figures).
    pub caption: String,
    /// True when the caption reports a problem (drawn in the notes' amber).
    pub flagged: bool,
    /// The map on the slice's grid, >= 0.
    pub heat: ArrayView2<'a, f32>,
}

/// Renders the slice and `panels` side by side, with `legend`'s band below.
pub fn render_summary(
    grey: ArrayView2<f32>,
    panels: &[Panel],
    style: &Style,
    legend: &Legend,
    font: &Font,
) -> Result<RgbImage, RenderError> {
    let (rows, columns) = grey.dim();
    let mut maxima = Vec::with_capacity(panels.len());
    for panel in panels {
        maxima.push(overlay::validate(grey, panel.heat, style)?);
    }
    // the bare slice validates like a map that is zero everywhere
    let zeros = ndarray::Array2::<f32>::zeros((rows, columns));
    overlay::validate(grey, zeros.view(), style)?;

    let k = MIN_TILE_WIDTH.div_ceil((columns as u32).clamp(1, MIN_TILE_WIDTH));
    let tile_width = columns as u64 * u64::from(k);
    let tile_height = rows as u64 * u64::from(k);
    let tiles = panels.len() + 1;
    let grid_columns = tiles.min(MAX_COLUMNS);
    let grid_rows = tiles.div_ceil(grid_columns);
    let gutter = (tile_width / 32).max(4);
    let width = grid_columns as u64 * (tile_width + gutter) + gutter;
    ensure!(
        tile_width <= u64::from(u16::MAX) && width <= u64::from(u16::MAX),
        CanvasTooLargeSnafu {
            rows: tile_height,
            columns: width,
        }
    );

    let title_face = Face {
        size: (tile_width as f32 / 14.0).round().clamp(11.0, 32.0),
        bold: true,
    };
    let caption_face = Face {
        size: (tile_width as f32 / 20.0).round().clamp(10.0, 24.0),
        bold: false,
    };
    let usable = (tile_width as u32).saturating_sub(4).max(1);
    let mut headers = vec![(
        "slice".to_string(),
        text::wrap(font, caption_face, "as stored, windowed", usable),
        false,
    )];
    for panel in panels {
        headers.push((
            panel.title.clone(),
            text::wrap(font, caption_face, &panel.caption, usable),
            panel.flagged,
        ));
    }
    let title_height = text::line_height(font, title_face);
    let caption_line = text::line_height(font, caption_face);
    let caption_lines = headers.iter().map(|h| h.1.len()).max().unwrap_or(0) as u32;
    let header_height = u64::from(title_height + caption_lines * caption_line + 2 * 4);
    let cell_height = header_height + tile_height + gutter;
    let grid_height = grid_rows as u64 * cell_height + gutter;

    let band = legend::layout(legend, maxima.iter().any(|m| *m > 0.0), width as u32, font)?;
    let height = grid_height + u64::from(band.height);
    ensure!(
        height <= u64::from(u16::MAX),
        CanvasTooLargeSnafu {
            rows: height,
            columns: width,
        }
    );

    let mut canvas = Canvas::from_pixel(width as u32, height as u32, Rgb(BACKGROUND));
    for (tile, (title, caption, flagged)) in headers.iter().enumerate() {
        let x = (gutter + (tile % grid_columns) as u64 * (tile_width + gutter)) as u32;
        let y = (gutter + (tile / grid_columns) as u64 * cell_height) as u32;
        let mut line_y = y + 4;
        let title: String = fitted(font, title_face, title, usable);
        text::draw(
            &mut canvas,
            font,
            title_face,
            (x as i32, line_y as i32),
            &title,
            TITLE_TEXT,
        );
        line_y += title_height;
        let colour = if *flagged { FLAG_TEXT } else { CAPTION_TEXT };
        for line in caption {
            text::draw(
                &mut canvas,
                font,
                caption_face,
                (x as i32, line_y as i32),
                line,
                colour,
            );
            line_y += caption_line;
        }
        let origin = (x, y + header_height as u32);
        match tile.checked_sub(1) {
            None => overlay::paint(&mut canvas, grey, zeros.view(), 0.0, style, k, origin),
            Some(i) => overlay::paint(
                &mut canvas,
                grey,
                panels[i].heat,
                maxima[i],
                style,
                k,
                origin,
            ),
        }
    }
    legend::draw(
        &mut canvas,
        &band,
        grid_height as u32,
        &style.colour_map,
        font,
    );
    Ok(RgbImage {
        rows: height as u32,
        columns: width as u32,
        pixels: canvas.into_raw(),
    })
}

/// `line` shortened with an ellipsis until it fits in `width` (titles never wrap).
fn fitted(font: &Font, face: Face, line: &str, width: u32) -> String {
    if text::measure(font, face, line).width <= width {
        return line.to_string();
    }
    let mut chars: Vec<char> = line.chars().collect();
    while !chars.is_empty() {
        chars.pop();
        let candidate: String = chars.iter().collect::<String>() + "\u{2026}";
        if text::measure(font, face, &candidate).width <= width {
            return candidate;
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::ColourMap;
    use ndarray::Array2;

    fn style() -> Style {
        Style {
            colour_map: ColourMap::by_name("inferno").expect("colour map"),
            opacity: 0.6,
        }
    }

    fn legend() -> Legend {
        Legend {
            model_name: "m".into(),
            model_version: "1".into(),
            trained: false,
            method: "summary".into(),
            class_label: "glioma".into(),
            probability: 0.9,
            notes: vec![],
        }
    }

    fn pixel(image: &RgbImage, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * image.columns + x) * 3) as usize;
        [image.pixels[i], image.pixels[i + 1], image.pixels[i + 2]]
    }

    /// Each tile shows its own map where it belongs; the first tile is the bare slice.
    #[test]
    fn tiles_hold_the_slice_and_each_map_in_place() {
        let Ok(font) = Font::find(None) else {
            panic!("no font: install fonts-dejavu-core (make setup does)");
        };
        let grey = Array2::<f32>::from_elem((64, 96), 0.5);
        let mut left = Array2::<f32>::zeros((64, 96));
        left[[10, 10]] = 1.0;
        let mut right = Array2::<f32>::zeros((64, 96));
        right[[50, 90]] = 1.0;
        let panels = [
            Panel {
                title: "a".into(),
                caption: "in brain 100%".into(),
                flagged: false,
                heat: left.view(),
            },
            Panel {
                title: "b".into(),
                caption: "evidence outside the brain".into(),
                flagged: true,
                heat: right.view(),
            },
        ];
        let image =
            render_summary(grey.view(), &panels, &style(), &legend(), &font).expect("summary");
        let k = MIN_TILE_WIDTH.div_ceil(96);
        let tile_width = 96 * k;
        let gutter = (tile_width / 32).max(4);
        assert_eq!(image.columns, 3 * (tile_width + gutter) + gutter);
        // find the first tile's top row: the first grey row below the header in column gutter
        let top = (0..image.rows)
            .find(|&y| pixel(&image, gutter, y) == [128, 128, 128])
            .expect("the slice tile");
        let at = |tile: u32, row: u32, column: u32| {
            pixel(
                &image,
                gutter + tile * (tile_width + gutter) + column * k + k / 2,
                top + row * k + k / 2,
            )
        };
        assert_eq!(at(0, 10, 10), [128, 128, 128], "the slice tile is bare");
        assert_ne!(at(1, 10, 10), [128, 128, 128], "map a at its evidence");
        assert_eq!(at(1, 50, 90), [128, 128, 128], "map a elsewhere");
        assert_ne!(at(2, 50, 90), [128, 128, 128], "map b at its evidence");
        assert_eq!(at(2, 10, 10), [128, 128, 128], "map b elsewhere");
    }

    #[test]
    fn a_map_of_another_shape_is_refused() {
        let Ok(font) = Font::find(None) else {
            panic!("no font: install fonts-dejavu-core (make setup does)");
        };
        let grey = Array2::<f32>::from_elem((64, 64), 0.5);
        let heat = Array2::<f32>::zeros((32, 64));
        let panels = [Panel {
            title: "a".into(),
            caption: String::new(),
            flagged: false,
            heat: heat.view(),
        }];
        let error = render_summary(grey.view(), &panels, &style(), &legend(), &font)
            .expect_err("shape mismatch");
        assert!(
            matches!(error, RenderError::ShapeMismatch { .. }),
            "{error}"
        );
    }
}
