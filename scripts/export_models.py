#!/usr/bin/env python3
"""Export the demo and test models with onnx/export.py into assets/models/<variant>/, then the
mission models `make run` uses into models/densenet169/ and models/vit_b_16/.

Each variant is DenseNet169 or a ViT-B/16 with random weights (`--random-init --seed 0`,
so the manifests say `trained = false`), from one exporter. A mission model is exported from
the site's checkpoint when one is placed in models/checkpoints/ (`densenet169.pth`,
`vit_b_16.pth`; `.pt` too: see onnx/README.md for the formats) and is then `trained = true`;
without one it is the random-weight legacy variant, labelled UNTRAINED. An export is redone
only when what produced it changed: its stamp holds the sha256 of the export tools, the pinned
requirements, the arguments and the checkpoint. Exit status 1 naming the model on failure.

    python scripts/export_models.py [VARIANT...]     (default: all, then the mission models)
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "assets" / "models"
TOOLS = [ROOT / "onnx" / "export.py", ROOT / "onnx" / "xai_models.py", ROOT / "requirements.txt"]

# variant -> export.py arguments (the output folder is added)
VARIANTS = {
    "densenet169-legacy": ["--arch", "densenet169", "--exporter", "legacy"],
    "densenet169-dynamo": ["--arch", "densenet169", "--exporter", "dynamo"],
    "vit_b_16-legacy": ["--arch", "vit_b_16", "--exporter", "legacy"],
    "vit_b_16-dynamo": ["--arch", "vit_b_16", "--exporter", "dynamo"],
    "vit_base_patch16_224-dynamo": ["--arch", "vit_base_patch16_224", "--exporter", "dynamo"],
}
COMMON = ["--random-init", "--seed", "0"]

# The mission's models (git-ignored): arch -> the variant that stands in without a checkpoint.
MISSION = ROOT / "models"
MISSION_MODELS = {"densenet169": "densenet169-legacy", "vit_b_16": "vit_b_16-legacy"}
CHECKPOINT_SUFFIXES = (".pth", ".pt")


def stamp_of(arguments: list[str], checkpoint: Path | None = None) -> str:
    digest = hashlib.sha256()
    for tool in TOOLS:
        digest.update(tool.read_bytes())
    digest.update("\0".join(arguments).encode())
    if checkpoint is not None:
        digest.update(checkpoint.read_bytes())
    return digest.hexdigest()


def export(name: str, arguments: list[str], out: Path, checkpoint: Path | None = None) -> bool:
    """Runs export.py unless `out` holds the export of exactly these inputs; False on failure."""
    stamp = out / ".stamp"
    expected = stamp_of(arguments, checkpoint)
    if stamp.exists() and stamp.read_text() == expected:
        return True
    print(f"export_models: exporting {name}", flush=True)
    result = subprocess.run(
        [sys.executable, str(ROOT / "onnx" / "export.py"), *arguments, "--out", str(out)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        print(f"export_models: {name} failed:\n{result.stdout}{result.stderr}", file=sys.stderr)
        return False
    print(result.stdout.strip().splitlines()[-1], flush=True)
    stamp.write_text(expected)
    return True


def shown(path: Path) -> str:
    """`path` relative to the project when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def site_checkpoint(arch: str) -> Path | None:
    """models/checkpoints/<arch>.pth or .pt, when the site placed one there."""
    for suffix in CHECKPOINT_SUFFIXES:
        candidate = MISSION / "checkpoints" / f"{arch}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def mission_model(arch: str, variant: str) -> bool:
    """models/<arch>/: the site's checkpoint exported, else a copy of the random variant."""
    out = MISSION / arch
    checkpoint = site_checkpoint(arch)
    if checkpoint is not None:
        arguments = ["--arch", arch, "--exporter", "legacy", "--checkpoint", str(checkpoint)]
        return export(f"{arch} from {shown(checkpoint)}", arguments, out, checkpoint)
    source = MODELS / variant
    expected = (source / ".stamp").read_text()
    stamp = out / ".stamp"
    if stamp.exists() and stamp.read_text() == expected:
        return True
    # a random-weight copy replaces an export of a checkpoint that was taken away
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(source, out)
    print(f"export_models: {arch}: no checkpoint in models/checkpoints/, random weights "
          f"(UNTRAINED) from {shown(source)}", flush=True)
    return True


def main(argv: list[str]) -> int:
    chosen = argv or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        print(f"export_models: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 1
    for variant in chosen:
        if not export(variant, VARIANTS[variant] + COMMON, MODELS / variant):
            return 1
    if argv:
        return 0
    for arch, variant in MISSION_MODELS.items():
        if not mission_model(arch, variant):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
