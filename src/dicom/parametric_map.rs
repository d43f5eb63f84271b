//! The Parametric Map writer: one float32 multi-frame Parametric Map per (source series,
//! model, method), one frame per explained slice on that slice's own grid, so a viewer can
//! fuse it over the source series, switch it off, change its opacity and read its values
//! (docs/design.md section 12).
//!
//! Values are the explanation map itself, never rescaled per frame: the maps of one series
//! stay comparable, and the Real World Value Mapping says what they are (identity, unit
//! `{ratio}` of the explained class's evidence). Geometry comes from the source
//! ([`SliceGeometry`]): each frame's Plane Position is its slice's ImagePositionPatient, the
//! orientation and pixel measures are shared, and the frame of reference is the source's.
//! Every frame derives from its source slice (Derivation Image), and the map references the
//! source series (Common Instance Reference), which is what viewers need to fuse it.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, InMemDicomObject};
use ndarray::ArrayView2;
use snafu::{OptionExt, ResultExt};

use super::attrs::{self, DataSet};
use super::derived::{
    Derivation, FramesSnafu, MAX_LO, MetaSnafu, MissingSourceSnafu, SINGLE_FRAME_CLASSES, SOFTWARE,
    Timestamp, WriteError, code_item, contributing_equipment, copy_patient_and_study,
    decimal_string, file_meta, reference, sequence, series_description, truncate,
};
use super::geometry::SliceGeometry;
use super::uid;

/// The SOP Class written: Parametric Map Storage.
pub const SOP_CLASS: &str = uids::PARAMETRIC_MAP_STORAGE;

/// ImageType and FrameType of every map: derived by an algorithm from the source, a volume
/// of slices, its pixel contrast no arithmetic of the source's (dciodvfy knows `NONE`, not
/// the newer `QUANTITY`).
const IMAGE_TYPE: [&str; 4] = ["DERIVED", "PRIMARY", "VOLUME", "NONE"];

/// Decimals kept in a map's DS values (positions, spacings, cosines, window), where the 16
/// characters of a DS allow.
const GEOMETRY_DECIMALS: usize = 10;

/// Orientations of two frames that differ by less than this (direction cosines) are the same.
const SAME_ORIENTATION: f64 = 1e-4;

/// One frame: the map of one explained slice, on the slice's grid.
#[derive(Debug, Clone, Copy)]
pub struct MapFrame<'a> {
    /// The source instance.
    pub source: &'a DataSet,
    /// The frame of the source instance (0-based).
    pub source_frame: u32,
    /// The class the map explains.
    pub class_label: &'a str,
    /// The map, the slice's rows x columns, values >= 0.
    pub map: ArrayView2<'a, f32>,
}

/// The map's identity, derived from its inputs as an overlay's is: the same source slices,
/// model bytes, method, parameters and software give the same UIDs (a rerun replaces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapUids {
    /// SeriesInstanceUID: one per (source series, model, method).
    pub series: String,
    /// SOPInstanceUID: one per map (its series and the slices and classes it holds).
    pub instance: String,
}

impl MapUids {
    /// The UIDs of the map of `frames` (source SOPInstanceUID, frame, class) in
    /// `source_series`.
    pub fn derive(
        source_series: &str,
        frames: &[(String, u32, String)],
        derivation: &Derivation,
    ) -> MapUids {
        let made_by = derivation.made_by();
        let series: Vec<&str> = std::iter::once(source_series).chain(made_by).collect();
        let numbers: Vec<String> = frames.iter().map(|(_, f, _)| f.to_string()).collect();
        let mut instance: Vec<&str> = series.clone();
        for ((sop, _, class), number) in frames.iter().zip(&numbers) {
            instance.extend([sop.as_str(), number.as_str(), class.as_str()]);
        }
        MapUids {
            series: uid::derived("pmap-series", &series),
            instance: uid::derived("pmap-instance", &instance),
        }
    }
}

/// Builds the Parametric Map of `frames` (in the order given: the series' spatial order).
/// `derivation` names the model and method (its class and probability are per frame here,
/// and not used). Every frame must lie on the same grid: same Rows x Columns as its map, same
/// orientation and frame of reference.
pub fn build(
    frames: &[MapFrame<'_>],
    derivation: &Derivation,
    series_number: u32,
    created: &Timestamp,
) -> Result<(FileDicomObject<InMemDicomObject>, MapUids), WriteError> {
    let first = frames.first().context(FramesSnafu {
        series: "(none)",
        reason: "no frame to write",
    })?;
    let required = |source: &DataSet, tag: Tag, name: &'static str| {
        attrs::string(source, tag).context(MissingSourceSnafu {
            sop: attrs::string(source, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "(none)".into()),
            name,
        })
    };
    let study_uid = required(first.source, tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let source_series = required(first.source, tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let frames_wrong = |reason: String| {
        FramesSnafu {
            series: source_series.clone(),
            reason,
        }
        .build()
    };
    // every frame's source, geometry and grid
    let mut sources = Vec::with_capacity(frames.len());
    for frame in frames {
        let sop = required(frame.source, tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
        let class = required(frame.source, tags::SOP_CLASS_UID, "SOPClassUID")?;
        let geometry =
            SliceGeometry::of(frame.source, frame.source_frame).context(MissingSourceSnafu {
                sop: sop.clone(),
                name: "ImagePositionPatient, ImageOrientationPatient or PixelSpacing",
            })?;
        sources.push((sop, class, geometry));
    }
    let (rows, columns) = first.map.dim();
    let reference_geometry = &sources[0].2;
    for (frame, (sop, _, geometry)) in frames.iter().zip(&sources) {
        let grid = (
            attrs::int(frame.source, tags::ROWS),
            attrs::int(frame.source, tags::COLUMNS),
        );
        if frame.map.dim() != (rows, columns) || grid != (Some(rows as i64), Some(columns as i64)) {
            return Err(frames_wrong(format!(
                "slice {sop} is {:?} x {:?} with a {} x {} map; the first is {rows} x {columns}",
                grid.0,
                grid.1,
                frame.map.nrows(),
                frame.map.ncols()
            )));
        }
        let turned = geometry
            .orientation
            .iter()
            .zip(&reference_geometry.orientation)
            .any(|(a, b)| (a - b).abs() > SAME_ORIENTATION);
        if turned || geometry.frame_of_reference != reference_geometry.frame_of_reference {
            return Err(frames_wrong(format!(
                "slice {sop} lies in another orientation or frame of reference than the first"
            )));
        }
    }
    let frame_of_reference =
        reference_geometry
            .frame_of_reference
            .clone()
            .context(MissingSourceSnafu {
                sop: sources[0].0.clone(),
                name: "FrameOfReferenceUID",
            })?;
    let keys: Vec<(String, u32, String)> = frames
        .iter()
        .zip(&sources)
        .map(|(frame, (sop, _, _))| {
            (
                sop.clone(),
                frame.source_frame,
                frame.class_label.to_string(),
            )
        })
        .collect();
    let uids = MapUids::derive(&source_series, &keys, derivation);

    let mut ds = InMemDicomObject::new_empty();
    copy_patient_and_study(first.source, &mut ds, &study_uid);
    let mut put = |tag: Tag, vr: VR, value: PrimitiveValue| {
        ds.put(DataElement::new(tag, vr, value));
    };
    let text = |value: &str| PrimitiveValue::from(value);
    let strings =
        |values: &[&str]| PrimitiveValue::Strs(values.iter().map(|v| v.to_string()).collect());

    // SOP Common
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, text("ISO_IR 192"));
    put(tags::SOP_CLASS_UID, VR::UI, text(SOP_CLASS));
    put(tags::SOP_INSTANCE_UID, VR::UI, text(&uids.instance));
    put(tags::INSTANCE_CREATION_DATE, VR::DA, text(&created.date));
    put(tags::INSTANCE_CREATION_TIME, VR::TM, text(&created.time));

    // General Series and Parametric Map Series
    put(tags::MODALITY, VR::CS, text("OT"));
    put(tags::SERIES_INSTANCE_UID, VR::UI, text(&uids.series));
    put(
        tags::SERIES_NUMBER,
        VR::IS,
        text(&series_number.to_string()),
    );
    let description = series_description(derivation, "XAI map");
    put(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        text(&truncate(&description, MAX_LO)),
    );
    put(tags::SERIES_DATE, VR::DA, text(&created.date));
    put(tags::SERIES_TIME, VR::TM, text(&created.time));
    let body_part =
        attrs::string(first.source, tags::BODY_PART_EXAMINED).unwrap_or_else(|| "HEAD".into());
    put(tags::BODY_PART_EXAMINED, VR::CS, text(&body_part));

    // Frame of Reference
    put(
        tags::FRAME_OF_REFERENCE_UID,
        VR::UI,
        text(&frame_of_reference),
    );
    put(
        tags::POSITION_REFERENCE_INDICATOR,
        VR::LO,
        text(&attrs::string(first.source, tags::POSITION_REFERENCE_INDICATOR).unwrap_or_default()),
    );

    // General and Enhanced General Equipment
    put(tags::MANUFACTURER, VR::LO, text("dicom-xai"));
    put(
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        text(&truncate(&derivation.model_name, MAX_LO)),
    );
    let serial = derivation
        .model_sha256
        .as_deref()
        .map_or_else(|| "unknown".to_string(), |sha| truncate(sha, 16));
    put(tags::DEVICE_SERIAL_NUMBER, VR::LO, text(&serial));
    put(
        tags::SOFTWARE_VERSIONS,
        VR::LO,
        strings(&[SOFTWARE, &format!("model {}", derivation.model_version)]),
    );

    // Parametric Map Image
    put(tags::INSTANCE_NUMBER, VR::IS, text("1"));
    put(tags::CONTENT_DATE, VR::DA, text(&created.date));
    put(tags::CONTENT_TIME, VR::TM, text(&created.time));
    put(tags::IMAGE_TYPE, VR::CS, strings(&IMAGE_TYPE));
    put(tags::CONTENT_QUALIFICATION, VR::CS, text("RESEARCH"));
    put(
        tags::CONTENT_LABEL,
        VR::CS,
        text(&content_label(&derivation.method)),
    );
    put(
        tags::CONTENT_DESCRIPTION,
        VR::LO,
        text(&truncate(
            &format!(
                "{} evidence for the predicted class, {} v{}{}",
                derivation.method,
                derivation.model_name,
                derivation.model_version,
                if derivation.trained { "" } else { " UNTRAINED" }
            ),
            MAX_LO,
        )),
    );
    put(tags::CONTENT_CREATOR_NAME, VR::PN, PrimitiveValue::Empty);
    put(tags::BURNED_IN_ANNOTATION, VR::CS, text("NO"));
    put(tags::RECOGNIZABLE_VISUAL_FEATURES, VR::CS, text("NO"));
    put(tags::LOSSY_IMAGE_COMPRESSION, VR::CS, text("00"));
    put(tags::PRESENTATION_LUT_SHAPE, VR::CS, text("IDENTITY"));

    // Image Pixel: float32, one sample
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1_u16));
    put(
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        text("MONOCHROME2"),
    );
    put(tags::ROWS, VR::US, PrimitiveValue::from(rows as u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(columns as u16));
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(32_u16));
    put(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        text(&frames.len().to_string()),
    );
    let values: Vec<f32> = frames
        .iter()
        .flat_map(|frame| {
            frame
                .map
                .iter()
                .map(|v| if v.is_finite() { v.max(0.0) } else { 0.0 })
        })
        .collect();
    let peak = values.iter().copied().fold(0.0_f32, f32::max);
    put(
        tags::FLOAT_PIXEL_DATA,
        VR::OF,
        PrimitiveValue::F32(values.into()),
    );

    // Multi-frame Dimension: the frames are indexed by their position
    let organisation = uid::derived("pmap-dimensions", &[&uids.instance]);
    let mut index = InMemDicomObject::new_empty();
    index.put(DataElement::new(
        tags::DIMENSION_ORGANIZATION_UID,
        VR::UI,
        text(&organisation),
    ));
    index.put(DataElement::new(
        tags::DIMENSION_INDEX_POINTER,
        VR::AT,
        PrimitiveValue::Tags([tags::IMAGE_POSITION_PATIENT].into_iter().collect()),
    ));
    index.put(DataElement::new(
        tags::FUNCTIONAL_GROUP_POINTER,
        VR::AT,
        PrimitiveValue::Tags([tags::PLANE_POSITION_SEQUENCE].into_iter().collect()),
    ));
    index.put(DataElement::new(
        tags::DIMENSION_DESCRIPTION_LABEL,
        VR::LO,
        text("ImagePositionPatient"),
    ));
    let mut organisation_item = InMemDicomObject::new_empty();
    organisation_item.put(DataElement::new(
        tags::DIMENSION_ORGANIZATION_UID,
        VR::UI,
        text(&organisation),
    ));
    ds.put(sequence(
        tags::DIMENSION_ORGANIZATION_SEQUENCE,
        vec![organisation_item],
    ));
    ds.put(sequence(tags::DIMENSION_INDEX_SEQUENCE, vec![index]));
    ds.put(sequence(tags::ACQUISITION_CONTEXT_SEQUENCE, Vec::new()));

    // Multi-frame Functional Groups
    ds.put(sequence(
        tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE,
        vec![shared_groups(
            reference_geometry,
            even_spacing(sources.iter().map(|(_, _, g)| g)),
            derivation,
            peak,
        )],
    ));
    let per_frame = frames
        .iter()
        .zip(&sources)
        .enumerate()
        .map(|(number, (frame, (sop, class, geometry)))| {
            frame_groups(frame, sop, class, geometry, number + 1, derivation)
        })
        .collect();
    ds.put(sequence(
        tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE,
        per_frame,
    ));

    // Common Instance Reference: the source series and the slices the map covers
    let mut series_ref = InMemDicomObject::new_empty();
    series_ref.put(DataElement::new(
        tags::SERIES_INSTANCE_UID,
        VR::UI,
        text(&source_series),
    ));
    let mut referenced: Vec<(&str, &str)> = Vec::new();
    for (sop, class, _) in &sources {
        if !referenced.iter().any(|(s, _)| *s == sop.as_str()) {
            referenced.push((sop, class));
        }
    }
    series_ref.put(sequence(
        tags::REFERENCED_INSTANCE_SEQUENCE,
        referenced
            .iter()
            .map(|(sop, class)| reference(class, sop))
            .collect(),
    ));
    ds.put(sequence(tags::REFERENCED_SERIES_SEQUENCE, vec![series_ref]));
    ds.put(sequence(
        tags::CONTRIBUTING_EQUIPMENT_SEQUENCE,
        vec![contributing_equipment(derivation, created)],
    ));

    let meta = file_meta(SOP_CLASS, &uids.instance);
    let object = ds.with_meta(meta).context(MetaSnafu {
        sop: sources[0].0.clone(),
    })?;
    Ok((object, uids))
}

/// The distance between neighbouring frames along the slice normal when every gap is the same
/// (within 1e-3 mm): SpacingBetweenSlices, which readers that rebuild a volume (dcmqi) take
/// over SliceThickness, and which differs from it when the series has gaps.
fn even_spacing<'a>(geometries: impl Iterator<Item = &'a SliceGeometry>) -> Option<f64> {
    let geometries: Vec<&SliceGeometry> = geometries.collect();
    let first = geometries.first()?;
    let normal = super::scan::slice_normal(&first.orientation);
    let along = |g: &SliceGeometry| -> f64 { (0..3).map(|i| g.position[i] * normal[i]).sum() };
    let gaps: Vec<f64> = geometries
        .windows(2)
        .map(|pair| (along(pair[1]) - along(pair[0])).abs())
        .collect();
    let gap = *gaps.first()?;
    (gap > 1e-3 && gaps.iter().all(|g| (g - gap).abs() < 1e-3)).then_some(gap)
}

/// What every frame shares: pixel measures (SpacingBetweenSlices when `spacing` is known),
/// orientation, the value mapping, a window over the whole map, the frame type.
fn shared_groups(
    geometry: &SliceGeometry,
    spacing: Option<f64>,
    derivation: &Derivation,
    peak: f32,
) -> InMemDicomObject {
    let decimal = |v: f64| decimal_string(v, GEOMETRY_DECIMALS);
    let mut measures = InMemDicomObject::new_empty();
    measures.put(DataElement::new(
        tags::PIXEL_SPACING,
        VR::DS,
        PrimitiveValue::Strs(geometry.pixel_spacing.iter().map(|v| decimal(*v)).collect()),
    ));
    // a slice without a stated thickness is taken as 1 mm (the attribute is required)
    measures.put(DataElement::new(
        tags::SLICE_THICKNESS,
        VR::DS,
        PrimitiveValue::from(decimal(geometry.slice_thickness.unwrap_or(1.0))),
    ));
    if let Some(spacing) = spacing {
        measures.put(DataElement::new(
            tags::SPACING_BETWEEN_SLICES,
            VR::DS,
            PrimitiveValue::from(decimal(spacing)),
        ));
    }
    let mut orientation = InMemDicomObject::new_empty();
    orientation.put(DataElement::new(
        tags::IMAGE_ORIENTATION_PATIENT,
        VR::DS,
        PrimitiveValue::Strs(geometry.orientation.iter().map(|v| decimal(*v)).collect()),
    ));
    // the identity: stored values are the map's values
    let top = if peak > 0.0 { f64::from(peak) } else { 1.0 };
    let mut mapping = InMemDicomObject::new_empty();
    mapping.put(DataElement::new(
        tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_FIRST_VALUE_MAPPED,
        VR::FD,
        PrimitiveValue::from(0.0_f64),
    ));
    mapping.put(DataElement::new(
        tags::DOUBLE_FLOAT_REAL_WORLD_VALUE_LAST_VALUE_MAPPED,
        VR::FD,
        PrimitiveValue::from(top),
    ));
    mapping.put(DataElement::new(
        tags::REAL_WORLD_VALUE_INTERCEPT,
        VR::FD,
        PrimitiveValue::from(0.0_f64),
    ));
    mapping.put(DataElement::new(
        tags::REAL_WORLD_VALUE_SLOPE,
        VR::FD,
        PrimitiveValue::from(1.0_f64),
    ));
    mapping.put(DataElement::new(
        tags::LUT_EXPLANATION,
        VR::LO,
        PrimitiveValue::from(truncate(
            &format!("{} evidence for the explained class", derivation.method),
            MAX_LO,
        )),
    ));
    mapping.put(DataElement::new(
        tags::LUT_LABEL,
        VR::SH,
        PrimitiveValue::from(truncate(&content_label(&derivation.method), 16)),
    ));
    mapping.put(sequence(
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item("{ratio}", "UCUM", "ratio")],
    ));
    let mut window = InMemDicomObject::new_empty();
    window.put(DataElement::new(
        tags::WINDOW_CENTER,
        VR::DS,
        PrimitiveValue::from(decimal(top / 2.0)),
    ));
    window.put(DataElement::new(
        tags::WINDOW_WIDTH,
        VR::DS,
        PrimitiveValue::from(decimal(top)),
    ));
    // LINEAR_EXACT: the window of a map whose values are fractions is narrower than 1
    window.put(DataElement::new(
        tags::VOILUT_FUNCTION,
        VR::CS,
        PrimitiveValue::from("LINEAR_EXACT"),
    ));
    // the stored values are the values (no rescale)
    let mut identity = InMemDicomObject::new_empty();
    for (tag, vr, value) in [
        (tags::RESCALE_INTERCEPT, VR::DS, "0"),
        (tags::RESCALE_SLOPE, VR::DS, "1"),
        (tags::RESCALE_TYPE, VR::LO, "US"),
    ] {
        identity.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let mut frame_type = InMemDicomObject::new_empty();
    frame_type.put(DataElement::new(
        tags::FRAME_TYPE,
        VR::CS,
        PrimitiveValue::Strs(IMAGE_TYPE.iter().map(|v| v.to_string()).collect()),
    ));
    let mut groups = InMemDicomObject::new_empty();
    groups.put(sequence(tags::PIXEL_MEASURES_SEQUENCE, vec![measures]));
    // Frame Anatomy: readers that rebuild a volume (dcmqi) expect it; the maps are of heads
    // (SNOMED CT 69536005, as PS3.16 maps BodyPartExamined HEAD), a midline structure
    let mut anatomy = InMemDicomObject::new_empty();
    anatomy.put(sequence(
        tags::ANATOMIC_REGION_SEQUENCE,
        vec![code_item("69536005", "SCT", "Head")],
    ));
    anatomy.put(DataElement::new(
        tags::FRAME_LATERALITY,
        VR::CS,
        PrimitiveValue::from("U"),
    ));
    groups.put(sequence(tags::FRAME_ANATOMY_SEQUENCE, vec![anatomy]));
    groups.put(sequence(
        tags::PLANE_ORIENTATION_SEQUENCE,
        vec![orientation],
    ));
    groups.put(sequence(
        tags::REAL_WORLD_VALUE_MAPPING_SEQUENCE,
        vec![mapping],
    ));
    groups.put(sequence(tags::FRAME_VOILUT_SEQUENCE, vec![window]));
    groups.put(sequence(
        tags::PIXEL_VALUE_TRANSFORMATION_SEQUENCE,
        vec![identity],
    ));
    groups.put(sequence(
        tags::PARAMETRIC_MAP_FRAME_TYPE_SEQUENCE,
        vec![frame_type],
    ));
    groups
}

/// One frame's groups: where it lies, which slice it derives from, its place in the
/// dimension (its position in the series' order, 1-based).
fn frame_groups(
    frame: &MapFrame<'_>,
    sop: &str,
    class: &str,
    geometry: &SliceGeometry,
    number: usize,
    derivation: &Derivation,
) -> InMemDicomObject {
    let mut position = InMemDicomObject::new_empty();
    position.put(DataElement::new(
        tags::IMAGE_POSITION_PATIENT,
        VR::DS,
        PrimitiveValue::Strs(
            geometry
                .position
                .iter()
                .map(|v| decimal_string(*v, GEOMETRY_DECIMALS))
                .collect(),
        ),
    ));
    let mut source = reference(class, sop);
    if attrs::frame_count(frame.source) > 1 && !SINGLE_FRAME_CLASSES.contains(&class) {
        source.put(DataElement::new(
            tags::REFERENCED_FRAME_NUMBER,
            VR::IS,
            PrimitiveValue::from((frame.source_frame + 1).to_string()),
        ));
    }
    source.put(sequence(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![code_item(
            "121322",
            "DCM",
            "Source image for image processing operation",
        )],
    ));
    source.put(DataElement::new(
        tags::SPATIAL_LOCATIONS_PRESERVED,
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    let mut derivation_item = InMemDicomObject::new_empty();
    derivation_item.put(DataElement::new(
        tags::DERIVATION_DESCRIPTION,
        VR::ST,
        PrimitiveValue::from(format!(
            "{} map of class {}, brought from the model input to the slice",
            derivation.method, frame.class_label
        )),
    ));
    // the map is computed on the model input and resampled to the slice's grid
    derivation_item.put(sequence(
        tags::DERIVATION_CODE_SEQUENCE,
        vec![code_item("113085", "DCM", "Spatial resampling")],
    ));
    derivation_item.put(sequence(tags::SOURCE_IMAGE_SEQUENCE, vec![source]));
    let mut content = InMemDicomObject::new_empty();
    content.put(DataElement::new(
        tags::DIMENSION_INDEX_VALUES,
        VR::UL,
        PrimitiveValue::from(number as u32),
    ));
    let mut groups = InMemDicomObject::new_empty();
    groups.put(sequence(tags::PLANE_POSITION_SEQUENCE, vec![position]));
    groups.put(sequence(
        tags::DERIVATION_IMAGE_SEQUENCE,
        vec![derivation_item],
    ));
    groups.put(sequence(tags::FRAME_CONTENT_SEQUENCE, vec![content]));
    groups
}

/// ContentLabel of a method's map: a code string (capitals, digits, space, underscore) of at
/// most 16 characters, e.g. `ATTN_GRAD`.
pub fn content_label(method: &str) -> String {
    let label: String = method
        .to_uppercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(16)
        .collect();
    if label.is_empty() {
        "MAP".into()
    } else {
        label
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_labels_are_code_strings() {
        assert_eq!(content_label("attn-grad"), "ATTN_GRAD");
        assert_eq!(content_label("gradcampp"), "GRADCAMPP");
        assert_eq!(content_label(""), "MAP");
    }
}
