//! Deterministic UIDs: the same inputs always give the same UID, so reprocessing a study
//! replaces its overlays instead of duplicating them.
//!
//! A UID is `2.25.` followed by the decimal form of a 128-bit UUID (PS3.5 B.2), the UUID
//! being name-based: the first 128 bits of SHA-256 over a domain tag and the parts, with the
//! version-8 and RFC 9562 variant bits set.

use sha2::{Digest, Sha256};
use snafu::Snafu;

/// The longest a UID may be (PS3.5 9.1).
pub const MAX_LENGTH: usize = 64;

/// Why a value read from a file is not a DICOM UID.
#[derive(Debug, Clone, PartialEq, Eq, Snafu)]
#[snafu(display("{value:?} is not a valid DICOM UID ({reason})"))]
pub struct InvalidUid {
    /// The value as read (shown escaped: it may hold control characters).
    pub value: String,
    /// What rule of PS3.5 9.1 it breaks.
    pub reason: &'static str,
}

/// Checks `value` against PS3.5 9.1: digits and dots only, no empty component, at most
/// 64 characters. Leading zeros in a component are tolerated (real scanners write them, and
/// they cannot make a path escape). A UID that passes is safe as a file or folder name.
pub fn check(value: &str) -> Result<&str, InvalidUid> {
    let invalid = |reason| InvalidUid {
        value: value.to_string(),
        reason,
    };
    if value.is_empty() {
        return Err(invalid("empty"));
    }
    if value.len() > MAX_LENGTH {
        return Err(invalid("longer than 64 characters"));
    }
    if !value.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(invalid("a character other than a digit or a dot"));
    }
    if value.split('.').any(str::is_empty) {
        return Err(invalid("an empty component"));
    }
    Ok(value)
}

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
    fn only_digits_and_dots_in_non_empty_components_up_to_64_characters_are_uids() {
        for good in [
            "1.2.840.10008.5.1.4.1.1.4",
            "0",
            "1.2.3.0012",
            &"1".repeat(64),
        ] {
            assert_eq!(check(good), Ok(good));
        }
        let reasons = [
            ("../../escape", "a character other than a digit or a dot"),
            ("/abs/escape", "a character other than a digit or a dot"),
            ("1.2\0.3", "a character other than a digit or a dot"),
            ("1.2 .3", "a character other than a digit or a dot"),
            ("1.2..3", "an empty component"),
            (".1.2", "an empty component"),
            ("1.2.", "an empty component"),
            ("", "empty"),
        ];
        for (bad, reason) in reasons {
            assert_eq!(check(bad).map_err(|e| e.reason), Err(reason), "{bad:?}");
        }
        let long = "1".repeat(65);
        assert_eq!(
            check(&long).map_err(|e| e.reason),
            Err("longer than 64 characters")
        );
        let message = check("1.2\0../x").expect_err("invalid").to_string();
        assert!(
            message.contains("\\0"),
            "control characters are shown escaped: {message}"
        );
    }

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
