"""reference.py: the instrumented forward is the plain forward, and the npz layout."""

import json

import numpy as np
import pytest
import torch

import reference
import xai_models

ARCHS = list(xai_models.ARCHS)


@pytest.mark.parametrize("arch", ARCHS)
def test_instrumented_forward_equals_plain(arch, random_model):
    model = random_model(arch)
    x = reference.fixed_input(2, 1)
    with torch.no_grad():
        plain = model(x)
    ref = reference.compute(model, arch, x, blocks=(0, 11))
    assert np.abs(ref["logits"] - plain.numpy()).max() <= 1e-5
    # The instrumentation does not change the gradient either (plain autograd on the plain model).
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad((torch.from_numpy(ref["grad_seed"]) * model(xg)).sum(), [xg])
    np.testing.assert_allclose(ref["grad_input"], grad.numpy(), rtol=1e-4,
                               atol=1e-4 * float(np.abs(ref["grad_input"]).max()))
    # and the model is left as it was (hooks removed, timm's fused attention restored)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    if arch == "vit_base_patch16_224":
        assert all(b.attn.fused_attn for b in model.blocks)


@pytest.mark.parametrize("arch", ["vit_b_16", "vit_base_patch16_224"])
def test_attention_is_a_probability_and_its_gradient_is_used(arch, random_model):
    ref = reference.compute(random_model(arch), arch, reference.fixed_input(1, 2), blocks=(0, 5, 11))
    for b in (0, 5, 11):
        a, g = ref[f"attention_{b}"], ref[f"grad_attention_{b}"]
        assert a.shape == g.shape == (1, 12, 197, 197)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
        assert np.abs(g).max() > 0


def test_grad_feature_chain_rule_densenet(random_model):
    """d score / d norm5 output, pushed through the known head (ReLU, mean, linear)."""
    model = random_model("densenet169")
    ref = reference.compute(model, "densenet169", reference.fixed_input(2, 3))
    feature, seed = torch.from_numpy(ref["feature"]), torch.from_numpy(ref["grad_seed"])
    w = model.classifier.weight.detach()
    expected = (seed @ w)[:, :, None, None] * (feature > 0) / 49.0
    np.testing.assert_allclose(ref["grad_feature"], expected.numpy(), atol=1e-7)


def test_npz_keys_and_meta(tmp_path):
    out = tmp_path / "ref.npz"
    manifest = tmp_path / "m.toml"
    manifest.write_text('[explain]\nfeature_tensor = "add_24"\nattention_tensors = '
                        + json.dumps([f"sm{b}" for b in range(12)]) + "\n")
    assert reference.main(["--arch", "vit_base_patch16_224", "--seed", "0", "--batch", "2",
                           "--input-seed", "4", "--blocks", "0,11", "--manifest", str(manifest),
                           "--out", str(out)]) == 0
    z = np.load(out)
    assert set(z.files) == {"meta", "input", "logits", "grad_seed", "grad_input", "feature",
                            "grad_feature", "attention_0", "grad_attention_0",
                            "attention_11", "grad_attention_11"}
    assert all(z[k].dtype == np.float32 for k in z.files if k != "meta")
    assert z["feature"].shape == (2, 197, 768)
    np.testing.assert_array_equal(z["grad_seed"], [[1, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(z["input"], reference.fixed_input(2, 4).numpy())
    meta = json.loads(bytes(z["meta"]))
    assert meta["arch"] == "vit_base_patch16_224" and meta["input_seed"] == 4
    assert meta["onnx"] == {"feature": "add_24", "attention_0": "sm0", "attention_11": "sm11"}
    assert meta["torch"] == torch.__version__
