//! The ingest door: any bytes through the same parse -> decode -> VOI path the pipeline uses.
//! Invariants: no panic; a decoded image has the shape its header declares; grey levels are
//! finite and within [0, 1].
#![no_main]

use std::path::Path;

use dicom_xai::dicom::file::{self, Depth};
use dicom_xai::dicom::{pixels, voi};
use libfuzzer_sys::fuzz_target;

/// 16 Mi samples: a 512 x 512 x 64 series, far above any test file.
const FUZZ_MAX_SAMPLES: i64 = 1 << 24;

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on every panic, caught or not; `pixels::decode` catches the
    // codecs' panics on malformed data and returns them as the file's error, so the default
    // hook goes back in. A panic that escapes this closure still aborts the run.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| {
        let _fuzzer_hook = std::panic::take_hook();
    });
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
            assert!(grey.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
        }
    }
});
