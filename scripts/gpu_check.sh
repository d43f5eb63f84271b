#!/usr/bin/env bash
# Issue 9's GPU check, on a lent GPU machine (CUDA 13, PyTorch, no network), in one call of at
# most 10 minutes. Prepare with scripts/gpu_bundle.sh, which prints the calls that carry its
# parts; the last one runs:
#
#   bash scripts/gpu_check.sh DIR      (DIR: where the earlier calls left wheel parts)
#
# Steps, each bounded and recorded, none fatal to the next:
#   1. the onnxruntime-gpu wheel reassembled and checked, unpacked into /tmp/site, with the
#      machine's own NVIDIA CUDA 13 and cuDNN packages linked beside it
#   2. DenseNet169 and ViT-B/16 exported there, as `make setup` does here: the random-weight
#      test exports (the bare loop) and the trained ones from the shipped checkpoints (the rest)
#   3. the bare batched loop (bench/gpu/bare_loop.py): ms per image at batch 1, 8, 32
#   4. `dicom-xai run` of the 24-slice end-to-end work (bench/end-to-end-24-slices.toml) on
#      CUDA with require_gpu: a warm-up run (gradient models built), then 3 timed runs
#   5. parity: `dicom-xai explain` of one slice per model and method on CUDA and on the CPU,
#      heatmaps compared (Pearson) and probabilities (largest difference)
# Writes $OUT/gpu_check.json (every figure) and $OUT/gpu_check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUNDLE=${1:-/tmp/gpu-bundle}
OUT=${OUT:-/tmp/gpu-check-out}
PYTHON=${PYTHON:-python3}
SITE=/tmp/site
WORK=/tmp/gpu-check
mkdir -p "$OUT" "$WORK" "$BUNDLE"
LOG=$OUT/gpu_check.log
RESULTS=$WORK/results.jsonl
: > "$RESULTS"
exec > >(tee -a "$LOG") 2>&1

record() { # record NAME JSON
  printf '{"step": "%s", "result": %s}\n' "$1" "$2" >> "$RESULTS"
}
step() { echo; echo "== $* ($(date -u +%T))"; }
elapsed() { awk -v from="$1" -v to="$(date +%s.%N)" 'BEGIN { printf "%.3f", to - from }'; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
record machine "{\"gpu\": \"${GPU_NAME:-none}\", \"cpus\": $(nproc), \"python\": \"$($PYTHON -V 2>&1)\"}"

step "1. onnxruntime-gpu"
cp .gpu/wheel.part* "$BUNDLE"/ 2>/dev/null || true
WHEEL=$(cat .gpu/rest/WHEEL)
(cd "$BUNDLE" && cat wheel.part* > "$WORK/$WHEEL")
CHECKED=ok
for part in $(cd .gpu && grep -o 'wheel.part[0-9]*' rest/SHA256SUMS); do
  want=$(grep " $part\$" .gpu/rest/SHA256SUMS | cut -d' ' -f1)
  have=$(sha256sum "$BUNDLE/$part" 2>/dev/null | cut -d' ' -f1)
  [ "$want" = "$have" ] || { echo "part $part missing or damaged"; CHECKED=failed; }
done
rm -rf "$SITE"
$PYTHON -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WORK/$WHEEL" || CHECKED=failed
# the machine's CUDA 13 and cuDNN wheels (PyTorch's), where dicom-xai and onnxruntime look
NVIDIA=$($PYTHON -c 'import nvidia, os; print(list(nvidia.__path__)[0])' 2>/dev/null)
[ -n "$NVIDIA" ] && ln -sfn "$NVIDIA" "$SITE/nvidia"
export PYTHONPATH=$SITE
ORT_LIB=$(ls "$SITE"/onnxruntime/capi/libonnxruntime.so.1.* 2>/dev/null | head -1)
$PYTHON -c 'import onnxruntime as o; o.preload_dlls(); print(o.__version__, o.get_available_providers())' || CHECKED=failed
record wheel "{\"status\": \"$CHECKED\", \"library\": \"$ORT_LIB\", \"nvidia\": \"$NVIDIA\"}"
xz -dc .gpu/rest/dicom-xai.xz > "$WORK/dicom-xai" && chmod +x "$WORK/dicom-xai"
mkdir -p "$WORK/fonts" && cp .gpu/rest/DejaVuSans.ttf "$WORK/fonts/DejaVuSans.ttf"
mkdir -p assets/demo && tar -C assets/demo -xf .gpu/rest/study.tar
BIN=$WORK/dicom-xai
export DICOM_XAI_CACHE=$WORK/cache ORT_DYLIB_PATH=$ORT_LIB

step "2. models"
started=$(date +%s.%N)
timeout 300 $PYTHON scripts/export_models.py densenet169-legacy vit_b_16-legacy mission
record export "{\"status\": $?, \"seconds\": $(elapsed "$started")}"

step "3. bare loop"
for model in densenet169-legacy/densenet169 vit_b_16-legacy/vit_b_16; do
  line=$(timeout 120 $PYTHON bench/gpu/bare_loop.py "assets/models/$model.onnx" --provider cuda | tail -1)
  echo "$line"
  record "bare-$(basename $model)" "${line:-null}"
done

step "4. end to end on CUDA"
sed -e 's/^execution_providers = \["cpu"\]/execution_providers = ["cuda"]\nrequire_gpu = true/' \
  bench/end-to-end-24-slices.toml > bench/end-to-end-24-slices-cuda.toml
grep -q '"cuda"' bench/end-to-end-24-slices-cuda.toml || echo "the CUDA configuration was not made"
for run in warm-up 1 2 3; do
  rm -rf "$WORK/e2e" "$WORK/e2e.log"
  started=$(date +%s.%N)
  /usr/bin/time -f "%M" -o "$WORK/rss" timeout 300 "$BIN" --log-format json --log-file "$WORK/e2e.log" \
    run --timings --config bench/end-to-end-24-slices-cuda.toml --out "$WORK/e2e" assets/demo/study \
    > "$WORK/e2e.out"
  status=$?
  wall=$(elapsed "$started")
  classify=$($PYTHON - "$WORK/e2e.log" <<'PY'
import json, sys
seconds = {}
for line in open(sys.argv[1]):
    try:
        entry = json.loads(line)
    except ValueError:
        continue
    fields = entry.get("fields", {})
    if fields.get("message") == "classified":
        seconds[fields.get("model", "?")] = fields["seconds_per_slice"] * fields["slices"]
print(json.dumps(seconds))
PY
)
  # every session's provider counted, and the report's seconds per stage, as JSON objects
  report=$($PYTHON - "$WORK"/e2e/*/report.json <<'PY'
import collections, json, sys
try:
    report = json.load(open(sys.argv[1]))
except (OSError, ValueError, IndexError):
    print(json.dumps({"providers": None, "timings": None}))
    sys.exit()
providers = collections.Counter(
    provider
    for series in report["series"] for model in series["models"]
    for provider in model.get("providers", {}).values())
print(json.dumps({"providers": providers, "timings": report.get("timings")}))
PY
)
  echo "run $run: status $status, wall $wall s, classify $classify, $report"
  tail -14 "$WORK/e2e.out"
  record "e2e-cuda-$run" "{\"status\": $status, \"wall\": $wall, \"peak_rss_kib\": $(cat "$WORK/rss" 2>/dev/null | tail -1 || echo null), \"classify\": ${classify:-null}, \"report\": ${report:-null}}"
  [ $status = 0 ] || tail -5 "$WORK/e2e.log"
done
cp "$WORK"/e2e/*/report.json "$OUT/report-cuda.json" 2>/dev/null

step "5. parity, CUDA against CPU"
SLICE=$(ls assets/demo/study/*/IM*.dcm 2>/dev/null | sort | sed -n 12p)
for model in densenet169 vit_b_16; do
  for method in gradcam saliency occlusion; do
    for side in cuda cpu; do
      config=bench/end-to-end-24-slices.toml
      [ $side = cuda ] && config=bench/end-to-end-24-slices-cuda.toml
      rm -rf "$WORK/explain-$side"
      timeout 120 "$BIN" explain --config $config --model $model --method $method \
        --out "$WORK/explain-$side" "$SLICE" > /dev/null 2>> "$WORK/explain.err" || echo "explain $model $method $side failed"
    done
    [ -f "$WORK/explain-cuda/heatmap.npy" ] && [ -f "$WORK/explain-cpu/heatmap.npy" ] &&
    line=$($PYTHON - "$WORK/explain-cuda" "$WORK/explain-cpu" <<'PY'
import json, sys
import numpy as np
cuda, cpu = sys.argv[1:3]
a, b = np.load(f"{cuda}/heatmap.npy").ravel(), np.load(f"{cpu}/heatmap.npy").ravel()
pearson = float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float(np.array_equal(a, b))
ja, jb = json.load(open(f"{cuda}/explain.json")), json.load(open(f"{cpu}/explain.json"))
pa, pb = ja.get("probabilities", {}), jb.get("probabilities", {})
diff = max((abs(pa[k] - pb[k]) for k in pa if k in pb), default=None)
print(json.dumps({"pearson": pearson, "max_probability_difference": diff,
                  "providers": [ja["model"]["provider"], jb["model"]["provider"]],
                  "seconds": [ja.get("seconds"), jb.get("seconds")]}))
PY
)
    [ -f "$WORK/explain-cuda/heatmap.npy" ] || line=""
    echo "$model $method: ${line:-no result}"
    record "parity-$model-$method" "${line:-null}"
  done
done

step "done"
$PYTHON - "$RESULTS" "$OUT/gpu_check.json" <<'PY'
import json, sys
results = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
json.dump({r["step"]: r["result"] for r in results}, open(sys.argv[2], "w"), indent=1)
PY
cat "$OUT/gpu_check.json"
