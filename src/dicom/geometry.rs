//! Where a slice lies in the patient: position, orientation, pixel spacing, thickness and
//! frame of reference, read from a classic image or from one frame of an enhanced
//! multi-frame image (its Plane Position, Plane Orientation and Pixel Measures groups). Scan
//! orders slices by it; the Parametric Map writer places each frame on its source slice.

use dicom_dictionary_std::tags;

use super::attrs::{self, DataSet};

/// The geometry of one slice.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGeometry {
    /// ImagePositionPatient: the centre of the first pixel, mm.
    pub position: [f64; 3],
    /// ImageOrientationPatient: row and column direction cosines.
    pub orientation: [f64; 6],
    /// PixelSpacing: between rows, between columns, mm.
    pub pixel_spacing: [f64; 2],
    /// SliceThickness, mm, when stated.
    pub slice_thickness: Option<f64>,
    /// FrameOfReferenceUID, when stated.
    pub frame_of_reference: Option<String>,
}

impl SliceGeometry {
    /// The geometry of frame `frame` (0-based) of `ds`; `None` without a position, an
    /// orientation or a pixel spacing.
    pub fn of(ds: &DataSet, frame: u32) -> Option<SliceGeometry> {
        let measures = attrs::frame_macro(ds, frame, tags::PIXEL_MEASURES_SEQUENCE);
        let measured = |tag| {
            attrs::floats(ds, tag).or_else(|| measures.and_then(|item| attrs::floats(item, tag)))
        };
        Some(SliceGeometry {
            position: position_of(ds, frame)?,
            orientation: orientation_of(ds, frame)?,
            pixel_spacing: fixed(measured(tags::PIXEL_SPACING))?,
            slice_thickness: measured(tags::SLICE_THICKNESS)
                .and_then(|v| v.first().copied())
                .filter(|v| v.is_finite() && *v > 0.0),
            frame_of_reference: attrs::string(ds, tags::FRAME_OF_REFERENCE_UID),
        })
    }
}

fn fixed<const N: usize>(values: Option<Vec<f64>>) -> Option<[f64; N]> {
    let values = values?;
    let array: [f64; N] = values.get(..N)?.try_into().ok()?;
    array.iter().all(|v| v.is_finite()).then_some(array)
}

/// ImagePositionPatient of a frame: top level, else the frame's Plane Position group.
pub fn position_of(ds: &DataSet, frame: u32) -> Option<[f64; 3]> {
    fixed(attrs::floats(ds, tags::IMAGE_POSITION_PATIENT)).or_else(|| {
        let item = attrs::frame_macro(ds, frame, tags::PLANE_POSITION_SEQUENCE)?;
        fixed(attrs::floats(item, tags::IMAGE_POSITION_PATIENT))
    })
}

/// ImageOrientationPatient: top level, else the Plane Orientation group.
pub fn orientation_of(ds: &DataSet, frame: u32) -> Option<[f64; 6]> {
    fixed(attrs::floats(ds, tags::IMAGE_ORIENTATION_PATIENT)).or_else(|| {
        let item = attrs::frame_macro(ds, frame, tags::PLANE_ORIENTATION_SEQUENCE)?;
        fixed(attrs::floats(item, tags::IMAGE_ORIENTATION_PATIENT))
    })
}
