"""Graph pattern search, external-data inlining and manifest TOML on small synthetic graphs."""

import tomllib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import export
import xai_models


def graph_model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs],
        list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_attention_softmax_must_feed_a_matmul_as_probabilities():
    nodes = [
        helper.make_node("MatMul", ["q", "k"], ["s0"]),
        helper.make_node("Softmax", ["s0"], ["p0"], axis=-1),
        helper.make_node("Identity", ["p0"], ["p0b"]),
        helper.make_node("MatMul", ["p0b", "v"], ["o0"]),  # attention: probs x values
        helper.make_node("Softmax", ["o0"], ["p1"], axis=-1),
        helper.make_node("MatMul", ["v", "p1"], ["o1"]),  # right operand: not attention
        helper.make_node("Softmax", ["o1"], ["probs"], axis=-1),  # classifier softmax
    ]
    model = graph_model(nodes, ["q", "k", "v"], ["probs"])
    assert xai_models.find_attention_tensors(model) == ["p0"]


def test_densenet_feature_through_reduce_mean_with_axes_input():
    axes = numpy_helper.from_array(np.array([-2, -1], dtype=np.int64), "axes")
    nodes = [
        helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn"]),
        helper.make_node("Relu", ["bn"], ["r"]),
        helper.make_node("ReduceMean", ["r", "axes"], ["pooled"], keepdims=0),
        helper.make_node("Gemm", ["pooled", "w"], ["logits"], transB=1),
    ]
    model = graph_model(nodes, ["x", "s", "b", "m", "v", "w"], ["logits"], [axes])
    assert xai_models.find_feature_tensor(model, "densenet169") == "bn"


def test_vit_feature_is_the_last_blocks_first_norm_output():
    """Two blocks (ln_1, residual, ln_2, residual each), the final norm, the class token and
    the head: the feature is the last block's first norm output, not the block's output."""
    idx = numpy_helper.from_array(np.array(0, dtype=np.int64), "idx")
    nodes = []
    x = "tokens"
    for b in range(2):
        nodes += [
            helper.make_node("LayerNormalization", [x, "g", "b"], [f"ln1_{b}"], axis=-1),
            helper.make_node("Add", [x, f"ln1_{b}"], [f"mid_{b}"]),
            helper.make_node("LayerNormalization", [f"mid_{b}", "g", "b"], [f"ln2_{b}"], axis=-1),
            helper.make_node("Add", [f"mid_{b}", f"ln2_{b}"], [f"out_{b}"]),
        ]
        x = f"out_{b}"
    nodes += [
        helper.make_node("LayerNormalization", [x, "g", "b"], ["normed"], axis=-1),
        helper.make_node("Gather", ["normed", "idx"], ["cls"], axis=1),
        helper.make_node("Gemm", ["cls", "w", "c"], ["logits"], transB=1),
    ]
    model = graph_model(nodes, ["tokens", "g", "b", "w", "c"], ["logits"], [idx])
    assert xai_models.find_feature_tensor(model, "vit_b_16") == "ln1_1"


def test_external_data_is_inlined(tmp_path):
    weight = numpy_helper.from_array(np.arange(4096, dtype=np.float32).reshape(64, 64), "w")
    model = graph_model([helper.make_node("MatMul", ["input", "w"], ["logits"])],
                        ["input"], ["logits"], [weight])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="m.onnx.data",
              size_threshold=0)
    assert (tmp_path / "m.onnx.data").exists()
    export.ensure_inline(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
    again = onnx.load(str(path), load_external_data=False)
    np.testing.assert_array_equal(numpy_helper.to_array(again.graph.initializer[0]),
                                  numpy_helper.to_array(weight))


def test_manifest_toml_round_trip():
    tables = xai_models.manifest_tables(
        name='odd "name" \\ ü\x01', version="2", onnx_file="m.onnx", sha256="ab",
        labels=["a", "b"], trained=True, feature_tensor="/features/norm5/x:0",
        feature_layout="NCHW", attention_tensors=[])
    parsed = tomllib.loads(xai_models.manifest_text(tables, ["a comment"]))
    assert parsed == tables
