//! The ingest door under libFuzzer: any bytes through [`ingest::check`] (the same parse ->
//! decode -> VOI path the pipeline uses, and its invariants).
#![no_main]

#[path = "../shared/ingest.rs"]
mod ingest;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // libfuzzer-sys aborts on every panic, caught or not; `pixels::decode` catches the
    // codecs' panics on malformed data and returns them as the file's error, so the default
    // hook goes back in. A panic that escapes `check` still aborts the run.
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| {
        let _fuzzer_hook = std::panic::take_hook();
    });
    ingest::check(data);
});
