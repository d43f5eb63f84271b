"""export.py end to end: each (arch, exporter) is exported once (module-scoped fixture) and
checked for ORT/PyTorch parity at batch 1 and 3, its manifest, and the feature and
attention tensors the manifest names (existence, shapes, values against reference.py)."""

import hashlib
import shutil
import tomllib

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import export
import reference
import xai_models

CASES = [
    ("densenet169", "legacy"),
    ("densenet169", "dynamo"),
    ("vit_b_16", "legacy"),
    ("vit_b_16", "dynamo"),
    ("vit_base_patch16_224", "dynamo"),
]

MANIFEST_KEYS = {
    "model": {"name", "version", "onnx", "sha256", "labels", "trained"},
    "input": {"name", "layout", "height", "width", "channels", "mean", "std"},
    "output": {"name", "kind"},
    "explain": {"feature_tensor", "feature_layout", "attention_tensors"},
}


@pytest.fixture(scope="module", params=CASES, ids=["-".join(c) for c in CASES])
def exported(request, tmp_path_factory):
    arch, exporter = request.param
    out = tmp_path_factory.mktemp(f"{arch}-{exporter}")
    assert export.main(["--arch", arch, "--random-init", "--seed", "0",
                        "--exporter", exporter, "--out", str(out)]) == 0
    manifest = tomllib.loads((out / f"{arch}.toml").read_text())
    proto = onnx.load(str(out / f"{arch}.onnx"))
    explain = manifest["explain"]
    names = [explain["feature_tensor"], *explain["attention_tensors"]]
    session = ort.InferenceSession(
        xai_models.with_extra_outputs(proto, names).SerializeToString(),
        providers=["CPUExecutionProvider"])
    yield {"arch": arch, "exporter": exporter, "out": out, "manifest": manifest,
           "proto": proto, "session": session, "names": names}
    shutil.rmtree(out, ignore_errors=True)  # up to 350 MB per export


def test_graph_interface(exported):
    proto, arch = exported["proto"], exported["arch"]
    onnx.checker.check_model(proto)
    inits = {t.name for t in proto.graph.initializer}
    inputs = [i for i in proto.graph.input if i.name not in inits]
    assert [i.name for i in inputs] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    batch = inputs[0].type.tensor_type.shape.dim[0]
    assert batch.dim_param and not batch.dim_value, "batch dimension must be symbolic"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    # no external-data file, no scratch left behind
    assert sorted(p.name for p in exported["out"].iterdir()) == [f"{arch}.onnx", f"{arch}.toml"]
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    assert opset in (17, 18)


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_and_explain_tensors(exported, random_model, batch):
    arch = exported["arch"]
    info = xai_models.arch_info(arch)
    model = random_model(arch)
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        expected = model(x).numpy()
    logits, feature, *attention = exported["session"].run(
        ["logits", *exported["names"]], {"input": x.numpy()})
    err = float(np.abs(logits - expected).max())
    print(f"{arch} {exported['exporter']} batch {batch}: max abs err {err:.2e}")
    assert logits.shape == (batch, 4)
    assert err <= 1e-4
    assert feature.shape == (batch, *info.feature_shape)
    assert len(attention) == info.blocks
    for a in attention:
        assert a.shape == (batch, 12, 197, 197)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-4)


def test_manifest(exported):
    m, arch, out = exported["manifest"], exported["arch"], exported["out"]
    assert {k: set(v) for k, v in m.items()} == MANIFEST_KEYS
    model = m["model"]
    assert model["name"] == arch and model["version"] == "1"
    assert model["onnx"] == f"{arch}.onnx"
    assert model["sha256"] == hashlib.sha256((out / model["onnx"]).read_bytes()).hexdigest()
    assert model["labels"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert model["trained"] is False
    assert m["input"] == {"name": "input", "layout": "NCHW", "height": 224, "width": 224,
                          "channels": 3, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert m["output"] == {"name": "logits", "kind": "logits"}
    info = xai_models.arch_info(arch)
    assert m["explain"]["feature_layout"] == info.feature_layout
    assert len(m["explain"]["attention_tensors"]) == info.blocks
    if info.family == "densenet":
        producer = xai_models.Graph(exported["proto"]).producer[m["explain"]["feature_tensor"]]
        assert producer.op_type == "BatchNormalization"


def test_reference_names_the_same_tensors(exported, random_model):
    """reference.py's feature/attention arrays equal the ONNX tensors the manifest names."""
    arch = exported["arch"]
    blocks = (0, 11) if xai_models.arch_info(arch).family == "vit" else ()
    ref = reference.compute(random_model(arch), arch, reference.fixed_input(1, 5), blocks)
    explain = exported["manifest"]["explain"]
    keys = {"feature": explain["feature_tensor"]}
    keys.update({f"attention_{b}": explain["attention_tensors"][b] for b in blocks})
    outputs = exported["session"].run(list(keys.values()), {"input": ref["input"]})
    for key, value in zip(keys, outputs):
        assert value.shape == ref[key].shape, key
        np.testing.assert_allclose(value, ref[key], atol=1e-4, err_msg=key)
