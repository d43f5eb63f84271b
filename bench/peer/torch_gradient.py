#!/usr/bin/env python3
"""The PyTorch side of `make bench`'s rows `gradient-vs-pytorch-<model>` and
`gradient-overhead-<model>`: what an input gradient costs with PyTorch autograd on the CPU.

    torch_gradient.py --arch densenet169|vit_b_16 [--seed S] [--runs N]

The model is the torchvision model with the random weights onnx/export.py exported
(`run_peer.torch_model`: `--random-init` of onnx/README.md). One image of 224 x 224 (batch 1);
after one untimed warm-up, the median of `runs` timed calls of

- forward: `model(x)` under `torch.inference_mode()`;
- forward + gradient: `model(x)` with `x.requires_grad_()`, then
  `torch.autograd.grad(logits[0, 0], x)` (the input gradient of class 0's logit, the same
  seed dicom-xai's bench gives its gradient model; autograd computes no weight gradients).

Prints one JSON object: {"arch", "threads", "runs", "forward_ms", "forward_backward_ms"}.
PyTorch uses its default intra-op threads (one per core), as ONNX Runtime does on our side.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_peer import torch_model  # noqa: E402


def median_ms(runs: int, work: Callable[[], object]) -> float:
    work()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=["densenet169", "vit_b_16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args(argv)
    model = torch_model(args.arch, 4, args.seed)
    torch.manual_seed(1)
    image = torch.rand(1, 3, 224, 224)

    def forward() -> object:
        with torch.inference_mode():
            return model(image)

    def forward_backward() -> object:
        x = image.clone().requires_grad_(True)
        logits = model(x)
        return torch.autograd.grad(logits[0, 0], x)[0]

    result = {
        "arch": args.arch,
        "threads": torch.get_num_threads(),
        "runs": args.runs,
        "forward_ms": median_ms(args.runs, forward),
        "forward_backward_ms": median_ms(args.runs, forward_backward),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
