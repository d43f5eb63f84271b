//! Loading a series' slices as windowed [0, 1] grey levels, each instance decoded once; a
//! slice that cannot be read is reported and left out, the others go on.

use std::sync::Arc;

use ndarray::Array2;

use crate::dicom::file::{self, Depth, DicomFile};
use crate::dicom::scan::Series;
use crate::dicom::{pixels, voi};
use crate::output::ReportError;

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

/// Decodes every slice of `series`, in spatial order; failures go to `errors`.
pub fn load(series: &Series, errors: &mut Vec<ReportError>) -> Vec<LoadedSlice> {
    let mut decoded: Vec<Option<Decoded>> = vec![None; series.instances.len()];
    let mut slices = Vec::with_capacity(series.slices.len());
    for (index, slice) in series.slices.iter().enumerate() {
        let instance = &series.instances[slice.instance];
        let entry = decoded[slice.instance].get_or_insert_with(|| {
            let result = file::open(&instance.path, Depth::Full)
                .map_err(|e| e.to_string())
                .and_then(|dicom| {
                    pixels::decode(&dicom)
                        .map(|frames| (Arc::new(dicom), frames))
                        .map_err(|e| e.to_string())
                });
            match result {
                Ok(loaded) => Some(loaded),
                Err(message) => {
                    tracing::error!(file = %instance.path.display(), "{message}");
                    errors.push(ReportError {
                        file: instance.path.display().to_string(),
                        message,
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
            Err(error) => errors.push(ReportError {
                file: instance.path.display().to_string(),
                message: error.to_string(),
            }),
        }
    }
    slices
}
