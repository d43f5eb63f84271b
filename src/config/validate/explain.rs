//! `[explain]` and `[rules.explain]`: the plan of a rule.

use super::{Validator, quoted};
use crate::config::plan::{COLOUR_MAPS, ExplainPlan, SlicePolicy};
use crate::config::raw::RawExplain;
use crate::config::settings::ModelRef;
use crate::explain::METHOD_NAMES;

impl Validator<'_> {
    /// `[explain]` or `[rules.explain]` over `parent`; keys absent from `raw` inherit.
    pub(super) fn plan(
        &mut self,
        raw: &RawExplain,
        prefix: &str,
        parent_name: &str,
        parent: &ExplainPlan,
        parent_top_k: usize,
        model_names: Option<&[ModelRef]>,
    ) -> ExplainPlan {
        let models = match &raw.models {
            None => parent.models.clone(),
            Some(list) => Some(self.model_list(&format!("{prefix}.models"), list, model_names)),
        };
        let methods = match &raw.methods {
            None => parent.methods.clone(),
            Some(list) => self.method_list(&format!("{prefix}.methods"), list),
        };
        let top_k_key = format!("{prefix}.top_k");
        let top_k = self.count(&top_k_key, raw.top_k, parent_top_k, 1);
        let slices = match raw.slices.as_deref() {
            None => match parent.slices {
                SlicePolicy::TopK(_) if raw.top_k.is_some() => SlicePolicy::TopK(top_k),
                inherited => inherited,
            },
            Some("all") => SlicePolicy::All,
            Some("none") => SlicePolicy::None,
            Some("top-k") => SlicePolicy::TopK(top_k),
            Some(other) => {
                self.bad(
                    &format!("{prefix}.slices"),
                    Some(format!("{other:?}")),
                    "must be \"all\", \"top-k\" or \"none\"",
                );
                parent.slices
            }
        };
        if raw.top_k.is_some() && !matches!(slices, SlicePolicy::TopK(_)) {
            let whence = if raw.slices.is_some() {
                String::new()
            } else {
                format!(", inherited from the {parent_name}")
            };
            self.bad(
                &top_k_key,
                None,
                format!("has no effect: slices is \"{slices}\"{whence}; set slices = \"top-k\""),
            );
        }
        if methods.is_empty() && slices != SlicePolicy::None {
            self.bad(
                &format!("{prefix}.methods"),
                Some("[]".into()),
                format!(
                    "names no method, but slices is \"{slices}\"; to classify without \
                     explaining, set slices = \"none\""
                ),
            );
        }
        let colour_map = match &raw.colour_map {
            None => parent.colour_map.clone(),
            Some(name) if COLOUR_MAPS.contains(&name.as_str()) => name.clone(),
            Some(name) => {
                self.bad(
                    &format!("{prefix}.colour_map"),
                    Some(format!("{name:?}")),
                    format!("unknown colour map; valid: {}", quoted(COLOUR_MAPS)),
                );
                parent.colour_map.clone()
            }
        };
        let opacity = self.fraction(&format!("{prefix}.opacity"), raw.opacity, parent.opacity);
        ExplainPlan {
            models,
            methods,
            slices,
            colour_map,
            opacity,
        }
    }

    pub(super) fn model_list(
        &mut self,
        key: &str,
        list: &[String],
        known: Option<&[ModelRef]>,
    ) -> Vec<String> {
        if list.is_empty() {
            self.bad(
                key,
                Some("[]".into()),
                "names no model; remove the key to use every enabled model",
            );
        }
        let mut names: Vec<String> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let item = format!("{key}[{i}]");
            if names.contains(name) {
                self.bad(&item, Some(format!("{name:?}")), "listed twice");
                continue;
            }
            if let Some(known) = known {
                match known.iter().position(|m| &m.name == name) {
                    Some(index) if !known[index].enabled => self.bad(
                        &item,
                        Some(format!("{name:?}")),
                        format!(
                            "that model is disabled (models[{index}].enabled = false); enable it \
                             or leave it out of this list"
                        ),
                    ),
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> = known.iter().map(|m| m.name.as_str()).collect();
                        self.bad(
                            &item,
                            Some(format!("{name:?}")),
                            format!(
                                "no model of that name in [[models]] (their manifests name: {})",
                                quoted(&known)
                            ),
                        );
                    }
                }
            }
            names.push(name.clone());
        }
        names
    }

    pub(super) fn method_list(&mut self, key: &str, list: &[String]) -> Vec<String> {
        let mut methods: Vec<String> = Vec::new();
        for (i, name) in list.iter().enumerate() {
            let item = format!("{key}[{i}]");
            if !METHOD_NAMES.contains(&name.as_str()) {
                self.bad(
                    &item,
                    Some(format!("{name:?}")),
                    format!("unknown method; valid: {}", quoted(METHOD_NAMES)),
                );
            } else if methods.contains(name) {
                self.bad(&item, Some(format!("{name:?}")), "listed twice");
            } else {
                methods.push(name.clone());
            }
        }
        methods
    }
}
