#!/usr/bin/env python3
"""Reference gradients from PyTorch autograd for the models export.py exports.

    python onnx/reference.py --arch densenet169 --seed 0 --batch 2 --input-seed 7 \\
        --manifest models/densenet169.toml --out ref.npz

builds the model exactly as ``export.py`` does with the same arguments (shared code in
xai_models.py), draws a fixed input ``torch.randn(B,3,224,224)`` from
``torch.Generator().manual_seed(INPUT_SEED)``, and computes in float32 on the CPU, with
score = sum(grad_seed * logits):

npz keys (all float32, uncompressed ``np.savez``; ``b`` is a 0-based block index):

    input              [B,3,224,224]   the input
    logits             [B,K]           the model output
    grad_seed          [B,K]           one-hot: sample n selects class n % K
    grad_input         [B,3,224,224]   d score / d input
    feature            DenseNet169: norm5 output [B,1664,7,7];
                       ViTs: the last block's first norm output [B,197,768] (ln_1 / norm1)
    grad_feature       d score / d feature
    attention_<b>      ViTs, for each --blocks b: softmax attention probabilities of block b,
                       [B,12,197,197], the shape of the exported graph's Softmax output
    grad_attention_<b> d score / d attention_<b>
    meta               uint8: UTF-8 JSON (``json.loads(bytes(npz["meta"]))``) with arch, seed,
                       checkpoint, input_seed, batch, labels, blocks, versions, and ``onnx``:
                       {npz key: ONNX tensor name} for feature/attention keys when --manifest
                       is given (from its [explain] table), else {}.

Attention probabilities are not exposed by the plain forward passes, so the forward is
instrumented (see ``instrumented``): torchvision's nn.MultiheadAttention is called with
need_weights=True and its ``softmax`` call is captured (the very tensor multiplied with the
values); timm blocks run with ``fused_attn=False`` and a hook on ``attn_drop`` captures its
output (identical to the softmax in eval mode, and the tensor multiplied with the values).
The tests show the instrumented forward gives the plain forward's logits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xai_models  # noqa: E402


@dataclass
class Capture:
    """Tensors captured during one instrumented forward pass."""

    feature: torch.Tensor | None = None
    # block index -> the softmax output the forward multiplies with the values:
    # [B, heads, L, L] (timm) or [B*heads, L, L] (torchvision MHA; sample-major)
    attention: dict = field(default_factory=dict)


@contextlib.contextmanager
def instrumented(model: torch.nn.Module, arch: str):
    """Instrument `model` so its forward records the feature and attention tensors.

    Yields a Capture filled by each forward; the model is restored on exit. The captured
    tensors are those the forward computes with, so autograd.grad with respect to them is
    the gradient with respect to the corresponding ONNX tensors.
    """
    info = xai_models.arch_info(arch)
    capture = Capture()
    handles = []
    restore = []
    try:
        if info.family == "densenet":
            # DenseNet.forward applies F.relu(features, inplace=True) right after norm5:
            # hand the in-place ReLU a copy so the captured norm5 output stays intact.
            def keep_norm5(module, args, output):
                capture.feature = output
                return output.clone()

            handles.append(model.features.norm5.register_forward_hook(keep_norm5))
        elif info.library == "torchvision":
            handles.append(model.encoder.layers[-1].ln_1.register_forward_hook(
                lambda module, args, output: setattr(capture, "feature", output)))
            for b, layer in enumerate(model.encoder.layers):
                handles.extend(_capture_mha(layer.self_attention, b, capture))
        else:
            handles.append(model.blocks[-1].norm1.register_forward_hook(
                lambda module, args, output: setattr(capture, "feature", output)))
            for b, block in enumerate(model.blocks):
                restore.append((block.attn, block.attn.fused_attn))
                block.attn.fused_attn = False

                def keep_attention(module, args, output, b=b):
                    capture.attention[b] = output

                handles.append(block.attn.attn_drop.register_forward_hook(keep_attention))
        yield capture
    finally:
        for h in handles:
            h.remove()
        for attn, fused in restore:
            attn.fused_attn = fused


def _capture_mha(mha: torch.nn.MultiheadAttention, b: int, capture: Capture):
    """Hooks making `mha` compute explicit attention weights and capture its softmax output.

    With need_weights=True, F.multi_head_attention_forward computes
    ``softmax(q k^T / sqrt(d))`` and multiplies exactly that tensor with v (dropout is off in
    eval). F.softmax is swapped for a recording wrapper only while this module runs.
    """
    state = {}

    def pre(module, args, kwargs):
        kwargs = dict(kwargs, need_weights=True, average_attn_weights=False)
        calls = state["calls"] = []
        original = state["softmax"] = F.softmax

        def recording_softmax(*a, **k):
            out = original(*a, **k)
            calls.append(out)
            return out

        F.softmax = recording_softmax
        return args, kwargs

    def post(module, args, kwargs, output):
        F.softmax = state.pop("softmax")
        calls = state.pop("calls")
        if len(calls) != 1:
            raise RuntimeError(f"block {b}: expected one softmax in the attention, saw {len(calls)}")
        # [B*heads, L, L], rows ordered (sample, head); the returned weights are a view of it
        # ([B, heads, L, L]) that nothing downstream uses, so keep the tensor itself.
        probs = calls[0]
        weights = output[1]
        if weights is None or weights.shape[0] * weights.shape[1] != probs.shape[0]:
            raise RuntimeError(f"block {b}: unexpected attention weights layout")
        capture.attention[b] = probs
        return output

    return [
        mha.register_forward_pre_hook(pre, with_kwargs=True),
        mha.register_forward_hook(post, with_kwargs=True),
    ]


def fixed_input(batch: int, input_seed: int) -> torch.Tensor:
    """The reference input: standard normal [batch,3,224,224] from a seeded Generator."""
    return torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(input_seed))


def one_hot_seed(batch: int, classes: int) -> torch.Tensor:
    """grad_seed: sample n selects class n % classes."""
    seed = torch.zeros(batch, classes)
    seed[torch.arange(batch), torch.arange(batch) % classes] = 1.0
    return seed


def compute(model: torch.nn.Module, arch: str, x: torch.Tensor, blocks=(0, 11)) -> dict:
    """All reference arrays (see the module docstring) for input `x`, as numpy float32."""
    info = xai_models.arch_info(arch)
    x = x.detach().clone().requires_grad_(True)
    with instrumented(model, arch) as capture:
        logits = model(x)
    if info.family == "vit":
        missing = [b for b in blocks if b not in capture.attention]
        if missing:
            raise ValueError(f"blocks {missing} not in the model (it has {len(capture.attention)})")
    seed = one_hot_seed(*logits.shape)
    wrt = {"input": x, "feature": capture.feature}
    for b in (blocks if info.family == "vit" else ()):
        wrt[f"attention_{b}"] = capture.attention[b]
    grads = torch.autograd.grad((seed * logits).sum(), list(wrt.values()))
    out = {"input": x, "logits": logits, "grad_seed": seed}
    for (key, tensor), grad in zip(wrt.items(), grads):
        if key.startswith("attention_"):
            # the exported Softmax output's shape: [B, heads, L, L]
            shape = (x.shape[0], -1, *tensor.shape[-2:])
            tensor, grad = tensor.reshape(shape), grad.reshape(shape)
        if key != "input":
            out[key] = tensor
        out[f"grad_{key}"] = grad
    return {k: v.detach().numpy().astype(np.float32) for k, v in out.items()}


def onnx_names(manifest: Path | None, blocks) -> dict:
    """{npz key: ONNX tensor name} from a manifest's [explain] table."""
    if manifest is None:
        return {}
    explain = tomllib.loads(Path(manifest).read_text(encoding="utf-8")).get("explain", {})
    names = {}
    if explain.get("feature_tensor"):
        names["feature"] = explain["feature_tensor"]
    attention = explain.get("attention_tensors", [])
    for b in blocks:
        if b < len(attention):
            names[f"attention_{b}"] = attention[b]
    return names


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="PyTorch autograd reference gradients (npz) for a model "
                                "built as onnx/export.py builds it.")
    p.add_argument("--arch", required=True, choices=list(xai_models.ARCHS), help="architecture")
    p.add_argument("--seed", type=int, default=0, help="random-init seed, as export.py --seed (default 0)")
    p.add_argument("--checkpoint", metavar="FILE", help="weights instead of random init, as export.py")
    p.add_argument("--labels", default=",".join(xai_models.DEFAULT_LABELS),
                   help="comma-separated labels, as export.py (default %(default)s)")
    p.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    p.add_argument("--input-seed", type=int, default=0, help="seed of the input generator (default 0)")
    p.add_argument("--blocks", default="0,11", help="ViT blocks whose attention to store (default %(default)s)")
    p.add_argument("--manifest", metavar="FILE", type=Path,
                   help="manifest of the exported model: records the ONNX tensor names in meta")
    p.add_argument("--out", required=True, metavar="FILE.npz", type=Path, help="output npz")
    args = p.parse_args(argv)
    args.labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    try:
        args.blocks = [int(b) for b in args.blocks.split(",") if b.strip()]
    except ValueError:
        p.error("--blocks must be comma-separated integers")
    if args.batch < 1:
        p.error("--batch must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    info = xai_models.arch_info(args.arch)
    blocks = args.blocks if info.family == "vit" else []
    try:
        model = xai_models.make_model(args.arch, args.labels, checkpoint=args.checkpoint, seed=args.seed)
        arrays = compute(model, args.arch, fixed_input(args.batch, args.input_seed), blocks)
    except (xai_models.CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import timm
    import torchvision

    meta = {
        "arch": args.arch, "seed": args.seed, "checkpoint": args.checkpoint,
        "input_seed": args.input_seed, "batch": args.batch, "labels": args.labels,
        "blocks": blocks, "score": "sum(grad_seed * logits)",
        "torch": torch.__version__, "torchvision": torchvision.__version__, "timm": timm.__version__,
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
        "onnx": onnx_names(args.manifest, blocks),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8), **arrays)
    print(f"{args.arch}: wrote {args.out} ({', '.join(f'{k} {list(v.shape)}' for k, v in arrays.items())})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
