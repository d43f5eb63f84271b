//! Deterministic UIDs: the same inputs always give the same UID, so reprocessing a study
//! replaces its overlays instead of duplicating them.
//!
//! A UID is `2.25.` followed by the decimal form of a 128-bit UUID (PS3.5 B.2), the UUID
//! being name-based: the first 128 bits of SHA-256 over a domain tag and the parts, with the
//! version-8 and RFC 9562 variant bits set.

use sha2::{Digest, Sha256};

/// The UID derived from `kind` (what is being named, e.g. "series") and `parts`.
pub fn derived(kind: &str, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"dicom-xai\0");
    hasher.update(kind.as_bytes());
    for part in parts {
        // length-prefixed so that ("ab","c") and ("a","bc") differ
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    bytes[6] = (bytes[6] & 0x0f) | 0x80; // version 8 (custom, name-based)
    bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 9562 variant
    format!("2.25.{}", u128::from_be_bytes(bytes))
}

/// This software's Implementation Class UID (file meta group).
pub fn implementation_class() -> String {
    derived("implementation-class", &["dicom-xai"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_valid_and_distinct() {
        let a = derived("series", &["1.2.3", "densenet169", "gradcam"]);
        assert_eq!(a, derived("series", &["1.2.3", "densenet169", "gradcam"]));
        assert_ne!(a, derived("series", &["1.2.3", "densenet169", "saliency"]));
        assert_ne!(a, derived("instance", &["1.2.3", "densenet169", "gradcam"]));
        assert_ne!(derived("x", &["ab", "c"]), derived("x", &["a", "bc"]));
        assert!(a.len() <= 64, "{a}");
        assert!(a.starts_with("2.25."));
        let digits = &a[5..];
        assert!(digits.chars().all(|c| c.is_ascii_digit()));
        assert!(
            !digits.starts_with('0'),
            "no leading zero in a UID component"
        );
    }
}
