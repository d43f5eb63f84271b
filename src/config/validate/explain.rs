//! `[explain]` and `[rules.explain]`: the plan of a rule.

use std::collections::BTreeMap;

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
            None => parent.slices,
            Some(policy) => self
                .slice_policy(&format!("{prefix}.slices"), policy, top_k)
                .unwrap_or(parent.slices),
        };
        let slices = with_top_k(slices, top_k, raw.top_k.is_some());
        // inherited per-method policies take this level's k; this level's replace them
        let mut method_slices: BTreeMap<String, SlicePolicy> = parent
            .method_slices
            .iter()
            .map(|(method, policy)| {
                let policy = with_top_k(*policy, top_k, raw.top_k.is_some());
                (method.clone(), policy)
            })
            .collect();
        for (method, policy) in raw.method_slices.iter().flatten() {
            let key = format!("{prefix}.method_slices.{method}");
            if !methods.contains(method) {
                self.bad(
                    &key,
                    Some(format!("{policy:?}")),
                    format!(
                        "has no effect: {method:?} is not among the methods ({})",
                        quoted(&methods.iter().map(String::as_str).collect::<Vec<_>>())
                    ),
                );
                continue;
            }
            if let Some(policy) = self.slice_policy(&key, policy, top_k) {
                method_slices.insert(method.clone(), policy);
            }
        }
        let uses_top_k = std::iter::once(&slices)
            .chain(method_slices.values())
            .any(|policy| matches!(policy, SlicePolicy::TopK(_)));
        if raw.top_k.is_some() && !uses_top_k {
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
            method_slices,
            colour_map,
            opacity,
        }
    }

    /// One of `"all"`, `"top-k"` (with `top_k`) and `"none"`; `None` after reporting another.
    fn slice_policy(&mut self, key: &str, policy: &str, top_k: usize) -> Option<SlicePolicy> {
        match policy {
            "all" => Some(SlicePolicy::All),
            "none" => Some(SlicePolicy::None),
            "top-k" => Some(SlicePolicy::TopK(top_k)),
            other => {
                self.bad(
                    key,
                    Some(format!("{other:?}")),
                    "must be \"all\", \"top-k\" or \"none\"",
                );
                None
            }
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

/// `policy` with this level's k when this level sets `top_k` (an inherited "top-k" keeps its
/// parent's k otherwise).
fn with_top_k(policy: SlicePolicy, top_k: usize, top_k_set_here: bool) -> SlicePolicy {
    match policy {
        SlicePolicy::TopK(_) if top_k_set_here => SlicePolicy::TopK(top_k),
        other => other,
    }
}
