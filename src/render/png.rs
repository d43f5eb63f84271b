//! Writing a rendered overlay as a PNG: for reports, previews and the documentation. PNG is
//! lossless, so the file holds exactly the pixels the Secondary Capture carries.

use std::path::Path;

use image::ImageFormat;
use snafu::{OptionExt, ResultExt};

use super::{PixelCountSnafu, PngSnafu, RenderError};
use crate::dicom::secondary_capture::RgbImage;

/// Writes `image` to `path` as an 8-bit RGB PNG.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<(), RenderError> {
    let buffer = image::RgbImage::from_raw(image.columns, image.rows, image.pixels.clone())
        .context(PixelCountSnafu {
            len: image.pixels.len(),
            rows: image.rows,
            columns: image.columns,
        })?;
    buffer
        .save_with_format(path, ImageFormat::Png)
        .context(PngSnafu { path })
}
