//! `[[rules]]`: which series a rule takes.

use regex::Regex;

use super::Validator;
use crate::config::plan::ExplainPlan;
use crate::config::raw::{RawRule, RawSelect};
use crate::config::rules::{Rule, Selector, TextFilter};
use crate::config::settings::ModelRef;
use crate::dicom::scan::Plane;

impl Validator<'_> {
    pub(super) fn rules(
        &mut self,
        raw: &[RawRule],
        defaults: &ExplainPlan,
        default_top_k: usize,
        model_names: Option<&[ModelRef]>,
    ) -> Vec<Rule> {
        if raw.is_empty() {
            self.bad(
                "rules",
                None,
                "no [[rules]] entry; add at least one, or no series will ever be explained",
            );
        }
        let mut rules: Vec<Rule> = Vec::new();
        for (i, rule) in raw.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            let name = match rule.name.as_deref().map(str::trim) {
                None => {
                    self.bad(
                        &prefix,
                        None,
                        "missing name = \"...\" (unique among the rules)",
                    );
                    format!("#{i}")
                }
                Some("") => {
                    self.bad(&format!("{prefix}.name"), None, "empty name");
                    format!("#{i}")
                }
                Some(name) => {
                    if let Some(j) = rules.iter().position(|r| r.name == name) {
                        self.bad(
                            &format!("{prefix}.name"),
                            Some(format!("{name:?}")),
                            format!("rule name already used by rules[{j}]"),
                        );
                    }
                    name.to_string()
                }
            };
            let selector = self.selector(&format!("{prefix}.select"), &rule.select);
            let plan = self.plan(
                &rule.explain,
                &format!("{prefix}.explain"),
                "[explain] section",
                defaults,
                default_top_k,
                model_names,
            );
            rules.push(Rule {
                name,
                description: rule.description.clone(),
                enabled: rule.enabled.unwrap_or(true),
                selector,
                plan,
            });
        }
        rules
    }

    pub(super) fn pattern(&mut self, key: &str, pattern: Option<&String>) -> Option<Regex> {
        let pattern = pattern?;
        match Regex::new(pattern) {
            Ok(regex) => Some(regex),
            Err(error) => {
                // the last line of the regex error says what is wrong
                let why = error.to_string();
                let why = why
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches("error: ")
                    .to_string();
                self.bad(
                    key,
                    Some(format!("{pattern:?}")),
                    format!("invalid regular expression: {why}"),
                );
                None
            }
        }
    }

    pub(super) fn filter(
        &mut self,
        prefix: &str,
        name: &str,
        include: Option<&String>,
        exclude: Option<&String>,
    ) -> TextFilter {
        TextFilter {
            include: self.pattern(&format!("{prefix}.{name}"), include),
            exclude: self.pattern(&format!("{prefix}.{name}_exclude"), exclude),
        }
    }

    pub(super) fn selector(&mut self, prefix: &str, raw: &RawSelect) -> Selector {
        let modality = raw
            .modality
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.modality"), list, false));
        let body_part = raw
            .body_part
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.body_part"), list, false));
        let image_type = raw
            .image_type
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.image_type"), list, true))
            .unwrap_or_default();
        let image_type_exclude = raw
            .image_type_exclude
            .as_ref()
            .map(|list| self.codes(&format!("{prefix}.image_type_exclude"), list, true))
            .unwrap_or_default();
        if let Some(both) = image_type.iter().find(|v| image_type_exclude.contains(v)) {
            self.bad(
                &format!("{prefix}.image_type_exclude"),
                None,
                format!("{both} is both required (image_type) and refused; nothing would match"),
            );
        }
        let planes = raw.planes.as_ref().map(|list| {
            if list.is_empty() {
                self.bad(
                    &format!("{prefix}.planes"),
                    Some("[]".into()),
                    "the list is empty, so nothing would match; remove the key to accept any plane",
                );
            }
            let mut planes = Vec::new();
            for (i, name) in list.iter().enumerate() {
                let plane = match name.trim().to_lowercase().as_str() {
                    "axial" => Plane::Axial,
                    "coronal" => Plane::Coronal,
                    "sagittal" => Plane::Sagittal,
                    "oblique" => Plane::Oblique,
                    _ => {
                        self.bad(
                            &format!("{prefix}.planes[{i}]"),
                            Some(format!("{name:?}")),
                            "unknown plane; valid: \"axial\", \"coronal\", \"sagittal\", \"oblique\"",
                        );
                        continue;
                    }
                };
                if !planes.contains(&plane) {
                    planes.push(plane);
                }
            }
            planes
        });
        let min_slices = self.count(&format!("{prefix}.min_slices"), raw.min_slices, 1, 1);
        let max_slices = raw.max_slices.map(|max| {
            let max = self.count(&format!("{prefix}.max_slices"), Some(max), usize::MAX, 1);
            if max < min_slices {
                self.bad(
                    &format!("{prefix}.max_slices"),
                    Some(max.to_string()),
                    format!("smaller than min_slices = {min_slices}; nothing would match"),
                );
            }
            max
        });
        Selector {
            modality,
            series_description: self.filter(
                prefix,
                "series_description",
                raw.series_description.as_ref(),
                raw.series_description_exclude.as_ref(),
            ),
            protocol_name: self.filter(
                prefix,
                "protocol_name",
                raw.protocol_name.as_ref(),
                raw.protocol_name_exclude.as_ref(),
            ),
            study_description: self.filter(
                prefix,
                "study_description",
                raw.study_description.as_ref(),
                raw.study_description_exclude.as_ref(),
            ),
            body_part,
            body_part_required: raw.body_part_required.unwrap_or(false),
            image_type,
            image_type_exclude,
            planes,
            min_slices,
            max_slices,
        }
    }
}
