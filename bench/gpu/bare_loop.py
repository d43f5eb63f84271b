#!/usr/bin/env python3
"""The bare batched loop of issue 9's GPU target: one ONNX Runtime session, the same input
batch run again and again, nothing else. What dicom-xai's forward throughput is compared with
(scripts/gpu_check.sh; ours must stay within 2x).

Two figures per batch size: with numpy arrays in and out (a copy to and from the device per
run, as dicom-xai does), and with ONNX Runtime's IO binding keeping the input on the GPU
(the hardware's side of the comparison). Prints one JSON object.

    python bench/gpu/bare_loop.py MODEL.onnx [--provider cuda|cpu] [--batches 1,8,32] [--runs 20]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import onnxruntime as ort


def timed(run, runs: int) -> float:
    """Median seconds of `runs` calls after two untimed ones."""
    run()
    run()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--provider", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args(argv)

    providers = ["CUDAExecutionProvider"] if args.provider == "cuda" else ["CPUExecutionProvider"]
    started = time.perf_counter()
    session = ort.InferenceSession(args.model, providers=providers)
    load_seconds = time.perf_counter() - started
    if session.get_providers()[0] != providers[0]:
        print(json.dumps({"error": f"{providers[0]} not used: {session.get_providers()}"}))
        return 1
    model_input = session.get_inputs()[0]
    output_name = session.get_outputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in model_input.shape]
    rng = np.random.default_rng(0)
    result = {
        "model": args.model,
        "provider": args.provider,
        "onnxruntime": ort.__version__,
        "session_seconds": round(load_seconds, 3),
        "ms_per_image": {},
        "ms_per_image_io_binding": {},
    }
    for batch in [int(b) for b in args.batches.split(",")]:
        x = rng.standard_normal([batch, *shape[1:]], dtype=np.float32)
        seconds = timed(lambda: session.run([output_name], {model_input.name: x}), args.runs)
        result["ms_per_image"][str(batch)] = round(seconds * 1e3 / batch, 3)
        if args.provider == "cuda":
            binding = session.io_binding()
            on_device = ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding.bind_ortvalue_input(model_input.name, on_device)
            binding.bind_output(output_name, "cuda")

            def bound() -> None:
                session.run_with_iobinding(binding)
                binding.synchronize_outputs()

            seconds = timed(bound, args.runs)
            result["ms_per_image_io_binding"][str(batch)] = round(seconds * 1e3 / batch, 3)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
