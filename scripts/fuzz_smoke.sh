#!/usr/bin/env bash
# A short fuzzing run of the ingest door (fuzz/fuzz_targets/decode_file.rs), seeded with
# pydicom's test files. FUZZ_SECONDS (default 60) bounds it. FUZZ_SEED fixes libFuzzer's
# mutations so that a CI gate does not pass or fail by the draw (0: a fresh seed each run,
# for exploratory runs; what they find goes into tests/bad_input.rs). The fuzz build needs
# sanitizer flags that only nightly compilers accept; RUSTC_BOOTSTRAP lets the one stable
# toolchain here accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-60}"
seed="${FUZZ_SEED:-20261127}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked cargo-fuzz@0.13.2
fi
corpus=fuzz/corpus/decode_file
mkdir -p "$corpus"
find assets/pydicom -type f -size -2M -exec cp -n {} "$corpus"/ \;
export RUSTC_BOOTSTRAP=1
cargo fuzz run decode_file "$corpus" -- \
  -max_total_time="$seconds" -seed="$seed" -rss_limit_mb=6144 -max_len=4194304 -timeout=30 -print_final_stats=1
