#!/usr/bin/env python3
"""Reference checks of dicom-xai's ONNX reader/writer (src/onnx/) with the `onnx` package and
onnxruntime. Each mode prints one JSON object on the last line of standard output.

Usage:
  onnx_roundtrip.py roundtrip ORIGINAL.onnx COPY.onnx [BATCH]
      COPY was loaded and saved by the Rust code: onnx.checker on COPY, the graphs compared
      (nodes with attributes, initializers bit for bit, opsets, inputs, outputs, value_info,
      model fields), and both models run in onnxruntime on the same random input.
  onnx_roundtrip.py small MODEL.onnx DIR
      MODEL was built from scratch in Rust: x [N,2,5,5] -> Conv(W, B, pads 1) -> Relu ->
      Reshape([-1, 75]) -> Gemm(G, g, transB=1) -> y [N,4]. DIR holds the arrays as .npy
      (x, W, B, G, g, and more initializers named like their files). onnx.checker, every
      initializer equal to its .npy (dtype and bits), and onnxruntime's y against numpy.
  onnx_roundtrip.py all-fields OUT.onnx
      Writes a protobuf that sets every field of every ONNX message (each oneof member and
      enum value somewhere, explicit zeros and empty strings included): not a valid model,
      a test of the reader/writer's coverage.
  onnx_roundtrip.py compare-all-fields ORIGINAL.onnx COPY.onnx
      Whether COPY equals ORIGINAL as protobuf messages and as bytes, and which fields the
      original sets (coverage of the descriptor).
"""
import json
import sys

import numpy as np
import onnx
from google.protobuf.descriptor import FieldDescriptor as F
from onnx import numpy_helper


def emit(result):
    print(json.dumps(result))


def session(path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def checker(path):
    try:
        onnx.checker.check_model(path)
        return None
    except Exception as e:  # noqa: BLE001 - reported to the Rust test
        return f"{type(e).__name__}: {e}"


def roundtrip(original_path, copy_path, batch):
    a = onnx.load(original_path)
    b = onnx.load(copy_path)
    ga, gb = a.graph, b.graph
    init_a = {t.name: t for t in ga.initializer}
    init_b = {t.name: t for t in gb.initializer}
    init_mismatch = []
    for name, t in init_a.items():
        u = init_b.get(name)
        if u is None:
            init_mismatch.append(f"{name}: missing")
            continue
        xa, xb = numpy_helper.to_array(t), numpy_helper.to_array(u)
        if (t != u or xa.dtype != xb.dtype or xa.shape != xb.shape
                or xa.tobytes() != xb.tobytes()):
            init_mismatch.append(name)
    init_mismatch += [f"{n}: extra" for n in init_b if n not in init_a]
    node_mismatch = [
        f"{i}: {na.name} ({na.op_type})" for i, (na, nb) in enumerate(zip(ga.node, gb.node))
        if na != nb
    ]
    attributes = sum(len(n.attribute) for n in ga.node)

    # the same random input through both models
    rng = np.random.default_rng(20261126)
    feeds = {}
    sa, sb = session(original_path), session(copy_path)
    for inp in sa.get_inputs():
        shape = [d if isinstance(d, int) else batch for d in inp.shape]
        feeds[inp.name] = rng.random(shape, dtype=np.float32)
    out_a = sa.run(None, feeds)
    out_b = sb.run(None, feeds)
    max_diff = max(float(np.max(np.abs(x - y))) for x, y in zip(out_a, out_b))
    emit({
        "checker_error": checker(copy_path),
        "nodes": len(ga.node),
        "nodes_equal": len(ga.node) == len(gb.node) and not node_mismatch,
        "node_mismatch": node_mismatch[:10],
        "attributes": attributes,
        "initializers": len(init_a),
        "initializer_mismatch": init_mismatch[:10],
        "opsets_equal": list(a.opset_import) == list(b.opset_import),
        "opsets": {o.domain: o.version for o in a.opset_import},
        "inputs_equal": list(ga.input) == list(gb.input),
        "outputs_equal": list(ga.output) == list(gb.output),
        "value_info_equal": list(ga.value_info) == list(gb.value_info),
        "model_equal": a == b,
        "serialized_equal": a.SerializeToString(deterministic=True)
        == b.SerializeToString(deterministic=True),
        "file_bytes_equal": open(original_path, "rb").read() == open(copy_path, "rb").read(),
        "outputs": [o.name for o in sa.get_outputs()],
        "output_shapes": [list(o.shape) for o in out_a],
        "max_abs_diff": max_diff,
        "identical_outputs": all(np.array_equal(x, y) for x, y in zip(out_a, out_b)),
    })


def conv2d(x, w, b, pad):
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = h + 2 * pad - kh + 1, wd + 2 * pad - kw + 1
    y = np.zeros((n, k, ho, wo), dtype=np.float64)
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i:i + kh, j:j + kw].astype(np.float64)
            y[:, :, i, j] = np.einsum("nchw,kchw->nk", patch, w.astype(np.float64))
    return y + b.astype(np.float64)[None, :, None, None]


def small(model_path, folder):
    from pathlib import Path

    folder = Path(folder)
    model = onnx.load(model_path)
    checked, mismatch = 0, []
    for t in model.graph.initializer:
        npy = folder / f"{t.name}.npy"
        if not npy.exists():
            continue
        expected = np.load(npy)
        actual = numpy_helper.to_array(t)
        checked += 1
        if (actual.dtype != expected.dtype or actual.shape != expected.shape
                or actual.tobytes() != expected.tobytes()):
            mismatch.append(f"{t.name}: {actual.dtype}{actual.shape} vs "
                            f"{expected.dtype}{expected.shape}")
    x = np.load(folder / "x.npy")
    w, b, g, gb = (np.load(folder / f"{n}.npy") for n in ("W", "B", "G", "g"))
    hidden = np.maximum(conv2d(x, w, b, 1), 0).reshape(x.shape[0], -1)
    reference = hidden @ g.astype(np.float64).T + gb.astype(np.float64)
    (y,) = session(model_path).run(["y"], {"x": x})
    emit({
        "checker_error": checker(model_path),
        "initializers_checked": checked,
        "initializer_mismatch": mismatch,
        "shape": list(y.shape),
        "max_abs_diff": float(np.max(np.abs(y - reference))),
        "reference_max_abs": float(np.max(np.abs(reference))),
    })


# ---- every field of every message ------------------------------------------------------

INTS = [0, 7, -3, 2**40, -(2**40), 1]
INT32S = [0, -5, 2**31 - 1, 3]
UINTS = [0, 2**63 + 5, 9]
FLOATS = [0.0, 1.5, -2.25, 1e30]
STRINGS = ["", "a", "ünï/node:0", "x" * 200]
BYTES = [b"", b"\x00\xff\x80", b"text"]
MAX_DEPTH = 6


def scalar(field, n):
    t = field.type
    if t == F.TYPE_ENUM:
        values = field.enum_type.values
        return values[n % len(values)].number
    if t in (F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64):
        return INTS[n % len(INTS)]
    if t in (F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32):
        return INT32S[n % len(INT32S)]
    if t in (F.TYPE_UINT64, F.TYPE_FIXED64):
        return UINTS[n % len(UINTS)]
    if t in (F.TYPE_UINT32, F.TYPE_FIXED32):
        return [0, 2**32 - 1][n % 2]
    if t in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return FLOATS[n % len(FLOATS)]
    if t == F.TYPE_BOOL:
        return bool(n % 2)
    if t == F.TYPE_STRING:
        return STRINGS[n % len(STRINGS)]
    if t == F.TYPE_BYTES:
        return BYTES[n % len(BYTES)]
    raise ValueError(f"unhandled field type {t} of {field.full_name}")


class Counter:
    def __init__(self):
        self.n = 0

    def next(self):
        self.n += 1
        return self.n


def variants(descriptor):
    return max([len(o.fields) for o in descriptor.oneofs] or [1])


def fill(message, depth, variant, counter):
    d = message.DESCRIPTOR
    chosen = {o.name: o.fields[variant % len(o.fields)].name for o in d.oneofs}
    for field in d.fields:
        oneof = field.containing_oneof
        if oneof is not None and chosen[oneof.name] != field.name:
            continue
        if field.type == F.TYPE_MESSAGE:
            if depth >= MAX_DEPTH:
                continue
            if field.is_repeated:
                for k in range(max(2, variants(field.message_type))):
                    fill(getattr(message, field.name).add(), depth + 1, k, counter)
            else:
                sub = getattr(message, field.name)
                sub.SetInParent()
                fill(sub, depth + 1, counter.next(), counter)
        elif field.is_repeated:
            n = counter.next()
            getattr(message, field.name).extend(scalar(field, n + i) for i in range(4))
        else:
            setattr(message, field.name, scalar(field, counter.next()))


def all_fields(out):
    model = onnx.ModelProto()
    fill(model, 0, 0, Counter())
    model.ir_version = 10  # the Rust reader requires a positive IR version and a graph
    model.graph.SetInParent()
    with open(out, "wb") as f:
        f.write(model.SerializeToString())
    emit({"bytes": model.ByteSize()})


def coverage(message, seen):
    for field, value in message.ListFields():
        seen.add(field.full_name)
        if field.type == F.TYPE_MESSAGE:
            for sub in (value if field.is_repeated else [value]):
                coverage(sub, seen)


def all_descriptor_fields(descriptor, out):
    if descriptor.full_name in out:
        return
    out[descriptor.full_name] = [f.full_name for f in descriptor.fields]
    for field in descriptor.fields:
        if field.message_type is not None:
            all_descriptor_fields(field.message_type, out)


def compare_all_fields(original_path, copy_path):
    a, b = onnx.ModelProto(), onnx.ModelProto()
    raw_a, raw_b = open(original_path, "rb").read(), open(copy_path, "rb").read()
    a.ParseFromString(raw_a)
    b.ParseFromString(raw_b)
    seen = set()
    coverage(a, seen)
    messages = {}
    all_descriptor_fields(onnx.ModelProto.DESCRIPTOR, messages)
    all_descriptor_fields(onnx.FunctionProto.DESCRIPTOR, messages)
    every = sorted({f for fields in messages.values() for f in fields})
    emit({
        "equal": a == b,
        "serialized_equal": a.SerializeToString(deterministic=True)
        == b.SerializeToString(deterministic=True),
        "file_bytes_equal": raw_a == raw_b,
        "messages": len(messages),
        "fields_total": len(every),
        "fields_covered": len([f for f in every if f in seen]),
        "uncovered": [f for f in every if f not in seen],
    })


def main():
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "roundtrip":
        roundtrip(args[0], args[1], int(args[2]) if len(args) > 2 else 2)
    elif mode == "small":
        small(args[0], args[1])
    elif mode == "all-fields":
        all_fields(args[0])
    elif mode == "compare-all-fields":
        compare_all_fields(args[0], args[1])
    else:
        sys.exit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
