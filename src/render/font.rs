//! The font the legend is drawn with: one TrueType/OpenType file, found in a fixed order.
//!
//! DejaVu Sans is the default: it is on most Linux systems (Debian package
//! `fonts-dejavu-core`, which `make setup` installs), legible at small sizes, and its licence
//! allows redistribution, so a site may also ship it as `fonts/DejaVuSans.ttf` beside the
//! binary.

use std::path::{Path, PathBuf};

use ab_glyph::FontArc;
use snafu::{ResultExt, ensure};

use super::{FontNotFoundSnafu, FontParseSnafu, FontReadSnafu, RenderError};

/// The environment variable naming a font file.
pub const FONT_ENV: &str = "DICOM_XAI_FONT";

/// Where the font is looked for, relative to the folder of the running executable.
pub const BESIDE_EXECUTABLE: &str = "fonts/DejaVuSans.ttf";

/// System locations of DejaVu Sans: Debian/Ubuntu, then Fedora/Arch.
pub const SYSTEM_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// A loaded font and the file it came from.
#[derive(Clone)]
pub struct Font {
    face: FontArc,
    path: PathBuf,
}

impl Font {
    /// Finds and loads the font. The search order:
    ///
    /// 1. `explicit` (a command-line option or configuration key), when given;
    /// 2. the file named by `DICOM_XAI_FONT`, when set and not empty;
    /// 3. `fonts/DejaVuSans.ttf` beside the executable;
    /// 4. the system's DejaVu Sans ([`SYSTEM_FONTS`]).
    ///
    /// A font that was asked for (1 or 2) is the only candidate: a missing configured font is
    /// a configuration error, reported, never silently replaced by another. The error lists
    /// every path tried.
    pub fn find(explicit: Option<&Path>) -> Result<Font, RenderError> {
        Font::first_of(&Font::candidates(explicit))
    }

    /// The paths [`Font::find`] tries, in order.
    pub fn candidates(explicit: Option<&Path>) -> Vec<PathBuf> {
        if let Some(path) = explicit {
            return vec![path.to_path_buf()];
        }
        if let Some(path) = std::env::var_os(FONT_ENV).filter(|v| !v.is_empty()) {
            return vec![PathBuf::from(path)];
        }
        let beside = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(BESIDE_EXECUTABLE)));
        beside
            .into_iter()
            .chain(SYSTEM_FONTS.iter().map(PathBuf::from))
            .collect()
    }

    /// Loads the first of `candidates` that is a file. A file that exists but cannot be read
    /// or parsed is an error (naming it), not a reason to try the next.
    pub fn first_of(candidates: &[PathBuf]) -> Result<Font, RenderError> {
        let found = candidates.iter().find(|path| path.is_file());
        match found {
            Some(path) => Font::load(path),
            None => FontNotFoundSnafu {
                tried: candidates.to_vec(),
            }
            .fail(),
        }
    }

    /// Loads the font file at `path`.
    pub fn load(path: &Path) -> Result<Font, RenderError> {
        ensure!(
            path.is_file(),
            FontNotFoundSnafu {
                tried: vec![path.to_path_buf()]
            }
        );
        let bytes = std::fs::read(path).context(FontReadSnafu { path })?;
        let face = FontArc::try_from_vec(bytes).context(FontParseSnafu { path })?;
        Ok(Font {
            face,
            path: path.to_path_buf(),
        })
    }

    /// The file the font was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parsed font, for measuring and drawing glyphs.
    pub fn face(&self) -> &FontArc {
        &self.face
    }
}

impl std::fmt::Debug for Font {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Font")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}
