//! One work-queue job: a settled study, what the watcher knew of it, and its id.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::pipeline::Engine;
use crate::watch::SettledStudy;

/// A model the watcher's engine had when it published the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobModel {
    /// The manifest's name.
    pub name: String,
    /// The SHA-256 of its ONNX file.
    pub sha256: String,
}

/// The message on [`super::QUEUE`] (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// SHA-256 of the study UID, the sorted SOP UIDs, the model SHA-256s and the
    /// configuration digest ([`Job::id_of`]): the same study with the same files, models
    /// and configuration is the same job.
    pub job_id: String,
    /// StudyInstanceUID.
    pub study_instance_uid: String,
    /// The study's files on the shared input location, as the watcher sees them.
    pub files: Vec<PathBuf>,
    /// The study's SOPInstanceUIDs, sorted.
    pub sop_instance_uids: Vec<String>,
    /// The watcher's models.
    pub models: Vec<JobModel>,
    /// SHA-256 of the watcher's configuration file.
    pub config_digest: String,
}

impl Job {
    /// The job of a settled study, with the engine's models and configuration.
    pub fn new(engine: &Engine, study: &SettledStudy<'_>) -> Job {
        let mut sop_instance_uids: Vec<String> =
            study.instances.iter().map(|(_, sop)| sop.clone()).collect();
        sop_instance_uids.sort();
        let models: Vec<JobModel> = engine
            .models()
            .iter()
            .map(|m| JobModel {
                name: m.manifest().name.clone(),
                sha256: m.sha256().to_string(),
            })
            .collect();
        let config_digest = config_digest(&engine.settings().source);
        let job_id = Job::id_of(study.uid, &sop_instance_uids, &models, &config_digest);
        Job {
            job_id,
            study_instance_uid: study.uid.to_string(),
            files: study.instances.iter().map(|(p, _)| p.clone()).collect(),
            sop_instance_uids,
            models,
            config_digest,
        }
    }

    /// The job id: SHA-256 (hex) over the study UID, the sorted SOP UIDs, the models'
    /// SHA-256s and the configuration digest, each ended by a newline.
    pub fn id_of(
        study_uid: &str,
        sorted_sops: &[String],
        models: &[JobModel],
        config_digest: &str,
    ) -> String {
        let mut hasher = Sha256::new();
        let parts = std::iter::once(study_uid)
            .chain(sorted_sops.iter().map(String::as_str))
            .chain(models.iter().map(|m| m.sha256.as_str()))
            .chain(std::iter::once(config_digest));
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update(b"\n");
        }
        hex(&hasher.finalize())
    }

    /// The message body.
    pub fn to_bytes(&self) -> Vec<u8> {
        // a struct of strings always serialises
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// A message body read back.
    pub fn from_bytes(bytes: &[u8]) -> Result<Job, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// SHA-256 (hex) of the configuration file's bytes; empty when it cannot be read.
fn config_digest(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| hex(&Sha256::digest(bytes)))
        .unwrap_or_default()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_depends_on_every_part_and_survives_the_round_trip() {
        let sops = vec!["1.2.3".to_string(), "1.2.4".to_string()];
        let models = vec![JobModel {
            name: "toy".into(),
            sha256: "ab".into(),
        }];
        let id = Job::id_of("1.2", &sops, &models, "cd");
        assert_eq!(id.len(), 64);
        assert_eq!(id, Job::id_of("1.2", &sops, &models, "cd"));
        assert_ne!(id, Job::id_of("1.2", &sops[..1], &models, "cd"));
        assert_ne!(id, Job::id_of("1.2", &sops, &[], "cd"));
        assert_ne!(id, Job::id_of("1.2", &sops, &models, "ce"));
        assert_ne!(id, Job::id_of("1.3", &sops, &models, "cd"));
        let job = Job {
            job_id: id,
            study_instance_uid: "1.2".into(),
            files: vec![PathBuf::from("/shared/a.dcm")],
            sop_instance_uids: sops,
            models,
            config_digest: "cd".into(),
        };
        assert_eq!(Job::from_bytes(&job.to_bytes()).expect("parse"), job);
    }
}
