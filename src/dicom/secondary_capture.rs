//! The Secondary Capture writer: one RGB SC Image per explained slice, in the source's study,
//! with every attribute of the overlay contract (docs/design.md section 5) and deterministic
//! UIDs.
//!
//! The pixels are supplied by the caller (the renderer burns the heat map, the legend and the
//! "NOT FOR DIAGNOSTIC USE" banner into them); this module only describes them correctly.

use std::path::{Path, PathBuf};

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use snafu::{ResultExt, Snafu, ensure};

use super::attrs::{self, DataSet};
use super::scan::SeriesHeader;
use super::uid;

/// The SOP Class written: Secondary Capture Image Storage.
pub const SOP_CLASS: &str = uids::SECONDARY_CAPTURE_IMAGE_STORAGE;

/// The banner every overlay carries, in SeriesDescription and burned into the pixels.
pub const NOT_FOR_DIAGNOSTIC_USE: &str = "NOT FOR DIAGNOSTIC USE";

/// Whether a series is one of our own overlays (Modality OT, SeriesDescription containing
/// "NOT FOR DIAGNOSTIC USE", in any case): such series never match a rule.
pub fn is_own_overlay(header: &SeriesHeader) -> bool {
    header
        .modality
        .as_deref()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("OT"))
        && header
            .description
            .as_deref()
            .is_some_and(|d| d.to_uppercase().contains(NOT_FOR_DIAGNOSTIC_USE))
}

/// The label of overlays made by a model with untrained (demo) weights.
pub const UNTRAINED: &str = "UNTRAINED";

/// Storage SOP classes defined as single-frame: a frame number may not reference them, even
/// when a non-conforming file holds several frames (dciodvfy checks this).
const SINGLE_FRAME_CLASSES: &[&str] = &[
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
];

const SOFTWARE: &str = concat!("dicom-xai ", env!("CARGO_PKG_VERSION"));
const MAX_LO: usize = 64;

/// Why an overlay could not be built or written.
#[derive(Debug, Snafu)]
#[non_exhaustive]
pub enum WriteError {
    /// The source slice lacks an attribute the overlay must copy.
    #[snafu(display("source SOP Instance {sop}: missing {name}, cannot derive an overlay"))]
    MissingSource {
        /// The source SOP Instance UID (or a placeholder when that is what is missing).
        sop: String,
        /// The attribute.
        name: &'static str,
    },
    /// The RGB buffer does not match rows x columns x 3.
    #[snafu(display("overlay for {sop}: {len} RGB bytes for {rows} x {columns} pixels"))]
    PixelCount {
        /// The source SOP Instance UID.
        sop: String,
        /// Bytes given.
        len: usize,
        /// Rows.
        rows: u32,
        /// Columns.
        columns: u32,
    },
    /// The file meta group could not be built.
    #[snafu(display("overlay for {sop}: file meta: {source}"))]
    Meta {
        /// The source SOP Instance UID.
        sop: String,
        /// The builder's error.
        #[snafu(source(from(dicom_object::WithMetaError, Box::new)))]
        source: Box<dicom_object::WithMetaError>,
    },
    /// Writing the file failed.
    #[snafu(display("{}: cannot write overlay: {source}", path.display()))]
    Write {
        /// The file.
        path: PathBuf,
        /// The writer's error.
        #[snafu(source(from(dicom_object::WriteError, Box::new)))]
        source: Box<dicom_object::WriteError>,
    },
    /// Storing the finished file (folder, temporary file, rename) failed.
    #[snafu(display("{}: cannot store overlay: {source}", path.display()))]
    Rename {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

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

/// What produced the overlay: recorded in the UIDs, the descriptions and the provenance.
#[derive(Debug, Clone)]
pub struct Derivation {
    /// The model's name (manifest `model.name`).
    pub model_name: String,
    /// The model's version (manifest `model.version`).
    pub model_version: String,
    /// SHA-256 of the model file, when known (becomes the DeviceUID).
    pub model_sha256: Option<String>,
    /// Whether the model is trained; untrained overlays say UNTRAINED.
    pub trained: bool,
    /// The explanation method (e.g. `gradcam`).
    pub method: String,
    /// The method's parameters as JSON (serde_json writes object keys sorted): part of the
    /// UIDs, so that changed parameters give new overlays instead of reusing the old UIDs.
    pub parameters: String,
    /// The tensor the method read (CAM layer), when it has one.
    pub target_layer: Option<String>,
    /// The class explained.
    pub class_label: String,
    /// The model's probability for that class.
    pub probability: f32,
    /// The colour map.
    pub colour_map: String,
    /// The quality checks' summary line, when computed.
    pub quality: Option<String>,
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
        let made_by = [
            derivation.model_name.as_str(),
            &derivation.model_version,
            derivation.model_sha256.as_deref().unwrap_or(""),
            &derivation.method,
            &derivation.parameters,
            SOFTWARE,
        ];
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

/// A moment, as DICOM DA and TM strings.
#[derive(Debug, Clone)]
pub struct Timestamp {
    /// YYYYMMDD.
    pub date: String,
    /// HHMMSS.FFFFFF.
    pub time: String,
}

impl Timestamp {
    /// The current UTC time.
    pub fn now() -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(since_epoch.as_secs() as i64, since_epoch.subsec_micros())
    }

    /// A UTC time from seconds since 1970 (days-to-civil, H. Hinnant's algorithm).
    pub fn from_unix(seconds: i64, micros: u32) -> Timestamp {
        let days = seconds.div_euclid(86_400);
        let secs = seconds.rem_euclid(86_400);
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        Timestamp {
            date: format!("{year:04}{month:02}{day:02}"),
            time: format!(
                "{:02}{:02}{:02}.{micros:06}",
                secs / 3600,
                secs % 3600 / 60,
                secs % 60
            ),
        }
    }
}

/// The SeriesDescription of an overlay series: names method and model, says UNTRAINED when
/// the weights are, and always ends with NOT FOR DIAGNOSTIC USE (within the 64 characters of
/// an LO, shortening the model name if it must).
pub fn series_description(derivation: &Derivation) -> String {
    let untrained = if derivation.trained {
        String::new()
    } else {
        format!(" {UNTRAINED}")
    };
    let fixed = format!(
        "XAI {} {untrained} - {NOT_FOR_DIAGNOSTIC_USE}",
        derivation.method
    );
    let room = MAX_LO.saturating_sub(fixed.len());
    let model: String = derivation.model_name.chars().take(room).collect();
    format!(
        "XAI {} {model}{untrained} - {NOT_FOR_DIAGNOSTIC_USE}",
        derivation.method
    )
    .chars()
    .take(MAX_LO)
    .collect()
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

    // Patient and General Study: copied (type 2: empty when the source has none)
    for (tag, vr) in [
        (tags::PATIENT_NAME, VR::PN),
        (tags::PATIENT_ID, VR::LO),
        (tags::PATIENT_BIRTH_DATE, VR::DA),
        (tags::PATIENT_SEX, VR::CS),
        (tags::STUDY_DATE, VR::DA),
        (tags::STUDY_TIME, VR::TM),
        (tags::REFERRING_PHYSICIAN_NAME, VR::PN),
        (tags::STUDY_ID, VR::SH),
        (tags::ACCESSION_NUMBER, VR::SH),
    ] {
        put(
            tag,
            vr,
            attrs::string(source, tag).unwrap_or_default().into(),
        );
    }
    for (tag, vr) in [
        (tags::ISSUER_OF_PATIENT_ID, VR::LO),
        (tags::STUDY_DESCRIPTION, VR::LO),
        (tags::PATIENT_AGE, VR::AS),
    ] {
        if let Some(value) = attrs::string(source, tag) {
            put(tag, vr, value.into());
        }
    }
    put(tags::STUDY_INSTANCE_UID, VR::UI, study_uid.as_str().into());

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
        series_description(derivation).into(),
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

    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(SOP_CLASS)
        .media_storage_sop_instance_uid(uids.instance.as_str())
        .implementation_class_uid(uid::implementation_class())
        .implementation_version_name(implementation_version_name());
    ds.with_meta(meta).context(MetaSnafu { sop: source_sop })
}

/// Writes `object` to `path` atomically (see [`crate::files::write_atomically`]), so a
/// reader (or a crash) never sees half a file; missing folders are created.
pub fn write_atomically(
    object: &FileDicomObject<InMemDicomObject>,
    path: &Path,
) -> Result<(), WriteError> {
    let mut bytes = Vec::new();
    object.write_all(&mut bytes).context(WriteSnafu { path })?;
    crate::files::write_atomically(path, &bytes).context(RenameSnafu { path })
}

fn implementation_version_name() -> String {
    // SH, at most 16 characters
    format!("DICOMXAI_{}", env!("CARGO_PKG_VERSION").replace('.', "_"))
        .chars()
        .take(16)
        .collect()
}

fn image_matches_source(source: &DataSet, image: &RgbImage) -> bool {
    attrs::int(source, tags::ROWS) == Some(i64::from(image.rows))
        && attrs::int(source, tags::COLUMNS) == Some(i64::from(image.columns))
}

fn spacing_value(spacing: &str) -> PrimitiveValue {
    PrimitiveValue::Strs(spacing.split('\\').map(|s| s.trim().to_string()).collect())
}

fn derivation_description(d: &Derivation) -> String {
    let text = format!(
        "method={}; layer={}; class={}; probability={:.4}; colormap={}; model={} v{}{}{}",
        d.method,
        d.target_layer.as_deref().unwrap_or("input"),
        d.class_label,
        d.probability,
        d.colour_map,
        d.model_name,
        d.model_version,
        if d.trained { "" } else { " (UNTRAINED)" },
        d.quality
            .as_deref()
            .map(|q| format!("; quality: {q}"))
            .unwrap_or_default()
    );
    // DerivationDescription is ST: at most 1024 characters
    text.chars().take(1024).collect()
}

fn reference(class_uid: &str, instance_uid: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::REFERENCED_SOP_CLASS_UID,
        VR::UI,
        PrimitiveValue::from(class_uid),
    ));
    item.put(DataElement::new(
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(instance_uid),
    ));
    item
}

fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// The IHE AIR provenance item: this software as processing equipment, with the model.
fn contributing_equipment(d: &Derivation, created: &Timestamp) -> InMemDicomObject {
    let mut purpose = InMemDicomObject::new_empty();
    for (tag, vr, value) in [
        (tags::CODE_VALUE, VR::SH, "109102"),
        (tags::CODING_SCHEME_DESIGNATOR, VR::SH, "DCM"),
        (tags::CODE_MEANING, VR::LO, "Processing Equipment"),
    ] {
        purpose.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    let mut item = InMemDicomObject::new_empty();
    item.put(sequence(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![purpose],
    ));
    let model_name: String = d.model_name.chars().take(MAX_LO).collect();
    let versions = PrimitiveValue::Strs(
        [format!("model {}", d.model_version), SOFTWARE.to_string()]
            .into_iter()
            .collect(),
    );
    item.put(DataElement::new(
        tags::MANUFACTURER,
        VR::LO,
        PrimitiveValue::from("dicom-xai"),
    ));
    item.put(DataElement::new(
        tags::MANUFACTURER_MODEL_NAME,
        VR::LO,
        PrimitiveValue::from(model_name),
    ));
    item.put(DataElement::new(tags::SOFTWARE_VERSIONS, VR::LO, versions));
    if let Some(sha) = &d.model_sha256 {
        item.put(DataElement::new(
            tags::DEVICE_UID,
            VR::UI,
            PrimitiveValue::from(uid::derived("model", &[sha])),
        ));
    }
    item.put(DataElement::new(
        tags::CONTRIBUTION_DATE_TIME,
        VR::DT,
        PrimitiveValue::from(format!("{}{}", created.date, created.time)),
    ));
    let description: String = format!("{} explanation ({})", d.method, SOFTWARE)
        .chars()
        .take(MAX_LO)
        .collect();
    item.put(DataElement::new(
        tags::CONTRIBUTION_DESCRIPTION,
        VR::ST,
        PrimitiveValue::from(description),
    ));
    item
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

    #[test]
    fn timestamps_are_civil_utc() {
        let t = Timestamp::from_unix(0, 0);
        assert_eq!(
            (t.date.as_str(), t.time.as_str()),
            ("19700101", "000000.000000")
        );
        // 2026-11-26 14:39:01.5 UTC
        let t = Timestamp::from_unix(1_795_703_941, 500_000);
        assert_eq!(
            (t.date.as_str(), t.time.as_str()),
            ("20261126", "143901.500000")
        );
        let leap = Timestamp::from_unix(951_782_400, 0); // 2000-02-29
        assert_eq!(leap.date, "20000229");
    }

    fn derivation(model: &str, trained: bool) -> Derivation {
        Derivation {
            quality: None,
            model_name: model.into(),
            model_version: "1".into(),
            model_sha256: None,
            trained,
            method: "gradcampp".into(),
            parameters: "{}".into(),
            target_layer: None,
            class_label: "glioma".into(),
            probability: 0.9,
            colour_map: "jet".into(),
        }
    }

    #[test]
    fn series_description_always_fits_and_warns() {
        for (model, trained) in [("densenet169", true), (&"x".repeat(200)[..], false)] {
            let text = series_description(&derivation(model, trained));
            assert!(text.len() <= MAX_LO, "{text}");
            assert!(text.ends_with(NOT_FOR_DIAGNOSTIC_USE), "{text}");
            assert_eq!(text.contains(UNTRAINED), !trained, "{text}");
        }
    }
}
