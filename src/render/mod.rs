//! Rendering: heat maps to colour, blended over the grey slice, with a burned-in legend.
//!
//! The result is the picture a radiologist sees in the PACS viewer, as the pixels of a
//! Secondary Capture overlay ([`crate::dicom::secondary_capture`]). It has two parts:
//!
//! ```text
//! +--------------------------------------+
//! |  the slice, upscaled by an integer   |  nearest neighbour: every source pixel is a
//! |  factor to at least 512 px wide,     |  k x k block, nothing is interpolated
//! |  the heat map blended over it        |
//! +--------------------------------------+
//! | NOT FOR DIAGNOSTIC USE               |  the legend band, below the image: nothing is
//! | UNTRAINED MODEL      (when untrained)|  ever drawn over anatomy
//! | predicted: glioma 97.3%              |
//! | densenet169 v3 - gradcam             |
//! | low [colour bar of the map] high     |
//! | - notes (quality flags)              |
//! +--------------------------------------+
//! ```
//!
//! - [`colour`]: the perceptual colour maps ([`ColourMap`], [`COLOUR_MAPS`]).
//! - [`font`]: finding and loading the TrueType font ([`Font::find`]).
//! - [`text`]: measuring, fitting, wrapping and rasterising text with that font.
//! - [`legend`]: what the band says ([`Legend`]) and where each piece goes ([`legend::layout`]).
//! - [`overlay`]: normalising, colouring and blending the heat map; the canvas
//!   ([`render_overlay`]).
//! - [`summary`]: the slice and every method's map side by side, titled
//!   ([`render_summary`]).
//! - [`png`]: writing a rendered overlay as a PNG ([`save_png`]), for reports and previews.
//!
//! Blending keeps anatomy visible: each pixel's alpha is `opacity * heat / max(heat)`, so weak
//! evidence is nearly transparent and only the strongest evidence reaches the full opacity
//! (see [`overlay`]). Rendering is deterministic: the same inputs give the same bytes.
//!
//! ## Example
//!
//! ```no_run
//! use dicom_xai::render::{self, ColourMap, Font, Legend, Style};
//! use ndarray::Array2;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let grey = Array2::<f32>::from_elem((256, 256), 0.5); // the VOI-transformed slice, [0, 1]
//! let mut heat = Array2::<f32>::zeros((256, 256)); // the explanation, same shape, >= 0
//! heat[[100, 120]] = 1.0;
//! let style = Style { colour_map: ColourMap::by_name("inferno")?, opacity: 0.6 };
//! let legend = Legend {
//!     model_name: "densenet169-brain".into(),
//!     model_version: "3".into(),
//!     trained: true,
//!     method: "gradcam".into(),
//!     class_label: "glioma".into(),
//!     probability: 0.973,
//!     notes: vec!["most evidence lies outside the brain".into()],
//! };
//! let font = Font::find(None)?; // DICOM_XAI_FONT, beside the binary, or the system's DejaVu
//! let image = render::render_overlay(grey.view(), heat.view(), &style, &legend, &font)?;
//! render::save_png(&image, "overlay.png".as_ref())?;
//! # Ok(())
//! # }
//! ```

use std::path::PathBuf;

use snafu::Snafu;

pub mod colour;
pub mod font;
pub mod legend;
pub mod overlay;
pub mod png;
pub mod summary;
pub mod text;

pub use colour::{COLOUR_MAPS, ColourMap};
pub use font::Font;
pub use legend::Legend;
pub use overlay::{MIN_WIDTH, Style, render_overlay, upscale_factor};
pub use png::save_png;
pub use summary::{Panel, render_summary};

/// Why an overlay could not be rendered or saved.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum RenderError {
    /// The colour map name is not one of [`COLOUR_MAPS`].
    #[snafu(display("unknown colour map {name:?}; valid colour maps: {}", COLOUR_MAPS.join(", ")))]
    UnknownColourMap {
        /// The name asked for.
        name: String,
    },
    /// The grey slice and the heat map differ in shape.
    #[snafu(display(
        "heat map is {}x{} (rows x columns) but the slice is {}x{}: they must match",
        heat.0, heat.1, grey.0, grey.1
    ))]
    ShapeMismatch {
        /// Rows and columns of the grey slice.
        grey: (usize, usize),
        /// Rows and columns of the heat map.
        heat: (usize, usize),
    },
    /// The slice has no pixels.
    #[snafu(display("empty slice ({rows}x{columns} pixels): nothing to render"))]
    EmptySlice {
        /// Rows.
        rows: usize,
        /// Columns.
        columns: usize,
    },
    /// A heat value is NaN or infinite.
    #[snafu(display("heat map value {value} at row {row}, column {column}: heat must be finite"))]
    NonFiniteHeat {
        /// Row of the first offending value.
        row: usize,
        /// Column of the first offending value.
        column: usize,
        /// The value.
        value: f32,
    },
    /// A heat value is negative (heat maps are evidence for the class, >= 0).
    #[snafu(display(
        "heat map value {value} at row {row}, column {column}: heat must be >= 0 \
         (clamp or take the magnitude of signed attributions first)"
    ))]
    NegativeHeat {
        /// Row of the first offending value.
        row: usize,
        /// Column of the first offending value.
        column: usize,
        /// The value.
        value: f32,
    },
    /// A grey level is NaN or infinite.
    #[snafu(display(
        "grey level {value} at row {row}, column {column}: must be finite, in [0, 1]"
    ))]
    NonFiniteGrey {
        /// Row of the first offending value.
        row: usize,
        /// Column of the first offending value.
        column: usize,
        /// The value.
        value: f32,
    },
    /// The opacity is not a number in [0, 1].
    #[snafu(display("opacity {opacity} is out of range: it must be in [0, 1]"))]
    Opacity {
        /// The opacity given.
        opacity: f32,
    },
    /// The canvas would exceed what a DICOM image can hold (65535 rows or columns).
    #[snafu(display("overlay canvas of {rows}x{columns} pixels exceeds the DICOM limit of 65535"))]
    CanvasTooLarge {
        /// Rows of the canvas.
        rows: u64,
        /// Columns of the canvas.
        columns: u64,
    },
    /// The legend band cannot be laid out at this width.
    #[snafu(display("legend band of {width} px is too narrow (at least {minimum} px)"))]
    BandTooNarrow {
        /// The width asked for.
        width: u32,
        /// The narrowest width supported.
        minimum: u32,
    },
    /// No font file was found.
    #[snafu(display(
        "no font found (tried: {}); install the Debian package fonts-dejavu-core, \
         or name a TrueType font with DICOM_XAI_FONT",
        tried.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    ))]
    FontNotFound {
        /// Every path tried, in order.
        tried: Vec<PathBuf>,
    },
    /// A font file exists but could not be read.
    #[snafu(display("{}: cannot read font: {source}", path.display()))]
    FontRead {
        /// The font file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A font file was read but is not a usable TrueType/OpenType font.
    #[snafu(display("{}: not a usable TrueType/OpenType font: {source}", path.display()))]
    FontParse {
        /// The font file.
        path: PathBuf,
        /// The parser's error.
        source: ab_glyph::InvalidFont,
    },
    /// An image's pixel buffer does not hold rows x columns x 3 bytes.
    #[snafu(display("{len} RGB bytes for {rows} x {columns} pixels"))]
    PixelCount {
        /// Bytes given.
        len: usize,
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
    },
    /// Encoding or writing a PNG failed.
    #[snafu(display("{}: cannot write PNG: {source}", path.display()))]
    Png {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        source: image::ImageError,
    },
}
