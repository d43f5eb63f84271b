//! Paths in log lines. Drop folders are often sorted by patient name (`DOE^JOHN/...`), so a
//! path under an input folder can carry patient data into a log. `[logging] paths` says how
//! such paths are written: `full`, `relative` (to the input folder: the site's own layout,
//! names included) or `hashed` (the file's SOP Instance UID when it was read, and a short
//! hash of the path; nothing of its folders or name).
//!
//! The rewriting happens on each finished log line ([`redact`], [`Redacting`] for a
//! `tracing_subscriber` writer), so every message is covered, those of libraries and of
//! error texts included, without each call site having to remember.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use sha2::{Digest, Sha256};

/// How paths under the input folders appear in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStyle {
    /// As they are.
    Full,
    /// Relative to their input folder.
    Relative,
    /// `[file <SOP Instance UID>#<hash>]`: no folder or file name.
    Hashed,
}

impl PathStyle {
    /// The names of the configuration values.
    pub const NAMES: [&'static str; 3] = ["full", "relative", "hashed"];

    /// The style of a configuration value.
    pub fn from_name(name: &str) -> Option<PathStyle> {
        match name {
            "full" => Some(PathStyle::Full),
            "relative" => Some(PathStyle::Relative),
            "hashed" => Some(PathStyle::Hashed),
            _ => None,
        }
    }
}

/// The process's policy: a style and the folders whose paths it rewrites.
#[derive(Debug, Clone)]
struct Policy {
    style: PathStyle,
    /// Each root as given and canonical, longest first, without a trailing slash.
    roots: Vec<String>,
}

static POLICY: RwLock<Option<Policy>> = RwLock::new(None);
/// SOP Instance UIDs of files read, by path, for the hashed style.
static KNOWN: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
/// Bound on [`KNOWN`]: a daemon sees files without end; forgetting only shortens a line.
const KNOWN_LIMIT: usize = 100_000;

/// Sets how paths under `roots` appear in every later log line of this process.
pub fn set_path_policy(style: PathStyle, roots: &[PathBuf]) {
    let mut names: Vec<String> = roots
        .iter()
        .flat_map(|root| {
            let canonical = root.canonicalize().ok();
            std::iter::once(root.clone()).chain(canonical)
        })
        .filter_map(|root| {
            let text = root.to_string_lossy().trim_end_matches('/').to_string();
            (!text.is_empty()).then_some(text)
        })
        .collect();
    names.sort_by_key(|name| std::cmp::Reverse(name.len()));
    names.dedup();
    let policy = Policy {
        style,
        roots: names,
    };
    *POLICY.write().unwrap_or_else(|p| p.into_inner()) = Some(policy);
}

/// Remembers the SOP Instance UID of a file, for the hashed style.
pub fn remember_sop_instance(path: &Path, sop_instance_uid: &str) {
    if !matches!(current_style(), Some(PathStyle::Hashed)) {
        return;
    }
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    let map = known.get_or_insert_with(HashMap::new);
    if map.len() >= KNOWN_LIMIT {
        map.clear();
    }
    map.insert(path.to_path_buf(), sop_instance_uid.to_string());
}

fn current_style() -> Option<PathStyle> {
    POLICY
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|p| p.style)
}

/// A short hash of a path (12 hex digits of its SHA-256): the same path always gives the
/// same hash, so the lines of one file can be followed, and a site that has the file can
/// find it again (`sha256sum` of the path text).
pub fn path_hash(path: &str) -> String {
    Sha256::digest(path.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A log line with every path under the input folders written as the policy says.
pub fn redact(line: &str) -> Cow<'_, str> {
    let guard = POLICY.read().unwrap_or_else(|p| p.into_inner());
    let Some(policy) = guard.as_ref().filter(|p| p.style != PathStyle::Full) else {
        return Cow::Borrowed(line);
    };
    if !policy.roots.iter().any(|root| line.contains(root.as_str())) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    'scan: while !rest.is_empty() {
        for root in &policy.roots {
            if let Some(tail) = rest
                .strip_prefix(root.as_str())
                .and_then(|t| t.strip_prefix('/'))
            {
                let length = path_length(root, tail);
                let full = format!("{root}/{}", &tail[..length]);
                match policy.style {
                    PathStyle::Relative => out.push_str(&tail[..length]),
                    _ => out.push_str(&hashed(&full)),
                }
                rest = &tail[length..];
                continue 'scan;
            }
        }
        let mut characters = rest.chars();
        if let Some(c) = characters.next() {
            out.push(c);
        }
        rest = characters.as_str();
    }
    Cow::Owned(out)
}

fn hashed(path: &str) -> String {
    let known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    let sop = known.as_ref().and_then(|m| m.get(Path::new(path)));
    match sop {
        Some(sop) => format!("[file {sop}#{}]", path_hash(path)),
        None => format!("[file #{}]", path_hash(path)),
    }
}

/// How many bytes of `tail` (what follows `root/` in a line) belong to the path. A path ends
/// at a quote, a line end, `: `, a comma, a semicolon or a closing bracket; it may hold
/// spaces (folders named after patients often do), so at a space the longest prefix that
/// exists on disk wins, and without one the file name is cut at its first space.
fn path_length(root: &str, tail: &str) -> usize {
    let hard = tail
        .char_indices()
        .find(|&(i, c)| {
            matches!(
                c,
                '"' | '\'' | '\n' | '\r' | ',' | ';' | ')' | ']' | '\\' | '\x1b'
            ) || (c == ':' && tail[i + 1..].chars().next().is_none_or(char::is_whitespace))
        })
        .map_or(tail.len(), |(i, _)| i);
    let candidate = tail[..hard].trim_end();
    if !candidate.contains(' ') {
        return candidate.len();
    }
    let spaces: Vec<usize> = candidate.match_indices(' ').map(|(i, _)| i).collect();
    let exists = |end: usize| Path::new(&format!("{root}/{}", &candidate[..end])).exists();
    if exists(candidate.len()) {
        return candidate.len();
    }
    if let Some(&end) = spaces.iter().rev().find(|&&end| exists(end)) {
        return end;
    }
    let name_start = candidate.rfind('/').map_or(0, |i| i + 1);
    candidate[name_start..]
        .find(' ')
        .map_or(candidate.len(), |i| name_start + i)
}

/// A `tracing_subscriber` writer whose lines pass through [`redact`]: each event is
/// collected whole, then written once.
pub struct Redacting<M>(pub M);

impl<'a, M: tracing_subscriber::fmt::MakeWriter<'a>> tracing_subscriber::fmt::MakeWriter<'a>
    for Redacting<M>
{
    type Writer = RedactedEvent<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactedEvent {
            inner: self.0.make_writer(),
            buffer: Vec::new(),
        }
    }
}

/// One event's text, written redacted when dropped.
pub struct RedactedEvent<W: Write> {
    inner: W,
    buffer: Vec<u8>,
}

impl<W: Write> Write for RedactedEvent<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for RedactedEvent<W> {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buffer);
        let _ = self.inner.write_all(redact(&text).as_bytes());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // one test: the policy is process-wide
    #[test]
    fn paths_under_the_input_folders_are_written_as_the_policy_says() {
        let drop = tempfile::tempdir().expect("drop");
        let root = drop.path().to_string_lossy().to_string();
        let study = drop.path().join("DOE JOHN^X");
        std::fs::create_dir_all(&study).expect("mkdir");
        let file = study.join("IM 0001.dcm");
        std::fs::write(&file, b"x").expect("write");
        let line = format!(
            "ERROR file={} {}: missing StudyInstanceUID, also \"{}/gone/a b.dcm\"\n",
            file.display(),
            file.display(),
            root
        );

        set_path_policy(PathStyle::Full, &[drop.path().to_path_buf()]);
        assert_eq!(redact(&line), line);

        set_path_policy(PathStyle::Relative, &[drop.path().to_path_buf()]);
        let relative = redact(&line);
        assert!(!relative.contains(&root), "{relative}");
        assert!(
            relative.contains("DOE JOHN^X/IM 0001.dcm: missing"),
            "{relative}"
        );

        set_path_policy(PathStyle::Hashed, &[drop.path().to_path_buf()]);
        remember_sop_instance(&file, "1.2.3.4");
        let hashed = redact(&line);
        for leak in ["DOE", "JOHN", "IM 0001", "gone", &root] {
            assert!(!hashed.contains(leak), "{leak} in {hashed}");
        }
        let hash = path_hash(&file.to_string_lossy());
        assert!(
            hashed.contains(&format!("[file 1.2.3.4#{hash}]: missing")),
            "{hashed}"
        );
        assert!(
            hashed.ends_with("b.dcm\"\n"),
            "a vanished file's name is cut at a space: {hashed}"
        );
        set_path_policy(PathStyle::Full, &[]);
    }
}
