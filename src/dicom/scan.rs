//! Finding DICOM files under the inputs and grouping them into studies and series, with the
//! slices of each series in spatial order.
//!
//! Order: ascending position along the slice normal (ImagePositionPatient projected on
//! row-cosines x column-cosines, PS3.3 C.7.6.2.1.1), then InstanceNumber, then frame, then
//! SOP Instance UID; series without geometry fall back to InstanceNumber. Multi-frame
//! instances contribute one slice per frame, placed by their per-frame Plane Position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use dicom_dictionary_std::tags;
use walkdir::WalkDir;

use super::attrs::{self, DataSet};
use super::file::{self, Depth, ReadError};
use super::geometry;

/// One DICOM instance found by a scan (its header only; pixels are read when needed).
#[derive(Debug, Clone)]
pub struct Instance {
    /// The file.
    pub path: PathBuf,
    /// SOP Instance UID.
    pub sop_instance_uid: String,
    /// SOP Class UID.
    pub sop_class_uid: String,
    /// InstanceNumber, when present.
    pub instance_number: Option<i64>,
    /// Number of frames.
    pub frames: u32,
    /// ImagePositionPatient of each frame, when known.
    pub positions: Vec<Option<[f64; 3]>>,
    /// ImageOrientationPatient (row then column direction cosines), when known.
    pub orientation: Option<[f64; 6]>,
}

/// A slice of a series: one frame of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceRef {
    /// Index into [`Series::instances`].
    pub instance: usize,
    /// Frame within that instance (0-based).
    pub frame: u32,
}

/// Series- and study-level attributes that site rules select on, read from the first
/// instance found of the series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesHeader {
    /// SeriesNumber.
    pub number: Option<i64>,
    /// SeriesDescription.
    pub description: Option<String>,
    /// Modality.
    pub modality: Option<String>,
    /// ProtocolName.
    pub protocol_name: Option<String>,
    /// StudyDescription.
    pub study_description: Option<String>,
    /// BodyPartExamined.
    pub body_part_examined: Option<String>,
    /// ImageType values (e.g. ORIGINAL, PRIMARY, M, ND).
    pub image_type: Vec<String>,
    /// SOP Class UID.
    pub sop_class_uid: String,
}

/// A series and its slices in spatial order.
#[derive(Debug, Clone)]
pub struct Series {
    /// SeriesInstanceUID.
    pub uid: String,
    /// What rules select on.
    pub header: SeriesHeader,
    /// Instances, in no particular order.
    pub instances: Vec<Instance>,
    /// Every frame of every instance, in spatial order.
    pub slices: Vec<SliceRef>,
}

impl Series {
    /// The orientation of the series (its first instance that has one).
    pub fn orientation(&self) -> Option<[f64; 6]> {
        self.instances.iter().find_map(|i| i.orientation)
    }

    /// The anatomical plane, when the orientation is known.
    pub fn plane(&self) -> Option<Plane> {
        self.orientation().as_ref().map(plane_of)
    }

    /// The instance and frame of a slice.
    pub fn slice(&self, slice: SliceRef) -> (&Instance, u32) {
        (&self.instances[slice.instance], slice.frame)
    }
}

/// A study and its series (ordered by SeriesNumber, then UID).
#[derive(Debug, Clone)]
pub struct Study {
    /// StudyInstanceUID.
    pub uid: String,
    /// The series.
    pub series: Vec<Series>,
}

/// What happened to a file that did not join a study.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    /// Not DICOM at all, or a DICOMDIR: skipped with a warning.
    Skipped,
    /// DICOM that could not be used: an error to report.
    Failed,
}

/// A file the scan could not use, with a message naming it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileIssue {
    /// The file.
    pub file: PathBuf,
    /// Skipped or failed.
    pub disposition: Disposition,
    /// The reason, naming the file.
    pub message: String,
}

/// The outcome of scanning inputs.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// Studies, ordered by UID.
    pub studies: Vec<Study>,
    /// Files that did not join a study.
    pub issues: Vec<FileIssue>,
}

/// Every regular file under `inputs` (files as given, folders recursively), in a stable
/// order; unreadable directory entries become issues. Hidden files and folders (names
/// starting with a dot: partial transfers, our own temporary files, desktop metadata) inside
/// a folder are passed over; a hidden file named directly is taken.
pub fn files_under(inputs: &[PathBuf]) -> (Vec<PathBuf>, Vec<FileIssue>) {
    let mut files = Vec::new();
    let mut issues = Vec::new();
    for input in inputs {
        let walk = WalkDir::new(input)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walk {
            match entry {
                Ok(entry) if entry.file_type().is_file() => files.push(entry.into_path()),
                Ok(_) => {}
                Err(error) => issues.push(FileIssue {
                    file: error.path().unwrap_or(input).to_path_buf(),
                    disposition: Disposition::Failed,
                    message: format!("{}: {error}", error.path().unwrap_or(input).display()),
                }),
            }
        }
    }
    (files, issues)
}

/// Scans `inputs` and groups what it finds.
pub fn scan(inputs: &[PathBuf]) -> Scan {
    let (files, mut issues) = files_under(inputs);
    let mut instances = Vec::new();
    for path in files {
        match read_instance(&path) {
            Ok(found) => instances.push(found),
            Err(issue) => {
                match issue.disposition {
                    Disposition::Skipped => {
                        tracing::warn!(file = %path.display(), "skipped: {}", issue.message)
                    }
                    Disposition::Failed => {
                        tracing::error!(file = %path.display(), "{}", issue.message)
                    }
                }
                issues.push(issue);
            }
        }
    }
    Scan {
        studies: group(instances),
        issues,
    }
}

/// What grouping needs from one file, besides the instance.
#[derive(Debug, Clone)]
pub struct Found {
    study_uid: String,
    series_uid: String,
    header: SeriesHeader,
    instance: Instance,
}

impl Found {
    /// StudyInstanceUID.
    pub fn study_uid(&self) -> &str {
        &self.study_uid
    }

    /// SeriesInstanceUID.
    pub fn series_uid(&self) -> &str {
        &self.series_uid
    }

    /// What rules select on.
    pub fn header(&self) -> &SeriesHeader {
        &self.header
    }

    /// The instance.
    pub fn instance(&self) -> &Instance {
        &self.instance
    }
}

/// Reads one file's header into an instance, or the issue explaining why not.
pub fn read_instance(path: &Path) -> Result<Found, FileIssue> {
    let dicom = file::open(path, Depth::Header).map_err(|error| issue_of(path, &error))?;
    instance_of(path, dicom.dataset())
}

fn issue_of(path: &Path, error: &ReadError) -> FileIssue {
    let disposition = match error {
        ReadError::NotDicom { .. } | ReadError::MediaDirectory { .. } => Disposition::Skipped,
        _ => Disposition::Failed,
    };
    FileIssue {
        file: path.to_path_buf(),
        disposition,
        message: error.to_string(),
    }
}

fn instance_of(path: &Path, ds: &DataSet) -> Result<Found, FileIssue> {
    let required = |tag, name: &str| {
        attrs::string(ds, tag).ok_or_else(|| FileIssue {
            file: path.to_path_buf(),
            disposition: Disposition::Failed,
            message: format!("{}: missing {name}", path.display()),
        })
    };
    // these three name output folders and files: a value that is not a UID (`../x`, `/x`)
    // fails its file here, before anything is written
    let uid = |tag, name: &str| {
        let value = required(tag, name)?;
        match super::uid::check(&value) {
            Ok(_) => Ok(value),
            Err(invalid) => Err(FileIssue {
                file: path.to_path_buf(),
                disposition: Disposition::Failed,
                message: format!("{}: {name} {invalid}", path.display()),
            }),
        }
    };
    let sop_instance_uid = uid(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let study_uid = uid(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_uid = uid(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let sop_class_uid = required(tags::SOP_CLASS_UID, "SOPClassUID")?;
    crate::logging::remember_sop_instance(path, &sop_instance_uid);
    let frames = attrs::frame_count(ds);
    let positions = (0..frames)
        .map(|frame| geometry::position_of(ds, frame))
        .collect();
    Ok(Found {
        study_uid,
        series_uid,
        header: SeriesHeader {
            number: attrs::int(ds, tags::SERIES_NUMBER),
            description: attrs::string(ds, tags::SERIES_DESCRIPTION),
            modality: attrs::string(ds, tags::MODALITY),
            protocol_name: attrs::string(ds, tags::PROTOCOL_NAME),
            study_description: attrs::string(ds, tags::STUDY_DESCRIPTION),
            body_part_examined: attrs::string(ds, tags::BODY_PART_EXAMINED),
            image_type: attrs::string(ds, tags::IMAGE_TYPE)
                .map(|v| v.split('\\').map(|p| p.trim().to_string()).collect())
                .unwrap_or_default(),
            sop_class_uid: sop_class_uid.clone(),
        },
        instance: Instance {
            path: path.to_path_buf(),
            sop_instance_uid,
            sop_class_uid,
            instance_number: attrs::int(ds, tags::INSTANCE_NUMBER),
            frames,
            positions,
            orientation: geometry::orientation_of(ds, 0),
        },
    })
}

/// The anatomical plane of a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plane {
    /// Normal mostly along the patient's head-foot axis.
    Axial,
    /// Normal mostly along the anterior-posterior axis.
    Coronal,
    /// Normal mostly along the left-right axis.
    Sagittal,
    /// No axis dominates (normal more than ~37 degrees from each).
    Oblique,
}

/// The plane of a slice from its ImageOrientationPatient: the axis the normal is closest to,
/// when within ~37 degrees of it (|component| >= 0.8), else oblique.
pub fn plane_of(orientation: &[f64; 6]) -> Plane {
    let normal = slice_normal(orientation);
    let (axis, size) = normal
        .iter()
        .map(|c| c.abs())
        .enumerate()
        .fold(
            (0, 0.0),
            |best, (i, c)| if c > best.1 { (i, c) } else { best },
        );
    match (axis, size >= 0.8) {
        (0, true) => Plane::Sagittal,
        (1, true) => Plane::Coronal,
        (2, true) => Plane::Axial,
        _ => Plane::Oblique,
    }
}

/// The slice normal: row cosines x column cosines.
pub fn slice_normal(orientation: &[f64; 6]) -> [f64; 3] {
    let [rx, ry, rz, cx, cy, cz] = *orientation;
    [ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx]
}

/// The study `uid` made of `found` (grouped as [`group`] does): what one study's files are
/// processed as; an empty study when none of them belongs to it.
pub fn study_of(found: Vec<Found>, uid: &str) -> Study {
    group(found)
        .into_iter()
        .find(|study| study.uid == uid)
        .unwrap_or(Study {
            uid: uid.to_string(),
            series: Vec::new(),
        })
}

/// Groups instances into studies and series and orders each series' slices.
pub fn group(found: Vec<Found>) -> Vec<Study> {
    type SeriesKey = (String, String);
    let mut by_series: BTreeMap<SeriesKey, Series> = BTreeMap::new();
    for item in found {
        let series = by_series
            .entry((item.study_uid.clone(), item.series_uid.clone()))
            .or_insert_with(|| Series {
                uid: item.series_uid.clone(),
                header: item.header.clone(),
                instances: Vec::new(),
                slices: Vec::new(),
            });
        // the same SOP instance twice (a copy in another folder) is one instance
        if series
            .instances
            .iter()
            .any(|i| i.sop_instance_uid == item.instance.sop_instance_uid)
        {
            tracing::warn!(
                file = %item.instance.path.display(),
                sop = %item.instance.sop_instance_uid,
                "duplicate SOP instance ignored"
            );
            continue;
        }
        series.instances.push(item.instance);
    }
    let mut studies: BTreeMap<String, Study> = BTreeMap::new();
    for ((study_uid, _), mut series) in by_series {
        series.slices = spatial_order(&series.instances);
        studies
            .entry(study_uid.clone())
            .or_insert_with(|| Study {
                uid: study_uid,
                series: Vec::new(),
            })
            .series
            .push(series);
    }
    let mut studies: Vec<Study> = studies.into_values().collect();
    for study in &mut studies {
        study
            .series
            .sort_by(|a, b| (a.header.number, &a.uid).cmp(&(b.header.number, &b.uid)));
    }
    studies
}

/// What slices are sorted by, most significant first.
struct SortKey<'a> {
    distance: Option<f64>,
    instance_number: Option<i64>,
    frame: u32,
    sop_instance_uid: &'a str,
    slice: SliceRef,
}

/// Every (instance, frame) of a series in spatial order (see the module docs).
pub fn spatial_order(instances: &[Instance]) -> Vec<SliceRef> {
    let normal = instances
        .iter()
        .find_map(|i| i.orientation.as_ref())
        .map(slice_normal);
    let mut keys: Vec<SortKey> = Vec::new();
    for (index, instance) in instances.iter().enumerate() {
        for frame in 0..instance.frames {
            let distance = normal
                .zip(instance.positions[frame as usize])
                .map(|(n, p)| n[0] * p[0] + n[1] * p[1] + n[2] * p[2]);
            keys.push(SortKey {
                distance,
                instance_number: instance.instance_number,
                frame,
                sop_instance_uid: &instance.sop_instance_uid,
                slice: SliceRef {
                    instance: index,
                    frame,
                },
            });
        }
    }
    // positions order the series only when every slice has one
    let all_placed = keys.iter().all(|k| k.distance.is_some());
    keys.sort_by(|a, b| {
        let by_distance = if all_placed {
            a.distance
                .partial_cmp(&b.distance)
                .unwrap_or(std::cmp::Ordering::Equal)
        } else {
            std::cmp::Ordering::Equal
        };
        by_distance
            .then_with(|| a.instance_number.cmp(&b.instance_number))
            .then_with(|| a.frame.cmp(&b.frame))
            .then_with(|| a.sop_instance_uid.cmp(b.sop_instance_uid))
    });
    keys.into_iter().map(|k| k.slice).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_from_orientation() {
        assert_eq!(plane_of(&[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]), Plane::Axial);
        assert_eq!(plane_of(&[1.0, 0.0, 0.0, 0.0, 0.0, -1.0]), Plane::Coronal);
        assert_eq!(plane_of(&[0.0, 1.0, 0.0, 0.0, 0.0, -1.0]), Plane::Sagittal);
        // 15 degrees off axial is still axial; 45 degrees is oblique
        let (c, s) = (15f64.to_radians().cos(), 15f64.to_radians().sin());
        assert_eq!(plane_of(&[1.0, 0.0, 0.0, 0.0, c, s]), Plane::Axial);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert_eq!(plane_of(&[1.0, 0.0, 0.0, 0.0, h, h]), Plane::Oblique);
    }
}
