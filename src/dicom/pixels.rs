//! Pixel decoding: any supported transfer syntax to stored values, then the Modality LUT.
//!
//! Compressed syntaxes are decoded by dicom-pixeldata's codecs; the interpretation of the
//! decoded samples (unused high bits, sign, planar configuration, YCbCr, rescale) is done
//! here so that it is the same for every syntax and matches the DICOM standard (PS3.3
//! C.7.6.3 Image Pixel, C.11.1 Modality LUT) and pydicom's `pixel_array`.

use std::path::PathBuf;

use dicom_dictionary_std::tags;
use dicom_encoding::TransferSyntaxIndex;
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use ndarray::{Array4, ArrayView2, Axis};
use snafu::{ResultExt, Snafu};

use super::attrs::{self, DataSet};
use super::file::DicomFile;

/// Why pixel data could not be decoded. Messages name the file and the SOP Instance UID.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum PixelError {
    /// The data set has no Pixel Data element.
    #[snafu(display("{} (SOP Instance {sop}): no Pixel Data", path.display()))]
    NoPixelData {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
    },
    /// The transfer syntax is unknown, or known but without a decoder in this build.
    #[snafu(display(
        "{} (SOP Instance {sop}): unsupported transfer syntax {ts}{}",
        path.display(),
        name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
    ))]
    UnsupportedTransferSyntax {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
        /// The transfer syntax UID.
        ts: String,
        /// Its name, when the registry knows it.
        name: Option<String>,
    },
    /// A codec failed on the encoded data.
    #[snafu(display("{} (SOP Instance {sop}): cannot decode pixel data: {source}", path.display()))]
    Decode {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
        /// The codec's error.
        #[snafu(source(from(dicom_pixeldata::Error, Box::new)))]
        source: Box<dicom_pixeldata::Error>,
    },
    /// A codec of the DICOM library panicked on malformed encoded data (caught here, so one
    /// bad file costs nothing else).
    #[snafu(display(
        "{} (SOP Instance {sop}): cannot decode pixel data: the codec failed on malformed \
         data ({message})",
        path.display()
    ))]
    CodecPanic {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
        /// The panic's message.
        message: String,
    },
    /// The image attributes describe something this pipeline does not handle.
    #[snafu(display("{} (SOP Instance {sop}): unsupported image: {what}", path.display()))]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
        /// What is unsupported.
        what: String,
    },
    /// Fewer bytes than rows x columns x samples x frames require.
    #[snafu(display(
        "{} (SOP Instance {sop}): pixel data holds {actual} bytes, {expected} expected",
        path.display()
    ))]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Its SOP Instance UID.
        sop: String,
        /// Bytes needed.
        expected: usize,
        /// Bytes present.
        actual: usize,
    },
}

/// The most samples one instance may declare (1 GiB as f32): far above any MR series, and a
/// guard against headers that would make the decoder allocate without bound.
pub const MAX_SAMPLES: i64 = 1 << 28;

/// Photometric interpretation of decoded samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Photometric {
    /// Grey, minimum value is white.
    Monochrome1,
    /// Grey, minimum value is black.
    Monochrome2,
    /// Colour, converted to RGB where it was stored as YCbCr.
    Rgb,
    /// Palette indices (the values are indices, not intensities).
    PaletteColor,
}

impl Photometric {
    /// Whether samples are grey levels.
    pub fn is_monochrome(&self) -> bool {
        matches!(self, Self::Monochrome1 | Self::Monochrome2)
    }
}

/// The decoded frames of one instance, after the Modality LUT.
#[derive(Debug, Clone)]
pub struct Frames {
    /// How to read the samples.
    pub photometric: Photometric,
    /// BitsStored of the source (the range of the stored values).
    pub bits_stored: u16,
    /// Values, `[frames, rows, columns, samples]`. For grey images the Modality LUT (rescale)
    /// is applied, as PS3.3 C.11.1 requires before any VOI transform; colour samples are as
    /// stored (RGB).
    pub values: Array4<f32>,
}

impl Frames {
    /// Number of frames.
    pub fn frame_count(&self) -> usize {
        self.values.len_of(Axis(0))
    }

    /// Rows and columns.
    pub fn size(&self) -> (usize, usize) {
        (self.values.len_of(Axis(1)), self.values.len_of(Axis(2)))
    }

    /// One sample plane of one frame.
    pub fn plane(&self, frame: usize, sample: usize) -> ArrayView2<'_, f32> {
        self.values
            .index_axis(Axis(0), frame)
            .index_axis_move(Axis(2), sample)
    }
}

/// Linear rescale from stored values to modality values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rescale {
    /// RescaleSlope.
    pub slope: f64,
    /// RescaleIntercept.
    pub intercept: f64,
}

impl Rescale {
    /// The identity.
    pub const IDENTITY: Rescale = Rescale {
        slope: 1.0,
        intercept: 0.0,
    };
}

/// The rescale of one frame: top-level attributes, else the frame's Pixel Value
/// Transformation functional group (enhanced multi-frame objects), else the identity.
pub fn rescale_of(ds: &DataSet, frame: u32) -> Rescale {
    let from = |item: &DataSet| {
        let slope = attrs::float(item, tags::RESCALE_SLOPE);
        let intercept = attrs::float(item, tags::RESCALE_INTERCEPT);
        (slope.is_some() || intercept.is_some()).then(|| Rescale {
            slope: slope.filter(|s| *s != 0.0).unwrap_or(1.0),
            intercept: intercept.unwrap_or(0.0),
        })
    };
    from(ds)
        .or_else(|| {
            attrs::frame_macro(ds, frame, tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE).and_then(from)
        })
        .unwrap_or(Rescale::IDENTITY)
}

/// Decodes every frame of `file` (which must have been opened with `Depth::Full`).
pub fn decode(file: &DicomFile) -> Result<Frames, PixelError> {
    let path = file.path.clone();
    let sop = file
        .sop_instance_uid()
        .unwrap_or_else(|| "(no SOP Instance UID)".into());
    let ds = file.dataset();
    if ds.get(tags::PIXEL_DATA).is_none() {
        let what = if ds.get(tags::FLOAT_PIXEL_DATA).is_some()
            || ds.get(tags::DOUBLE_FLOAT_PIXEL_DATA).is_some()
        {
            Some("floating-point pixel data")
        } else {
            None
        };
        return match what {
            Some(what) => UnsupportedSnafu { path, sop, what }.fail(),
            None => NoPixelDataSnafu { path, sop }.fail(),
        };
    }
    let ts_uid = file.transfer_syntax().to_string();
    match TransferSyntaxRegistry.get(&ts_uid) {
        Some(ts) if ts.can_decode_all() => {}
        known => {
            return UnsupportedTransferSyntaxSnafu {
                path,
                sop,
                ts: ts_uid,
                name: known.map(|ts| ts.name().to_string()),
            }
            .fail();
        }
    }

    let geometry = check_geometry(ds).map_err(|why| {
        UnsupportedSnafu {
            path: path.clone(),
            sop: sop.clone(),
            what: why.to_string(),
        }
        .build()
    })?;
    if let Some((expected, actual)) = native_shortfall(ds) {
        // checked before decoding, which would otherwise copy (and allocate) first
        return TruncatedSnafu {
            path,
            sop,
            expected,
            actual,
        }
        .fail();
    }
    // dicom-rs's codecs can index past the end of malformed encoded data (an RLE segment
    // shorter than its header says, found by fuzzing): a panic there is this file's error
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        file.object.decode_pixel_data()
    }))
    .map_err(|panic| {
        CodecPanicSnafu {
            path: path.clone(),
            sop: sop.clone(),
            message: crate::panic_message(panic.as_ref()),
        }
        .build()
    })?
    .context(DecodeSnafu {
        path: path.clone(),
        sop: sop.clone(),
    })?;

    let rows = decoded.rows() as usize;
    let columns = decoded.columns() as usize;
    let samples = decoded.samples_per_pixel() as usize;
    let frames = decoded.number_of_frames() as usize;
    let bits_allocated = decoded.bits_allocated();
    let bits_stored = decoded.bits_stored().clamp(1, bits_allocated.max(1));
    let signed = geometry.signed;
    let stored_photometric = decoded
        .photometric_interpretation()
        .as_str()
        .trim()
        .to_string();
    let planar = matches!(
        decoded.planar_configuration(),
        dicom_pixeldata::PlanarConfiguration::PixelFirst
    );

    let count = rows * columns * samples * frames;
    // Big-endian OW is byte-swapped per 16-bit word when parsed, which leaves the two halves
    // of a 32-bit sample in the wrong order.
    #[allow(deprecated)] // the retired big-endian syntax is still found in archives
    let big_endian = ts_uid == dicom_dictionary_std::uids::EXPLICIT_VR_BIG_ENDIAN;
    let swap_words = big_endian
        && bits_allocated == 32
        && ds
            .get(tags::PIXEL_DATA)
            .is_some_and(|e| e.vr() == dicom_core::VR::OW);
    let stored = stored_values(
        decoded.data(),
        bits_allocated,
        bits_stored,
        signed,
        count,
        swap_words,
    )
    .map_err(|(expected, actual)| {
        TruncatedSnafu {
            path: path.clone(),
            sop: sop.clone(),
            expected,
            actual,
        }
        .build()
    })?;

    let mut values = if planar && samples > 1 {
        // colour-by-plane: [frames, samples, rows, columns] -> [frames, rows, columns, samples]
        Array4::from_shape_vec((frames, samples, rows, columns), stored).map(|a| {
            a.permuted_axes([0, 2, 3, 1])
                .as_standard_layout()
                .to_owned()
        })
    } else {
        Array4::from_shape_vec((frames, rows, columns, samples), stored)
    }
    .map_err(|e| {
        UnsupportedSnafu {
            path: path.clone(),
            sop: sop.clone(),
            what: format!("pixel array shape: {e}"),
        }
        .build()
    })?;

    let photometric = match (stored_photometric.as_str(), samples) {
        ("MONOCHROME1", 1) => Photometric::Monochrome1,
        ("MONOCHROME2", 1) => Photometric::Monochrome2,
        ("PALETTE COLOR", 1) => Photometric::PaletteColor,
        ("RGB", 3) => Photometric::Rgb,
        ("YBR_FULL", 3) => {
            ycbcr_full_to_rgb(&mut values, bits_stored);
            Photometric::Rgb
        }
        (other, n) => {
            return UnsupportedSnafu {
                path,
                sop,
                what: format!("photometric interpretation {other} with {n} samples per pixel"),
            }
            .fail();
        }
    };

    if photometric.is_monochrome() {
        for (frame, mut plane) in values.outer_iter_mut().enumerate() {
            let Rescale { slope, intercept } = rescale_of(ds, frame as u32);
            if (slope, intercept) != (1.0, 0.0) {
                plane.mapv_inplace(|v| (f64::from(v) * slope + intercept) as f32);
            }
        }
    }

    Ok(Frames {
        photometric,
        bits_stored,
        values,
    })
}

struct Geometry {
    signed: bool,
}

/// Why [`check_geometry`] rejects an image; the message is the `what` of
/// [`PixelError::Unsupported`].
#[derive(Debug, Snafu)]
enum GeometryError {
    /// No rows or no columns.
    #[snafu(display("Rows {rows} x Columns {columns}"))]
    Dimensions { rows: i64, columns: i64 },
    /// Bits Allocated other than 1, 8, 16 or 32.
    #[snafu(display("BitsAllocated {bits_allocated}"))]
    BitsAllocated { bits_allocated: i64 },
    /// Samples per Pixel other than 1 or 3.
    #[snafu(display("SamplesPerPixel {samples}"))]
    SamplesPerPixel { samples: i64 },
    /// More samples than [`MAX_SAMPLES`].
    #[snafu(display(
        "{total} samples declared (Rows x Columns x SamplesPerPixel x NumberOfFrames), more \
         than the {MAX_SAMPLES} this pipeline decodes at once"
    ))]
    TooManySamples { total: i64 },
    /// Chroma-subsampled YBR stored uncompressed, which the decoder would misread.
    #[snafu(display("uncompressed {photometric} (chroma-subsampled) storage"))]
    SubsampledNative { photometric: String },
}

/// Rows x Columns x SamplesPerPixel x NumberOfFrames as the header declares them (absent or
/// non-positive values count as 1), saturating instead of overflowing.
pub fn declared_samples(ds: &DataSet) -> i64 {
    [tags::ROWS, tags::COLUMNS, tags::SAMPLES_PER_PIXEL]
        .iter()
        .map(|tag| attrs::int(ds, *tag).unwrap_or(1).max(1))
        .fold(i64::from(attrs::frame_count(ds)), i64::saturating_mul)
}

/// Rejects attribute combinations the decoder would misread, before decoding.
fn check_geometry(ds: &DataSet) -> Result<Geometry, GeometryError> {
    let rows = attrs::int(ds, tags::ROWS).unwrap_or(0);
    let columns = attrs::int(ds, tags::COLUMNS).unwrap_or(0);
    if rows <= 0 || columns <= 0 {
        return DimensionsSnafu { rows, columns }.fail();
    }
    let bits_allocated = attrs::int(ds, tags::BITS_ALLOCATED).unwrap_or(0);
    if ![1, 8, 16, 32].contains(&bits_allocated) {
        return BitsAllocatedSnafu { bits_allocated }.fail();
    }
    let samples = attrs::int(ds, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    if samples != 1 && samples != 3 {
        return SamplesPerPixelSnafu { samples }.fail();
    }
    let total = declared_samples(ds);
    if total > MAX_SAMPLES {
        return TooManySamplesSnafu { total }.fail();
    }
    let photometric = attrs::string(ds, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default();
    if photometric.starts_with("YBR_FULL_422") || photometric.starts_with("YBR_PARTIAL") {
        // only reachable uncompressed: the JPEG codecs return RGB for these
        let encapsulated = ds
            .get(tags::PIXEL_DATA)
            .and_then(|e| e.value().fragments())
            .is_some();
        if !encapsulated {
            return SubsampledNativeSnafu { photometric }.fail();
        }
    }
    Ok(Geometry {
        signed: attrs::int(ds, tags::PIXEL_REPRESENTATION) == Some(1),
    })
}

/// For native (not encapsulated) Pixel Data, the bytes required and present when fewer are
/// present than the image attributes declare.
fn native_shortfall(ds: &DataSet) -> Option<(usize, usize)> {
    let element = ds.get(tags::PIXEL_DATA)?;
    let actual = match element.value() {
        dicom_core::DicomValue::Primitive(value) => value.calculate_byte_len(),
        _ => return None,
    };
    let dimension = |tag| attrs::int(ds, tag).unwrap_or(0).max(0) as usize;
    let samples = dimension(tags::ROWS)
        * dimension(tags::COLUMNS)
        * attrs::int(ds, tags::SAMPLES_PER_PIXEL).unwrap_or(1).max(1) as usize
        * attrs::frame_count(ds) as usize;
    let bits = dimension(tags::BITS_ALLOCATED);
    let expected = (samples * bits).div_ceil(8);
    (actual < expected).then_some((expected, actual))
}

/// Reads `count` samples from native little-endian decoded bytes, keeping the low
/// `bits_stored` bits and sign-extending them when `signed` (bits above BitsStored may hold
/// overlays or garbage: PS3.5 8.1.1).
fn stored_values(
    data: &[u8],
    bits_allocated: u16,
    bits_stored: u16,
    signed: bool,
    count: usize,
    swap_words: bool,
) -> Result<Vec<f32>, (usize, usize)> {
    let width = match bits_allocated {
        1 | 8 => 1,
        16 => 2,
        _ => 4,
    };
    let expected = count * width;
    if data.len() < expected {
        return Err((expected, data.len()));
    }
    if bits_allocated == 1 {
        // dicom-pixeldata expands single bits to 0/255 bytes
        return Ok(data[..count].iter().map(|b| f32::from(*b / 255)).collect());
    }
    let shift = 64 - u32::from(bits_stored.min(bits_allocated));
    let interpret = |raw: u64| -> f32 {
        if signed {
            (((raw << shift) as i64) >> shift) as f32
        } else {
            ((raw << shift) >> shift) as f32
        }
    };
    let values = match width {
        1 => data[..count]
            .iter()
            .map(|b| interpret(u64::from(*b)))
            .collect(),
        2 => data[..expected]
            .chunks_exact(2)
            .map(|c| interpret(u64::from(u16::from_le_bytes([c[0], c[1]]))))
            .collect(),
        _ => data[..expected]
            .chunks_exact(4)
            .map(|c| {
                let word = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                interpret(u64::from(if swap_words {
                    word.rotate_left(16)
                } else {
                    word
                }))
            })
            .collect(),
    };
    Ok(values)
}

/// YCbCr (full range, PS3.3 C.7.6.3.1.2) to RGB, rounded and clipped as integer samples.
fn ycbcr_full_to_rgb(values: &mut Array4<f32>, bits_stored: u16) {
    let max = f64::from((1u32 << bits_stored.min(16)) - 1);
    let half = (max + 1.0) / 2.0;
    for mut pixel in values.lanes_mut(Axis(3)) {
        let (y, cb, cr) = (
            f64::from(pixel[0]),
            f64::from(pixel[1]) - half,
            f64::from(pixel[2]) - half,
        );
        let rgb = [
            y + 1.402 * cr,
            y - 0.344136 * cb - 0.714136 * cr,
            y + 1.772 * cb,
        ];
        for (out, v) in pixel.iter_mut().zip(rgb) {
            *out = v.round().clamp(0.0, max) as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_errors_keep_their_messages() {
        // the texts the former `Result<_, String>` gave, word for word
        let cases = [
            (
                GeometryError::Dimensions {
                    rows: 0,
                    columns: 512,
                },
                "Rows 0 x Columns 512".to_string(),
            ),
            (
                GeometryError::BitsAllocated { bits_allocated: 12 },
                "BitsAllocated 12".to_string(),
            ),
            (
                GeometryError::SamplesPerPixel { samples: 4 },
                "SamplesPerPixel 4".to_string(),
            ),
            (
                GeometryError::TooManySamples { total: 1 << 30 },
                format!(
                    "1073741824 samples declared (Rows x Columns x SamplesPerPixel x \
                     NumberOfFrames), more than the {MAX_SAMPLES} this pipeline decodes at once"
                ),
            ),
            (
                GeometryError::SubsampledNative {
                    photometric: "YBR_FULL_422".to_string(),
                },
                "uncompressed YBR_FULL_422 (chroma-subsampled) storage".to_string(),
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
    }
}
