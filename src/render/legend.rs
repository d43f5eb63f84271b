//! The legend band below the image: what it says ([`Legend`]), where each piece goes
//! ([`layout`]) and drawing it ([`draw`]).
//!
//! Top to bottom: the "NOT FOR DIAGNOSTIC USE" banner (white on red, bold, the largest text),
//! the "UNTRAINED MODEL" banner when the weights are untrained (black on amber, the same size),
//! the prediction, the model and method, the colour bar with its "low" and "high" ends, and the
//! notes (quality flags, "no evidence") in amber.
//!
//! Sizes follow the canvas width (a viewer scales the whole picture to its viewport, so text
//! keeps its proportion to the image). Nothing is ever clipped: a banner shrinks until it fits
//! on one line (and wraps only below the body size), other lines wrap at spaces, and a word
//! too long for a line is broken between characters.

use image::{Rgb, RgbImage as Canvas};
use snafu::ensure;

use super::colour::ColourMap;
use super::font::Font;
use super::text::{self, Extent, Face};
use super::{BandTooNarrowSnafu, RenderError};
use crate::dicom::secondary_capture::{NOT_FOR_DIAGNOSTIC_USE, UNTRAINED};

/// The narrowest band [`layout`] supports.
pub const MIN_BAND_WIDTH: u32 = 128;

/// The band's background.
pub const BACKGROUND: [u8; 3] = [22, 24, 28];
/// The "NOT FOR DIAGNOSTIC USE" banner's background and text.
pub const WARNING: ([u8; 3], [u8; 3]) = ([190, 20, 30], [255, 255, 255]);
/// The "UNTRAINED MODEL" banner's background and text.
pub const UNTRAINED_WARNING: ([u8; 3], [u8; 3]) = ([255, 176, 0], [0, 0, 0]);
const TEXT: [u8; 3] = [240, 240, 240];
const SECONDARY_TEXT: [u8; 3] = [185, 190, 198];
const NOTE_TEXT: [u8; 3] = [255, 196, 87];
const BAR_OUTLINE: [u8; 3] = [140, 140, 140];

/// What the band says about the explanation shown above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Legend {
    /// The model's name (manifest `model.name`).
    pub model_name: String,
    /// The model's version (manifest `model.version`).
    pub model_version: String,
    /// Whether the model's weights are trained; untrained overlays say UNTRAINED MODEL.
    pub trained: bool,
    /// The explanation method (e.g. `gradcam`).
    pub method: String,
    /// The class explained.
    pub class_label: String,
    /// The model's probability for that class, in [0, 1].
    pub probability: f32,
    /// Further lines, e.g. quality flags ("most evidence lies outside the brain").
    pub notes: Vec<String>,
}

/// The second banner's text.
pub fn untrained_banner() -> String {
    format!("{UNTRAINED} MODEL")
}

/// A probability as a percentage with one decimal ("97.3%"), or "n/a" when not a number.
pub fn percent(probability: f32) -> String {
    if probability.is_finite() {
        format!("{:.1}%", probability * 100.0)
    } else {
        "n/a".to_string()
    }
}

/// A rectangle in band coordinates (y = 0 is the band's top row).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Columns.
    pub width: u32,
    /// Rows.
    pub height: u32,
}

/// One line of text and where it goes.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedText {
    /// The text.
    pub text: String,
    /// Left column of its box (band coordinates).
    pub x: i32,
    /// Top row of its box (band coordinates).
    pub y: i32,
    /// Size and weight.
    pub face: Face,
    /// Colour.
    pub colour: [u8; 3],
    /// The box it occupies, measured with the font.
    pub extent: Extent,
}

/// Where everything in the band goes.
#[derive(Debug, Clone, PartialEq)]
pub struct BandLayout {
    /// Columns (the canvas width).
    pub width: u32,
    /// Rows.
    pub height: u32,
    /// Solid fills (the banners), drawn before the text.
    pub fills: Vec<(Rect, [u8; 3])>,
    /// The colour bar, inside its one-pixel outline.
    pub colour_bar: Rect,
    /// Every line of text.
    pub texts: Vec<PlacedText>,
}

/// The sizes of a band, all derived from its width.
struct Metrics {
    body: f32,
    banner: f32,
    margin: u32,
    gap: u32,
    banner_padding: u32,
}

impl Metrics {
    fn for_width(width: u32) -> Metrics {
        let body = (width as f32 / 30.0).round().clamp(12.0, 40.0);
        Metrics {
            body,
            banner: (body * 1.5).round(),
            margin: (body * 0.8).round() as u32,
            gap: (body * 0.35).round() as u32,
            banner_padding: (body * 0.4).round() as u32,
        }
    }
}

/// Lays the band out for `legend` at `width` columns; `has_evidence` is false when the heat
/// map is zero everywhere (the band then says "no evidence").
pub fn layout(
    legend: &Legend,
    has_evidence: bool,
    width: u32,
    font: &Font,
) -> Result<BandLayout, RenderError> {
    ensure!(
        width >= MIN_BAND_WIDTH,
        BandTooNarrowSnafu {
            width,
            minimum: MIN_BAND_WIDTH
        }
    );
    let m = Metrics::for_width(width);
    let usable = width - 2 * m.margin;
    let mut band = BandLayout {
        width,
        height: 0,
        fills: Vec::new(),
        colour_bar: Rect::default(),
        texts: Vec::new(),
    };
    let mut y = 0_u32;

    // The banners: one size for both, the largest at which both fit on one line.
    let mut banners = vec![(NOT_FOR_DIAGNOSTIC_USE.to_string(), WARNING)];
    if !legend.trained {
        banners.push((untrained_banner(), UNTRAINED_WARNING));
    }
    let banner_size = banners
        .iter()
        .map(|(line, _)| text::fit(font, line, true, m.banner, m.body, usable))
        .try_fold(m.banner, |smallest, size| size.map(|s| smallest.min(s)))
        .unwrap_or(m.body);
    let banner_face = Face {
        size: banner_size,
        bold: true,
    };
    for (line, (background, foreground)) in banners {
        let top = y;
        y += m.banner_padding;
        for piece in text::wrap(font, banner_face, &line, usable) {
            let extent = text::measure(font, banner_face, &piece);
            band.texts.push(PlacedText {
                x: ((width - extent.width.min(width)) / 2) as i32,
                y: y as i32,
                text: piece,
                face: banner_face,
                colour: foreground,
                extent,
            });
            y += extent.height;
        }
        y += m.banner_padding;
        band.fills.push((
            Rect {
                x: 0,
                y: top,
                width,
                height: y - top,
            },
            background,
        ));
    }
    y += m.margin;

    let body = Face {
        size: m.body,
        bold: false,
    };
    let strong = Face {
        size: m.body,
        bold: true,
    };
    // A paragraph, wrapped; with a bullet, continuation lines align after the bullet.
    let paragraph = |band: &mut BandLayout,
                     y: &mut u32,
                     line: &str,
                     bullet: Option<&str>,
                     face: Face,
                     colour: [u8; 3]| {
        let indent = bullet.map_or(0, |b| text::measure(font, face, b).width);
        for (i, piece) in text::wrap(font, face, line, usable - indent)
            .into_iter()
            .enumerate()
        {
            let (piece, x) = match bullet {
                Some(b) if i == 0 => (format!("{b}{piece}"), m.margin),
                _ => (piece, m.margin + indent),
            };
            let extent = text::measure(font, face, &piece);
            band.texts.push(PlacedText {
                text: piece,
                x: x as i32,
                y: *y as i32,
                face,
                colour,
                extent,
            });
            *y += extent.height;
        }
        *y += m.gap;
    };
    let prediction = format!(
        "predicted: {} {}",
        legend.class_label,
        percent(legend.probability)
    );
    paragraph(&mut band, &mut y, &prediction, None, strong, TEXT);
    let provenance = format!(
        "{} v{} - {}",
        legend.model_name, legend.model_version, legend.method
    );
    paragraph(&mut band, &mut y, &provenance, None, body, SECONDARY_TEXT);

    // The colour bar: "low" [gradient] "high" on one row.
    y += m.gap;
    let row = text::line_height(font, body);
    let low = text::measure(font, body, "low");
    let high = text::measure(font, body, "high");
    let spacing = (m.body * 0.5).round() as u32;
    let bar_height = (m.body * 0.8).round() as u32;
    let bar_width = usable.saturating_sub(low.width + high.width + 2 * spacing + 2);
    band.texts.push(PlacedText {
        text: "low".into(),
        x: m.margin as i32,
        y: y as i32,
        face: body,
        colour: SECONDARY_TEXT,
        extent: low,
    });
    band.colour_bar = Rect {
        x: m.margin + low.width + spacing + 1,
        y: y + row.saturating_sub(bar_height) / 2,
        width: bar_width,
        height: bar_height,
    };
    band.texts.push(PlacedText {
        text: "high".into(),
        x: (width - m.margin - high.width) as i32,
        y: y as i32,
        face: body,
        colour: SECONDARY_TEXT,
        extent: high,
    });
    y += row + 2 * m.gap;

    let mut notes: Vec<String> = Vec::new();
    if !has_evidence {
        notes.push("no evidence: the explanation is zero everywhere".into());
    }
    notes.extend(legend.notes.iter().cloned());
    for note in &notes {
        paragraph(&mut band, &mut y, note, Some("\u{2022} "), body, NOTE_TEXT);
    }
    band.height = y - m.gap + m.margin;
    Ok(band)
}

/// Draws `band` onto `canvas` with its top at row `top`, the colour bar in `colour_map`.
pub fn draw(canvas: &mut Canvas, band: &BandLayout, top: u32, colour_map: &ColourMap, font: &Font) {
    let fill = |canvas: &mut Canvas, rect: Rect, colour: [u8; 3]| {
        for y in rect.y..rect.y + rect.height {
            for x in rect.x..rect.x + rect.width {
                if x < canvas.width() && top + y < canvas.height() {
                    canvas.put_pixel(x, top + y, Rgb(colour));
                }
            }
        }
    };
    fill(
        canvas,
        Rect {
            x: 0,
            y: 0,
            width: band.width,
            height: band.height,
        },
        BACKGROUND,
    );
    for (rect, colour) in &band.fills {
        fill(canvas, *rect, *colour);
    }
    let bar = band.colour_bar;
    if bar.width > 0 && bar.height > 0 {
        fill(
            canvas,
            Rect {
                x: bar.x.saturating_sub(1),
                y: bar.y.saturating_sub(1),
                width: bar.width + 2,
                height: bar.height + 2,
            },
            BAR_OUTLINE,
        );
        let last = bar.width.saturating_sub(1).max(1) as f32;
        for i in 0..bar.width {
            let colour = colour_map.rgb(i as f32 / last);
            fill(
                canvas,
                Rect {
                    x: bar.x + i,
                    y: bar.y,
                    width: 1,
                    height: bar.height,
                },
                colour,
            );
        }
    }
    for line in &band.texts {
        text::draw(
            canvas,
            font,
            line.face,
            (line.x, top as i32 + line.y),
            &line.text,
            line.colour,
        );
    }
}
