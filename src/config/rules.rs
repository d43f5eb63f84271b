//! Site rules: which series are explained, and how. Rules are tried in file order and the
//! first whose selector accepts a series wins; a series no rule accepts is not processed.
//!
//! Our own overlays are never processed: a series whose Modality is `OT` and whose
//! SeriesDescription contains `NOT FOR DIAGNOSTIC USE` (what
//! [`crate::dicom::secondary_capture`] writes) matches no rule, whatever the rules say, so
//! overlays written back into a watched study are not explained again.

use std::fmt;

use regex::Regex;
use snafu::Snafu;

use super::plan::ExplainPlan;
use crate::dicom::Series;
use crate::dicom::scan::Plane;

/// What our overlays carry in SeriesDescription (docs/design.md section 5).
pub const OVERLAY_MARKER: &str = crate::dicom::secondary_capture::NOT_FOR_DIAGNOSTIC_USE;

// Rules never take our own overlays; what an overlay looks like is the overlay writer's.
pub use crate::dicom::secondary_capture::is_own_overlay;

/// One `[[rules]]` entry, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name, written into report.json.
    pub name: String,
    /// Free text for the administrators (`description`); not used.
    pub description: Option<String>,
    /// `false`: kept in the file, never matched.
    pub enabled: bool,
    /// Which series the rule takes.
    pub selector: Selector,
    /// What to do with them (`[rules.explain]` over `[explain]`).
    pub plan: ExplainPlan,
}

/// A regular expression an attribute must match, and one it must not.
///
/// Matching is a search (the pattern may match anywhere in the value, as `grep` does);
/// anchor with `^...$` for whole values, and use `(?i)` for case-insensitive matching.
#[derive(Debug, Clone, Default)]
pub struct TextFilter {
    /// Must match (a series without the attribute fails).
    pub include: Option<Regex>,
    /// Must not match (a series without the attribute passes).
    pub exclude: Option<Regex>,
}

impl TextFilter {
    /// Whether the filter accepts nothing in particular.
    pub fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    fn check(
        &self,
        attribute: &'static str,
        key: &'static str,
        value: Option<&str>,
    ) -> Result<(), Mismatch> {
        if let Some(include) = &self.include {
            match value {
                None => {
                    return Err(Mismatch::TextAbsent {
                        attribute,
                        key,
                        pattern: include.as_str().to_string(),
                    });
                }
                Some(value) if !include.is_match(value) => {
                    return Err(Mismatch::TextDiffers {
                        attribute,
                        key,
                        value: value.to_string(),
                        pattern: include.as_str().to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        if let (Some(exclude), Some(value)) = (&self.exclude, value)
            && exclude.is_match(value)
        {
            return Err(Mismatch::TextExcluded {
                attribute,
                key,
                value: value.to_string(),
                pattern: exclude.as_str().to_string(),
            });
        }
        Ok(())
    }

    fn describe(&self, attribute: &str, parts: &mut Vec<String>) {
        if let Some(include) = &self.include {
            parts.push(format!(
                "{attribute} matches {}",
                toml_quote(include.as_str())
            ));
        }
        if let Some(exclude) = &self.exclude {
            parts.push(format!(
                "{attribute} does not match {}",
                toml_quote(exclude.as_str())
            ));
        }
    }
}

/// The criteria of `[rules.select]`; a series must pass every one that is set. Value lists
/// (modality, body part, image type) compare case-insensitively, ignoring surrounding spaces.
#[derive(Debug, Clone)]
pub struct Selector {
    /// Accepted Modality values (upper case); `None` = any.
    pub modality: Option<Vec<String>>,
    /// SeriesDescription patterns.
    pub series_description: TextFilter,
    /// ProtocolName patterns.
    pub protocol_name: TextFilter,
    /// StudyDescription patterns.
    pub study_description: TextFilter,
    /// Accepted BodyPartExamined values (upper case); `None` = any.
    pub body_part: Option<Vec<String>>,
    /// Whether a series without BodyPartExamined fails `body_part` (default: it passes).
    pub body_part_required: bool,
    /// ImageType values that must all be present (upper case).
    pub image_type: Vec<String>,
    /// ImageType values none of which may be present (upper case).
    pub image_type_exclude: Vec<String>,
    /// Accepted planes; `None` = any, including series without orientation.
    pub planes: Option<Vec<Plane>>,
    /// Fewest slices (frames of every instance), at least 1.
    pub min_slices: usize,
    /// Most slices; `None` = no limit.
    pub max_slices: Option<usize>,
}

impl Default for Selector {
    /// Accepts every series.
    fn default() -> Self {
        Self {
            modality: None,
            series_description: TextFilter::default(),
            protocol_name: TextFilter::default(),
            study_description: TextFilter::default(),
            body_part: None,
            body_part_required: false,
            image_type: Vec::new(),
            image_type_exclude: Vec::new(),
            planes: None,
            min_slices: 1,
            max_slices: None,
        }
    }
}

/// Upper case without surrounding spaces, as DICOM code strings compare.
pub(crate) fn normalise(value: &str) -> String {
    value.trim().to_uppercase()
}

/// The name of a plane as written in configurations.
pub fn plane_name(plane: Plane) -> &'static str {
    match plane {
        Plane::Axial => "axial",
        Plane::Coronal => "coronal",
        Plane::Sagittal => "sagittal",
        Plane::Oblique => "oblique",
    }
}

/// A pattern as TOML would write it: a literal string when it has backslashes (so they read
/// as written), else a basic string.
pub(crate) fn toml_quote(text: &str) -> String {
    if text.contains('\\') && !text.contains('\'') && !text.contains('\n') {
        format!("'{text}'")
    } else {
        format!("{text:?}")
    }
}

fn list(values: &[String]) -> String {
    format!("[{}]", values.join(", "))
}

/// Why a rule does not take a series: the criterion that failed, with what the series has
/// and what the rule asks. Displayed as `dicom-xai rules test` prints it, e.g.
/// `Modality CT is not one of [MR]`.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[non_exhaustive]
pub enum Mismatch {
    /// The rule is kept in the file but switched off.
    #[snafu(display("rule disabled (enabled = false)"))]
    Disabled,
    /// `modality`: the series has another Modality.
    #[snafu(display("Modality {modality} is not one of {}", list(allowed)))]
    Modality {
        /// The series' Modality (upper case).
        modality: String,
        /// The rule's values.
        allowed: Vec<String>,
    },
    /// `modality`: the series has no Modality.
    #[snafu(display("Modality is absent, and the rule requires one of {}", list(allowed)))]
    NoModality {
        /// The rule's values.
        allowed: Vec<String>,
    },
    /// A pattern (`series_description`, `protocol_name`, `study_description`) requires an
    /// attribute the series lacks.
    #[snafu(display(
        "{attribute} is absent, and {key} = {} requires it",
        toml_quote(pattern)
    ))]
    TextAbsent {
        /// The attribute's keyword (`SeriesDescription`).
        attribute: &'static str,
        /// The criterion (`series_description`).
        key: &'static str,
        /// The pattern.
        pattern: String,
    },
    /// A pattern does not match the attribute.
    #[snafu(display("{attribute} {value:?} does not match {key} = {}", toml_quote(pattern)))]
    TextDiffers {
        /// The attribute's keyword (`SeriesDescription`).
        attribute: &'static str,
        /// The criterion (`series_description`).
        key: &'static str,
        /// The series' value.
        value: String,
        /// The pattern.
        pattern: String,
    },
    /// An exclusion pattern (`series_description_exclude`, ...) matches the attribute.
    #[snafu(display(
        "{attribute} {value:?} matches {key}_exclude = {}",
        toml_quote(pattern)
    ))]
    TextExcluded {
        /// The attribute's keyword (`SeriesDescription`).
        attribute: &'static str,
        /// The criterion without `_exclude` (`series_description`).
        key: &'static str,
        /// The series' value.
        value: String,
        /// The pattern.
        pattern: String,
    },
    /// `body_part`: the series has another BodyPartExamined.
    #[snafu(display("BodyPartExamined {body_part} is not one of {}", list(allowed)))]
    BodyPart {
        /// The series' BodyPartExamined (upper case).
        body_part: String,
        /// The rule's values.
        allowed: Vec<String>,
    },
    /// `body_part_required`: the series has no BodyPartExamined.
    #[snafu(display(
        "BodyPartExamined is absent, and body_part_required = true (one of {})",
        list(allowed)
    ))]
    NoBodyPart {
        /// The rule's values.
        allowed: Vec<String>,
    },
    /// `image_type`: the series has no ImageType.
    #[snafu(display("ImageType is absent, and image_type requires {missing}"))]
    NoImageType {
        /// The first value the rule requires.
        missing: String,
    },
    /// `image_type`: a required value is not in the series' ImageType.
    #[snafu(display("ImageType {} lacks {missing}", image_type.join("\\")))]
    ImageTypeLacks {
        /// The series' ImageType values (upper case).
        image_type: Vec<String>,
        /// The first required value it lacks.
        missing: String,
    },
    /// `image_type_exclude`: a refused value is in the series' ImageType.
    #[snafu(display(
        "ImageType {} contains {found}, which image_type_exclude refuses",
        image_type.join("\\")
    ))]
    ImageTypeExcluded {
        /// The series' ImageType values (upper case).
        image_type: Vec<String>,
        /// The first refused value it holds.
        found: String,
    },
    /// `planes`: the series lies in another plane.
    #[snafu(display("plane {} is not one of {}", plane_name(*plane), plane_list(allowed)))]
    Plane {
        /// The series' plane.
        plane: Plane,
        /// The rule's planes.
        allowed: Vec<Plane>,
    },
    /// `planes`: the series' plane is unknown.
    #[snafu(display(
        "plane unknown (no ImageOrientationPatient), and the rule requires one of {}",
        plane_list(allowed)
    ))]
    NoPlane {
        /// The rule's planes.
        allowed: Vec<Plane>,
    },
    /// `min_slices`: too few slices.
    #[snafu(display("{slices} slice(s), fewer than min_slices = {min}"))]
    TooFewSlices {
        /// The series' slices (frames of every instance).
        slices: usize,
        /// The rule's minimum.
        min: usize,
    },
    /// `max_slices`: too many slices.
    #[snafu(display("{slices} slices, more than max_slices = {max}"))]
    TooManySlices {
        /// The series' slices (frames of every instance).
        slices: usize,
        /// The rule's maximum.
        max: usize,
    },
}

fn plane_list(planes: &[Plane]) -> String {
    let names: Vec<String> = planes.iter().map(|p| plane_name(*p).to_string()).collect();
    list(&names)
}

impl Selector {
    /// Whether `series` passes every criterion; else the first that failed.
    pub fn check(&self, series: &Series) -> Result<(), Mismatch> {
        let header = &series.header;
        if let Some(allowed) = &self.modality {
            match header.modality.as_deref().map(normalise) {
                Some(modality) if allowed.contains(&modality) => {}
                Some(modality) => {
                    return Err(Mismatch::Modality {
                        modality,
                        allowed: allowed.clone(),
                    });
                }
                None => {
                    return Err(Mismatch::NoModality {
                        allowed: allowed.clone(),
                    });
                }
            }
        }
        self.series_description.check(
            "SeriesDescription",
            "series_description",
            header.description.as_deref(),
        )?;
        self.protocol_name.check(
            "ProtocolName",
            "protocol_name",
            header.protocol_name.as_deref(),
        )?;
        self.study_description.check(
            "StudyDescription",
            "study_description",
            header.study_description.as_deref(),
        )?;
        if let Some(allowed) = &self.body_part {
            match header.body_part_examined.as_deref().map(normalise) {
                Some(body_part) if allowed.contains(&body_part) => {}
                Some(body_part) => {
                    return Err(Mismatch::BodyPart {
                        body_part,
                        allowed: allowed.clone(),
                    });
                }
                None if self.body_part_required => {
                    return Err(Mismatch::NoBodyPart {
                        allowed: allowed.clone(),
                    });
                }
                None => {}
            }
        }
        let image_type: Vec<String> = header.image_type.iter().map(|v| normalise(v)).collect();
        if let Some(missing) = self.image_type.iter().find(|v| !image_type.contains(v)) {
            let missing = missing.clone();
            return Err(if image_type.is_empty() {
                Mismatch::NoImageType { missing }
            } else {
                Mismatch::ImageTypeLacks {
                    image_type,
                    missing,
                }
            });
        }
        if let Some(found) = self
            .image_type_exclude
            .iter()
            .find(|v| image_type.contains(v))
        {
            return Err(Mismatch::ImageTypeExcluded {
                found: found.clone(),
                image_type,
            });
        }
        if let Some(planes) = &self.planes {
            match series.plane() {
                Some(plane) if planes.contains(&plane) => {}
                Some(plane) => {
                    return Err(Mismatch::Plane {
                        plane,
                        allowed: planes.clone(),
                    });
                }
                None => {
                    return Err(Mismatch::NoPlane {
                        allowed: planes.clone(),
                    });
                }
            }
        }
        let slices = series.slices.len();
        if slices < self.min_slices {
            return Err(Mismatch::TooFewSlices {
                slices,
                min: self.min_slices,
            });
        }
        if let Some(max) = self.max_slices
            && slices > max
        {
            return Err(Mismatch::TooManySlices { slices, max });
        }
        Ok(())
    }
}

impl fmt::Display for Selector {
    /// The criteria in words, `;`-separated (`every series` when there are none).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(modality) = &self.modality {
            parts.push(format!("Modality in {}", list(modality)));
        }
        self.series_description
            .describe("SeriesDescription", &mut parts);
        self.protocol_name.describe("ProtocolName", &mut parts);
        self.study_description
            .describe("StudyDescription", &mut parts);
        if let Some(body_part) = &self.body_part {
            let absent = if self.body_part_required {
                ""
            } else {
                " (or absent)"
            };
            parts.push(format!("BodyPartExamined in {}{absent}", list(body_part)));
        }
        if !self.image_type.is_empty() {
            parts.push(format!("ImageType has {}", self.image_type.join(", ")));
        }
        if !self.image_type_exclude.is_empty() {
            parts.push(format!(
                "ImageType has none of {}",
                self.image_type_exclude.join(", ")
            ));
        }
        if let Some(planes) = &self.planes {
            parts.push(format!("plane in {}", plane_list(planes)));
        }
        match (self.min_slices, self.max_slices) {
            (1, None) => {}
            (min, None) => parts.push(format!("at least {min} slices")),
            (min, Some(max)) => parts.push(format!("{min} to {max} slices")),
        }
        if parts.is_empty() {
            f.write_str("every series")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// How the rules judged one series: the rule that took it, and why each rule before it
/// did not.
#[derive(Debug, Clone)]
pub struct Verdict<'a> {
    /// The first rule that accepted the series, if any.
    pub rule: Option<&'a Rule>,
    /// Every rule tried before it (all rules when none matched), with the reason it did
    /// not take the series.
    pub rejected: Vec<(&'a Rule, Mismatch)>,
    /// The series is one of our own overlays, which no rule takes (no rule was tried).
    pub own_overlay: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::scan::SeriesHeader;
    use crate::dicom::scan::{Instance, SliceRef};

    fn series(modality: &str, description: &str, orientation: Option<[f64; 6]>) -> Series {
        let instance = Instance {
            path: "IM0001.dcm".into(),
            sop_instance_uid: "1.2.3.1".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
            instance_number: Some(1),
            frames: 1,
            positions: vec![None],
            orientation,
        };
        Series {
            uid: "1.2.3".into(),
            header: SeriesHeader {
                number: Some(1),
                description: Some(description.into()),
                modality: Some(modality.into()),
                image_type: vec!["ORIGINAL".into(), "PRIMARY".into()],
                ..SeriesHeader::default()
            },
            instances: vec![instance],
            slices: vec![SliceRef {
                instance: 0,
                frame: 0,
            }],
        }
    }

    fn regex(pattern: &str) -> Option<Regex> {
        Regex::new(pattern).ok()
    }

    #[test]
    fn first_failed_criterion_in_words() {
        let selector = Selector {
            modality: Some(vec!["MR".into()]),
            series_description: TextFilter {
                include: regex("(?i)t1"),
                exclude: regex("(?i)localizer"),
            },
            image_type: vec!["ORIGINAL".into()],
            planes: Some(vec![Plane::Axial]),
            ..Selector::default()
        };
        let axial = Some([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!(selector.check(&series("MR", "AX T1", axial)), Ok(()));
        let ct = selector.check(&series("CT", "AX T1", axial));
        assert_eq!(
            ct,
            Err(Mismatch::Modality {
                modality: "CT".into(),
                allowed: vec!["MR".into()],
            })
        );
        assert_eq!(
            ct.map_err(|m| m.to_string()),
            Err("Modality CT is not one of [MR]".to_string())
        );
        assert_eq!(
            selector
                .check(&series("MR", "AX T2", axial))
                .map_err(|m| m.to_string()),
            Err(
                "SeriesDescription \"AX T2\" does not match series_description = \"(?i)t1\"".into()
            )
        );
        assert!(
            selector
                .check(&series("mr", "T1 localizer", axial))
                .is_err_and(|e| e.to_string().contains("series_description_exclude"))
        );
        let coronal = Some([1.0, 0.0, 0.0, 0.0, 0.0, -1.0]);
        assert_eq!(
            selector
                .check(&series("MR", "COR T1", coronal))
                .map_err(|m| m.to_string()),
            Err("plane coronal is not one of [axial]".to_string())
        );
        assert!(
            selector
                .check(&series("MR", "T1", None))
                .is_err_and(|e| e.to_string().starts_with("plane unknown"))
        );
        let images = Selector {
            image_type: vec!["VOLUME".into()],
            image_type_exclude: vec!["PRIMARY".into()],
            ..Selector::default()
        };
        assert_eq!(
            images
                .check(&series("MR", "T1", axial))
                .map_err(|m| m.to_string()),
            Err("ImageType ORIGINAL\\PRIMARY lacks VOLUME".to_string())
        );
        let primary = Selector {
            image_type_exclude: vec!["PRIMARY".into()],
            ..Selector::default()
        };
        assert_eq!(
            primary
                .check(&series("MR", "T1", axial))
                .map_err(|m| m.to_string()),
            Err(
                "ImageType ORIGINAL\\PRIMARY contains PRIMARY, which image_type_exclude refuses"
                    .to_string()
            )
        );
        let many = Selector {
            min_slices: 2,
            ..Selector::default()
        };
        assert_eq!(
            many.check(&series("MR", "T1", axial))
                .map_err(|m| m.to_string()),
            Err("1 slice(s), fewer than min_slices = 2".to_string())
        );
    }

    #[test]
    fn own_overlays_are_recognised() {
        let overlay = series("OT", "AX T1 gradcam - NOT FOR DIAGNOSTIC USE", None);
        assert!(is_own_overlay(&overlay.header));
        assert!(!is_own_overlay(
            &series("OT", "scanned report", None).header
        ));
        assert!(!is_own_overlay(
            &series("MR", "NOT FOR DIAGNOSTIC USE", None).header
        ));
        let findings = series("SR", "XAI findings - NOT FOR DIAGNOSTIC USE", None);
        assert!(is_own_overlay(&findings.header));
        assert!(!is_own_overlay(
            &series("SR", "radiology report", None).header
        ));
    }
}
