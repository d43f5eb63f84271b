//! The Structured Report writer: one Comprehensive 3D SR per study following TID 1500
//! (Imaging Measurement Report), so software downstream can read the findings as coded values
//! (docs/design.md section 13). `run` does not call it yet.
//!
//! The content tree: the language (TID 1204); the observer, this software as a device
//! (TID 1002/1004); the procedure reported; an Image Library of every source slice
//! referenced; and under Imaging Measurements one Measurement Group (TID 1501) per (series,
//! model), tracked by a UID, with the predicted class as its Finding and each class's
//! probability as a NUM in `{ratio}`, followed by one group per explanation: the method as
//! its measurement method, the in-brain fraction and the deletion and insertion AUCs as NUMs,
//! each flag as a qualitative evaluation, the source slice as the Source of Measurement and
//! the overlay or map it describes. Classes are coded from the manifest when it gives codes,
//! else in the private scheme `99DXAI` whose code value is the label.

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileDicomObject, InMemDicomObject};
use snafu::{OptionExt, ResultExt};

use super::attrs::{self, DataSet};
use super::derived::{
    self, MAX_LO, MetaSnafu, MissingSourceSnafu, NOT_FOR_DIAGNOSTIC_USE, SOFTWARE, Timestamp,
    WriteError, copy_patient_and_study, decimal_string, file_meta, reference, sequence, truncate,
};
use super::uid;

/// The SOP Class written: Comprehensive 3D SR Storage.
pub const SOP_CLASS: &str = uids::COMPREHENSIVE3_DSR_STORAGE;

/// The private coding scheme of labels, methods and flags without a standard code.
pub const PRIVATE_SCHEME: &str = "99DXAI";

/// Decimals kept in a NUM (probabilities, fractions, curve areas).
const FIGURE_DECIMALS: usize = 6;

/// A coded concept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    /// CodeValue.
    pub value: String,
    /// CodingSchemeDesignator.
    pub scheme: String,
    /// CodeMeaning.
    pub meaning: String,
}

impl Code {
    /// A code of a standard scheme.
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Code {
        Code {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }

    /// A code of this software's private scheme: the value is `name` (at most 16
    /// characters), the meaning `meaning`.
    pub fn private(name: &str, meaning: &str) -> Code {
        Code::new(
            &truncate(name, 16),
            PRIVATE_SCHEME,
            &truncate(meaning, MAX_LO),
        )
    }
}

/// A slice, an overlay or a map: what a content item references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referenced {
    /// SOPClassUID.
    pub class_uid: String,
    /// SOPInstanceUID.
    pub instance_uid: String,
    /// SeriesInstanceUID.
    pub series_uid: String,
}

/// One model on one series.
#[derive(Debug, Clone)]
pub struct SeriesFinding {
    /// SeriesInstanceUID of the source series.
    pub series_uid: String,
    /// Model name, version, SHA-256 of its bytes, whether it is trained.
    pub model: (String, String, String, bool),
    /// The predicted class.
    pub finding: Code,
    /// The slice the call rests on and its size (rows, columns): each probability is
    /// inferred from that whole slice.
    pub decided_on: Option<(Referenced, (u32, u32))>,
    /// Each class and its probability (the series-level call's), in label order.
    pub probabilities: Vec<(Code, f32)>,
    /// The explanations of the series by this model.
    pub explanations: Vec<ExplanationFinding>,
}

/// One explanation of one slice.
#[derive(Debug, Clone)]
pub struct ExplanationFinding {
    /// The method's name.
    pub method: String,
    /// The class explained.
    pub class: Code,
    /// The source slice.
    pub source: Referenced,
    /// Its size (rows, columns), when known: each figure is inferred from the whole slice.
    pub source_size: Option<(u32, u32)>,
    /// Share of the map's mass inside the brain.
    pub in_brain_fraction: Option<f32>,
    /// Deletion AUC.
    pub deletion_auc: Option<f32>,
    /// Insertion AUC.
    pub insertion_auc: Option<f32>,
    /// Quality flags (`evidence-outside-brain`, ...).
    pub flags: Vec<String>,
    /// The overlay (and map) showing it.
    pub outputs: Vec<Referenced>,
}

/// The report's identity: one per study and set of findings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportUids {
    /// SeriesInstanceUID.
    pub series: String,
    /// SOPInstanceUID.
    pub instance: String,
}

/// Builds the report of a study: `source` is any instance of the study (patient and study
/// are copied from it), `images` every source slice the findings rest on.
pub fn build(
    source: &DataSet,
    findings: &[SeriesFinding],
    images: &[Referenced],
    series_number: u32,
    created: &Timestamp,
) -> Result<(FileDicomObject<InMemDicomObject>, ReportUids), WriteError> {
    let sop = attrs::string(source, tags::SOP_INSTANCE_UID).unwrap_or_else(|| "(none)".into());
    let study_uid =
        attrs::string(source, tags::STUDY_INSTANCE_UID).context(MissingSourceSnafu {
            sop: sop.clone(),
            name: "StudyInstanceUID",
        })?;
    // the same study, models and findings give the same report
    let mut parts: Vec<String> = vec![study_uid.clone(), SOFTWARE.to_string()];
    for finding in findings {
        parts.extend([
            finding.series_uid.clone(),
            finding.model.0.clone(),
            finding.model.1.clone(),
            finding.model.2.clone(),
            finding.finding.value.clone(),
        ]);
        for explanation in &finding.explanations {
            parts.extend(explanation.outputs.iter().map(|o| o.instance_uid.clone()));
        }
    }
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let uids = ReportUids {
        series: uid::derived("sr-series", &[&study_uid, SOFTWARE]),
        instance: uid::derived("sr-instance", &parts),
    };

    let mut ds = InMemDicomObject::new_empty();
    copy_patient_and_study(source, &mut ds, &study_uid);
    let mut put = |tag: Tag, vr: VR, value: &str| {
        ds.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    // SOP Common
    put(tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
    put(tags::SOP_CLASS_UID, VR::UI, SOP_CLASS);
    put(tags::SOP_INSTANCE_UID, VR::UI, &uids.instance);
    put(tags::INSTANCE_CREATION_DATE, VR::DA, &created.date);
    put(tags::INSTANCE_CREATION_TIME, VR::TM, &created.time);
    // SR Document Series
    put(tags::MODALITY, VR::CS, "SR");
    put(tags::SERIES_INSTANCE_UID, VR::UI, &uids.series);
    put(tags::SERIES_NUMBER, VR::IS, &series_number.to_string());
    put(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        &truncate(&format!("XAI findings - {NOT_FOR_DIAGNOSTIC_USE}"), MAX_LO),
    );
    put(tags::SERIES_DATE, VR::DA, &created.date);
    put(tags::SERIES_TIME, VR::TM, &created.time);
    // General and Enhanced General Equipment
    put(tags::MANUFACTURER, VR::LO, "dicom-xai");
    put(tags::MANUFACTURER_MODEL_NAME, VR::LO, "dicom-xai");
    put(
        tags::DEVICE_SERIAL_NUMBER,
        VR::LO,
        env!("CARGO_PKG_VERSION"),
    );
    put(tags::SOFTWARE_VERSIONS, VR::LO, SOFTWARE);
    // SR Document General
    put(tags::INSTANCE_NUMBER, VR::IS, "1");
    put(tags::COMPLETION_FLAG, VR::CS, "COMPLETE");
    put(tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
    put(tags::CONTENT_DATE, VR::DA, &created.date);
    put(tags::CONTENT_TIME, VR::TM, &created.time);
    ds.put(sequence(
        tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
        Vec::new(),
    ));
    ds.put(sequence(
        tags::PERFORMED_PROCEDURE_CODE_SEQUENCE,
        Vec::new(),
    ));
    ds.put(sequence(
        tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
        vec![evidence(&study_uid, images, findings)],
    ));

    // SR Document Content: the root container and the tree
    let mut put = |tag: Tag, vr: VR, value: &str| {
        ds.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    };
    put(tags::VALUE_TYPE, VR::CS, "CONTAINER");
    put(tags::CONTINUITY_OF_CONTENT, VR::CS, "SEPARATE");
    ds.put(sequence(
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(&Code::new(
            "126000",
            "DCM",
            "Imaging Measurement Report",
        ))],
    ));
    let mut template = InMemDicomObject::new_empty();
    template.put(DataElement::new(
        tags::MAPPING_RESOURCE,
        VR::CS,
        PrimitiveValue::from("DCMR"),
    ));
    template.put(DataElement::new(
        tags::TEMPLATE_IDENTIFIER,
        VR::CS,
        PrimitiveValue::from("1500"),
    ));
    ds.put(sequence(tags::CONTENT_TEMPLATE_SEQUENCE, vec![template]));
    ds.put(sequence(
        tags::CODING_SCHEME_IDENTIFICATION_SEQUENCE,
        vec![coding_scheme()],
    ));
    ds.put(sequence(
        tags::CONTENT_SEQUENCE,
        content(&uids, findings, images),
    ));

    let meta = file_meta(SOP_CLASS, &uids.instance);
    let object = ds.with_meta(meta).context(MetaSnafu { sop })?;
    Ok((object, uids))
}

/// The root's children (TID 1500).
fn content(
    uids: &ReportUids,
    findings: &[SeriesFinding],
    images: &[Referenced],
) -> Vec<InMemDicomObject> {
    let mut items = vec![
        code(
            "HAS CONCEPT MOD",
            &Code::new("121049", "DCM", "Language of Content Item and Descendants"),
            &Code::new("en-US", "RFC5646", "English (United States)"),
        ),
        code(
            "HAS OBS CONTEXT",
            &Code::new("121005", "DCM", "Observer Type"),
            &Code::new("121007", "DCM", "Device"),
        ),
        uidref(
            "HAS OBS CONTEXT",
            &Code::new("121012", "DCM", "Device Observer UID"),
            &uid::derived("sr-observer", &[SOFTWARE]),
        ),
        text(
            "HAS OBS CONTEXT",
            &Code::new("121013", "DCM", "Device Observer Name"),
            "dicom-xai",
        ),
        text(
            "HAS OBS CONTEXT",
            &Code::new("121014", "DCM", "Device Observer Manufacturer"),
            "dicom-xai",
        ),
        text(
            "HAS OBS CONTEXT",
            &Code::new("121015", "DCM", "Device Observer Model Name"),
            SOFTWARE,
        ),
        code(
            "HAS CONCEPT MOD",
            &Code::new("121058", "DCM", "Procedure reported"),
            &Code::new("25056-3", "LN", "MRI unspecified body region"),
        ),
    ];
    let library_group = container(
        "CONTAINS",
        &Code::new("126200", "DCM", "Image Library Group"),
        images.iter().map(|i| image("CONTAINS", None, i)).collect(),
    );
    items.push(container(
        "CONTAINS",
        &Code::new("111028", "DCM", "Image Library"),
        vec![library_group],
    ));
    let mut groups = Vec::new();
    for finding in findings {
        groups.push(series_group(uids, finding));
        for (index, explanation) in finding.explanations.iter().enumerate() {
            groups.push(explanation_group(uids, finding, explanation, index));
        }
    }
    items.push(container(
        "CONTAINS",
        &Code::new("126010", "DCM", "Imaging Measurements"),
        groups,
    ));
    items
}

/// TID 1501 for a model's call on a series: its finding and the probabilities.
fn series_group(uids: &ReportUids, finding: &SeriesFinding) -> InMemDicomObject {
    let (name, version, sha, trained) = &finding.model;
    let tracking = truncate(
        &format!(
            "{name} v{version}{} on series {}",
            if *trained { "" } else { " UNTRAINED" },
            finding.series_uid
        ),
        64,
    );
    let mut children = tracked(
        &tracking,
        &uid::derived(
            "sr-group",
            &[&uids.instance, &finding.series_uid, name, sha],
        ),
    );
    children.push(code(
        "CONTAINS",
        &Code::new("121071", "DCM", "Finding"),
        &finding.finding,
    ));
    for (class, probability) in &finding.probabilities {
        let mut item = num(
            &Code::private(
                &format!("P-{}", class.value),
                &format!("Probability of {}", class.meaning),
            ),
            *probability,
        );
        if let Some((slice, size)) = &finding.decided_on {
            item.put(sequence(
                tags::CONTENT_SEQUENCE,
                vec![whole_slice(slice, *size)],
            ));
        }
        children.push(item);
    }
    container(
        "CONTAINS",
        &Code::new("125007", "DCM", "Measurement Group"),
        children,
    )
}

/// TID 1501 for one explanation of one slice: method, quality figures, flags, references.
fn explanation_group(
    uids: &ReportUids,
    finding: &SeriesFinding,
    explanation: &ExplanationFinding,
    index: usize,
) -> InMemDicomObject {
    let tracking = truncate(
        &format!(
            "{} {} of {}",
            finding.model.0, explanation.method, explanation.source.instance_uid
        ),
        64,
    );
    let method = Code::private(
        &explanation.method,
        &format!("{} explanation", explanation.method),
    );
    let mut children = tracked(
        &tracking,
        &uid::derived(
            "sr-explanation",
            &[
                &uids.instance,
                &finding.series_uid,
                &finding.model.0,
                &explanation.method,
                &explanation.source.instance_uid,
                &index.to_string(),
            ],
        ),
    );
    children.push(code(
        "CONTAINS",
        &Code::new("121071", "DCM", "Finding"),
        &explanation.class,
    ));
    for (value, code_value, meaning) in [
        (
            explanation.in_brain_fraction,
            "IN-BRAIN",
            "Evidence inside the brain",
        ),
        (
            explanation.deletion_auc,
            "DELETION-AUC",
            "Deletion curve area",
        ),
        (
            explanation.insertion_auc,
            "INSERTION-AUC",
            "Insertion curve area",
        ),
    ] {
        if let Some(value) = value {
            let mut item = num(&Code::private(code_value, meaning), value);
            let mut modifiers = vec![code(
                "HAS CONCEPT MOD",
                &Code::new("370129005", "SCT", "Measurement Method"),
                &method,
            )];
            if let Some(size) = explanation.source_size {
                modifiers.push(whole_slice(&explanation.source, size));
            }
            item.put(sequence(tags::CONTENT_SEQUENCE, modifiers));
            children.push(item);
        }
    }
    for flag in &explanation.flags {
        children.push(code(
            "CONTAINS",
            &Code::private("QUALITY-FLAG", "Quality flag"),
            &flag_code(flag),
        ));
    }
    children.push(image(
        "CONTAINS",
        Some(&Code::new("121112", "DCM", "Source of Measurement")),
        &explanation.source,
    ));
    for output in &explanation.outputs {
        children.push(image(
            "CONTAINS",
            Some(&Code::private("XAI-OUTPUT", "Explanation image")),
            output,
        ));
    }
    container(
        "CONTAINS",
        &Code::new("125007", "DCM", "Measurement Group"),
        children,
    )
}

/// A quality flag as a private code: a value of at most 16 characters, the flag as written
/// in report.json as its meaning.
pub fn flag_code(flag: &str) -> Code {
    let value = match flag {
        "evidence-outside-brain" => "OUTSIDE-BRAIN".to_string(),
        "methods-disagree" => "DISAGREE".to_string(),
        other => other.to_uppercase(),
    };
    Code::private(&value, flag)
}

/// The private coding scheme, declared as PS3.3 C.12.1.1.2 asks.
fn coding_scheme() -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    for (tag, vr, value) in [
        (tags::CODING_SCHEME_DESIGNATOR, VR::SH, PRIVATE_SCHEME),
        (
            tags::CODING_SCHEME_NAME,
            VR::ST,
            "dicom-xai: class labels, explanation methods, quality figures and flags",
        ),
        (
            tags::CODING_SCHEME_RESPONSIBLE_ORGANIZATION,
            VR::ST,
            "dicom-xai",
        ),
    ] {
        item.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    }
    item
}

/// The Tracking Identifier and Tracking Unique Identifier of a measurement group.
fn tracked(identifier: &str, unique: &str) -> Vec<InMemDicomObject> {
    vec![
        text(
            "HAS OBS CONTEXT",
            &Code::new("112039", "DCM", "Tracking Identifier"),
            identifier,
        ),
        uidref(
            "HAS OBS CONTEXT",
            &Code::new("112040", "DCM", "Tracking Unique Identifier"),
            unique,
        ),
    ]
}

/// The instances the report references, by study and series.
fn evidence(
    study_uid: &str,
    images: &[Referenced],
    findings: &[SeriesFinding],
) -> InMemDicomObject {
    let mut all: Vec<&Referenced> = images.iter().collect();
    for finding in findings {
        for explanation in &finding.explanations {
            all.extend(&explanation.outputs);
        }
    }
    let mut series: Vec<(&str, Vec<InMemDicomObject>)> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for item in all {
        if seen.contains(&item.instance_uid.as_str()) {
            continue;
        }
        seen.push(&item.instance_uid);
        let sop = reference(&item.class_uid, &item.instance_uid);
        match series.iter_mut().find(|(uid, _)| *uid == item.series_uid) {
            Some((_, list)) => list.push(sop),
            None => series.push((&item.series_uid, vec![sop])),
        }
    }
    let mut study = InMemDicomObject::new_empty();
    study.put(DataElement::new(
        tags::STUDY_INSTANCE_UID,
        VR::UI,
        PrimitiveValue::from(study_uid),
    ));
    study.put(sequence(
        tags::REFERENCED_SERIES_SEQUENCE,
        series
            .into_iter()
            .map(|(uid, sops)| {
                let mut item = InMemDicomObject::new_empty();
                item.put(DataElement::new(
                    tags::SERIES_INSTANCE_UID,
                    VR::UI,
                    PrimitiveValue::from(uid),
                ));
                item.put(sequence(tags::REFERENCED_SOP_SEQUENCE, sops));
                item
            })
            .collect(),
    ));
    study
}

fn code_item(code: &Code) -> InMemDicomObject {
    derived::code_item(&code.value, &code.scheme, &code.meaning)
}

/// A content item of `value_type` named `name`, related to its parent by `relationship`.
fn item(relationship: &str, value_type: &str, name: Option<&Code>) -> InMemDicomObject {
    let mut item = InMemDicomObject::new_empty();
    item.put(DataElement::new(
        tags::RELATIONSHIP_TYPE,
        VR::CS,
        PrimitiveValue::from(relationship),
    ));
    item.put(DataElement::new(
        tags::VALUE_TYPE,
        VR::CS,
        PrimitiveValue::from(value_type),
    ));
    if let Some(name) = name {
        item.put(sequence(
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code_item(name)],
        ));
    }
    item
}

fn container(relationship: &str, name: &Code, children: Vec<InMemDicomObject>) -> InMemDicomObject {
    let mut container = item(relationship, "CONTAINER", Some(name));
    container.put(DataElement::new(
        tags::CONTINUITY_OF_CONTENT,
        VR::CS,
        PrimitiveValue::from("SEPARATE"),
    ));
    container.put(sequence(tags::CONTENT_SEQUENCE, children));
    container
}

fn code(relationship: &str, name: &Code, value: &Code) -> InMemDicomObject {
    let mut item = item(relationship, "CODE", Some(name));
    item.put(sequence(
        tags::CONCEPT_CODE_SEQUENCE,
        vec![code_item(value)],
    ));
    item
}

fn text(relationship: &str, name: &Code, value: &str) -> InMemDicomObject {
    valued(
        relationship,
        "TEXT",
        name,
        (tags::TEXT_VALUE, VR::UT),
        value,
    )
}

fn uidref(relationship: &str, name: &Code, value: &str) -> InMemDicomObject {
    valued(relationship, "UIDREF", name, (tags::UID, VR::UI), value)
}

/// A content item whose value is one element (`TEXT`, `UIDREF`).
fn valued(
    relationship: &str,
    value_type: &str,
    name: &Code,
    (tag, vr): (Tag, VR),
    value: &str,
) -> InMemDicomObject {
    let mut item = item(relationship, value_type, Some(name));
    item.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
    item
}

/// A NUM in `{ratio}`.
fn num(name: &Code, value: f32) -> InMemDicomObject {
    let mut item = item("CONTAINS", "NUM", Some(name));
    let mut measured = InMemDicomObject::new_empty();
    measured.put(DataElement::new(
        tags::NUMERIC_VALUE,
        VR::DS,
        PrimitiveValue::from(decimal_string(f64::from(value), FIGURE_DECIMALS)),
    ));
    measured.put(sequence(
        tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
        vec![code_item(&Code::new("{ratio}", "UCUM", "ratio"))],
    ));
    item.put(sequence(tags::MEASURED_VALUE_SEQUENCE, vec![measured]));
    item
}

/// TID 320: the value was inferred from the whole of `slice` (`rows`, `columns`): a closed
/// polyline along its edges, in image coordinates (TID 300 "INFERRED FROM"). Viewers that
/// place measurements on images (OHIF) need such a region to show the group at all.
fn whole_slice(slice: &Referenced, (rows, columns): (u32, u32)) -> InMemDicomObject {
    let mut region = item("INFERRED FROM", "SCOORD", None);
    region.put(DataElement::new(
        tags::GRAPHIC_TYPE,
        VR::CS,
        PrimitiveValue::from("POLYLINE"),
    ));
    let (width, height) = (columns as f32, rows as f32);
    region.put(DataElement::new(
        tags::GRAPHIC_DATA,
        VR::FL,
        PrimitiveValue::F32(
            [0.0, 0.0, width, 0.0, width, height, 0.0, height, 0.0, 0.0]
                .into_iter()
                .collect(),
        ),
    ));
    region.put(sequence(
        tags::CONTENT_SEQUENCE,
        vec![image("SELECTED FROM", None, slice)],
    ));
    region
}

fn image(relationship: &str, name: Option<&Code>, image: &Referenced) -> InMemDicomObject {
    let mut item = item(relationship, "IMAGE", name);
    item.put(sequence(
        tags::REFERENCED_SOP_SEQUENCE,
        vec![reference(&image.class_uid, &image.instance_uid)],
    ));
    item
}
