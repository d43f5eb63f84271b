"""The Python peer of `make bench` on a 2-slice subset of the demo study: it runs, its
PyTorch models are the exported ones, and every overlay it writes is a valid Secondary
Capture labelled NOT FOR DIAGNOSTIC USE.

Cheap parameters (top 1 slice, 112-pixel occlusion patches) keep it under a minute on two
cores; `make bench` runs the real comparison. Needs `make demo` and the exported models.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

ROOT = Path(__file__).resolve().parents[3]
PEER = ROOT / "bench" / "peer" / "run_peer.py"
CONFIG = ROOT / "bench" / "end-to-end-24-slices.toml"
STUDY = ROOT / "assets" / "demo" / "study" / "01_ax_t1_mprage"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    slices = sorted(STUDY.glob("*.dcm"))
    if len(slices) < 13 or not (ROOT / "models" / "vit_b_16").is_dir():
        pytest.fail("needs the demo study and the exported models: run `make setup demo`")
    study = tmp_path_factory.mktemp("study")
    for source in slices[11:13]:
        shutil.copy(source, study / source.name)
    out = tmp_path_factory.mktemp("peer")
    command = [sys.executable, str(PEER), "--config", str(CONFIG), "--out", str(out),
               "--top-k", "1", "--patch", "112", "--stride", "112", str(study)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return study, out


def test_results_and_maps(peer_run: tuple[Path, Path]) -> None:
    study, out = peer_run
    results = json.loads((out / "results.json").read_text())
    models = results["series"][0]["models"]
    assert [m["model"] for m in models] == ["densenet169", "vit_b_16"]
    for model in models:
        assert len(model["slices"]) == 2
        # the PyTorch model the peer differentiates is the one onnxruntime classifies with
        assert model["max_logit_difference_torch_vs_onnxruntime"] < 1e-4
        assert sorted(e["method"] for e in model["explanations"]) == ["gradcam", "occlusion", "saliency"]
        for explanation in model["explanations"]:
            heat = np.load(out / explanation["map"])
            assert heat.shape == (256, 256) and heat.dtype == np.float32
            assert np.isfinite(heat).all() and heat.min() >= 0.0
    timings = json.loads((out / "timings.json").read_text())
    assert set(timings["seconds"]) == {"startup", "decode", "load", "classify", "gradcam", "saliency",
                                       "occlusion", "write"}


def test_overlays_are_valid_secondary_captures(peer_run: tuple[Path, Path]) -> None:
    study, out = peer_run
    sources = {pydicom.dcmread(p).SOPInstanceUID: pydicom.dcmread(p) for p in study.glob("*.dcm")}
    overlays = sorted(p for p in out.rglob("*.dcm"))
    assert len(overlays) == 6  # 2 models x 3 methods x top 1 slice
    for path in overlays:
        ds = pydicom.dcmread(path)
        source = sources[ds.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert ds.SOPClassUID == SECONDARY_CAPTURE
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
        assert "NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription
        assert ds.Modality == "OT" and ds.BurnedInAnnotation == "YES"
        assert ds.PhotometricInterpretation == "RGB" and ds.SamplesPerPixel == 3
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns, 3)
        if shutil.which("dciodvfy"):
            report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            errors = [l for l in (report.stdout + report.stderr).splitlines() if l.startswith("Error")]
            assert not errors, f"{path.name}: {errors}"
