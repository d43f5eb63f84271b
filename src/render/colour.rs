//! Colour maps: the perceptually uniform gradients of `colorous` (and turbo), sampled once
//! into a 256-entry table.
//!
//! Only perceptual maps are offered: lightness rises monotonically along inferno, magma,
//! plasma, viridis and cividis, so stronger evidence always reads as brighter, also on a grey
//! monitor and for colour-blind readers (cividis is designed for them). Turbo is offered for
//! sites used to rainbow maps; it is not monotonic in lightness. Jet is deliberately absent.

use std::fmt;

use colorous::Gradient;
use snafu::OptionExt;

use super::{RenderError, UnknownColourMapSnafu};

/// The colour maps by name, in the order a configuration screen should offer them.
pub const COLOUR_MAPS: &[&str] = &["inferno", "magma", "plasma", "viridis", "cividis", "turbo"];

/// The gradients behind [`COLOUR_MAPS`], in the same order.
const GRADIENTS: [(&str, Gradient); 6] = [
    ("inferno", colorous::INFERNO),
    ("magma", colorous::MAGMA),
    ("plasma", colorous::PLASMA),
    ("viridis", colorous::VIRIDIS),
    ("cividis", colorous::CIVIDIS),
    ("turbo", colorous::TURBO),
];

/// Entries in the sampled table: one per 8-bit output level.
const LEVELS: usize = 256;

/// A colour map: a gradient from "no evidence" (t = 0) to "strongest evidence" (t = 1).
#[derive(Clone)]
pub struct ColourMap {
    name: &'static str,
    table: Box<[[u8; 3]; LEVELS]>,
}

impl ColourMap {
    /// The colour map called `name` (one of [`COLOUR_MAPS`], case-insensitive).
    pub fn by_name(name: &str) -> Result<ColourMap, RenderError> {
        let (name, gradient) = GRADIENTS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name.trim()))
            .context(UnknownColourMapSnafu { name })?;
        let mut table = Box::new([[0_u8; 3]; LEVELS]);
        for (i, entry) in table.iter_mut().enumerate() {
            let c = gradient.eval_rational(i, LEVELS);
            *entry = [c.r, c.g, c.b];
        }
        Ok(ColourMap { name, table })
    }

    /// The map's name, as in [`COLOUR_MAPS`].
    pub fn name(&self) -> &str {
        self.name
    }

    /// The colour at `t` in [0, 1] (clamped; NaN reads as 0). The gradient is sampled at 256
    /// evenly spaced points, `t = i / 255`, and `t` picks the nearest: as fine as 8-bit output
    /// can show, and exactly the published colours at both ends.
    pub fn rgb(&self, t: f32) -> [u8; 3] {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        let index = (t * (LEVELS - 1) as f32).round() as usize;
        self.table[index.min(LEVELS - 1)]
    }
}

impl fmt::Debug for ColourMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColourMap")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PartialEq for ColourMap {
    fn eq(&self, other: &ColourMap) -> bool {
        self.name == other.name
    }
}

impl Eq for ColourMap {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_map_resolves_to_itself() {
        let names: Vec<&str> = GRADIENTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, COLOUR_MAPS);
        for name in COLOUR_MAPS {
            let map = ColourMap::by_name(name).expect("listed map");
            assert_eq!(map.name(), *name);
        }
        let upper = ColourMap::by_name("Viridis").expect("case-insensitive");
        assert_eq!(upper.name(), "viridis");
    }

    #[test]
    fn out_of_range_and_nan_are_clamped() {
        let map = ColourMap::by_name("inferno").expect("inferno");
        assert_eq!(map.rgb(-1.0), map.rgb(0.0));
        assert_eq!(map.rgb(2.0), map.rgb(1.0));
        assert_eq!(map.rgb(f32::NAN), map.rgb(0.0));
    }
}
