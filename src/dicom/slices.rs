//! Slices as windowed [0, 1] grey levels: a series' slices in spatial order, each instance
//! decoded once (what `run` explains), or one image file, DICOM or PNG/JPEG (what `explain`,
//! the audit and SAE training read). A slice that cannot be read is reported and left out;
//! the others go on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::Array2;
use snafu::{ResultExt, Snafu};

use super::file::{self, Depth, DicomFile, ReadError};
use super::pixels::{self, PixelError};
use super::scan::Series;
use super::voi;

/// Why a slice or an image file could not be read as grey levels. Messages name the file.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum SliceError {
    /// The DICOM file could not be read.
    #[snafu(display("{source}"))]
    Read {
        /// The reader's error (names the file).
        source: ReadError,
    },
    /// Its pixels could not be decoded or windowed.
    #[snafu(display("{source}"))]
    Pixels {
        /// The decoder's error.
        source: PixelError,
    },
    /// A PNG or JPEG file could not be read.
    #[snafu(display("{}: cannot read image: {source}", path.display()))]
    Picture {
        /// The file.
        path: PathBuf,
        /// The image decoder's error.
        source: image::ImageError,
    },
    /// The picture's pixels do not fill its declared size.
    #[snafu(display("{}: {source}", path.display()))]
    PictureShape {
        /// The file.
        path: PathBuf,
        /// The mismatch.
        source: ndarray::ShapeError,
    },
}

/// A slice of a series that could not be read.
#[derive(Debug)]
pub struct SliceFailure {
    /// Its file.
    pub file: PathBuf,
    /// Why.
    pub error: SliceError,
}

/// One slice ready for the models.
pub struct LoadedSlice {
    /// SOPInstanceUID of its instance.
    pub sop_instance_uid: String,
    /// Frame within the instance.
    pub frame: u32,
    /// Position in the series' spatial order (1-based).
    pub position: u32,
    /// Windowed grey levels, rows x columns.
    pub grey: Array2<f32>,
    /// The instance (the overlay copies its attributes).
    pub file: Arc<DicomFile>,
}

/// An instance decoded once for all its frames; `None` when it could not be.
type Decoded = Option<(Arc<DicomFile>, pixels::Frames)>;

/// Decodes every slice of `series`, in spatial order; failures go to `failures`.
pub fn load(series: &Series, failures: &mut Vec<SliceFailure>) -> Vec<LoadedSlice> {
    let mut decoded: Vec<Option<Decoded>> = vec![None; series.instances.len()];
    let mut slices = Vec::with_capacity(series.slices.len());
    for (index, slice) in series.slices.iter().enumerate() {
        let instance = &series.instances[slice.instance];
        let entry = decoded[slice.instance].get_or_insert_with(|| {
            let result = file::open(&instance.path, Depth::Full)
                .context(ReadSnafu)
                .and_then(|dicom| {
                    pixels::decode(&dicom)
                        .map(|frames| (Arc::new(dicom), frames))
                        .context(PixelsSnafu)
                });
            match result {
                Ok(loaded) => Some(loaded),
                Err(error) => {
                    tracing::error!(file = %instance.path.display(), "{error}");
                    failures.push(SliceFailure {
                        file: instance.path.clone(),
                        error,
                    });
                    None
                }
            }
        });
        let Some((dicom, frames)) = entry else {
            continue;
        };
        match voi::unit_grey(dicom, frames, slice.frame as usize) {
            Ok(grey) => slices.push(LoadedSlice {
                sop_instance_uid: instance.sop_instance_uid.clone(),
                frame: slice.frame,
                position: index as u32 + 1,
                grey,
                file: Arc::clone(dicom),
            }),
            Err(source) => failures.push(SliceFailure {
                file: instance.path.clone(),
                error: SliceError::Pixels { source },
            }),
        }
    }
    slices
}

/// Whether `path` is a PNG or JPEG picture (by its extension); anything else is read as
/// DICOM.
pub fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg"))
}

/// Grey levels in [0, 1] of one image file: the first frame of a DICOM file, windowed, or a
/// PNG/JPEG picture taken as already windowed.
pub fn load_grey(path: &Path) -> Result<Array2<f32>, SliceError> {
    load_image(path).map(|(grey, _)| grey)
}

/// [`load_grey`], with the DICOM file it read (none for a picture): what objects derived
/// from the image take their attributes from.
pub fn load_image(path: &Path) -> Result<(Array2<f32>, Option<file::DicomFile>), SliceError> {
    if !is_picture(path) {
        let dicom = file::open(path, Depth::Full).context(ReadSnafu)?;
        let frames = pixels::decode(&dicom).context(PixelsSnafu)?;
        let grey = voi::unit_grey(&dicom, &frames, 0).context(PixelsSnafu)?;
        return Ok((grey, Some(dicom)));
    }
    let picture = image::open(path).context(PictureSnafu { path })?;
    // 16-bit PNGs keep their precision; colour is reduced to luma as the DICOM path does
    let grey = picture.to_luma16();
    let (width, height) = grey.dimensions();
    let values: Vec<f32> = grey.pixels().map(|p| f32::from(p.0[0]) / 65535.0).collect();
    let grey = Array2::from_shape_vec((height as usize, width as usize), values)
        .context(PictureShapeSnafu { path })?;
    Ok((grey, None))
}
