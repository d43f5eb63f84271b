"""Shared fixtures for the onnx/ tool tests: import path and a cache of constructed models."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import xai_models  # noqa: E402


@pytest.fixture(scope="session")
def random_model():
    """random_model(arch, seed=0): the model export.py builds with --random-init (cached)."""
    cache = {}

    def get(arch, seed=0):
        if (arch, seed) not in cache:
            cache[(arch, seed)] = xai_models.make_model(arch, seed=seed)
        return cache[(arch, seed)]

    return get
