#!/usr/bin/env python3
"""Export DenseNet169 / ViT-B/16 brain-tumour classifiers to ONNX with a manifest.

    python onnx/export.py --arch densenet169 --random-init --seed 0 --out models/
    python onnx/export.py --arch vit_b_16 --checkpoint site_vit.pth --out models/

writes ``OUT/<arch>.onnx`` (input ``input`` [N,3,224,224] NCHW, output ``logits`` [N,K],
dynamic batch, all weights inline) and ``OUT/<arch>.toml``, the model manifest of
docs/design.md section 4. The ONNX file is checked with ``onnx.checker`` and run with ONNX Runtime
against PyTorch at batch 1 and 3 (max abs error <= 1e-4); the manifest's feature tensor
and attention tensors, found by graph pattern (see xai_models.py), are run as extra
outputs in the same check, so a manifest is only written for tensors that exist with the
expected shapes.

Exporters: ``dynamo`` (``torch.onnx.export(dynamo=True)``, torch's default; emits opset 18,
which is therefore its default here: asking it for 17 makes it try a down-conversion)
and ``legacy`` (TorchScript, ``dynamo=False``, opset 17 by default). For the ViTs keep the
opset <= 22: from opset 23 attention may become one ``Attention`` node whose probabilities
are not a tensor of the graph.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import xai_models  # noqa: E402

TOLERANCE = 1e-4
DEFAULT_OPSET = {"legacy": 17, "dynamo": 18}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Export a brain-tumour classifier (DenseNet169 / ViT-B/16) to ONNX with a "
        "dicom-xai model manifest (docs/design.md section 4).",
    )
    p.add_argument("--arch", required=True, choices=list(xai_models.ARCHS),
                   help="architecture: torchvision densenet169 or vit_b_16, or timm vit_base_patch16_224")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="FILE",
                     help="weights: a state dict (torchvision or timm keys, classifier with one "
                     "output per label) or a whole pickled model (unpickled in full: trusted files only)")
    src.add_argument("--random-init", action="store_true",
                     help="random weights: torch.manual_seed(SEED), construct, ViT head ~ N(0, 0.02); "
                     "the manifest says trained = false")
    p.add_argument("--seed", type=int, default=0, help="seed for --random-init (default 0)")
    p.add_argument("--labels", default=",".join(xai_models.DEFAULT_LABELS),
                   help="comma-separated class labels in output order (default %(default)s)")
    p.add_argument("--exporter", choices=("dynamo", "legacy"), default="dynamo",
                   help="torch.onnx.export(dynamo=True) or the TorchScript exporter (default %(default)s)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: 18 for dynamo, 17 for legacy; keep <= 22 for ViTs)")
    p.add_argument("--batch-dynamic", action=argparse.BooleanOptionalAction, default=True,
                   help="symbolic batch dimension (default on); off: batch fixed at 1")
    p.add_argument("--name", default=None, help="manifest model name (default: the arch)")
    p.add_argument("--version", default="1", help="manifest model version (default %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    args = p.parse_args(argv)
    args.labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if len(args.labels) < 2:
        p.error("--labels needs at least two labels")
    if len(set(args.labels)) != len(args.labels):
        p.error("--labels has duplicates")
    if args.opset is None:
        args.opset = DEFAULT_OPSET[args.exporter]
    return args


@dataclass
class ExportResult:
    """What one export produced and measured."""

    onnx_path: Path
    manifest_path: Path
    opset: int
    export_seconds: float
    verify_seconds: float
    errors: dict = field(default_factory=dict)  # batch -> max abs error of the logits
    feature_tensor: str = ""
    feature_shape: tuple = ()
    attention_tensors: list = field(default_factory=list)
    attention_shape: tuple = ()


# --------------------------------------------------------------------------- export


def export_onnx(model, path: Path, exporter: str, opset: int, batch_dynamic: bool) -> None:
    """Export `model` to `path` with input "input" and output "logits", weights inline."""
    example = torch.randn(2 if batch_dynamic else 1, 3, 224, 224)
    common = dict(input_names=["input"], output_names=["logits"], opset_version=opset)
    # Not under torch.no_grad(): without autograd nn.MultiheadAttention takes its fused
    # "fast path" (aten::_native_multi_head_attention), which TorchScript cannot export.
    if exporter == "legacy":
        axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if batch_dynamic else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            torch.onnx.export(model, (example,), str(path), dynamo=False,
                              dynamic_axes=axes, do_constant_folding=True, **common)
    else:
        shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if batch_dynamic else None
        program = torch.onnx.export(model, (example,), dynamo=True, dynamic_shapes=shapes,
                                    verbose=False, **common)
        program.save(str(path), external_data=False)
    ensure_inline(path)


def ensure_inline(path: Path) -> None:
    """Rewrite `path` with every tensor inline if the exporter used external data files."""
    proto = onnx.load(str(path), load_external_data=False)
    external = {
        entry.value
        for t in proto.graph.initializer
        if t.data_location == onnx.TensorProto.EXTERNAL
        for entry in t.external_data
        if entry.key == "location"
    }
    if not external:
        return
    proto = onnx.load(str(path), load_external_data=True)
    for t in proto.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{path}: external data of {t.name} could not be inlined")
    onnx.save(proto, str(path), save_as_external_data=False)
    for name in external:
        (path.parent / name).unlink(missing_ok=True)


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- verification


def verify(model, proto: onnx.ModelProto, arch: str, batches, feature: str,
           attention: list[str], result: ExportResult) -> None:
    """Run ORT (with feature/attention tensors as extra outputs) against PyTorch."""
    import onnxruntime as ort

    info = xai_models.arch_info(arch)
    extended = xai_models.with_extra_outputs(proto, [feature, *attention])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(extended.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(20260501)
    for batch in batches:
        x = torch.randn(batch, 3, 224, 224, generator=generator)
        with torch.no_grad():
            expected = model(x).numpy()
        outputs = session.run(["logits", feature, *attention], {"input": x.numpy()})
        logits, feat, attn = outputs[0], outputs[1], outputs[2:]
        if logits.shape != expected.shape:
            raise RuntimeError(f"ONNX logits shape {logits.shape} != PyTorch {expected.shape} at batch {batch}")
        result.errors[batch] = float(np.max(np.abs(logits - expected)))
        want = (batch, *info.feature_shape)
        if feat.shape != want:
            raise xai_models.PatternError(
                f"feature tensor {feature!r} has shape {feat.shape}, expected {want}")
        result.feature_shape = feat.shape[1:]
        for name, a in zip(attention, attn):
            if a.ndim < 3 or a.shape[0] != batch or a.shape[-2:] != (197, 197):
                raise xai_models.PatternError(
                    f"attention tensor {name!r} has shape {a.shape}, expected [{batch}, heads, 197, 197]")
            result.attention_shape = a.shape[1:]
    worst = max(result.errors.values())
    if not worst <= TOLERANCE:
        raise RuntimeError(f"ONNX Runtime differs from PyTorch by {worst:.3g} > {TOLERANCE} (max abs)")


# --------------------------------------------------------------------------- main


def run(args: argparse.Namespace) -> ExportResult:
    """Export, check, verify and write the manifest; returns what was measured."""
    info = xai_models.arch_info(args.arch)
    if info.family == "vit" and args.opset >= 23:
        print(f"warning: opset {args.opset} may fuse attention into one Attention node; "
              "attention tensors need opset <= 22", file=sys.stderr)
    model = xai_models.make_model(args.arch, args.labels, checkpoint=args.checkpoint, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / f"{args.arch}.onnx"
    manifest_path = out / f"{args.arch}.toml"

    # Export into a scratch directory first, so a failed run leaves no half-written model.
    with tempfile.TemporaryDirectory(dir=out, prefix=".export-") as scratch:
        tmp = Path(scratch) / onnx_path.name
        t0 = time.perf_counter()
        export_onnx(model, tmp, args.exporter, args.opset, args.batch_dynamic)
        export_seconds = time.perf_counter() - t0

        t1 = time.perf_counter()
        onnx.checker.check_model(str(tmp))
        proto = onnx.load(str(tmp))
        names_in = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
        names_out = [o.name for o in proto.graph.output]
        if names_in != ["input"] or names_out != ["logits"]:
            raise RuntimeError(f"exported graph has inputs {names_in} and outputs {names_out}, "
                               "expected ['input'] and ['logits']")
        opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        feature = xai_models.find_feature_tensor(proto, args.arch)
        attention = xai_models.find_attention_tensors(proto) if info.family == "vit" else []
        if len(attention) != info.blocks:
            raise xai_models.PatternError(
                f"found {len(attention)} attention Softmax tensors, expected {info.blocks}"
                + (" (opset >= 23 fuses attention; export with --opset 22 or lower)" if opset >= 23 else ""))
        result = ExportResult(onnx_path, manifest_path, opset, export_seconds, 0.0,
                              feature_tensor=feature, attention_tensors=attention)
        verify(model, proto, args.arch, (1, 3) if args.batch_dynamic else (1,), feature, attention, result)
        result.verify_seconds = time.perf_counter() - t1
        del proto
        os.replace(tmp, onnx_path)

    provenance = (f"checkpoint {Path(args.checkpoint).name}" if args.checkpoint
                  else f"random init, seed {args.seed}")
    tables = xai_models.manifest_tables(
        name=args.name or args.arch, version=args.version, onnx_file=onnx_path.name,
        sha256=sha256_of(onnx_path), labels=args.labels, trained=not args.random_init,
        feature_tensor=feature, feature_layout=info.feature_layout, attention_tensors=attention,
    )
    comments = [
        f"{args.arch} ({info.library}) exported by onnx/export.py: {provenance}; "
        f"{args.exporter} exporter, opset {opset}, {'dynamic' if args.batch_dynamic else 'fixed'} batch;",
        f"torch {torch.__version__}. max |ONNX Runtime - PyTorch| logits: "
        + ", ".join(f"batch {b} {e:.2e}" for b, e in result.errors.items()) + ".",
        f"feature_tensor: {'norm5 output' if info.family == 'densenet' else 'last block output tokens'} "
        f"{list(result.feature_shape)} per sample"
        + (f"; attention_tensors: Softmax outputs {list(result.attention_shape)} per sample." if attention else "."),
    ]
    manifest_path.write_text(xai_models.manifest_text(tables, comments), encoding="utf-8")
    return result


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        r = run(args)
    except xai_models.CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (xai_models.PatternError, RuntimeError) as e:
        print(f"error: {args.arch}: {e}", file=sys.stderr)
        return 1
    errors = ", ".join(f"batch {b}: {e:.2e}" for b, e in r.errors.items())
    attn = (f"; {len(r.attention_tensors)} attention tensors {list(r.attention_shape)}"
            if r.attention_tensors else "")
    print(f"max |ONNX Runtime - PyTorch| on logits: {errors}")
    print(f"{args.arch}: {args.exporter} export opset {r.opset} in {r.export_seconds:.1f} s "
          f"(check+verify {r.verify_seconds:.1f} s); feature {r.feature_tensor!r} "
          f"{list(r.feature_shape)}{attn} -> {r.onnx_path}, {r.manifest_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
