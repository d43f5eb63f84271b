//! Files written whole or not at all: every output of dicom-xai (overlays, reports, SAEs,
//! audit pages) goes through [`write_atomically`], so a reader or a crash never sees half a
//! file.

use std::path::Path;

/// Writes `bytes` to `path` atomically (temporary name in the same folder, then rename),
/// creating the folder when missing.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = path.with_file_name(format!(".{name}.part"));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}
