//! What every object dicom-xai derives from a source slice shares: the provenance
//! ([`Derivation`], the contributing-equipment item), the labels (NOT FOR DIAGNOSTIC USE,
//! UNTRAINED), the patient and study copied from the source, references to the source, the
//! file meta group, and writing the file whole. The Secondary Capture overlays
//! ([`super::secondary_capture`]) and the Parametric Maps ([`super::parametric_map`]) are
//! built on it.

use std::path::{Path, PathBuf};

use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::meta::FileMetaTableBuilder;
use dicom_object::{FileDicomObject, InMemDicomObject};
use snafu::{ResultExt, Snafu};

use super::attrs::{self, DataSet};
use super::scan::SeriesHeader;
use super::uid;

/// The banner every overlay carries, in SeriesDescription and burned into the pixels.
pub const NOT_FOR_DIAGNOSTIC_USE: &str = "NOT FOR DIAGNOSTIC USE";

/// Whether a series is one of our own outputs (Modality OT for overlays, summaries and maps,
/// SR for the Structured Report; SeriesDescription containing "NOT FOR DIAGNOSTIC USE", in
/// any case): such series never match a rule, and their arrival makes no work.
pub fn is_own_overlay(header: &SeriesHeader) -> bool {
    header.modality.as_deref().is_some_and(|m| {
        ["OT", "SR"]
            .iter()
            .any(|o| m.trim().eq_ignore_ascii_case(o))
    }) && header
        .description
        .as_deref()
        .is_some_and(|d| d.to_uppercase().contains(NOT_FOR_DIAGNOSTIC_USE))
}

/// The label of overlays made by a model with untrained (demo) weights.
pub const UNTRAINED: &str = "UNTRAINED";

/// Storage SOP classes defined as single-frame: a frame number may not reference them, even
/// when a non-conforming file holds several frames (dciodvfy checks this).
pub(super) const SINGLE_FRAME_CLASSES: &[&str] = &[
    uids::COMPUTED_RADIOGRAPHY_IMAGE_STORAGE,
    uids::CT_IMAGE_STORAGE,
    uids::MR_IMAGE_STORAGE,
    uids::SECONDARY_CAPTURE_IMAGE_STORAGE,
    uids::POSITRON_EMISSION_TOMOGRAPHY_IMAGE_STORAGE,
];

pub(super) const SOFTWARE: &str = concat!("dicom-xai ", env!("CARGO_PKG_VERSION"));
pub(super) const MAX_LO: usize = 64;

/// Why a derived object (an overlay, a parametric map) could not be built or written.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(super)))]
#[non_exhaustive]
pub enum WriteError {
    /// The source slice lacks an attribute the derived object must copy.
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
    /// The frames of a parametric map do not share one grid (Rows x Columns, orientation,
    /// frame of reference), or it has none.
    #[snafu(display("parametric map of series {series}: {reason}"))]
    Frames {
        /// The source SeriesInstanceUID.
        series: String,
        /// What differs.
        reason: String,
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

impl Derivation {
    /// What makes a derived object what it is, beside its source: the model (name, version,
    /// the bytes' SHA-256), the method and its parameters, and this software's version. Every
    /// derived UID is made from these, so a new checkpoint, parameter or release gives new
    /// objects and the same inputs give the same ones.
    pub fn made_by(&self) -> [&str; 6] {
        [
            self.model_name.as_str(),
            &self.model_version,
            self.model_sha256.as_deref().unwrap_or(""),
            &self.method,
            &self.parameters,
            SOFTWARE,
        ]
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

/// The SeriesDescription of a derived series: `kind` (`XAI` for overlays, `XAI map` for
/// Parametric Maps), method and model, UNTRAINED when the weights are, and always ending with
/// NOT FOR DIAGNOSTIC USE (within the 64 characters of an LO, shortening the model name if it
/// must).
pub fn series_description(derivation: &Derivation, kind: &str) -> String {
    let untrained = if derivation.trained {
        String::new()
    } else {
        format!(" {UNTRAINED}")
    };
    // the model name is what gives way: the label must survive, or the series would not be
    // recognised as ours
    let fixed = format!(
        "{kind} {} {untrained} - {NOT_FOR_DIAGNOSTIC_USE}",
        derivation.method
    );
    let room = MAX_LO.saturating_sub(fixed.len());
    let model: String = derivation.model_name.chars().take(room).collect();
    format!(
        "{kind} {} {model}{untrained} - {NOT_FOR_DIAGNOSTIC_USE}",
        derivation.method
    )
    .chars()
    .take(MAX_LO)
    .collect()
}

/// Copies the Patient and General Study modules from `source` (type 2 attributes empty when
/// the source has none) and sets `study_uid`.
pub(super) fn copy_patient_and_study(source: &DataSet, ds: &mut InMemDicomObject, study_uid: &str) {
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
        let value = attrs::string(source, tag).unwrap_or_default();
        ds.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    for (tag, vr) in [
        (tags::ISSUER_OF_PATIENT_ID, VR::LO),
        (tags::STUDY_DESCRIPTION, VR::LO),
        (tags::PATIENT_AGE, VR::AS),
    ] {
        if let Some(value) = attrs::string(source, tag) {
            ds.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
        }
    }
    ds.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study_uid),
    ));
}

/// The file meta group of a derived object of `sop_class` (Explicit VR Little Endian).
pub(super) fn file_meta(sop_class: &str, sop_instance: &str) -> FileMetaTableBuilder {
    FileMetaTableBuilder::new()
        .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .implementation_class_uid(uid::implementation_class())
        .implementation_version_name(implementation_version_name())
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

pub(super) fn implementation_version_name() -> String {
    // SH, at most 16 characters
    format!("DICOMXAI_{}", env!("CARGO_PKG_VERSION").replace('.', "_"))
        .chars()
        .take(16)
        .collect()
}

pub(super) fn derivation_description(d: &Derivation) -> String {
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
    truncate(&text, 1024)
}

pub(super) fn reference(class_uid: &str, instance_uid: &str) -> InMemDicomObject {
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

pub(super) fn sequence(tag: Tag, items: Vec<InMemDicomObject>) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::SQ, DataSetSequence::from(items))
}

/// A DS value: `value` with at most `max_decimals` decimals, fewer when the 16 characters
/// of a DS need it, trailing zeros dropped; 0 for a value that is not finite.
pub(super) fn decimal_string(value: f64, max_decimals: usize) -> String {
    if !value.is_finite() {
        return "0".into();
    }
    for precision in (0..=max_decimals).rev() {
        let text = format!("{value:.precision$}");
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        };
        if text.len() <= 16 {
            return if text == "-0" { "0".into() } else { text };
        }
    }
    format!("{value:.3e}")
}

/// The first `characters` characters of `text` (LO, SH and ST values have a length limit).
pub(super) fn truncate(text: &str, characters: usize) -> String {
    text.chars().take(characters).collect()
}

/// A code sequence item (CodeValue, CodingSchemeDesignator, CodeMeaning).
pub(super) fn code_item(value: &str, scheme: &str, meaning: &str) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    for (tag, vr, text) in [
        (tags::CODE_VALUE, VR::SH, value),
        (tags::CODING_SCHEME_DESIGNATOR, VR::SH, scheme),
        (tags::CODE_MEANING, VR::LO, meaning),
    ] {
        item.put(DataElement::new(tag, vr, PrimitiveValue::from(text)));
    }
    item
}

/// The IHE AIR provenance item: this software as processing equipment, with the model.
pub(super) fn contributing_equipment(d: &Derivation, created: &Timestamp) -> InMemDicomObject {
    let purpose = code_item("109102", "DCM", "Processing Equipment");
    let mut item = InMemDicomObject::new_empty();
    item.put(sequence(
        tags::PURPOSE_OF_REFERENCE_CODE_SEQUENCE,
        vec![purpose],
    ));
    let model_name = truncate(&d.model_name, MAX_LO);
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

#[cfg(test)]
mod tests {
    use super::*;

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
        for (model, trained) in [
            ("densenet169", true),
            ("toy-known-answer", false),
            (&"x".repeat(200)[..], false),
        ] {
            for kind in ["XAI", "XAI map"] {
                let text = series_description(&derivation(model, trained), kind);
                assert!(text.len() <= MAX_LO, "{text}");
                assert!(text.starts_with(kind), "{text}");
                assert!(text.ends_with(NOT_FOR_DIAGNOSTIC_USE), "{text}");
                assert_eq!(text.contains(UNTRAINED), !trained, "{text}");
            }
        }
    }

    #[test]
    fn decimals_fit_a_ds() {
        assert_eq!(decimal_string(0.5, 10), "0.5");
        let long = decimal_string(-120.123456789012, 10);
        assert!(long.len() <= 16, "{long}");
        assert!((long.parse::<f64>().expect("a number") + 120.123456789012).abs() < 1e-8);
        assert_eq!(decimal_string(-0.0, 10), "0");
        assert_eq!(decimal_string(1.0, 10), "1");
        // a figure of the report, from its f32: no float noise past the decimals kept
        assert_eq!(decimal_string(f64::from(0.81_f32), 6), "0.81");
        assert_eq!(decimal_string(f64::NAN, 6), "0");
    }
}
