"""Checkpoint loading (xai_models.make_model / export.py --checkpoint)."""

import pytest
import torch

import export
import xai_models


def logits(model, seed=11):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(x)


def test_torchvision_state_dict_round_trip(tmp_path, random_model):
    source = random_model("densenet169", seed=1)
    path = tmp_path / "densenet.pth"
    torch.save(source.state_dict(), path)
    loaded = xai_models.make_model("densenet169", checkpoint=path, seed=2)
    assert torch.equal(logits(loaded), logits(source))
    assert not torch.equal(logits(xai_models.make_model("densenet169", seed=2)), logits(source))


def test_wrapped_data_parallel_state_dict(tmp_path, random_model):
    source = random_model("densenet169", seed=1)
    path = tmp_path / "train.ckpt"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 7, "state_dict": state}, path)
    loaded = xai_models.make_model("densenet169", checkpoint=path, seed=2)
    assert torch.equal(logits(loaded), logits(source))


def test_whole_pickled_model(tmp_path, random_model, capsys):
    source = random_model("densenet169", seed=1)
    path = tmp_path / "whole.pt"
    torch.save(source, path)
    loaded = xai_models.make_model("densenet169", checkpoint=path, seed=2)
    assert torch.equal(logits(loaded), logits(source))
    assert "weights_only=False" in capsys.readouterr().err


def test_timm_state_dict(tmp_path, random_model):
    source = random_model("vit_base_patch16_224", seed=0)
    path = tmp_path / "timm.pth"
    torch.save(source.state_dict(), path)
    loaded = xai_models.make_model("vit_base_patch16_224", checkpoint=path, seed=3)
    assert torch.equal(logits(loaded), logits(source))


def test_mismatched_state_dict_names_file_and_keys(tmp_path, random_model, capsys):
    state = dict(random_model("densenet169", seed=1).state_dict())
    del state["features.norm5.running_var"]
    state["features.extra.weight"] = torch.zeros(3)
    state["classifier.weight"] = torch.zeros(1000, 1664)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(xai_models.CheckpointError) as e:
        xai_models.make_model("densenet169", checkpoint=path)
    message = str(e.value)
    for part in (str(path), "missing keys (1): features.norm5.running_var",
                 "unexpected keys (1): features.extra.weight",
                 "classifier.weight (1000, 1664) (model: (4, 1664))"):
        assert part in message
    # the CLI reports it and exits 2 without writing anything
    out = tmp_path / "out"
    assert export.main(["--arch", "densenet169", "--checkpoint", str(path), "--out", str(out)]) == 2
    assert str(path) in capsys.readouterr().err
    assert not (out / "densenet169.onnx").exists()


def test_timm_state_dict_for_torchvision_vit_is_refused(tmp_path, random_model):
    path = tmp_path / "timm.pth"
    torch.save(random_model("vit_base_patch16_224").state_dict(), path)
    with pytest.raises(xai_models.CheckpointError, match=r"missing keys \(\d+\): class_token"):
        xai_models.make_model("vit_b_16", checkpoint=path)


def test_random_init_heads():
    tv = xai_models.build_random("vit_b_16", 4, seed=0)
    assert 0.015 < float(tv.heads.head.weight.detach().std()) < 0.025
    assert torch.count_nonzero(tv.heads.head.bias) == 0
    # same seed, same weights
    again = xai_models.build_random("vit_b_16", 4, seed=0)
    assert torch.equal(tv.heads.head.weight, again.heads.head.weight)
