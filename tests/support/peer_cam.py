#!/usr/bin/env python3
"""Grad-CAM by the peer library, pytorch-grad-cam, on a shipped trained model.

Usage: peer_cam.py ARCH CHECKPOINT INPUTS.npy CLASSES OUT.npy

INPUTS.npy holds model inputs [N, 3, H, W] exactly as dicom-xai made them; CLASSES is a
comma-separated class index per input. The model is onnx/xai_models.py's (the structure
export.py exports) with the checkpoint's weights; the target layer is the manifest's feature
tensor: DenseNet169 `features.norm5`, ViT-B/16 `encoder.layers[-1].ln_1` with the grad-cam
documentation's reshape transform (class token dropped, tokens to a 14 x 14 grid). Writes the
CAMs [N, H, W] as pytorch-grad-cam returns them (ReLU, min-max scaled, resized to the input).
"""
import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "onnx"))
import xai_models  # noqa: E402


def vit_tokens_to_grid(tensor: torch.Tensor) -> torch.Tensor:
    side = int(round((tensor.size(1) - 1) ** 0.5))
    grid = tensor[:, 1:, :].reshape(tensor.size(0), side, side, tensor.size(2))
    return grid.permute(0, 3, 1, 2)


def main() -> int:
    arch, checkpoint, inputs_path, classes, out = sys.argv[1:6]
    torch.set_num_threads(2)
    model = xai_models.make_model(arch, checkpoint=checkpoint)
    if arch.startswith("vit"):
        layer, reshape = model.encoder.layers[-1].ln_1, vit_tokens_to_grid
    else:
        # torchvision's DenseNet applies ReLU in place to norm5's output: the clone keeps the
        # layer's own output, the tensor the ONNX export names
        layer, reshape = model.features.norm5, torch.clone
    inputs = torch.from_numpy(np.load(inputs_path)).float()
    targets = [ClassifierOutputTarget(int(c)) for c in classes.split(",")]
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=inputs, targets=targets)
    np.save(out, maps.astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
