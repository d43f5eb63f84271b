#!/usr/bin/env bash
# `make run`: start the daemon on ./drop (unless one already runs on ./state), copy the demo
# study into the drop folder file by file as a PACS export would, wait until the daemon has
# processed it, and show where the outputs are. The daemon keeps running; `make stop` stops it.
set -euo pipefail
bin=${BIN:-target/release/dicom-xai}
config=${CONFIG:-config/default.toml}
demo=${1:?usage: run_daemon_demo.sh DEMO_STUDY_FOLDER}
out=${OUT:-out}
drop=drop
state=state

running() { [ -f "$state/daemon.pid" ] && kill -0 "$(cat "$state/daemon.pid")" 2>/dev/null; }

mkdir -p "$drop" "$state" "$out"
if running; then
  echo "dicom-xai watch is already running (pid $(cat "$state/daemon.pid"))"
else
  # detached from this terminal and from make: it outlives this script
  setsid "$bin" --log-file "$state/daemon.log" watch --config "$config" \
    --drop "$drop" --out "$out" --state "$state" </dev/null >/dev/null 2>&1 &
  for _ in $(seq 1 120); do
    grep -q '"watching"\|watching' "$state/daemon.log" 2>/dev/null && break
    if ! kill -0 $! 2>/dev/null; then
      echo "dicom-xai watch did not start:"; tail -n 20 "$state/daemon.log"; exit 1
    fi
    sleep 0.5
  done
  echo "dicom-xai watch started (pid $(cat "$state/daemon.pid")), watching ./$drop; log: $state/daemon.log"
fi

target="$drop/demo-study"
if [ -d "$target" ]; then
  echo "the demo study is already in ./$drop (remove $target and run again to redo it)"
else
  echo "copying the demo study into ./$drop, file by file ..."
  mkdir -p "$target.incoming"
  # a PACS export: each file written under a temporary name, then renamed
  find "$demo" -name '*.dcm' | sort | while read -r file; do
    relative=${file#"$demo"/}
    mkdir -p "$target/$(dirname "$relative")"
    cp "$file" "$target/$relative.part"
    mv "$target/$relative.part" "$target/$relative"
  done
  rmdir "$target.incoming"
fi

echo "waiting for the daemon (the study settles first: [watch] settle in $config) ..."
for _ in $(seq 1 1200); do
  counts=$("$bin" status --state "$state" --json 2>/dev/null || echo '{}')
  busy=$(python3 -c 'import json,sys; c=json.load(sys.stdin).get("counts",{}); print(sum(c.get(k,0) for k in ("settling","queued","running")), c.get("done",0)+c.get("failed",0))' <<<"$counts")
  read -r pending finished <<<"$busy"
  if [ "$pending" = 0 ] && [ "$finished" -ge 1 ]; then break; fi
  sleep 1
done
"$bin" status --state "$state"
echo
echo "Overlays and report.json are under $out/<StudyInstanceUID>/:"
find "$out" -name report.json | sed 's/^/  /'
echo "To look at an overlay:  dcmj2pnm +on \$(find $out -name '*.dcm' | head -n 1) overlay.png"
echo "The daemon keeps watching ./$drop (copy studies in); stop it with: make stop"
