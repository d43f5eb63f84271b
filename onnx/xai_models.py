"""Shared model code for the onnx/ tools: construction, checkpoints, graph patterns, manifests.

`export.py` and `reference.py` both build their PyTorch model here, so that a reference
computed for `--arch A --seed S` (or `--checkpoint FILE`) is the very model that was exported.

Three architectures are supported (onnx/README.md):

* ``densenet169``           torchvision DenseNet-169
* ``vit_b_16``              torchvision ViT-B/16
* ``vit_base_patch16_224``  timm ViT-B/16

Random initialisation (``--random-init --seed S``) is exactly: ``torch.manual_seed(S)``,
construct the model with ``num_classes=len(labels)``, and, for the torchvision ViT whose
head torchvision initialises to zeros (every gradient would then be zero), redraw the head
weight with ``torch.nn.init.normal_(std=0.02)`` from the same generator state. timm already
draws its head weight from a truncated normal (std 0.02), so it is left as constructed.

Graph patterns (``find_feature_tensor``, ``find_attention_tensors``) locate the tensors that
explanation methods need in an exported ONNX graph by structure, never by node names, so
they work for both the TorchScript (legacy) and the dynamo exporter.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import onnx
import torch
from onnx import numpy_helper

DEFAULT_LABELS = ("glioma", "meningioma", "notumor", "pituitary")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


@dataclass(frozen=True)
class ArchInfo:
    """What the tools need to know about one architecture."""

    name: str
    library: str  # "torchvision" or "timm"
    family: str  # "densenet" or "vit"
    feature_layout: str  # manifest [explain] feature_layout
    feature_shape: tuple  # per sample: (C, H, W) or (tokens, C)
    blocks: int  # transformer blocks (0 for CNNs)
    heads: int  # attention heads per block (0 for CNNs)


ARCHS = {
    "densenet169": ArchInfo("densenet169", "torchvision", "densenet", "NCHW", (1664, 7, 7), 0, 0),
    "vit_b_16": ArchInfo("vit_b_16", "torchvision", "vit", "tokens", (197, 768), 12, 12),
    "vit_base_patch16_224": ArchInfo("vit_base_patch16_224", "timm", "vit", "tokens", (197, 768), 12, 12),
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the requested architecture."""


class PatternError(ValueError):
    """An exported graph in which an expected structure (feature, attention) was not found."""


# --------------------------------------------------------------------------- construction


def arch_info(arch: str) -> ArchInfo:
    """The ArchInfo of `arch`, or a ValueError listing the supported names."""
    try:
        return ARCHS[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; supported: {', '.join(ARCHS)}") from None


def classifier_head(model: torch.nn.Module, arch: str) -> torch.nn.Linear:
    """The final linear layer of `model` (the layer that produces the logits)."""
    if arch == "densenet169":
        return model.classifier
    if arch == "vit_b_16":
        return model.heads.head
    return model.head


def build_random(arch: str, num_classes: int, seed: int) -> torch.nn.Module:
    """A randomly initialised model, exactly as onnx/README.md specifies `--random-init`."""
    info = arch_info(arch)
    torch.manual_seed(seed)
    if info.library == "torchvision":
        import torchvision

        model = getattr(torchvision.models, arch)(num_classes=num_classes)
    else:
        import timm

        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if info.family == "vit":
        head = classifier_head(model, arch)
        # torchvision zero-initialises the ViT head; timm draws it (trunc. normal, std 0.02).
        if torch.count_nonzero(head.weight) == 0:
            torch.nn.init.normal_(head.weight, std=0.02)
    return model.eval()


def make_model(
    arch: str,
    labels: Iterable[str] = DEFAULT_LABELS,
    checkpoint: str | Path | None = None,
    seed: int = 0,
) -> torch.nn.Module:
    """The model export.py exports: random weights from `seed`, or those of `checkpoint`.

    Always in eval mode. With a checkpoint the random initialisation only provides the
    module structure; every parameter and buffer is then replaced (strictly).
    """
    labels = list(labels)
    model = build_random(arch, len(labels), seed)
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)
        apply_state_dict(model, normalise_keys(state, arch), checkpoint, arch)
    return model.eval()


# --------------------------------------------------------------------------- checkpoints

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "state_dict_ema")


def read_checkpoint(path: str | Path) -> dict:
    """The state dict stored in `path` (a str -> tensor mapping).

    Accepted: a plain state dict, a dict wrapping one under a usual key (``state_dict``,
    ``model``, ...), and a whole pickled ``nn.Module``. The file is first read with
    ``weights_only=True``; only if that refuses it (the file pickles arbitrary objects) is it
    unpickled with ``weights_only=False``, which executes code from the file. That happens only
    for the file the user named with ``--checkpoint``; a notice says so on standard error.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        import sys

        print(
            f"note: {path} is not a plain state dict; unpickling it in full (weights_only=False) "
            "because it was named with --checkpoint. Only do this with files you trust.",
            file=sys.stderr,
        )
        try:
            obj = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as e:  # noqa: BLE001 - any unpickling failure is reported alike
            raise CheckpointError(f"checkpoint {path}: cannot be loaded: {e}") from e
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path}: cannot be loaded: {e}") from e
    return _state_dict_of(obj, path)


def _state_dict_of(obj, path: Path) -> dict:
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return dict(obj)
        for key in _WRAPPER_KEYS:
            if key in obj:
                return _state_dict_of(obj[key], path)
    raise CheckpointError(
        f"checkpoint {path}: neither a state dict, a dict holding one under "
        f"{'/'.join(_WRAPPER_KEYS)}, nor a pickled nn.Module (got {type(obj).__name__})"
    )


_DENSENET_OLD_KEY = re.compile(r"(denselayer\d+\.(?:norm|relu|conv))\.([12])\.")


def normalise_keys(state: dict, arch: str) -> dict:
    """Undo common key decorations: a ``module.`` (DataParallel) or ``model.`` prefix shared
    by every key, and for DenseNet the old ``norm.1``-style layer names of early torchvision
    checkpoints (now ``norm1``)."""
    keys = list(state)
    for prefix in ("module.", "model.", "_orig_mod."):
        if keys and all(k.startswith(prefix) for k in keys):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            keys = list(state)
    if arch == "densenet169":
        state = {_DENSENET_OLD_KEY.sub(r"\1\2.", k): v for k, v in state.items()}
    return state


def apply_state_dict(model: torch.nn.Module, state: dict, path: str | Path, arch: str) -> None:
    """Load `state` into `model` strictly; on any mismatch raise a CheckpointError naming the
    file and the first few missing, unexpected and wrongly shaped keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:

        def first(items, n=5):
            more = f", ... ({len(items) - n} more)" if len(items) > n else ""
            return ", ".join(items[:n]) + more

        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {first(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {first(shapes, 3)}")
        head = classifier_head(model, arch)
        hint = (
            f" (the model's classifier has {head.out_features} outputs, one per --labels entry)"
            if shapes
            else ""
        )
        raise CheckpointError(
            f"checkpoint {path} does not match {arch}: " + "; ".join(parts) + hint
        )
    model.load_state_dict(state, strict=True)


# --------------------------------------------------------------------------- graph patterns

# Nodes that pass a tensor through unchanged in inference.
_PASSTHROUGH = {"Identity", "Dropout", "Cast"}
# Nodes between the final LayerNorm of a ViT and its logits (class-token pick and head).
_HEAD_OPS = {"Gather", "Slice", "Squeeze", "Reshape", "Flatten", "Gemm", "MatMul", "Add"} | _PASSTHROUGH


class Graph:
    """Producer/consumer indices over an ONNX graph (main graph only)."""

    def __init__(self, model: onnx.ModelProto):
        self.model = model
        self.nodes = list(model.graph.node)
        self.producer = {out: n for n in self.nodes for out in n.output if out}
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.initializers = {t.name: t for t in model.graph.initializer}

    def is_constant(self, name: str) -> bool:
        """True for initializers and outputs of Constant nodes."""
        if name in self.initializers:
            return True
        p = self.producer.get(name)
        return p is not None and p.op_type == "Constant"

    def constant_value(self, name: str):
        """The numpy value of a constant tensor, or None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        p = self.producer.get(name)
        if p is not None and p.op_type == "Constant":
            for a in p.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name == "value_ints":
                    return list(a.ints)
        return None

    def skip_back(self, name: str) -> str:
        """Follow `name` upstream through pass-through nodes."""
        while (p := self.producer.get(name)) is not None and p.op_type in _PASSTHROUGH:
            name = p.input[0]
        return name

    def forward_uses(self, name: str):
        """(node, input index) pairs that use `name`, looking through pass-through nodes."""
        for c in self.consumers.get(name, []):
            if c.op_type in _PASSTHROUGH:
                yield from self.forward_uses(c.output[0])
            else:
                for idx, i in enumerate(c.input):
                    if i == name:
                        yield c, idx


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _is_global_pool(g: Graph, node) -> bool:
    """GlobalAveragePool, or a ReduceMean over the two spatial axes of a 4-D tensor."""
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type != "ReduceMean":
        return False
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        axes = g.constant_value(node.input[1])
    if axes is None:
        return False
    return sorted(int(a) % 4 for a in list(axes)) == [2, 3]


def find_feature_tensor(model: onnx.ModelProto, arch: str) -> str:
    """Name of the tensor Grad-CAM-style methods use (docs/design.md section 4 `feature_tensor`).

    DenseNet: the output of the final norm (features.norm5, a BatchNormalization or whatever
    replaced it) = the input of the last Relu feeding the global average pooling.
    ViT: the output of the last encoder block's first LayerNorm (torchvision
    `encoder.layers[-1].ln_1`, timm `blocks[-1].norm1`: the layer pytorch-grad-cam's ViT
    recipe uses). The last block's output would be the obvious choice, but the head reads
    only its class token, so the gradient at every patch token there is zero and every CAM
    is empty; at the last block's attention input the patch tokens reach the score. Found by
    walking back from the logits through the head (Gemm/MatMul/Add) and the class token pick
    (Gather/Slice/Squeeze) to the final LayerNormalization; the last block's two
    LayerNormalizations are the two before it in graph (topological) order.
    """
    g = Graph(model)
    family = arch_info(arch).family
    if family == "densenet":
        pools = [n for n in g.nodes if _is_global_pool(g, n)]
        if not pools:
            raise PatternError("no global average pooling (GlobalAveragePool / spatial ReduceMean) in the graph")
        relu = g.producer.get(g.skip_back(pools[-1].input[0]))
        if relu is None or relu.op_type != "Relu":
            raise PatternError(
                f"the last global pooling ({pools[-1].name}) is not fed by a Relu "
                f"(found {relu.op_type if relu is not None else 'a graph input'})"
            )
        return g.skip_back(relu.input[0])

    # ViT: breadth-first from the logits through the head ops, data inputs only.
    start = model.graph.output[0].name
    frontier, seen = [start], set()
    while frontier:
        name = frontier.pop(0)
        if name in seen:
            continue
        seen.add(name)
        node = g.producer.get(name)
        if node is None:
            continue
        if node.op_type == "LayerNormalization":
            norms = [n for n in g.nodes if n.op_type == "LayerNormalization"]
            final = norms.index(node)
            if final < 2:
                raise PatternError(
                    f"the final LayerNormalization ({node.name}) has no encoder block before it "
                    "(a block has two LayerNormalizations)"
                )
            return norms[final - 2].output[0]
        if node.op_type in _HEAD_OPS:
            frontier.extend(i for i in node.input if i and not g.is_constant(i))
    raise PatternError(
        "no LayerNormalization found between the logits and the encoder; ViT exports need "
        "opset >= 17 (LayerNormalization) for the feature tensor to be found"
    )


def find_attention_tensors(model: onnx.ModelProto) -> list[str]:
    """Softmax outputs that are attention probabilities, in block (topological) order.

    An attention Softmax normalises over the last axis and its output is the left operand of
    a MatMul (probabilities x values), possibly through Identity/Dropout/Cast. ONNX graphs are
    topologically sorted and block b+1 depends on block b, so node order is block order.
    """
    g = Graph(model)
    found = []
    for n in g.nodes:
        if n.op_type != "Softmax":
            continue
        if int(_attr(n, "axis", -1)) not in (-1, 3):
            continue
        if any(c.op_type == "MatMul" and idx == 0 for c, idx in g.forward_uses(n.output[0])):
            found.append(n.output[0])
    return found


def with_extra_outputs(model: onnx.ModelProto, names: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs the intermediate tensors `names` (float32)."""
    extended = onnx.ModelProto()
    extended.CopyFrom(model)
    present = {o.name for o in extended.graph.output}
    for name in names:
        if name not in present:
            extended.graph.output.append(
                onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
            )
            present.add(name)
    return extended


# --------------------------------------------------------------------------- manifests


def _toml_string(s: str) -> str:
    out = []
    for ch in s:
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, str):
        return _toml_string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def manifest_text(tables: dict, comments: Iterable[str] = ()) -> str:
    """TOML text for a manifest given as {table: {key: value}}; `comments` head the file."""
    lines = [f"# {c}" for c in comments]
    for table, entries in tables.items():
        if lines:
            lines.append("")
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {_toml_value(v)}" for k, v in entries.items())
    return "\n".join(lines) + "\n"


def manifest_tables(
    *,
    name: str,
    version: str,
    onnx_file: str,
    sha256: str,
    labels: Iterable[str],
    trained: bool,
    feature_tensor: str,
    feature_layout: str,
    attention_tensors: Iterable[str],
) -> dict:
    """The manifest of an exported model, with exactly the keys of docs/design.md section 4."""
    return {
        "model": {
            "name": name,
            "version": version,
            "onnx": onnx_file,
            "sha256": sha256,
            "labels": list(labels),
            "trained": trained,
        },
        "input": {
            "name": "input",
            "layout": "NCHW",
            "height": IMAGE_SIZE,
            "width": IMAGE_SIZE,
            "channels": 3,
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "output": {"name": "logits", "kind": "logits"},
        "explain": {
            "feature_tensor": feature_tensor,
            "feature_layout": feature_layout,
            "attention_tensors": list(attention_tensors),
        },
    }
