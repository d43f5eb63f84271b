//! What an audit has measured so far, one JSON line per (model, image), appended as each
//! image is done: an interrupted audit started again with the same output folder measures
//! only what is missing. A record is reused when the model bytes (sha256), the image (path
//! and size) and the audit's settings (method parameters, quality policy, software version,
//! measurement revision) are the same; a later line replaces an earlier one; a torn last line
//! is ignored.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The journal's file name in the audit's output folder.
pub const FILE_NAME: &str = "audit-records.jsonl";

/// One method's explanation of one image's predicted class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExplanationRecord {
    /// The method's name.
    pub method: String,
    /// Share of the map inside the brain mask (`None`: empty map or no brain found).
    pub in_brain_fraction: Option<f32>,
    /// Deletion AUC (when the faithfulness curves are on).
    pub deletion_auc: Option<f32>,
    /// Insertion AUC.
    pub insertion_auc: Option<f32>,
    /// The quality flags (docs/design.md section 3).
    pub flags: Vec<String>,
    /// `sae` only: the share of the map's evidence (the leading concepts' contributions)
    /// carried by concepts whose activation lies mostly outside the brain.
    #[serde(default)]
    pub outside_concept_share: Option<f32>,
    /// Seconds the method and its checks took.
    pub seconds: f64,
    /// Why the explanation failed, when it did.
    pub error: Option<String>,
}

/// One model's outcome on one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The model's name.
    pub model: String,
    /// The model file's sha256.
    pub sha256: String,
    /// The image file, as found under the data folders.
    pub image: PathBuf,
    /// Its size in bytes when measured.
    pub bytes: u64,
    /// The true label.
    pub label: String,
    /// Class probabilities in the model's label order (empty when the image failed).
    pub probabilities: Vec<f32>,
    /// The fingerprint of the settings the record was measured with.
    pub settings: String,
    /// Why the image could not be classified, when it could not.
    pub error: Option<String>,
    /// One per method run on the image.
    pub explanations: Vec<ExplanationRecord>,
}

impl ImageRecord {
    /// The record's identity: model bytes and image.
    pub fn key(&self) -> (String, PathBuf) {
        (self.sha256.clone(), self.image.clone())
    }

    /// The predicted class (index into the model's labels), when classified.
    pub fn predicted(&self) -> Option<usize> {
        (!self.probabilities.is_empty())
            .then(|| crate::model::classifier::argmax(self.probabilities.iter().copied()))
    }

    /// This record's explanation by `method`, when made.
    pub fn explanation(&self, method: &str) -> Option<&ExplanationRecord> {
        self.explanations.iter().find(|e| e.method == method)
    }
}

/// The journal: records read at start, and the file new ones are appended to.
pub struct Journal {
    path: PathBuf,
    records: HashMap<(String, PathBuf), ImageRecord>,
    file: std::fs::File,
}

impl Journal {
    /// Opens (or creates) the journal in `folder`, reading the records it holds.
    pub fn open(folder: &Path) -> std::io::Result<Journal> {
        let path = folder.join(FILE_NAME);
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => return Err(error),
        };
        let mut records = HashMap::new();
        // a line cut short by an interruption does not parse and is measured again
        for record in text
            .lines()
            .filter_map(|line| serde_json::from_str::<ImageRecord>(line).ok())
        {
            records.insert(record.key(), record);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        // a torn last line is ended, so the next record starts a line of its own
        if !text.is_empty() && !text.ends_with('\n') {
            file.write_all(b"\n")?;
        }
        Ok(Journal {
            path,
            records,
            file,
        })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of `image` under model `sha256` measured with `settings` from a file of
    /// `bytes` bytes, when there is one.
    pub fn find(
        &self,
        sha256: &str,
        image: &Path,
        bytes: u64,
        settings: &str,
    ) -> Option<&ImageRecord> {
        self.records
            .get(&(sha256.to_string(), image.to_path_buf()))
            .filter(|r| r.bytes == bytes && r.settings == settings)
    }

    /// Appends `record` (one line, flushed) and keeps it.
    pub fn append(&mut self, record: ImageRecord) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.flush()?;
        self.records.insert(record.key(), record);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(image: &str, settings: &str) -> ImageRecord {
        ImageRecord {
            model: "m".into(),
            sha256: "abc".into(),
            image: image.into(),
            bytes: 10,
            label: "glioma".into(),
            probabilities: vec![0.2, 0.8],
            settings: settings.into(),
            error: None,
            explanations: vec![],
        }
    }

    #[test]
    fn records_survive_a_restart_and_a_torn_line() {
        let folder = tempfile::tempdir().expect("temporary folder");
        {
            let mut journal = Journal::open(folder.path()).expect("journal");
            journal.append(record("a.png", "s1")).expect("append");
            journal.append(record("b.png", "s1")).expect("append");
        }
        // an interruption in the middle of a line
        let path = folder.path().join(FILE_NAME);
        let mut bytes = std::fs::read(&path).expect("journal bytes");
        bytes.extend_from_slice(b"{\"model\": \"m\", \"sha");
        std::fs::write(&path, bytes).expect("torn journal");
        let mut journal = Journal::open(folder.path()).expect("journal");
        journal.append(record("c.png", "s1")).expect("append");
        let journal = Journal::open(folder.path()).expect("journal");
        assert!(journal.find("abc", Path::new("c.png"), 10, "s1").is_some());
        let a = journal.find("abc", Path::new("a.png"), 10, "s1");
        assert_eq!(a.and_then(ImageRecord::predicted), Some(1));
        assert!(journal.find("abc", Path::new("b.png"), 10, "s1").is_some());
        // other settings or another file size: measured again
        assert!(journal.find("abc", Path::new("b.png"), 10, "s2").is_none());
        assert!(journal.find("abc", Path::new("b.png"), 11, "s1").is_none());
    }
}
