"""`make setup`'s mission models (scripts/export_models.py): models/<arch>/ is the export of
the site's checkpoint in models/checkpoints/ when there is one (trained = true, the
checkpoint's logits), else the random-weight variant labelled UNTRAINED; taking the
checkpoint away brings the random weights back."""

import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

import xai_models

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def export_models(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("export_models", ROOT / "scripts" / "export_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    variant = module.MODELS / "densenet169-legacy"
    if not (variant / ".stamp").is_file():
        pytest.fail(f"{variant} is missing: run `make models`")
    monkeypatch.setattr(module, "MISSION", tmp_path / "models")
    return module


def manifest(folder: Path) -> dict:
    return tomllib.loads((folder / "densenet169.toml").read_text())


def test_checkpoint_is_exported_trained_and_removing_it_restores_random_weights(
        export_models, random_model):
    mission = export_models.MISSION
    (mission / "checkpoints").mkdir(parents=True)
    source = random_model("densenet169", seed=5)
    torch.save(source.state_dict(), mission / "checkpoints" / "densenet169.pth")

    assert export_models.mission_model("densenet169", "densenet169-legacy")
    exported = mission / "densenet169"
    model = manifest(exported)["model"]
    assert model["trained"] is True and model["name"] == "densenet169"
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = source(x).numpy()
    session = onnxruntime.InferenceSession(str(exported / "densenet169.onnx"))
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # unchanged inputs: not exported again
    stamp = (exported / ".stamp").stat().st_mtime_ns
    assert export_models.mission_model("densenet169", "densenet169-legacy")
    assert (exported / ".stamp").stat().st_mtime_ns == stamp

    (mission / "checkpoints" / "densenet169.pth").unlink()
    assert export_models.mission_model("densenet169", "densenet169-legacy")
    assert manifest(exported)["model"]["trained"] is False
    variant = export_models.MODELS / "densenet169-legacy"
    assert (exported / "densenet169.onnx").read_bytes() == (variant / "densenet169.onnx").read_bytes()


def test_a_checkpoint_of_another_architecture_fails_naming_it(export_models, random_model, capsys):
    mission = export_models.MISSION
    (mission / "checkpoints").mkdir(parents=True)
    torch.save(random_model("vit_b_16", seed=1).state_dict(), mission / "checkpoints" / "densenet169.pt")
    assert not export_models.mission_model("densenet169", "densenet169-legacy")
    err = capsys.readouterr().err
    assert "densenet169.pt" in err and "does not match densenet169" in err
    assert not (mission / "densenet169" / ".stamp").exists()
