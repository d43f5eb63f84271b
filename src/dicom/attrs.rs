//! Typed reads of data-set attributes, tolerant of the small irregularities real files carry
//! (padding, empty values, multi-valued strings), and of enhanced multi-frame objects whose
//! per-frame attributes live in functional group sequences.

use dicom_core::Tag;
use dicom_core::value::PrimitiveValue;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// The data set type every module works on.
pub type DataSet = InMemDicomObject;

/// Trimmed string value of an attribute, `None` when absent or empty.
pub fn string(ds: &DataSet, tag: Tag) -> Option<String> {
    let element = ds.get(tag)?;
    // text read with an unknown VR (UN, or a data set whose VRs were lost) arrives as bytes
    let value = match element.value().primitive() {
        Some(PrimitiveValue::U8(bytes)) => String::from_utf8_lossy(bytes).into_owned().into(),
        _ => element.to_str().ok()?,
    };
    let trimmed = value
        .trim_matches(|c: char| c == ' ' || c == '\0')
        .to_string();
    (!trimmed.is_empty()).then_some(trimmed)
}

/// All numeric values of an attribute (DS, IS, FL, FD, US, SS, UL, SL), `None` when absent,
/// empty or unparsable.
pub fn floats(ds: &DataSet, tag: Tag) -> Option<Vec<f64>> {
    let element = ds.get(tag)?;
    let values = element.to_multi_float64().ok()?;
    (!values.is_empty()).then_some(values)
}

/// First numeric value of an attribute.
pub fn float(ds: &DataSet, tag: Tag) -> Option<f64> {
    floats(ds, tag)?.first().copied()
}

/// First integer value of an attribute.
pub fn int(ds: &DataSet, tag: Tag) -> Option<i64> {
    let element = ds.get(tag)?;
    if let Ok(value) = element.to_int::<i64>() {
        return Some(value);
    }
    // IS values sometimes arrive as "12.0"
    float(ds, tag)
        .filter(|v| v.fract() == 0.0)
        .map(|v| v as i64)
}

/// The items of a sequence attribute (empty when absent or not a sequence).
pub fn items(ds: &DataSet, tag: Tag) -> &[DataSet] {
    ds.get(tag).and_then(|e| e.items()).unwrap_or(&[])
}

/// The first item of a sequence attribute.
pub fn first_item(ds: &DataSet, tag: Tag) -> Option<&DataSet> {
    items(ds, tag).first()
}

/// Looks up a functional-group macro attribute for one frame of an enhanced multi-frame
/// object: the per-frame group first, then the shared group (PS3.3 C.7.6.16).
/// `macro_seq` is the macro's sequence (e.g. PixelValueTransformationSequence).
pub fn frame_macro(ds: &DataSet, frame: u32, macro_seq: Tag) -> Option<&DataSet> {
    let per_frame = items(ds, tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .get(frame as usize)
        .and_then(|group| first_item(group, macro_seq));
    per_frame.or_else(|| {
        first_item(ds, tags::SHARED_FUNCTIONAL_GROUPS_SEQUENCE)
            .and_then(|group| first_item(group, macro_seq))
    })
}

/// Number of frames (1 when NumberOfFrames is absent).
pub fn frame_count(ds: &DataSet) -> u32 {
    int(ds, tags::NUMBER_OF_FRAMES)
        .filter(|n| *n > 0)
        .map_or(1, |n| n as u32)
}
