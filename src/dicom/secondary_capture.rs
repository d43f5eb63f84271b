//! The Secondary Capture writer: one RGB SC Image per explained slice, in the source's study,
//! with every attribute of the overlay contract (docs/design.md section 5) and deterministic
//! UIDs.
//!
//! The pixels are supplied by the caller (the renderer burns the heat map, the legend and the
//! "NOT FOR DIAGNOSTIC USE" banner into them); this module only describes them correctly.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, InMemDicomObject};
use snafu::{ResultExt, ensure};

use super::attrs::{self, DataSet};
use super::derived::{
    MetaSnafu, MissingSourceSnafu, PixelCountSnafu, SINGLE_FRAME_CLASSES, contributing_equipment,
    copy_patient_and_study, derivation_description, file_meta, reference, sequence,
};
use super::uid;

// What every derived object shares, where callers have always found it.
pub use super::derived::{
    Derivation, NOT_FOR_DIAGNOSTIC_USE, Timestamp, UNTRAINED, WriteError, is_own_overlay,
    series_description, write_atomically,
};

/// The SOP Class written: Secondary Capture Image Storage.
pub const SOP_CLASS: &str = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;

/// An 8-bit RGB picture, interleaved (R, G, B per pixel, row by row).
#[derive(Debug, Clone)]
pub struct RgbImage {
    /// Rows.
    pub rows: u32,
    /// Columns.
    pub columns: u32,
    /// `rows * columns * 3` bytes.
    pub pixels: Vec<u8>,
}

/// Where the overlay sits in its series.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    /// The frame of the source instance that was explained (0-based).
    pub source_frame: u32,
    /// InstanceNumber of the overlay (the slice's position in the source series, 1-based).
    pub instance_number: u32,
    /// SeriesNumber of the overlay series.
    pub series_number: u32,
}

/// The overlay's own identity, derived from its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayUids {
    /// SeriesInstanceUID: one per (source series, model, method).
    pub series: String,
    /// SOPInstanceUID: one per (source instance, frame, model, method, class).
    pub instance: String,
}

impl OverlayUids {
    /// The UIDs for an overlay of `source_sop` (frame `frame`) in `source_series`. Besides
    /// the source and the class, they derive from everything that makes the overlay what it
    /// is: the model (name, version and the bytes' SHA-256), the method and its parameters,
    /// and this software's version. The same inputs give the same UIDs (a rerun replaces);
    /// a new checkpoint, a changed parameter or a new release gives new ones.
    pub fn derive(
        source_series: &str,
        source_sop: &str,
        frame: u32,
        derivation: &Derivation,
    ) -> OverlayUids {
        let made_by = derivation.made_by();
        let series: Vec<&str> = std::iter::once(source_series).chain(made_by).collect();
        let frame = frame.to_string();
        let instance: Vec<&str> = [source_sop, &frame, &derivation.class_label]
            .into_iter()
            .chain(made_by)
            .collect();
        OverlayUids {
            series: uid::derived("overlay-series", &series),
            instance: uid::derived("overlay-instance", &instance),
        }
    }
}

/// Builds the Secondary Capture object for one explained slice.
pub fn build(
    source: &DataSet,
    image: &RgbImage,
    derivation: &Derivation,
    placement: Placement,
    created: &Timestamp,
) -> Result<FileDicomObject<InMemDicomObject>, WriteError> {
    let source_sop = attrs::string(source, tags::SOP_INSTANCE_UID).ok_or_else(|| {
        MissingSourceSnafu {
            sop: "(none)",
            name: "SOPInstanceUID",
        }
        .build()
    })?;
    let required = |tag: Tag, name: &'static str| {
        attrs::string(source, tag).ok_or_else(|| {
            MissingSourceSnafu {
                sop: source_sop.clone(),
                name,
            }
            .build()
        })
    };
    let study_uid = required(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let source_series = required(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let source_class = required(tags::SOP_CLASS_UID, "SOPClassUID")?;
    ensure!(
        image.pixels.len() == image.rows as usize * image.columns as usize * 3,
        PixelCountSnafu {
            sop: source_sop.clone(),
            len: image.pixels.len(),
            rows: image.rows,
            columns: image.columns,
        }
    );

    let uids = OverlayUids::derive(
        &source_series,
        &source_sop,
        placement.source_frame,
        derivation,
    );
    let mut ds = InMemDicomObject::new_empty();
    // Patient and General Study: copied
    copy_patient_and_study(source, &mut ds, &study_uid);
    let mut put = |tag: Tag, vr: VR, value: PrimitiveValue| {
        ds.put(DataElement::new(tag, vr, value));
    };

    // SOP Common
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192".into());
    put(tags::SOP_CLASS_UID, VR::UI, SOP_CLASS.into());
    put(
        tags::SOP_INSTANCE_UID,
        VR::UI,
        uids.instance.as_str().into(),
    );
    put(
        tags::INSTANCE_CREATION_DATE,
        VR::DA,
        created.date.as_str().into(),
    );
    put(
        tags::INSTANCE_CREATION_TIME,
        VR::TM,
        created.time.as_str().into(),
    );

    // General Series
    put(tags::MODALITY, VR::CS, "OT".into());
    put(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        uids.series.as_str().into(),
    );
    put(
        tags::SERIES_NUMBER,
        VR::IS,
        placement.series_number.to_string().into(),
    );
    put(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        series_description(derivation, "XAI").into(),
    );
    // a brain is an unpaired part: stating it spares viewers (and dciodvfy) a Laterality
    let body_part =
        attrs::string(source, tags::BODY_PART_EXAMINED).unwrap_or_else(|| "HEAD".into());
    put(tags::BODY_PART_EXAMINED, VR::CS, body_part.into());
    put(tags::SERIES_DATE, VR::DA, created.date.as_str().into());
    put(tags::SERIES_TIME, VR::TM, created.time.as_str().into());

    // General Equipment and SC Equipment
    put(tags::MANUFACTURER, VR::LO, "dicom-xai".into());
    put(tags::CONVERSION_TYPE, VR::CS, "WSD".into());
    put(
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER,
        VR::LO,
        "dicom-xai".into(),
    );
    put(
        tags::SECONDARY_CAPTURE_DEVICE_MANUFACTURER_MODEL_NAME,
        VR::LO,
        "dicom-xai".into(),
    );
    put(
        tags::SECONDARY_CAPTURE_DEVICE_SOFTWARE_VERSIONS,
        VR::LO,
        env!("CARGO_PKG_VERSION").into(),
    );

    // General Image and SC Image
    put(
        tags::INSTANCE_NUMBER,
        VR::IS,
        placement.instance_number.to_string().into(),
    );
    let orientation = attrs::floats(source, tags::IMAGE_ORIENTATION_PATIENT)
        .and_then(|iop| patient_orientation(&iop));
    put(
        tags::PATIENT_ORIENTATION,
        VR::CS,
        match orientation {
            Some([row, column]) => PrimitiveValue::Strs([row, column].into_iter().collect()),
            None => PrimitiveValue::Empty,
        },
    );
    put(tags::CONTENT_DATE, VR::DA, created.date.as_str().into());
    put(tags::CONTENT_TIME, VR::TM, created.time.as_str().into());
    put(
        tags::IMAGE_TYPE,
        VR::CS,
        PrimitiveValue::Strs(
            ["DERIVED".to_string(), "SECONDARY".to_string()]
                .into_iter()
                .collect(),
        ),
    );
    put(tags::BURNED_IN_ANNOTATION, VR::CS, "YES".into());
    let lossy = attrs::string(source, tags::LOSSY_IMAGE_COMPRESSION).unwrap_or_default() == "01";
    put(
        tags::LOSSY_IMAGE_COMPRESSION,
        VR::CS,
        if lossy { "01" } else { "00" }.into(),
    );
    put(
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        derivation_description(derivation).into(),
    );
    put(
        tags::DATE_OF_SECONDARY_CAPTURE,
        VR::DA,
        created.date.as_str().into(),
    );
    put(
        tags::TIME_OF_SECONDARY_CAPTURE,
        VR::TM,
        created.time.as_str().into(),
    );
    if let Some(spacing) = attrs::string(source, tags::PIXEL_SPACING)
        && image_matches_source(source, image)
    {
        put(
            tags::NOMINAL_SCANNED_PIXEL_SPACING,
            VR::DS,
            spacing_value(&spacing),
        );
        put(tags::PIXEL_SPACING, VR::DS, spacing_value(&spacing));
    }

    // Image Pixel
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(3_u16));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "RGB".into());
    put(
        tags::PLANAR_CONFIGURATION,
        VR::US,
        PrimitiveValue::from(0_u16),
    );
    put(tags::ROWS, VR::US, PrimitiveValue::from(image.rows as u16));
    put(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(image.columns as u16),
    );
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(8_u16));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(8_u16));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(7_u16));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(0_u16),
    );
    put(
        tags::PIXEL_DATA,
        VR::OB,
        PrimitiveValue::from(image.pixels.clone()),
    );

    // References to the source
    let mut source_ref = reference(&source_class, &source_sop);
    if attrs::frame_count(source) > 1 && !SINGLE_FRAME_CLASSES.contains(&source_class.as_str()) {
        source_ref.put(DataElement::new(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            PrimitiveValue::from((placement.source_frame + 1).to_string()),
        ));
    }
    ds.put(sequence(tags::SOURCE_IMAGE_SEQUENCE, vec![source_ref]));
    let mut series_ref = InMemDicomObject::new_empty();
    series_ref.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(source_series.as_str()),
    ));
    series_ref.put(sequence(
        tags::REFERENCED_INSTANCE_SEQUENCE,
        vec![reference(&source_class, &source_sop)],
    ));
    ds.put(sequence(tags::REFERENCED_SERIES_SEQUENCE, vec![series_ref]));
    ds.put(sequence(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![contributing_equipment(derivation, created)],
    ));

    let meta = file_meta(SOP_CLASS, &uids.instance);
    ds.with_meta(meta).context(MetaSnafu { sop: source_sop })
}

fn image_matches_source(source: &DataSet, image: &RgbImage) -> bool {
    attrs::int(source, tags::ROWS) == Some(i64::from(image.rows))
        && attrs::int(source, tags::COLUMNS) == Some(i64::from(image.columns))
}

fn spacing_value(spacing: &str) -> PrimitiveValue {
    PrimitiveValue::Strs(spacing.split('\\').map(|s| s.trim().to_string()).collect())
}

/// PatientOrientation (C.7.6.1.1.1) from ImageOrientationPatient: for the row and the column
/// direction, the patient directions (L/R, P/A, H/F) in order of decreasing component size,
/// ignoring components below 0.25 (a 75° tilt still reads as its main direction).
pub fn patient_orientation(iop: &[f64]) -> Option<[String; 2]> {
    if iop.len() < 6 {
        return None;
    }
    let letters = |v: &[f64]| {
        let mut axes: Vec<(f64, char)> = v
            .iter()
            .zip([('L', 'R'), ('P', 'A'), ('H', 'F')])
            .map(|(c, (positive, negative))| (c.abs(), if *c > 0.0 { positive } else { negative }))
            .filter(|(magnitude, _)| *magnitude >= 0.25)
            .collect();
        axes.sort_by(|a, b| b.0.total_cmp(&a.0));
        axes.into_iter()
            .map(|(_, letter)| letter)
            .collect::<String>()
    };
    let row = letters(&iop[0..3]);
    let column = letters(&iop[3..6]);
    (!row.is_empty() && !column.is_empty()).then_some([row, column])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patient_orientation_of_standard_planes() {
        let axial = patient_orientation(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(axial, Some(["L".to_string(), "P".to_string()]));
        let coronal = patient_orientation(&[1.0, 0.0, 0.0, 0.0, 0.0, -1.0]);
        assert_eq!(coronal, Some(["L".to_string(), "F".to_string()]));
        let sagittal = patient_orientation(&[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]);
        assert_eq!(sagittal, Some(["P".to_string(), "F".to_string()]));
        let oblique = patient_orientation(&[0.966, 0.259, 0.0, -0.259, 0.966, 0.0]);
        assert_eq!(oblique, Some(["LP".to_string(), "PR".to_string()]));
        assert_eq!(patient_orientation(&[0.0; 6]), None);
    }
}
