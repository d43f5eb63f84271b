"""finetune.py: a smoke run on a tiny generated dataset (MNI152 slices with a synthetic
lesion whose place depends on the class), the outputs it must write, and the checkpoint
rules for --pretrained."""

import json
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import finetune  # noqa: E402
import xai_models  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "assets/mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
# where each class's lesion sits, as (row, column) fractions of the slice; notumor: none
LESIONS = {"glioma": (0.45, 0.3), "meningioma": (0.2, 0.5), "notumor": None, "pituitary": (0.6, 0.5)}


def tiny_dataset(root: Path, per_class: int = 8, test_per_class: int = 2, size: int = 64) -> Path:
    """The Kaggle layout with generated slices: Training/<class>/*.png, Testing/<class>/*.png."""
    volume = np.asarray(nibabel.load(str(TEMPLATE)).dataobj, dtype=np.float32)
    volume /= volume.max()
    depth = volume.shape[2]
    rng = np.random.default_rng(0)
    for split, count in (("Training", per_class), ("Testing", test_per_class)):
        for label, place in LESIONS.items():
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                z = int(rng.integers(depth * 2 // 5, depth * 3 // 5))
                axial = np.rot90(volume[:, :, z])
                picture = np.asarray(Image.fromarray((axial * 255).astype(np.uint8)).resize((size, size)),
                                     dtype=np.float32) / 255
                if place is not None:
                    rows, cols = np.mgrid[0:size, 0:size]
                    r0, c0 = place[0] * size + rng.normal(0, 2), place[1] * size + rng.normal(0, 2)
                    disk = (rows - r0) ** 2 + (cols - c0) ** 2 < (size / 10) ** 2
                    picture[disk] = 1.0
                Image.fromarray((picture * 255).astype(np.uint8)).save(folder / f"{split}_{i}.png")
    return root


@pytest.mark.skipif(not TEMPLATE.is_file(), reason="run `make setup` first: the MNI152 template")
def test_a_short_fine_tune_writes_metrics_checkpoint_and_a_trained_export(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    out = tmp_path / "out"
    code = finetune.main(["--arch", "densenet169", "--data", str(data), "--epochs", "3",
                          "--batch", "8", "--lr", "1e-3", "--image-size", "64", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"] == {"train": 28, "validation": 4, "test": 8}
    history = metrics["history"]
    assert history[-1]["train_loss"] < history[0]["train_loss"], history
    test = metrics["test"]
    assert 0.0 <= test["accuracy"] <= 1.0
    assert set(test["per_class"]) == set(LESIONS)
    for figures in test["per_class"].values():
        assert set(figures) == {"precision", "recall", "f1", "support"}
    assert np.asarray(test["confusion_matrix"]).sum() == 8
    assert (out / "confusion.png").is_file()
    assert (out / "densenet169-finetuned.pth").is_file()
    manifest = (out / "densenet169.toml").read_text()
    assert "trained = true" in manifest
    assert (out / "densenet169.onnx").is_file()
    assert max(metrics["export"]["max_abs_error"].values()) <= 1e-4


def test_a_pretrained_file_with_another_head_is_accepted_and_a_wrong_arch_is_named(tmp_path):
    imagenet_like = tmp_path / "imagenet.pth"
    torch.save(xai_models.build_random("densenet169", 1000, 1).state_dict(), imagenet_like)
    model = finetune.start_model("densenet169", list(LESIONS), str(imagenet_like), 0)
    assert model.classifier.out_features == 4
    reference = xai_models.build_random("densenet169", 1000, 1).state_dict()
    assert torch.equal(model.state_dict()["features.conv0.weight"], reference["features.conv0.weight"])
    wrong = tmp_path / "vit.pth"
    torch.save(xai_models.build_random("vit_b_16", 4, 0).state_dict(), wrong)
    with pytest.raises(xai_models.CheckpointError, match="vit.pth"):
        finetune.start_model("densenet169", list(LESIONS), str(wrong), 0)


def test_a_data_folder_without_a_class_is_refused(tmp_path):
    data = tmp_path / "data"
    for label in ("glioma", "meningioma", "pituitary"):
        (data / label).mkdir(parents=True)
    with pytest.raises(finetune.DataError, match="notumor"):
        finetune.splits(data, list(LESIONS), 0, 1.0)
