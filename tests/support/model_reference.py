#!/usr/bin/env python3
"""Reference classification of DICOM slices: pydicom decoding, the numpy VOI transform of
pydicom_reference.py, Pillow's BILINEAR resize (mode "F", float precision), replication and
normalisation per the model manifest, then onnxruntime-python.

Usage: model_reference.py MANIFEST.toml OUT_DIR FILE...
Writes OUT_DIR/index.json: [{"file", "frame", "probabilities": [...]}] for every frame of
every file, and OUT_DIR/<n>.input.npy, the model input of entry n (without batch axis).
"""
import json
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from pydicom_reference import reference  # noqa: E402


def model_input(unit, spec):
    image = Image.fromarray(unit.astype(np.float32), mode="F")
    resized = np.asarray(image.resize((spec["width"], spec["height"]), Image.BILINEAR), dtype=np.float32)
    channels = [(resized - np.float32(spec["mean"][c])) / np.float32(spec["std"][c]) for c in range(spec["channels"])]
    axis = 2 if spec["layout"] == "NHWC" else 0
    return np.stack(channels, axis=axis).astype(np.float32)


def main():
    manifest_path = Path(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    manifest = tomllib.loads(manifest_path.read_text())
    spec, output = manifest["input"], manifest["output"]
    onnx_path = (manifest_path.parent / manifest["model"]["onnx"]).resolve()
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 2
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    entries = []
    for name in sys.argv[3:]:
        _, unit, _, _ = reference(Path(name))
        for frame in range(unit.shape[0]):
            x = model_input(unit[frame], spec)
            n = len(entries)
            np.save(out / f"{n}.input.npy", x)
            scores = session.run([output["name"]], {spec["name"]: x[None]})[0][0].astype(np.float64)
            if output["kind"] == "logits":
                scores = np.exp(scores - scores.max())
                scores /= scores.sum()
            entries.append({"file": name, "frame": frame, "probabilities": scores.tolist()})
    (out / "index.json").write_text(json.dumps(entries))


if __name__ == "__main__":
    main()
