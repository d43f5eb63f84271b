#!/usr/bin/env python3
"""Export the demo and test models with onnx/export.py into assets/models/<variant>/.

Each variant is DenseNet169 or a ViT-B/16 with random weights (`--random-init --seed 0`,
so the manifests say `trained = false`), from one exporter. A variant is exported again only
when what produced it changed: its stamp holds the sha256 of the export tools, the pinned
requirements and the variant's arguments. Exit status 1 naming the variant on failure.

    python scripts/export_models.py [VARIANT...]     (default: all)
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


def stamp_of(arguments: list[str]) -> str:
    digest = hashlib.sha256()
    for tool in TOOLS:
        digest.update(tool.read_bytes())
    digest.update("\0".join(arguments).encode())
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    chosen = argv or list(VARIANTS)
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        print(f"export_models: unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}",
              file=sys.stderr)
        return 1
    for variant in chosen:
        arguments = VARIANTS[variant] + COMMON
        out = MODELS / variant
        stamp = out / ".stamp"
        expected = stamp_of(arguments)
        if stamp.exists() and stamp.read_text() == expected:
            continue
        print(f"export_models: exporting {variant}", flush=True)
        result = subprocess.run(
            [sys.executable, str(ROOT / "onnx" / "export.py"), *arguments, "--out", str(out)],
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            print(f"export_models: {variant} failed:\n{result.stdout}{result.stderr}",
                  file=sys.stderr)
            return 1
        print(result.stdout.strip().splitlines()[-1], flush=True)
        stamp.write_text(expected)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
