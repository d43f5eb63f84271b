//! Configuration errors: every one names the file, and every problem the key path, the value
//! as written and, when the file shows it, the line and column.

use std::fmt;
use std::path::PathBuf;

use snafu::Snafu;

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The key path, e.g. `rules[1].select.series_description` (arrays count from 0); `""`
    /// for the document itself.
    pub key: String,
    /// The offending value as written in the file (or as understood, when the file does
    /// not show it); `None` when the key is missing.
    pub value: Option<String>,
    /// Line and column (1-based) of the value, or of the key.
    pub position: Option<(usize, usize)>,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        match (&self.key[..], &self.value) {
            ("", Some(value)) => write!(f, "{value}: ")?,
            ("", None) => {}
            (key, Some(value)) => write!(f, "{key} = {value}: ")?,
            (key, None) => write!(f, "{key}: ")?,
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration could not be loaded. Every message starts with the file's path.
#[derive(Debug, Snafu)]
#[snafu(visibility(pub(crate)))]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[snafu(display("{}: cannot read configuration: {source}", path.display()))]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[snafu(display("{}: not valid TOML: {problem}", path.display()))]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// Where and what.
        problem: Problem,
    },
    /// The file is TOML, but keys, types or values are wrong. Validation reports every
    /// problem it finds (in file order), not only the first.
    #[snafu(display("{}", render(path, problems)))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// What is wrong, at least one.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The configuration file the error is about.
    pub fn file(&self) -> &std::path::Path {
        match self {
            Self::Read { path, .. } | Self::Syntax { path, .. } | Self::Invalid { path, .. } => {
                path
            }
        }
    }

    /// Every problem found (empty for a read error).
    pub fn problems(&self) -> &[Problem] {
        match self {
            Self::Read { .. } => &[],
            Self::Syntax { problem, .. } => std::slice::from_ref(problem),
            Self::Invalid { problems, .. } => problems,
        }
    }
}

fn render(path: &std::path::Path, problems: &[Problem]) -> String {
    match problems {
        [one] => format!("{}: {one}", path.display()),
        many => {
            let mut text = format!("{}: {} problems", path.display(), many.len());
            for problem in many {
                text.push_str(&format!("\n  {}: {problem}", path.display()));
            }
            text
        }
    }
}
