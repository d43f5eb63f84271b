//! Method parameters as a site writes them: every method's parameter struct is read by serde
//! (`#[serde(default, deny_unknown_fields)]`, defaults from its `Default`) and checked by its
//! `problems`, so a parameter, its default and its range are defined once, beside the
//! method. The configuration embeds them (`[methods.*]`, `[quality]`) and reports the
//! problems with the key's line and column.

use serde::de::{self, Deserializer, Visitor};

use crate::model::Precision;

/// A parameter outside its range.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamProblem {
    /// The key, relative to the section that holds the parameters (`occlusion.stride`).
    pub key: String,
    /// The value that was given.
    pub value: String,
    /// What the value must be.
    pub message: String,
}

impl ParamProblem {
    /// This problem with its key under `section` (`methods` + `occlusion.stride`).
    pub fn under(mut self, section: &str) -> ParamProblem {
        self.key = format!("{section}.{}", self.key);
        self
    }
}

/// A problem when `value` is below `min`.
pub(crate) fn at_least(key: &str, value: usize, min: usize) -> Option<ParamProblem> {
    (value < min).then(|| ParamProblem {
        key: key.to_owned(),
        value: value.to_string(),
        message: format!("must be at least {min}"),
    })
}

/// A problem when `value` is not finite or not `accept`ed; `requirement` says what is.
pub(crate) fn number(
    key: &str,
    value: f32,
    accept: impl Fn(f32) -> bool,
    requirement: &str,
) -> Option<ParamProblem> {
    (!(value.is_finite() && accept(value))).then(|| ParamProblem {
        key: key.to_owned(),
        value: value.to_string(),
        message: requirement.to_owned(),
    })
}

/// A problem when `value` is outside [0, 1].
pub(crate) fn fraction(key: &str, value: f32) -> Option<ParamProblem> {
    number(
        key,
        value,
        |v| (0.0..=1.0).contains(&v),
        "must be between 0 and 1",
    )
}

/// Reads one of `names` (a string), as the value paired with it; anything else is an error
/// that lists the names.
pub(crate) fn named<'de, D, T: Copy>(
    deserializer: D,
    names: &'static [(&'static str, T)],
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
{
    struct Named<T: 'static>(&'static [(&'static str, T)]);
    impl<T: Copy> Visitor<'_> for Named<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str(&one_of(self.0))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
            self.0
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, value)| *value)
                .ok_or_else(|| E::custom(format!("must be {}", one_of(self.0))))
        }
    }
    deserializer.deserialize_str(Named(names))
}

impl<'de> serde::Deserialize<'de> for Precision {
    /// `"float32"` or `"int8"`: the `precision` of the perturbation methods.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        named(deserializer, Precision::NAMES)
    }
}

/// `"a", "b" or "c"`.
fn one_of<T>(names: &[(&str, T)]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .map(|(name, _)| format!("\"{name}\""))
        .collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_listed_as_a_sentence() {
        assert_eq!(
            one_of(&[("mean", 0), ("max", 1), ("min", 2)]),
            "\"mean\", \"max\" or \"min\""
        );
        assert_eq!(one_of(&[("only", 0)]), "\"only\"");
    }

    #[test]
    fn ranges_name_key_value_and_requirement() {
        assert_eq!(at_least("rise.masks", 1, 1), None);
        let problem = at_least("rise.masks", 0, 1).map(|p| p.under("methods"));
        assert_eq!(
            problem,
            Some(ParamProblem {
                key: "methods.rise.masks".into(),
                value: "0".into(),
                message: "must be at least 1".into(),
            })
        );
        assert!(fraction("quality.x", f32::NAN).is_some());
        assert!(fraction("quality.x", 1.0).is_none());
        assert!(number("k", f32::INFINITY, |_| true, "finite").is_some());
    }
}
