#!/usr/bin/env python3
"""Export the demo and test models with onnx/export.py into assets/models/<variant>/, then the
mission models `make run` uses into models/densenet169/ and models/vit_b_16/.

Each variant is DenseNet169 or a ViT-B/16 with random weights (`--random-init --seed 0`,
so the manifests say `trained = false`), from one exporter: test fixtures. A mission model is
exported from the site's checkpoint when one is placed in models/checkpoints/
(`densenet169.pth`, `vit_b_16.pth`; `.pt` too: see onnx/README.md for the formats), else from
the trained checkpoint the project ships in checkpoints/ (reassembled from its parts into
assets/checkpoints/ and checked against checkpoints/SHA256SUMS); either way `trained = true`.
With the shipped weights, the sparse autoencoder trained on them (checkpoints/<arch>.sae.
safetensors, checked against SHA256SUMS too) is copied beside the export and named in its
manifest (`[explain] sae`), so the `sae` method works out of the box; a site's own weights
get none (an SAE belongs to the weights it was trained on: train one with `dicom-xai sae
train`).
An export is redone only when what produced it changed: its stamp holds the sha256 of the
export tools, the pinned requirements, the arguments and the checkpoint. Exit status 1 naming
the model or file on failure.

    python scripts/export_models.py [VARIANT... | mission]   (default: all, then `mission`)
"""
from __future__ import annotations

import hashlib
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

# The mission's models (git-ignored exports): arch -> the shipped checkpoint's file name.
MISSION = ROOT / "models"
MISSION_MODELS = {
    "densenet169": "densenet169-brain-tumor-fp16.pth",
    "vit_b_16": "vit_b_16-brain-tumor-fp16.pth",
}
CHECKPOINT_SUFFIXES = (".pth", ".pt")
SHIPPED = ROOT / "checkpoints"
ASSEMBLED = ROOT / "assets" / "checkpoints"


class ShippedCheckpointError(Exception):
    """A shipped checkpoint is missing or does not match checkpoints/SHA256SUMS."""


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


def sha256_of(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def shipped_checkpoint(name: str) -> Path:
    """The shipped checkpoint `name`, whole and checked: checkpoints/<name> itself, or its
    parts (`<name>.part-0`, `-1`...) joined into assets/checkpoints/<name> once."""
    sums = dict(
        reversed(line.split(maxsplit=1)) for line in (SHIPPED / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    expected = sums.get(name)
    if expected is None:
        raise ShippedCheckpointError(f"checkpoints/SHA256SUMS has no line for {name}")
    whole = SHIPPED / name
    if not whole.is_file():
        parts = sorted(SHIPPED.glob(f"{name}.part-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        if not parts:
            raise ShippedCheckpointError(f"checkpoints/{name} is missing (nor are its parts there)")
        whole = ASSEMBLED / name
        if not (whole.is_file() and sha256_of(whole) == expected):
            whole.parent.mkdir(parents=True, exist_ok=True)
            partial = whole.with_name(whole.name + ".partial")
            with open(partial, "wb") as out:
                for part in parts:
                    out.write(part.read_bytes())
            partial.replace(whole)
    actual = sha256_of(whole)
    if actual != expected:
        raise ShippedCheckpointError(
            f"{shown(whole)} has sha256 {actual}, checkpoints/SHA256SUMS expects {expected}")
    return whole


def attach_sae(arch: str, out: Path) -> None:
    """Copies the shipped SAE of `arch` beside its export and names it in the manifest."""
    name = f"{arch}.sae.safetensors"
    if not (SHIPPED / name).is_file():
        return  # no SAE shipped for this model yet
    source = shipped_checkpoint(name)
    target = out / name
    if not (target.is_file() and sha256_of(target) == sha256_of(source)):
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(source.read_bytes())
        partial.replace(target)
    manifest = out / f"{arch}.toml"
    text = manifest.read_text()
    if f'sae = "{name}"' not in text:
        if "\n[explain]\n" not in text:
            raise ShippedCheckpointError(f"{shown(manifest)} has no [explain] table for the SAE")
        text = text.replace("\n[explain]\n", f'\n[explain]\nsae = "{name}"\n', 1)
        manifest.write_text(text)


def mission_model(arch: str, shipped: str) -> bool:
    """models/<arch>/: the site's checkpoint exported, else the shipped trained one with its
    shipped SAE."""
    out = MISSION / arch
    checkpoint = site_checkpoint(arch)
    if checkpoint is not None:
        arguments = ["--arch", arch, "--exporter", "legacy", "--checkpoint", str(checkpoint)]
        return export(f"{arch} from {shown(checkpoint)}", arguments, out, checkpoint)
    try:
        checkpoint = shipped_checkpoint(shipped)
        arguments = ["--arch", arch, "--exporter", "legacy", "--checkpoint", str(checkpoint)]
        if not export(f"{arch} from {shown(checkpoint)}", arguments, out, checkpoint):
            return False
        attach_sae(arch, out)
    except ShippedCheckpointError as error:
        print(f"export_models: {arch}: {error}", file=sys.stderr)
        return False
    return True


# The argument that names the mission models (models/<arch>/) among the variants.
MISSION_ARGUMENT = "mission"


def main(argv: list[str]) -> int:
    chosen = argv or [*VARIANTS, MISSION_ARGUMENT]
    unknown = [v for v in chosen if v not in VARIANTS and v != MISSION_ARGUMENT]
    if unknown:
        print(f"export_models: unknown variant {unknown[0]!r}; known: {', '.join([*VARIANTS, MISSION_ARGUMENT])}",
              file=sys.stderr)
        return 1
    for variant in chosen:
        if variant == MISSION_ARGUMENT:
            if not all(mission_model(arch, shipped) for arch, shipped in MISSION_MODELS.items()):
                return 1
        elif not export(variant, VARIANTS[variant] + COMMON, MODELS / variant):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
