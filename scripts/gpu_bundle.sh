#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for scripts/gpu_check.sh on a lent GPU machine, which has CUDA 13
# and PyTorch but no network and takes at most 64 MiB of files per call:
#   .gpu/wheel.partNN   the onnxruntime-gpu 1.31.1 wheel for the machine's Python 3.12, in
#                       parts of 58 MiB (one call each, copied to /tmp/gpu-bundle there; the
#                       last, smaller one travels with rest/)
#   .gpu/rest/          dicom-xai built with the cuda feature (stripped, xz), the demo study,
#                       SHA256SUMS of everything
# Then prints the calls to make, in order, back to back (the machine stays warm 30 s).
#
#   bash scripts/gpu_bundle.sh            (after `make setup demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
# the lent machine's Python (3.12); another for a rehearsal here (PYVER=3.11)
PYVER=${PYVER:-3.12}
TAG=cp${PYVER/./}
WHEEL=onnxruntime_gpu-1.31.1-$TAG-$TAG-manylinux_2_28_x86_64.whl
rm -rf .gpu && mkdir -p .gpu/rest .gpu/download

$PYTHON -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PYVER" \
  --implementation cp --platform manylinux_2_28_x86_64 -d .gpu/download "onnxruntime-gpu==1.31.1"
test -f ".gpu/download/$WHEEL"

cargo build --release --locked --features cuda --bin dicom-xai
strip -o .gpu/download/dicom-xai target/release/dicom-xai
xz -T0 -6 -c .gpu/download/dicom-xai > .gpu/rest/dicom-xai.xz
tar -C assets/demo -cf .gpu/rest/study.tar study
# the legend's font: a machine without DejaVu finds none, so it travels beside the binary
cp /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf .gpu/rest/DejaVuSans.ttf

split -b 58M -d ".gpu/download/$WHEEL" .gpu/wheel.part
(cd .gpu && sha256sum wheel.part* rest/dicom-xai.xz rest/study.tar rest/DejaVuSans.ttf > rest/SHA256SUMS
 echo "$WHEEL" > rest/WHEEL)
rm -rf .gpu/download

echo "gpu_bundle: .gpu/ ready ($(du -sh .gpu | cut -f1)). Device calls, back to back:"
parts=(.gpu/wheel.part*)
for part in "${parts[@]:0:${#parts[@]}-1}"; do
  echo "  run carry=[\"$part\"] command: mkdir -p /tmp/gpu-bundle && cp $part /tmp/gpu-bundle/"
done
echo "  run carry=[\"${parts[-1]}\", \".gpu/rest\"] timeout_s=600 command: bash scripts/gpu_check.sh /tmp/gpu-bundle"
