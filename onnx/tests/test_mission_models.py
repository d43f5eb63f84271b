"""`make setup`'s mission models (scripts/export_models.py): models/<arch>/ is the export of
the site's checkpoint in models/checkpoints/ when there is one, else of the trained checkpoint
the project ships in checkpoints/ (trained = true either way, the checkpoint's logits);
taking the site's checkpoint away brings the shipped one back; a shipped checkpoint that does
not match checkpoints/SHA256SUMS fails naming the file."""

import hashlib
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


def logits_match(exported: Path, state_dict: dict, arch: str = "densenet169"):
    model = xai_models.make_model(arch, seed=0)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model(x).numpy()
    session = onnxruntime.InferenceSession(str(exported / f"{arch}.onnx"))
    got = session.run(None, {"input": x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_checkpoint_is_exported_trained_and_removing_it_restores_the_shipped_weights(
        export_models, random_model):
    mission = export_models.MISSION
    (mission / "checkpoints").mkdir(parents=True)
    source = random_model("densenet169", seed=5)
    torch.save(source.state_dict(), mission / "checkpoints" / "densenet169.pth")

    assert export_models.mission_model("densenet169", export_models.MISSION_MODELS["densenet169"])
    exported = mission / "densenet169"
    model = manifest(exported)["model"]
    assert model["trained"] is True and model["name"] == "densenet169"
    logits_match(exported, source.state_dict())
    # unchanged inputs: not exported again
    stamp = (exported / ".stamp").stat().st_mtime_ns
    assert export_models.mission_model("densenet169", export_models.MISSION_MODELS["densenet169"])
    assert (exported / ".stamp").stat().st_mtime_ns == stamp

    (mission / "checkpoints" / "densenet169.pth").unlink()
    shipped = export_models.MISSION_MODELS["densenet169"]
    assert export_models.mission_model("densenet169", shipped)
    assert manifest(exported)["model"]["trained"] is True
    logits_match(exported, torch.load(export_models.shipped_checkpoint(shipped), map_location="cpu"))


def test_a_shipped_checkpoint_is_checked_against_its_sum(export_models, tmp_path, monkeypatch):
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    (shipped / "SHA256SUMS").write_text(f"{'0' * 64}  model.pth\n")
    (shipped / "model.pth.part-0").write_bytes(b"ab")
    (shipped / "model.pth.part-1").write_bytes(b"cd")
    monkeypatch.setattr(export_models, "SHIPPED", shipped)
    monkeypatch.setattr(export_models, "ASSEMBLED", tmp_path / "assembled")
    with pytest.raises(export_models.ShippedCheckpointError, match="model.pth has sha256"):
        export_models.shipped_checkpoint("model.pth")
    assert (tmp_path / "assembled" / "model.pth").read_bytes() == b"abcd", "parts joined in order"
    (shipped / "SHA256SUMS").write_text(f"{hashlib.sha256(b'abcd').hexdigest()}  model.pth\n")
    assert export_models.shipped_checkpoint("model.pth") == tmp_path / "assembled" / "model.pth"


def test_a_checkpoint_of_another_architecture_fails_naming_it(export_models, random_model, capsys):
    mission = export_models.MISSION
    (mission / "checkpoints").mkdir(parents=True)
    torch.save(random_model("vit_b_16", seed=1).state_dict(), mission / "checkpoints" / "densenet169.pt")
    assert not export_models.mission_model("densenet169", export_models.MISSION_MODELS["densenet169"])
    err = capsys.readouterr().err
    assert "densenet169.pt" in err and "does not match densenet169" in err
    assert not (mission / "densenet169" / ".stamp").exists()
