# dicom-xai: two commands to start, `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV        := .venv
PYTHON      := $(VENV)/bin/python
BIN         := target/release/dicom-xai
DEMO_STUDY  := assets/demo/study
OUT         := out
APT_NEEDS   := dcmtk dicom3tools cmake fonts-dejavu-core orthanc orthanc-dev orthanc-webviewer orthanc-dicomweb chromium rabbitmq-server
## npm fetches OHIF's built viewer for its test; a Node.js that ships its own npm needs none
APT_NEEDS   += $(if $(shell command -v npm),,npm)
CARGO_FLAGS := --release --locked
## GPU=1 (`make setup GPU=1`, then `make run GPU=1`...): the onnxruntime-gpu wheel (CUDA 13,
## with NVIDIA's CUDA and cuDNN wheels) in .venv instead of onnxruntime, and a build with the
## `cuda` feature. Sites list "cuda" in [runtime] execution_providers to use it.
GPU         ?= 0
ORT_GPU     := onnxruntime-gpu[cuda,cudnn]==1.31.1
ifeq ($(GPU),1)
CARGO_FLAGS += --features cuda
endif

.PHONY: setup apt venv assets models build demo run stop view test test-full test-rust test-python test-fuzz lint bench clean

## setup: everything a fresh Debian/Ubuntu machine needs (idempotent)
setup: apt venv assets models build

apt:
	@bash scripts/apt_install.sh $(APT_NEEDS)

venv: $(VENV)/.requirements-installed-gpu$(GPU)

# onnxruntime and onnxruntime-gpu install the same files: switching removes both first, so
# that neither is left half overwritten by the other
PIP := $(PYTHON) -m pip --disable-pip-version-check
$(VENV)/.requirements-installed-gpu$(GPU): requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	@if [ "$(GPU)" != 1 ] && $(PIP) show -q onnxruntime-gpu 2>/dev/null; then \
	  $(PIP) uninstall --quiet -y onnxruntime-gpu onnxruntime; fi
	$(PIP) install --quiet -r requirements.txt
	@if [ "$(GPU)" = 1 ]; then \
	  $(PIP) uninstall --quiet -y onnxruntime onnxruntime-gpu && \
	  $(PIP) install --quiet "$(ORT_GPU)"; fi
	@rm -f $(VENV)/.requirements-installed*
	@touch $@

assets: venv
	@$(PYTHON) scripts/fetch_assets.py
	@$(PYTHON) scripts/fetch_ohif.py

## models: DenseNet169 and ViT-B/16 exported by onnx/export.py: the test variants (random
## weights, UNTRAINED) into assets/models/, and the mission models `make run` uses into models/
## (from a site checkpoint placed in models/checkpoints/, else the random weights)
models: venv
	@$(PYTHON) scripts/export_models.py

build:
	cargo build $(CARGO_FLAGS) --workspace

## demo: a realistic MR study made from the MNI152 template
demo: assets
	@test -f $(DEMO_STUDY).complete || { $(PYTHON) tests/support/make_series.py \
	    --template assets/mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz \
	    --out $(DEMO_STUDY) --preset demo && touch $(DEMO_STUDY).complete; }

## run: set up, start the daemon on ./drop and drop the demo study in (it keeps running)
run: setup demo
	@BIN=$(BIN) OUT=$(OUT) bash scripts/run_daemon_demo.sh $(DEMO_STUDY)

## stop: stop the daemon started by `make run` (SIGTERM: it finishes the study in hand)
stop:
	@if [ -f state/daemon.pid ] && kill -0 $$(cat state/daemon.pid) 2>/dev/null; then \
	  kill -TERM $$(cat state/daemon.pid); \
	  while kill -0 $$(cat state/daemon.pid) 2>/dev/null; do sleep 0.5; done; \
	  echo "dicom-xai watch stopped"; \
	else echo "no dicom-xai watch running on ./state"; fi

## view: the demo study and what `make run` made of it, in OHIF v3 on 127.0.0.1:$(VIEW_PORT)
## (an Orthanc of its own serves them over DICOMweb; Ctrl-C stops both)
VIEW_PORT ?= 3000
view:
	@$(PYTHON) scripts/view.py --port $(VIEW_PORT) $(DEMO_STUDY) $(OUT)

## test: set up, then every suite, one by one, with a table of seconds per suite against
## its budget (tests/budgets.toml) at the end; logs in target/test-logs/
test:
	@start=$$(date +%s); $(MAKE) --no-print-directory setup demo && \
	  CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py \
	    --setup-seconds $$(( $$(date +%s) - start ))

## test-full: `make test` and the fuzz smoke run (a sanitizer build, then 60 s of libFuzzer);
## run before a release
test-full:
	@start=$$(date +%s); $(MAKE) --no-print-directory setup demo && \
	  CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py --full \
	    --setup-seconds $$(( $$(date +%s) - start ))

lint:
	@CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py --only lint

test-rust:
	@CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py --only rust

test-python: demo
	@CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py --only python

test-fuzz:
	@CARGO_FLAGS="$(CARGO_FLAGS)" $(PYTHON) scripts/test_suites.py --only fuzz

## bench: medians on this machine; table on stdout, target/bench/summary.json
bench: setup demo
	cargo bench --locked --bench pipeline

clean:
	cargo clean
	rm -rf $(OUT)
