//! SHA-256 of model files, remembered by the file's identity.
//!
//! A manifest names its model's checksum, and the gradient cache keys its entries by it, so
//! every start hashed every model: 0.5 s for ViT-B/16's 343 MB on two cores, a third of
//! start-up. A checksum is therefore remembered for the process and on disk (beside the
//! optimised graphs, under the same trust), keyed by what [`FileIdentity`] reads from the
//! file system: path, size, modification and change times, device and inode. Rewriting,
//! replacing, renaming onto or touching the file changes its change time, which no user
//! can set, so a remembered checksum is only reused for bytes that were hashed.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let sha = dicom_xai::runtime::checksum::sha256_file(std::path::Path::new("model.onnx"))?;
//! assert_eq!(sha.len(), 64);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use sha2::{Digest, Sha256};

/// The file-system identity of a file: what changes whenever its bytes may have.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// The file's canonical path.
    pub path: PathBuf,
    /// Size, modification and change times (ns) and device:inode, as one line.
    pub key: String,
}

impl FileIdentity {
    /// The identity of the file at `path`, whose metadata is `metadata`.
    pub fn of(path: &Path, metadata: &std::fs::Metadata) -> FileIdentity {
        let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        let key = format!(
            "{} {}.{} {}.{} {}:{}",
            metadata.size(),
            metadata.mtime(),
            metadata.mtime_nsec(),
            metadata.ctime(),
            metadata.ctime_nsec(),
            metadata.dev(),
            metadata.ino()
        );
        FileIdentity { path, key }
    }

    /// The identity of the file at `path`, or `None` when it cannot be read.
    pub fn read(path: &Path) -> Option<FileIdentity> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileIdentity::of(path, &metadata))
    }

    /// 16 hex digits naming this path (not its content): one cache slot per file.
    pub fn slot(&self) -> String {
        hex16(&Sha256::digest(self.path.as_os_str().as_encoded_bytes()))
    }
}

/// `bytes` in lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first 8 bytes of `digest` in hex.
pub(crate) fn hex16(digest: &[u8]) -> String {
    hex(&digest[..digest.len().min(8)])
}

/// The folder of remembered checksums in the default cache (beside the gradient models,
/// where it has always been).
pub fn default_store() -> PathBuf {
    super::cache_root().join("gradients").join("checksums")
}

/// SHA-256 of the file at `path`, lower-case hex: remembered for the process and in
/// [`default_store`].
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    sha256_file_with_store(path, Some(&default_store()))
}

/// SHA-256 of the file at `path`, remembered for the process and, with `store`, in that
/// folder for later processes. A store that cannot be read or written costs only the hash.
pub fn sha256_file_with_store(path: &Path, store: Option<&Path>) -> std::io::Result<String> {
    static SEEN: OnceLock<Mutex<HashMap<FileIdentity, String>>> = OnceLock::new();
    let mut file = std::fs::File::open(path)?;
    // the identity of the opened file: a file replaced while it is hashed keeps the old
    // identity, which no later look-up matches
    let identity = FileIdentity::of(path, &file.metadata()?);
    let seen = SEEN.get_or_init(Mutex::default);
    if let Ok(known) = seen.lock()
        && let Some(sha) = known.get(&identity)
    {
        return Ok(sha.clone());
    }
    let stored = store.and_then(|dir| read_stored(dir, &identity));
    let sha = match stored {
        Some(sha) => sha,
        None => {
            let sha = hash(&mut file)?;
            if let Some(dir) = store {
                write_stored(dir, &identity, &sha);
            }
            sha
        }
    };
    if let Ok(mut known) = seen.lock() {
        known.insert(identity, sha.clone());
    }
    Ok(sha)
}

fn hash(reader: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(reader, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

const STORE_HEADER: &str = "dicom-xai checksum v1";

/// The record of `identity` in `dir`: its header, the canonical path, the identity key and
/// the checksum, a line each.
fn record(identity: &FileIdentity, sha: &str) -> String {
    format!(
        "{STORE_HEADER}\n{}\n{}\n{sha}\n",
        identity.path.display(),
        identity.key
    )
}

fn read_stored(dir: &Path, identity: &FileIdentity) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(identity.slot())).ok()?;
    let sha = text.lines().nth(3)?;
    let valid = sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && text == record(identity, sha)).then(|| sha.to_ascii_lowercase())
}

fn write_stored(dir: &Path, identity: &FileIdentity, sha: &str) {
    let written = std::fs::create_dir_all(dir).and_then(|()| {
        // a name of this writer's own, renamed once complete: readers never see half a record
        let partial = dir.join(format!("{}.{}.part", identity.slot(), std::process::id()));
        std::fs::write(&partial, record(identity, sha))?;
        std::fs::rename(&partial, dir.join(identity.slot())).inspect_err(|_| {
            let _ = std::fs::remove_file(&partial);
        })
    });
    if let Err(error) = written {
        tracing::debug!(dir = %dir.display(), "cannot remember a model checksum: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // references: sha256sum of the same bytes
    const FIRST: &str = "80d8f975e768eecac59d22a788bf8e811e51ca85e309ee47f1e821e3e58280f2";
    const OTHER: &str = "e2eb5819d249f80a4a944556e67f65ed5c35ff5fa9284c70939ec0e52e45436b";

    /// A folder holding `model.onnx` ("first version") and the path of a store in it.
    fn model_file() -> (tempfile::TempDir, PathBuf, PathBuf, FileIdentity) {
        let dir = tempfile::tempdir().unwrap();
        let (path, store) = (dir.path().join("model.onnx"), dir.path().join("store"));
        std::fs::write(&path, b"first version").unwrap();
        let identity = FileIdentity::read(&path).unwrap();
        (dir, path, store, identity)
    }

    #[test]
    fn a_stored_checksum_is_used_only_for_the_same_file_identity() {
        let (dir, path, store, identity) = model_file();
        // a record made by an earlier process is read instead of hashing: shown by one that
        // differs from the bytes (never the case in use)
        write_stored(&store, &identity, OTHER);
        assert_eq!(sha256_file_with_store(&path, Some(&store)).unwrap(), OTHER);

        // rewritten in place: a new identity (size and times), so the record is not used
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&path, b"other version").unwrap();
        let rewritten = FileIdentity::read(&path).unwrap();
        assert_ne!(rewritten.key, identity.key);
        assert_eq!(read_stored(&store, &rewritten), None);
        assert_eq!(sha256_file_with_store(&path, Some(&store)).unwrap(), OTHER);
        assert_eq!(
            read_stored(&store, &rewritten).as_deref(),
            Some(OTHER),
            "recorded"
        );

        // same bytes, same size, new inode (a copy renamed over it): still not used
        write_stored(&store, &FileIdentity::read(&path).unwrap(), FIRST);
        let copy = dir.path().join("copy.onnx");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::rename(&copy, &path).unwrap();
        assert_eq!(
            read_stored(&store, &FileIdentity::read(&path).unwrap()),
            None
        );
    }

    #[test]
    fn a_damaged_or_foreign_record_is_ignored() {
        let (dir, path, store, identity) = model_file();
        std::fs::create_dir_all(&store).unwrap();
        let slot = store.join(identity.slot());
        for damaged in [
            String::new(),
            record(&identity, FIRST)[..40].to_owned(),
            record(&identity, "not a checksum"),
            record(&identity, FIRST).replace(&identity.key, "1 2.3 4.5 6:7"),
        ] {
            std::fs::write(&slot, damaged).unwrap();
            assert_eq!(read_stored(&store, &identity), None);
        }
        // an unwritable store costs nothing but the hash
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let not_a_folder = dir.path().join("file").join("store");
        assert_eq!(
            sha256_file_with_store(&path, Some(&not_a_folder)).unwrap(),
            FIRST
        );
    }
}
