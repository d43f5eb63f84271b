//! Text with the legend's font: measuring, fitting, wrapping and rasterising, all on one
//! glyph layout, so that what is measured is exactly what is drawn.
//!
//! Glyphs are laid out with the font's advances and kerning, rasterised by `ab_glyph` into a
//! coverage mask, and the mask is blended onto the canvas once. Bold is synthesised (the
//! coverage is smeared one or two pixels to the right), so that a single regular font file is
//! all a site needs.

use ab_glyph::{Font as _, GlyphId, OutlinedGlyph, PxScale, ScaleFont, point};
use image::{Rgb, RgbImage as Canvas};

use super::font::Font;

/// A run of text at one size and weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Face {
    /// Pixel size (the font's em, in pixels).
    pub size: f32,
    /// Synthesised bold.
    pub bold: bool,
}

impl Face {
    /// Extra pixels the bold smear adds to the right of every glyph.
    pub fn bold_pixels(&self) -> u32 {
        if self.bold {
            ((self.size / 18.0).round() as u32).max(1)
        } else {
            0
        }
    }
}

/// The box a line of text occupies when drawn: its ink and its advance, whichever is wider,
/// and the font's line height (ascent to descent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Pixels from the left of the box to its right.
    pub width: u32,
    /// Pixels from the top of the box to its bottom.
    pub height: u32,
}

struct Shaped {
    glyphs: Vec<OutlinedGlyph>,
    /// Where the pen origin sits within the box (positive when ink reaches left of it).
    origin_x: i32,
    extent: Extent,
}

fn shape(font: &Font, face: Face, text: &str) -> Shaped {
    let scale = PxScale::from(face.size);
    let scaled = font.face().as_scaled(scale);
    let mut caret = 0.0_f32;
    let mut previous: Option<GlyphId> = None;
    let mut glyphs = Vec::new();
    let (mut ink_left, mut ink_right) = (0.0_f32, 0.0_f32);
    for ch in text.chars().filter(|c| !c.is_control()) {
        let id = scaled.glyph_id(ch);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        let glyph = id.with_scale_and_position(scale, point(caret, scaled.ascent()));
        caret += scaled.h_advance(id);
        previous = Some(id);
        if let Some(outlined) = font.face().outline_glyph(glyph) {
            let bounds = outlined.px_bounds();
            ink_left = ink_left.min(bounds.min.x);
            ink_right = ink_right.max(bounds.max.x);
            glyphs.push(outlined);
        }
    }
    let left = ink_left.floor();
    let right = ink_right.max(caret).ceil() + face.bold_pixels() as f32;
    let height = (scaled.ascent() - scaled.descent()).ceil();
    Shaped {
        glyphs,
        origin_x: -left as i32,
        extent: Extent {
            width: (right - left).max(0.0) as u32,
            height: height.max(1.0) as u32,
        },
    }
}

/// The box `text` occupies in `face`.
pub fn measure(font: &Font, face: Face, text: &str) -> Extent {
    shape(font, face, text).extent
}

/// The height of a line in `face`.
pub fn line_height(font: &Font, face: Face) -> u32 {
    measure(font, face, "").height
}

/// The largest whole pixel size from `largest` down to `smallest` at which `text` fits in
/// `max_width` on one line, or `None`.
pub fn fit(
    font: &Font,
    text: &str,
    bold: bool,
    largest: f32,
    smallest: f32,
    max_width: u32,
) -> Option<f32> {
    let mut size = largest.round();
    while size >= smallest {
        if measure(font, Face { size, bold }, text).width <= max_width {
            return Some(size);
        }
        size -= 1.0;
    }
    None
}

/// Where a word may be broken without losing a character: after these.
const BREAK_AFTER: &[char] = &['-', '_', '/'];

/// Breaks `text` into lines no wider than `max_width`: greedily at spaces, then after hyphens,
/// underscores and slashes inside a word too wide for a line, and between characters only
/// when a piece alone is still too wide. Every character but the spaces at breaks is kept; a
/// line holds at least one character.
pub fn wrap(font: &Font, face: Face, text: &str, max_width: u32) -> Vec<String> {
    let fits = |line: &str| measure(font, face, line).width <= max_width;
    // (separator before, piece): a space between words, nothing inside a word
    let mut pieces: Vec<(&str, &str)> = Vec::new();
    for word in text.split_whitespace() {
        let mut separator = " ";
        for piece in word.split_inclusive(BREAK_AFTER) {
            pieces.push((separator, piece));
            separator = "";
        }
    }
    let mut lines = Vec::new();
    let mut line = String::new();
    for (separator, piece) in pieces {
        let separator = if line.is_empty() { "" } else { separator };
        let candidate = format!("{line}{separator}{piece}");
        if fits(&candidate) {
            line = candidate;
        } else if fits(piece) {
            lines.push(std::mem::replace(&mut line, piece.to_string()));
        } else {
            // a piece wider than a line: continue the current line character by character
            line.push_str(separator);
            for ch in piece.chars() {
                let mut candidate = line.clone();
                candidate.push(ch);
                if line.trim().is_empty() || fits(&candidate) {
                    line = candidate;
                } else {
                    lines.push(std::mem::replace(&mut line, ch.to_string()));
                }
            }
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
        .into_iter()
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// Draws `text` in `colour` with the top left of its box (see [`measure`]) at `(x, y)`.
/// Pixels outside the canvas are skipped (callers lay text out so that there are none).
pub fn draw(
    canvas: &mut Canvas,
    font: &Font,
    face: Face,
    (x, y): (i32, i32),
    text: &str,
    colour: [u8; 3],
) {
    let shaped = shape(font, face, text);
    let (width, height) = (shaped.extent.width as usize, shaped.extent.height as usize);
    if width == 0 {
        return;
    }
    let mut coverage = vec![0.0_f32; width * height];
    let smear = face.bold_pixels() as i32;
    for glyph in &shaped.glyphs {
        let bounds = glyph.px_bounds();
        let (left, top) = (bounds.min.x as i32 + shaped.origin_x, bounds.min.y as i32);
        glyph.draw(|gx, gy, c| {
            let my = top + gy as i32;
            for dx in 0..=smear {
                let mx = left + gx as i32 + dx;
                if (0..width as i32).contains(&mx) && (0..height as i32).contains(&my) {
                    let cell = &mut coverage[my as usize * width + mx as usize];
                    *cell = cell.max(c.clamp(0.0, 1.0));
                }
            }
        });
    }
    for (i, &c) in coverage.iter().enumerate() {
        if c <= 0.0 {
            continue;
        }
        let (px, py) = (x + (i % width) as i32, y + (i / width) as i32);
        if px < 0 || py < 0 || px >= canvas.width() as i32 || py >= canvas.height() as i32 {
            continue;
        }
        let pixel = canvas.get_pixel_mut(px as u32, py as u32);
        *pixel = Rgb(blend(pixel.0, colour, c));
    }
}

/// `under` covered by `over` with alpha `alpha` in [0, 1], rounded to the nearest level.
pub fn blend(under: [u8; 3], over: [u8; 3], alpha: f32) -> [u8; 3] {
    let mix = |u: u8, o: u8| (f32::from(u) * (1.0 - alpha) + f32::from(o) * alpha).round() as u8;
    [
        mix(under[0], over[0]),
        mix(under[1], over[1]),
        mix(under[2], over[2]),
    ]
}
