#!/usr/bin/env python3
"""Checks an `audit` output folder against independent references.

Usage: audit_reference.py AUDIT_DIR MANIFEST.toml...

For every model of audit.json (matched to a manifest by name):
- every classified image of the journal (audit-records.jsonl) is classified again by
  onnxruntime-python from the DICOM file read by pydicom (stored value / 255 under the LINEAR_EXACT
  window the wrapper writes), and the probabilities must agree within 1e-4;
- accuracy, the confusion matrix and per-class precision, recall, F1 and support must equal
  scikit-learn's (zero_division=0) on the journal's labels and predictions;
- the expected calibration error must equal a NumPy computation (10 equal-width bins, (lo, hi]);
- per method, the counts, shares and medians must equal NumPy's over the journal's records,
  and for `sae` the per-label mean share of SAE evidence from concepts outside the brain;
- audit.json must carry every key of the contract (docs/design.md section 9).
Prints one JSON line with what it checked; exits 1 with the first difference.
"""
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime
import pydicom
from PIL import Image
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

PROBABILITY_TOLERANCE = 1e-4
FIGURE_TOLERANCE = 1e-9
MODEL_KEYS = {"model", "trained", "sha256", "images", "accuracy", "per_class", "confusion", "ece", "methods"}
METHOD_KEYS = {
    "method", "explained", "median_in_brain_fraction", "outside_brain_share_correct",
    "empty_map_share", "median_deletion_auc", "median_insertion_auc",
}


def fail(message: str) -> None:
    print(f"audit_reference: {message}", file=sys.stderr)
    sys.exit(1)


def close(a, b, tolerance: float, what: str) -> None:
    if a is None or b is None:
        if a is not b:
            fail(f"{what}: {a} against {b}")
        return
    if abs(float(a) - float(b)) > tolerance:
        fail(f"{what}: {a} against the reference {b}")


def model_input(path: Path, spec: dict) -> np.ndarray:
    ds = pydicom.dcmread(path)
    grey = ds.pixel_array.astype(np.float32) / np.float32(255.0)
    if grey.shape != (spec["height"], spec["width"]):
        image = Image.fromarray(grey).resize((spec["width"], spec["height"]), Image.BILINEAR)
        grey = np.asarray(image, dtype=np.float32)
    channels = [(grey - np.float32(spec["mean"][c])) / np.float32(spec["std"][c]) for c in range(spec["channels"])]
    stacked = np.stack(channels)
    return stacked if spec["layout"] == "NCHW" else np.transpose(stacked, (1, 2, 0))


def expected_calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    confidence = probabilities.max(axis=1).astype(np.float64)
    correct = probabilities.argmax(axis=1) == truth
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for lower, upper in zip(edges[:-1], edges[1:]):
        members = (confidence > lower) & (confidence <= upper)
        if lower == 0.0:
            members |= confidence == 0.0
        if members.any():
            total += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(total)


def check_model(audit: dict, records: list[dict], manifest_path: Path) -> dict:
    manifest = tomllib.loads(manifest_path.read_text())
    labels = list(manifest["model"]["labels"])
    spec = manifest["input"]
    missing = MODEL_KEYS - audit.keys()
    if missing:
        fail(f"{audit.get('model')}: audit.json lacks {sorted(missing)}")
    mine = [r for r in records if r["sha256"] == audit["sha256"] and r["error"] is None]
    if len(mine) != audit["images"]:
        fail(f"{audit['model']}: {audit['images']} images in audit.json, {len(mine)} classified records")
    session = onnxruntime.InferenceSession(
        str(manifest_path.parent / manifest["model"]["onnx"]), providers=["CPUExecutionProvider"]
    )
    batch = np.stack([model_input(Path(r["image"]), spec) for r in mine]).astype(np.float32)
    scores = session.run([manifest["output"]["name"]], {spec["name"]: batch})[0].astype(np.float64)
    if manifest["output"]["kind"] == "logits":
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    journal = np.array([r["probabilities"] for r in mine], dtype=np.float64)
    gap = float(np.abs(journal - scores).max())
    if gap > PROBABILITY_TOLERANCE:
        fail(f"{audit['model']}: probabilities differ from onnxruntime-python by {gap:.2e}")

    truth = np.array([labels.index(r["label"]) for r in mine])
    predicted = journal.argmax(axis=1)
    close(audit["accuracy"], accuracy_score(truth, predicted), FIGURE_TOLERANCE, f"{audit['model']} accuracy")
    reference = confusion_matrix(truth, predicted, labels=list(range(len(labels))))
    if audit["confusion"] != reference.tolist():
        fail(f"{audit['model']}: confusion {audit['confusion']} against {reference.tolist()}")
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=list(range(len(labels))), zero_division=0
    )
    for i, label in enumerate(labels):
        figures = audit["per_class"][label]
        for key, value in (("precision", precision[i]), ("recall", recall[i]), ("f1", f1[i])):
            close(figures[key], value, FIGURE_TOLERANCE, f"{audit['model']} {label} {key}")
        if figures["support"] != int(support[i]):
            fail(f"{audit['model']} {label}: support {figures['support']} against {support[i]}")
    close(audit["ece"], expected_calibration_error(truth, journal.astype(np.float32).astype(np.float64)),
          1e-6, f"{audit['model']} ece")

    for method in audit["methods"]:
        missing = METHOD_KEYS - method.keys()
        if missing:
            fail(f"{audit['model']} {method.get('method')}: lacks {sorted(missing)}")
        name = method["method"]
        explained = [
            (r, e) for r in mine for e in r["explanations"] if e["method"] == name and e["error"] is None
        ]
        if method["explained"] != len(explained):
            fail(f"{audit['model']} {name}: explained {method['explained']} against {len(explained)}")
        correct = [(r, e) for r, e in explained if labels[int(np.argmax(r["probabilities"]))] == r["label"]]
        fractions = [e["in_brain_fraction"] for _, e in explained if e["in_brain_fraction"] is not None]
        close(method["median_in_brain_fraction"], float(np.median(np.float64(fractions))) if fractions else None,
              1e-6, f"{audit['model']} {name} median in-brain fraction")
        outside = sum("evidence-outside-brain" in e["flags"] for _, e in correct)
        close(method["outside_brain_share_correct"], outside / len(correct) if correct else None,
              FIGURE_TOLERANCE, f"{audit['model']} {name} outside-brain share")
        empty = sum("empty-map" in e["flags"] for _, e in explained)
        close(method["empty_map_share"], empty / len(explained) if explained else None,
              FIGURE_TOLERANCE, f"{audit['model']} {name} empty-map share")
        by_label: dict[str, list[float]] = {}
        for r, e in correct:
            if e.get("outside_concept_share") is not None:
                by_label.setdefault(r["label"], []).append(e["outside_concept_share"])
        shares = method.get("outside_concept_share_by_label", {})
        if sorted(shares) != sorted(by_label):
            fail(f"{audit['model']} {name}: concept shares for {sorted(shares)} against {sorted(by_label)}")
        for label, values in by_label.items():
            close(shares[label], float(np.mean(np.float64(values))), 1e-6,
                  f"{audit['model']} {name} {label} SAE evidence outside the brain")
        for key, field in (("median_deletion_auc", "deletion_auc"), ("median_insertion_auc", "insertion_auc")):
            values = [e[field] for _, e in explained if e[field] is not None]
            close(method[key], float(np.median(np.float64(values))) if values else None,
                  1e-6, f"{audit['model']} {name} {key}")
    return {"model": audit["model"], "images": len(mine), "probability_gap": gap}


def main() -> int:
    folder = Path(sys.argv[1])
    manifests = {tomllib.loads(Path(p).read_text())["model"]["name"]: Path(p) for p in sys.argv[2:]}
    audit = json.loads((folder / "audit.json").read_text())
    records = {}
    for line in (folder / "audit-records.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        records[(record["sha256"], record["image"])] = record
    checked = [check_model(model, list(records.values()), manifests[model["model"]]) for model in audit["models"]]
    print(json.dumps({"checked": checked}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
