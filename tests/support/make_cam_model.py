#!/usr/bin/env python3
"""A known-answer convolutional classifier for the explanation-method tests.

Usage: make_cam_model.py OUT_DIR [--layout NCHW|NHWC] [--height H] [--width W]

Writes OUT_DIR/cam.onnx and its manifest OUT_DIR/cam.toml. Input x: [N, 1, H, W] (NCHW) or
[N, H, W, 1] (NHWC), grey in [0, 1]; H and W multiples of 4.

    features = AveragePool4x4(Relu(Conv3x3(x)))        [N, 2, H/4, W/4], the feature tensor
        channel 0: the input, smoothed (kernel of ones / 9); channel 1: its negation
        (ReLU keeps it at 0 for non-negative inputs): a dead channel
    logits[:, 0] ("lesion") = 4 * sum(features[:, 0] * MASK) / sum(MASK)
    logits[:, 1] ("notumor") = 0

MASK is 1 on the feature cells of the evidence box EVIDENCE (rows, columns as fractions of
the input) and 0 elsewhere, so the lesion logit depends on the pixels of that box only: a
faithful element-wise explanation of "lesion" lies there. A test image brightens the
evidence box and a decoy box (DECOY) of the same size; nothing looks at the decoy.
The fractions are printed as JSON on standard output, with the pixel boxes.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EVIDENCE = (0.25, 0.5, 0.5, 0.75)  # row start, row end, column start, column end (fractions)
DECOY = (0.625, 0.875, 0.125, 0.375)


def pixel_box(box, height, width):
    r0, r1, c0, c1 = box
    return [int(round(r0 * height)), int(round(r1 * height)),
            int(round(c0 * width)), int(round(c1 * width))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=64)
    args = parser.parse_args()
    h, w = args.height, args.width
    assert h % 4 == 0 and w % 4 == 0, "sizes must be multiples of 4"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    kernel = np.zeros((2, 1, 3, 3), np.float32)
    kernel[0, 0] = 1.0 / 9.0
    kernel[1, 0] = -1.0 / 9.0
    mask = np.zeros((1, h // 4, w // 4), np.float32)
    r0, r1, c0, c1 = pixel_box(EVIDENCE, h // 4, w // 4)
    mask[0, r0:r1, c0:c1] = 1.0
    gain = np.array([4.0 / mask.sum()], np.float32)
    initializers = [
        numpy_helper.from_array(kernel, "kernel"),
        numpy_helper.from_array(mask, "mask"),
        numpy_helper.from_array(gain, "gain"),
        numpy_helper.from_array(np.array([0], np.int64), "channel0_start"),
        numpy_helper.from_array(np.array([1], np.int64), "channel0_end"),
        numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "sum_axes"),
        numpy_helper.from_array(np.array([1], np.int64), "column_axis"),
        numpy_helper.from_array(np.zeros((1, 1), np.float32), "zero"),
    ]
    nodes = []
    source = "x"
    if args.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["x"], ["x_nchw"], name="to_nchw",
                                      perm=[0, 3, 1, 2]))
        source = "x_nchw"
    nodes += [
        helper.make_node("Conv", [source, "kernel"], ["conv"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("AveragePool", ["relu"], ["features"], name="pool",
                         kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Slice", ["features", "channel0_start", "channel0_end", "channel_axis"],
                         ["channel0"], name="channel0"),
        helper.make_node("Mul", ["channel0", "mask"], ["masked"], name="masked"),
        helper.make_node("ReduceSum", ["masked", "sum_axes"], ["total"], name="total",
                         keepdims=0),
        helper.make_node("Unsqueeze", ["total", "column_axis"], ["total_column"], name="column"),
        helper.make_node("Mul", ["total_column", "gain"], ["lesion"], name="lesion"),
        # a zero logit with the batch's shape
        helper.make_node("Mul", ["total_column", "zero"], ["other"], name="other"),
        helper.make_node("Concat", ["lesion", "other"], ["logits"], name="logits", axis=1),
    ]
    shape = ["N", 1, h, w] if args.layout == "NCHW" else ["N", h, w, 1]
    graph = helper.make_graph(
        nodes, "cam-known-answer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, out / "cam.onnx")
    (out / "cam.toml").write_text(f'''[model]
name = "cam-known-answer"
version = "1"
onnx = "cam.onnx"
labels = ["lesion", "notumor"]
trained = false

[input]
name = "x"
layout = "{args.layout}"
height = {h}
width = {w}
channels = 1
mean = [0.0]
std = [1.0]

[output]
name = "logits"
kind = "logits"

[explain]
feature_tensor = "features"
feature_layout = "NCHW"
attention_tensors = []
''')
    print(json.dumps({
        "evidence": pixel_box(EVIDENCE, h, w),
        "decoy": pixel_box(DECOY, h, w),
    }))


if __name__ == "__main__":
    main()
