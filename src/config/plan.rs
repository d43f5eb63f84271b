//! What to do with the series a rule takes: models, methods, slices and how the overlay
//! looks (`[explain]` and `[rules.explain]`).

use std::collections::BTreeMap;

/// Colour maps an overlay may use.
pub const COLOUR_MAPS: &[&str] = &["inferno", "magma", "plasma", "viridis", "cividis", "turbo"];

/// What to do with the series a rule takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainPlan {
    /// Model names; `None` = every enabled model.
    pub models: Option<Vec<String>>,
    /// Method names, from [`crate::explain::METHOD_NAMES`], in order (empty only with `slices = "none"`).
    pub methods: Vec<String>,
    /// Which slices are explained (every slice is classified).
    pub slices: SlicePolicy,
    /// Methods whose slices differ from `slices`, e.g. occlusion on the top k while the
    /// one-pass methods cover every slice.
    pub method_slices: BTreeMap<String, SlicePolicy>,
    /// Colour map, from [`COLOUR_MAPS`].
    pub colour_map: String,
    /// Heat-map opacity in the overlay, in [0, 1].
    pub opacity: f32,
}

/// Which slices of a series are explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlicePolicy {
    /// Every slice.
    All,
    /// The k slices with the highest tumour probability.
    TopK(usize),
    /// Only the most tumour-like slice: the minimum every processed series gets per method
    /// (no overlays at all when the plan has no methods).
    None,
}

impl ExplainPlan {
    /// Which slices `method` explains.
    pub fn slices_for(&self, method: &str) -> SlicePolicy {
        self.method_slices
            .get(method)
            .copied()
            .unwrap_or(self.slices)
    }
}

impl std::fmt::Display for SlicePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::TopK(k) => write!(f, "top-k {k}"),
            Self::None => f.write_str("none"),
        }
    }
}

impl std::fmt::Display for ExplainPlan {
    /// One line, e.g. `models: every enabled model; methods: occlusion; slices: top-k 3;
    /// colour map: inferno; opacity: 0.45`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.models {
            None => f.write_str("models: every enabled model")?,
            Some(models) => write!(f, "models: {}", models.join(", "))?,
        }
        write!(
            f,
            "; methods: {}; slices: {}",
            self.methods.join(", "),
            self.slices
        )?;
        for (method, slices) in &self.method_slices {
            write!(f, " ({method}: {slices})")?;
        }
        write!(
            f,
            "; colour map: {}; opacity: {}",
            self.colour_map, self.opacity
        )
    }
}

/// The default `top_k`.
pub(crate) const DEFAULT_TOP_K: usize = 3;

impl Default for ExplainPlan {
    /// What `[explain]` means when it is absent.
    fn default() -> Self {
        Self {
            models: None,
            methods: vec!["occlusion".to_string()],
            slices: SlicePolicy::TopK(DEFAULT_TOP_K),
            method_slices: BTreeMap::new(),
            colour_map: "inferno".to_string(),
            opacity: 0.45,
        }
    }
}
