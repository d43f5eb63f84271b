//! The drop folder: which files are candidates, and when a file is ready to be read.
//!
//! A file is a candidate when it is a regular file whose name (or any folder above it,
//! below the drop folder) matches none of the `ignore` patterns (`.*`, `*.part`, `*.tmp`
//! by default: transfers in progress, hidden files, our own temporary names). A candidate
//! is ready once its size and modification time have stayed the same for `stable`;
//! a file that keeps changing is never read. A file the journal already knows with the
//! same size and mtime is not read again.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use walkdir::WalkDir;

/// A file's size and modification time (nanoseconds since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
}

impl Stamp {
    /// The stamp of `path`, or `None` when it is not a regular file (any more).
    pub fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        if !metadata.is_file() {
            return None;
        }
        let mtime_ns = metadata
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Some(Stamp {
            size: metadata.len(),
            mtime_ns,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    stamp: Stamp,
    changed_at: Instant,
}

/// The candidates of a drop folder and their stability.
#[derive(Debug)]
pub struct DropFolder {
    root: PathBuf,
    ignore: Vec<String>,
    stable: Duration,
    candidates: HashMap<PathBuf, Candidate>,
}

impl DropFolder {
    /// A drop folder at `root`; `ignore` are `*`/`?` patterns on names.
    pub fn new(root: PathBuf, ignore: Vec<String>, stable: Duration) -> DropFolder {
        DropFolder {
            root,
            ignore,
            stable,
            candidates: HashMap::new(),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Changes the patterns and the stability interval (configuration reload).
    pub fn reconfigure(&mut self, ignore: Vec<String>, stable: Duration) {
        self.ignore = ignore;
        self.stable = stable;
    }

    /// Files waiting to become stable.
    pub fn pending(&self) -> usize {
        self.candidates.len()
    }

    /// The first-level folders of the drop folder that hold files still arriving (not yet
    /// stable). Files directly in the drop folder belong to no such folder.
    pub fn arriving_folders(&self) -> std::collections::HashSet<PathBuf> {
        self.candidates
            .keys()
            .filter_map(|path| self.study_folder(path))
            .collect()
    }

    /// The first-level folder of the drop folder that `path` lies in, below it.
    pub fn study_folder(&self, path: &Path) -> Option<PathBuf> {
        let relative = path.strip_prefix(&self.root).ok()?;
        let mut components = relative.components();
        let first = components.next()?;
        components.next()?;
        Some(self.root.join(first))
    }

    /// Whether `path` (below the drop folder) is never read.
    pub fn is_ignored(&self, path: &Path) -> bool {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        relative.components().any(|component| {
            let name = component.as_os_str().to_string_lossy();
            self.ignore
                .iter()
                .any(|pattern| wildcard_match(pattern, &name))
        })
    }

    /// Something happened at `path` (a file, or a folder: then everything below it).
    pub fn touch(&mut self, path: &Path) {
        if self.is_ignored(path) {
            return;
        }
        if path.is_dir() {
            self.walk(path);
        } else if let Some(stamp) = Stamp::of(path) {
            self.note(path.to_path_buf(), stamp);
        }
    }

    /// Every file below the drop folder becomes a candidate again (start-up, lost events,
    /// polling).
    pub fn rescan(&mut self) {
        let root = self.root.clone();
        self.walk(&root);
    }

    fn walk(&mut self, dir: &Path) {
        let entries: Vec<PathBuf> = WalkDir::new(dir)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !self.is_ignored(e.path()))
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.into_path())
            .collect();
        for path in entries {
            if let Some(stamp) = Stamp::of(&path) {
                self.note(path, stamp);
            }
        }
    }

    fn note(&mut self, path: PathBuf, stamp: Stamp) {
        match self.candidates.get_mut(&path) {
            Some(candidate) if candidate.stamp == stamp => {}
            Some(candidate) => {
                candidate.stamp = stamp;
                candidate.changed_at = Instant::now();
            }
            None => {
                self.candidates.insert(
                    path,
                    Candidate {
                        stamp,
                        changed_at: Instant::now(),
                    },
                );
            }
        }
    }

    /// The candidates that have been stable long enough, removed from the candidates; and
    /// the ones that vanished before they were stable.
    pub fn take_ready(&mut self) -> (Vec<(PathBuf, Stamp)>, Vec<PathBuf>) {
        let mut ready = Vec::new();
        let mut vanished = Vec::new();
        let now = Instant::now();
        self.candidates
            .retain(|path, candidate| match Stamp::of(path) {
                None => {
                    vanished.push(path.clone());
                    false
                }
                Some(stamp) if stamp != candidate.stamp => {
                    candidate.stamp = stamp;
                    candidate.changed_at = now;
                    true
                }
                Some(stamp) if now.duration_since(candidate.changed_at) >= self.stable => {
                    ready.push((path.clone(), stamp));
                    false
                }
                Some(_) => true,
            });
        ready.sort_by(|a, b| a.0.cmp(&b.0));
        (ready, vanished)
    }
}

/// `*` (any run of characters) and `?` (one character) matching of a whole name.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                backtrack = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    n = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_whole_names() {
        assert!(wildcard_match("*.part", "a.dcm.part"));
        assert!(!wildcard_match("*.part", "a.part.dcm"));
        assert!(wildcard_match(".*", ".hidden"));
        assert!(!wildcard_match(".*", "visible"));
        assert!(wildcard_match("IM?", "IM1"));
        assert!(!wildcard_match("IM?", "IM12"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXbYbZc"));
    }

    #[test]
    fn a_file_is_ready_only_after_it_stopped_changing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut folder = DropFolder::new(
            dir.path().to_path_buf(),
            vec![".*".into(), "*.part".into()],
            Duration::from_millis(200),
        );
        let file = dir.path().join("study/a.dcm");
        std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        std::fs::write(&file, b"12").expect("write");
        std::fs::write(dir.path().join("study/b.dcm.part"), b"12").expect("write");
        std::fs::create_dir_all(dir.path().join(".hidden")).expect("mkdir");
        std::fs::write(dir.path().join(".hidden/c.dcm"), b"12").expect("write");
        folder.rescan();
        assert_eq!(
            folder.pending(),
            1,
            "temporary and hidden names are passed over"
        );
        assert!(folder.take_ready().0.is_empty(), "not stable yet");
        std::thread::sleep(Duration::from_millis(120));
        std::fs::write(&file, b"1234").expect("grow");
        std::thread::sleep(Duration::from_millis(120));
        assert!(
            folder.take_ready().0.is_empty(),
            "it changed: the wait restarts"
        );
        std::thread::sleep(Duration::from_millis(250));
        let (ready, vanished) = folder.take_ready();
        assert_eq!(ready.len(), 1);
        assert_eq!(ready[0].1.size, 4);
        assert!(vanished.is_empty());
        assert_eq!(folder.pending(), 0);
    }

    #[test]
    fn files_still_arriving_name_their_first_level_folder() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut folder = DropFolder::new(
            dir.path().to_path_buf(),
            vec!["*.part".into()],
            Duration::from_millis(100),
        );
        assert_eq!(
            folder.study_folder(&dir.path().join("s/series2/x.dcm")),
            Some(dir.path().join("s"))
        );
        assert_eq!(folder.study_folder(&dir.path().join("flat.dcm")), None);
        assert_eq!(folder.study_folder(Path::new("/elsewhere/a/b.dcm")), None);
        std::fs::create_dir_all(dir.path().join("s/series2")).expect("mkdir");
        std::fs::write(dir.path().join("s/series2/x.dcm"), b"1").expect("write");
        std::fs::write(dir.path().join("s/y.dcm.part"), b"1").expect("write");
        std::fs::write(dir.path().join("flat.dcm"), b"1").expect("write");
        folder.rescan();
        let arriving = folder.arriving_folders();
        assert_eq!(
            arriving.into_iter().collect::<Vec<_>>(),
            [dir.path().join("s")],
            "ignored names do not count, files at the top belong to no folder"
        );
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(folder.take_ready().0.len(), 2);
        assert!(folder.arriving_folders().is_empty());
    }
}
