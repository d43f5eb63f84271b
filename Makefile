# dicom-xai: two commands to start, `make run` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := run

VENV        := .venv
PYTHON      := $(VENV)/bin/python
BIN         := target/release/dicom-xai
DEMO_STUDY  := assets/demo/study
OUT         := out
APT_NEEDS   := dcmtk dicom3tools cmake fonts-dejavu-core
CARGO_FLAGS := --release --locked

.PHONY: setup apt venv assets models build demo run test test-rust test-python test-fuzz lint bench clean

## setup: everything a fresh Debian/Ubuntu machine needs (idempotent)
setup: apt venv assets models build

apt:
	@bash scripts/apt_install.sh $(APT_NEEDS)

venv: $(VENV)/.requirements-installed

$(VENV)/.requirements-installed: requirements.txt
	@test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

assets: venv
	@$(PYTHON) scripts/fetch_assets.py

## models: DenseNet169 and ViT-B/16 (random weights, UNTRAINED) exported by onnx/export.py
models: venv
	@$(PYTHON) scripts/export_models.py

build:
	cargo build $(CARGO_FLAGS)

## demo: a realistic MR study made from the MNI152 template
demo: assets
	@test -f $(DEMO_STUDY).complete || { $(PYTHON) tests/support/make_series.py \
	    --template assets/mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz \
	    --out $(DEMO_STUDY) --preset demo && touch $(DEMO_STUDY).complete; }

## run: set up, then run the main job on the demo study
run: setup demo
	$(BIN) run --config config/default.toml --out $(OUT) $(DEMO_STUDY)
	@echo
	@echo "Overlays and report.json are under $(OUT)/<StudyInstanceUID>/."
	@echo "To look at an overlay:  dcmj2pnm +on $$(find $(OUT) -name '*.dcm' | head -n 1) overlay.png"

## test: set up, then every suite
test: setup lint test-rust test-python test-fuzz

lint:
	cargo fmt --all --check
	cargo clippy $(CARGO_FLAGS) --all-targets -- -D warnings
	cargo clippy $(CARGO_FLAGS) --features cuda --lib -- -D warnings

test-rust:
	DICOM_XAI_PYTHON=$(abspath $(PYTHON)) cargo test $(CARGO_FLAGS) --no-fail-fast

test-python:
	$(PYTHON) -m pytest onnx/tests -q

test-fuzz:
	@bash scripts/fuzz_smoke.sh

## bench: medians on this machine; table on stdout, target/bench/summary.json
bench: setup demo
	cargo bench --locked --bench pipeline

clean:
	cargo clean
	rm -rf $(OUT)
