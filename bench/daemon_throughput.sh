#!/usr/bin/env bash
# Studies per hour of `dicom-xai watch` with 1 and 2 workers on the trained models: three
# 24-slice demo studies of their own (make_series.py seeds 1-3, so three StudyInstanceUIDs)
# dropped at once, the work of bench/end-to-end-24-slices.toml on each, timed from the drop
# to the third report.json. Figures: docs/performance.md, "Throughput of a queue of studies".
#
#   bash bench/daemon_throughput.sh [WORK_DIR]      (after `make setup demo`)
#   PRECISION=int8 bash bench/daemon_throughput.sh  (occlusion on the models' 8-bit copies)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=${1:-target/daemon-throughput}
precision=${PRECISION:-float32}
bin=target/release/dicom-xai
mkdir -p "$work"
for seed in 1 2 3; do
  [ -d "$work/study$seed" ] || .venv/bin/python tests/support/make_series.py \
    --template assets/mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz \
    --out "$work/study$seed" --preset demo --seed $seed > /dev/null
done
for workers in 1 2; do
  run=$work/workers-$workers
  rm -rf "$run" && mkdir -p "$run/drop" "$run/state" "$run/out"
  # the comparison's configuration, its model paths made absolute, and a short settle
  { sed -e "s#\"\\.\\./models/#\"$root/models/#" \
      -e "s#^\\[methods.occlusion\\]\$#[methods.occlusion]\\nprecision = \"$precision\"#" \
      bench/end-to-end-24-slices.toml
    printf '\n[watch]\nstable = "500ms"\nsettle = "2s"\nworkers = %s\n' "$workers"; } > "$run/site.toml"
  "$bin" --log-file "$run/daemon.log" watch --config "$run/site.toml" --drop "$run/drop" \
    --out "$run/out" --state "$run/state" > /dev/null 2>&1 &
  daemon=$!
  sleep 5
  started=$(date +%s.%N)
  for seed in 1 2 3; do
    cp -r "$work/study$seed" "$run/drop/.study$seed" && mv "$run/drop/.study$seed" "$run/drop/study$seed"
  done
  while [ "$(find "$run/out" -name report.json | wc -l)" -lt 3 ]; do
    kill -0 $daemon 2>/dev/null || { echo "the daemon stopped: $run/daemon.log"; exit 1; }
    sleep 1
  done
  seconds=$(python3 -c "import time; print(round(time.time() - $started, 1))")
  kill -TERM $daemon && wait $daemon || true
  echo "workers $workers, occlusion $precision: 3 studies in $seconds s, $(python3 -c "print(round(3 * 3600 / $seconds, 1))") studies/h"
done
