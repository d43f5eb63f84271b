#!/usr/bin/env python3
"""Run a gradient model (docs/design.md section 11) with onnxruntime-python on the input and seed of a
reference.py npz, and measure each output against PyTorch autograd's.

    compare_gradients.py GRADIENT.onnx REFERENCE.npz

Prints one JSON object: for each compared npz key (logits, grad_input, feature,
grad_feature, attention_<b>, grad_attention_<b>) the ONNX output it was compared with and
rel_l2 = |ours - ref|_2 / |ref|_2, cosine, max_abs and ref_norm. Keys whose tensors the
model does not output are listed under "missing". Also: "checker" ("ok" or onnx.checker's
full-check message), the operator "domains" used, the default-domain "opset", and
"cuda_refused": the nodes ONNX Runtime's CUDA provider does not run (ConvTranspose with
asymmetric pads), which would put part of the gradient model on the CPU.
"""
from __future__ import annotations

import json
import sys

import numpy as np
import onnx
import onnxruntime as ort


def measure(ours: np.ndarray, ref: np.ndarray) -> dict:
    ours = ours.astype(np.float64).ravel()
    ref = ref.astype(np.float64).ravel()
    ref_norm = float(np.linalg.norm(ref))
    difference = float(np.linalg.norm(ours - ref))
    denominator = float(np.linalg.norm(ours)) * ref_norm
    return {
        "rel_l2": difference / ref_norm if ref_norm > 0 else difference,
        "cosine": float(ours @ ref) / denominator if denominator > 0 else 0.0,
        "max_abs": float(np.max(np.abs(ours - ref))) if ref.size else 0.0,
        "ref_norm": ref_norm,
    }


def main(model_path: str, reference_path: str) -> int:
    reference = np.load(reference_path)
    meta = json.loads(bytes(reference["meta"]))
    names = {"logits": "logits", "grad_input": "grad:input"}
    for key, tensor in meta["onnx"].items():
        names[key] = tensor
        names[f"grad_{key}"] = f"grad:{tensor}"
    proto = onnx.load(model_path)
    try:
        onnx.checker.check_model(proto, full_check=True)
        checker = "ok"
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        checker = str(error)
    domains = sorted({node.domain for node in proto.graph.node})
    cuda_refused = []
    for node in proto.graph.node:
        if node.op_type != "ConvTranspose":
            continue
        pads = next((list(a.ints) for a in node.attribute if a.name == "pads"), [])
        half = len(pads) // 2
        if pads[:half] != pads[half:]:
            cuda_refused.append(f"{node.name} pads {pads}")
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    del proto
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    available = {o.name for o in session.get_outputs()}
    wanted = {key: name for key, name in names.items() if name in available and key in reference}
    missing = sorted(key for key in names if key not in wanted)
    keys = sorted(wanted)
    values = session.run(
        [wanted[k] for k in keys],
        {"input": reference["input"], "grad_seed": reference["grad_seed"]},
    )
    result = {
        key: {"onnx": wanted[key], **measure(value, reference[key])}
        for key, value in zip(keys, values)
    }
    print(json.dumps({"compared": result, "missing": missing, "checker": checker,
                      "domains": domains, "opset": opset, "cuda_refused": cuda_refused}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
