#!/usr/bin/env python3
"""A known-answer classifier for explanation tests, written with the `onnx` package.

Usage: make_toy_model.py OUT_DIR [GAIN] [--size N --lesion ROW COLUMN]
Writes OUT_DIR/toy.onnx and its manifest OUT_DIR/toy.toml. The model takes x [N, 1, 64, 64]
(NCHW, grey in [0, 1]) and outputs logits [N, 2] = [GAIN * mean(x[:, :, 20:36, 36:52]), 0]
(GAIN 8 unless given; another GAIN is "a new checkpoint" of the same model). `--size` makes
the input N x N and `--lesion` moves the 16 x 16 region's top left corner:
class "lesion" depends on that 16 x 16 region only, so a faithful explanation of "lesion"
puts all its evidence there. Labels: ["lesion", "notumor"].
"""
import argparse
from pathlib import Path

import onnx
from onnx import TensorProto, helper

REGION = (20, 36, 36, 52)  # rows start, rows end, columns start, columns end
SIDE = 16


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("gain", type=float, nargs="?", default=8.0)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--lesion", type=int, nargs=2, metavar=("ROW", "COLUMN"), default=(REGION[0], REGION[2]))
    args = parser.parse_args()
    out, gain, size = args.out, args.gain, args.size
    r0, c0 = args.lesion
    r1, c1 = r0 + SIDE, c0 + SIDE
    if not (0 <= r0 and r1 <= size and 0 <= c0 and c1 <= size):
        parser.error(f"the lesion at {args.lesion} does not fit a {size} x {size} input")
    out.mkdir(parents=True, exist_ok=True)
    const = lambda name, values, dtype=TensorProto.INT64: helper.make_node(  # noqa: E731
        "Constant", [], [name], value=helper.make_tensor(name, dtype, [len(values)], values))
    nodes = [
        const("starts", [r0, c0]), const("ends", [r1, c1]), const("axes", [2, 3]),
        const("reduce_axes", [1, 2, 3]), const("unsqueeze_axes", [1]),
        const("gain", [gain], TensorProto.FLOAT), const("nothing", [0.0], TensorProto.FLOAT),
        helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["region"]),
        helper.make_node("ReduceMean", ["region", "reduce_axes"], ["mean"], keepdims=0),
        helper.make_node("Unsqueeze", ["mean", "unsqueeze_axes"], ["mean_column"]),
        helper.make_node("Mul", ["mean_column", "gain"], ["lesion_logit"]),
        helper.make_node("Mul", ["mean_column", "nothing"], ["other_logit"]),
        helper.make_node("Concat", ["lesion_logit", "other_logit"], ["logits"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "toy",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, out / "toy.onnx")
    (out / "toy.toml").write_text(f'''[model]
name = "toy-known-answer"
version = "1"
onnx = "toy.onnx"
labels = ["lesion", "notumor"]
trained = false

[input]
name = "x"
layout = "NCHW"
height = {size}
width = {size}
channels = 1
mean = [0.0]
std = [1.0]

[output]
name = "logits"
kind = "logits"
''')


if __name__ == "__main__":
    main()
