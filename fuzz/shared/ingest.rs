//! The ingest door's invariants, shared by the fuzz target (`fuzz_targets/decode_file.rs`)
//! and the replay of its seeds and regressions in `make test` (`tests/bad_input.rs`): any
//! bytes go through the same parse -> decode -> VOI path the pipeline uses; no panic escapes,
//! a decoded image has the shape its header declares, grey levels are finite and in [0, 1].

use std::path::Path;

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};

/// 16 Mi samples: a 512 x 512 x 64 series, far above any test file.
const FUZZ_MAX_SAMPLES: i64 = 1 << 24;

/// Runs `data` through the ingest door; panics when an invariant breaks.
pub fn check(data: &[u8]) {
    let Ok(dicom) = file::parse(data, Path::new("fuzz-input.dcm"), Depth::Full) else {
        return;
    };
    // The library accepts images up to pixels::MAX_SAMPLES (1 GiB as f32); mutated headers
    // reach that easily, and under the sanitizer each costs seconds and gigabytes. Explore
    // the decoders on images of a realistic size instead.
    if pixels::declared_samples(dicom.dataset()) > FUZZ_MAX_SAMPLES {
        return;
    }
    let Ok(frames) = pixels::decode(&dicom) else {
        return;
    };
    let (rows, columns) = frames.size();
    assert!(rows > 0 && columns > 0);
    for frame in 0..frames.frame_count() {
        if let Ok(grey) = voi::unit_grey(&dicom, &frames, frame) {
            assert_eq!(grey.dim(), (rows, columns));
            assert!(
                grey.iter()
                    .all(|v| v.is_finite() && (0.0..=1.0).contains(v))
            );
        }
    }
}
