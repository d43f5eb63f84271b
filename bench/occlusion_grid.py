"""The occlusion grid as dicom-xai's method lays it out (src/explain/occlusion.rs), for the
bench's Python side: the Python peer (peer/run_peer.py) and the occlusion study
(occlusion_study.py) both place patches and combine their drops with it."""

from __future__ import annotations

import numpy as np


def origins(size: int, patch: int, stride: int, offset: int = 0) -> list[int]:
    """Patch origins along an axis: every `stride` from `offset`, with 0 and one flush with the
    far edge, so every pixel is covered."""
    if patch >= size:
        return [0]
    return sorted({0, *range(offset, size - patch + 1, stride), size - patch})


def smooth_window(n: int) -> np.ndarray:
    """sin^2 across a patch at pixel centres: the weight dicom-xai gives each patch's pixels."""
    return np.sin(np.pi * (np.arange(n) + 0.5) / n) ** 2


def windowed_mean(patches: list[tuple[int, int]], drops, height: int, width: int, patch: int) -> np.ndarray:
    """The map of one drop per patch (top left corners `patches`): per pixel the mean of the
    drops of the patches that cover it, each weighted by the smooth window; rises clipped."""
    weight = np.outer(smooth_window(min(patch, height)), smooth_window(min(patch, width)))
    total = np.zeros((height, width), np.float64)
    covered = np.zeros((height, width), np.float64)
    for (r, c), drop in zip(patches, drops):
        total[r : r + patch, c : c + patch] += drop * weight
        covered[r : r + patch, c : c + patch] += weight
    return np.maximum(total / np.maximum(covered, 1e-12), 0.0)
