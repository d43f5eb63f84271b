"""Cheaper occlusion against the exhaustive map, on the trained models: the study behind
docs/performance.md's section "Occlusion on the trained models".

Issue 21 asks for occlusion at the exhaustive map's fidelity (Pearson >= 0.9 against the map
of 32-pixel patches every 16 pixels that the Python peer computes: 169 patches, 170 model
passes a slice) with at least 5x fewer passes. `measure` runs, with onnxruntime, every patch a
scheme may ask for, once per image, and keeps the drops of the class score; `replay` builds
each scheme's map from them exactly as the Rust method combines drops (a sin^2-windowed mean
per pixel, rises clipped) and prints passes and Pearson against the exhaustive map:

    .venv/bin/python bench/occlusion_study.py measure --manifest models/densenet169/densenet169.toml \\
        --checkpoint checkpoints/densenet169-brain-tumor-fp16.pth --shifted \\
        --data TESTING_FOLDER --per-class 4 --out target/occlusion-study/densenet169.npz
    .venv/bin/python bench/occlusion_study.py replay target/occlusion-study/densenet169.npz

Per image `measure` keeps, for the class probability and for its log-odds (from the logits,
so a saturated softmax keeps its resolution): the 13 x 13 drops of the exhaustive grid, the
4 x 4 drops of 64-pixel patches every 64 pixels (a coarse pass that covers the image), with
`--shifted` the drops of the same 32-pixel patches on a grid moved by 8 pixels (the
exhaustive map's own reproducibility), and with `--checkpoint` a saliency prior per patch
(|d log p / d input| summed over the patch, PyTorch autograd on the same weights).

Schemes replayed (passes include the unoccluded one):
- coarse + best-first: the coarse pass, then 17 patches of the grid in order of the largest
  coarse drop they overlap, a measured patch passing its drop on to its neighbours (34)
- lattice: every second origin of the grid, the rest interpolated (cubic) (50)
- coarse-seeded flood: the coarse pass; the grid patches under coarse cells of at least 0.3
  x the largest coarse drop; then the neighbours of every measured patch of at least 0.1 x
  the largest measured drop, until none is left (adaptive)
- saliency-seeded flood: the same flood from the 16 patches of highest saliency (adaptive)
- shifted grid: the exhaustive map again on the moved grid (196 patches)

Images: the public four-class brain-tumour MRI test split (Kaggle layout; provenance in
docs/performance.md), `--per-class` files spread evenly over each class folder's sorted names.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image
from scipy.interpolate import RegularGridInterpolator

from occlusion_grid import origins, windowed_mean

SIZE = 224
FINE = (32, 16)
COARSE = (64, 64)
SHIFT = 8
SCORES = ("probability", "logodds")


class Model:
    def __init__(self, manifest: Path, threads: int) -> None:
        self.spec = tomllib.loads(manifest.read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(manifest.parent / self.spec["model"]["onnx"]), options)
        self.input = self.spec["input"]
        self.labels = self.spec["model"]["labels"]
        if (self.input["height"], self.input["width"]) != (SIZE, SIZE):
            raise SystemExit(f"{manifest}: the study is written for {SIZE} x {SIZE} inputs")

    def preprocess(self, path: Path) -> np.ndarray:
        grey = np.asarray(Image.open(path).convert("L").resize((SIZE, SIZE), Image.BILINEAR), np.float32) / 255.0
        mean = np.asarray(self.input["mean"], np.float32)[:, None, None]
        std = np.asarray(self.input["std"], np.float32)[:, None, None]
        return ((np.repeat(grey[None], self.input["channels"], 0) - mean) / std).astype(np.float32)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        out = []
        for first in range(0, len(batch), 8):
            (scores,) = self.session.run([self.spec["output"]["name"]], {self.input["name"]: batch[first : first + 8]})
            out.append(scores.astype(np.float64))
        z = np.concatenate(out)
        return z if self.spec["output"]["kind"] == "logits" else np.log(np.maximum(z, 1e-300))

    def scores(self, batch: np.ndarray, target: int) -> dict[str, np.ndarray]:
        z = self.logits(batch)
        top = z.max(1, keepdims=True)
        log_p = z[:, target] - (top[:, 0] + np.log(np.exp(z - top).sum(1)))
        others = np.delete(z, target, axis=1)
        rest = others.max(1) + np.log(np.exp(others - others.max(1, keepdims=True)).sum(1))
        return {"probability": np.exp(log_p), "logodds": z[:, target] - rest}


def drops(model: Model, x: np.ndarray, target: int, rows: list[int], patch: int) -> dict[str, np.ndarray]:
    """Each score's drop for the patches at rows x rows (origins), filled with the input's mean."""
    fill = x.mean(axis=(1, 2))[:, None, None]
    batch = np.repeat(x[None], len(rows) ** 2, axis=0)
    for n, (r, c) in enumerate((r, c) for r in rows for c in rows):
        batch[n, :, r : r + patch, c : c + patch] = fill
    original, occluded = model.scores(x[None], target), model.scores(batch, target)
    return {s: (original[s][0] - occluded[s]).reshape(len(rows), len(rows)) for s in SCORES}


def saliency_prior(arch: str, labels: list[str], checkpoint: Path, x: np.ndarray, target: int) -> np.ndarray:
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "onnx"))
    import xai_models

    network = xai_models.make_model(arch, labels, checkpoint=checkpoint)
    tensor = torch.from_numpy(x)[None].requires_grad_(True)
    (gradient,) = torch.autograd.grad(torch.log_softmax(network(tensor), 1)[0, target], tensor)
    saliency = gradient.abs().amax(1)[0].numpy()
    grid = origins(SIZE, *FINE)
    return np.array([[saliency[r : r + FINE[0], c : c + FINE[0]].sum() for c in grid] for r in grid])


def measure(args: argparse.Namespace) -> None:
    model = Model(args.manifest, args.threads)
    images = []
    for folder in sorted(p for p in args.data.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.jpg"))
        images += files[:: max(1, len(files) // args.per_class)][: args.per_class]
    grids = {"fine": (origins(SIZE, *FINE), FINE[0]), "coarse": (origins(SIZE, *COARSE), COARSE[0])}
    if args.shifted:
        grids["shifted"] = (origins(SIZE, FINE[0], FINE[1], SHIFT), FINE[0])
    record: dict[str, list] = {"names": [], "target": [], "probability": []}
    for n, path in enumerate(images):
        x = model.preprocess(path)
        z = model.logits(x[None])[0]
        target = int(z.argmax())
        record["names"].append(f"{path.parent.name}/{path.name}")
        record["target"].append(model.labels[target])
        record["probability"].append(float(np.exp(z[target] - z.max()) / np.exp(z - z.max()).sum()))
        for key, (rows, patch) in grids.items():
            for score, grid in drops(model, x, target, rows, patch).items():
                record.setdefault(f"{key}_{score}", []).append(grid)
        if args.checkpoint:
            prior = saliency_prior(model.spec["model"]["name"], model.labels, args.checkpoint, x, target)
            record.setdefault("saliency", []).append(prior)
        print(f"{n + 1}/{len(images)} {record['names'][-1]}: {record['target'][-1]} "
              f"{record['probability'][-1]:.3f}", file=sys.stderr, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **{k: np.array(v) for k, v in record.items()})


def combine(grid: np.ndarray, rows: list[int], patch: int) -> np.ndarray:
    """The map of drops on the patches at rows x rows, as the Rust method forms it."""
    return windowed_mean([(r, c) for r in rows for c in rows], grid.ravel(), SIZE, SIZE, patch)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    denominator = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denominator) if denominator > 0 else float("nan")


def coarse_prior(coarse: np.ndarray) -> np.ndarray:
    """Each grid patch's prior: the largest coarse drop among the coarse cells it overlaps."""
    fine, big = origins(SIZE, *FINE), origins(SIZE, *COARSE)
    p, q = FINE[0], COARSE[0]
    return np.array([[max(coarse[a, b] for a, cr in enumerate(big) for b, cc in enumerate(big)
                          if cr < r + p and r < cr + q and cc < c + p and c < cc + q)
                      for c in fine] for r in fine])


def neighbours(i: int, j: int, n: int):
    return [(a, b) for a in range(max(0, i - 1), min(n, i + 2)) for b in range(max(0, j - 1), min(n, j + 2))
            if (a, b) != (i, j)]


def best_first(fine: np.ndarray, prior: np.ndarray, budget: int) -> tuple[np.ndarray, int]:
    """`budget` grid patches in batches of 8, highest priority first; a measured patch raises its
    neighbours' priority to its drop. Unmeasured patches count as no drop."""
    priority, known = prior.astype(float).copy(), np.zeros(fine.shape, bool)
    while known.sum() < budget:
        free = np.argwhere(~known)
        picked = free[np.argsort(-priority[~known])[: min(8, budget - known.sum())]]
        for i, j in picked:
            known[i, j] = True
            for a, b in neighbours(i, j, fine.shape[0]):
                priority[a, b] = max(priority[a, b], fine[i, j])
    return np.where(known, fine, 0.0), int(known.sum())


def flood(fine: np.ndarray, seeds: np.ndarray, keep: float = 0.1) -> tuple[np.ndarray, int]:
    """From the seed patches, measure the neighbours of every measured patch whose drop is at
    least `keep` x the largest measured drop, 8 at a time, until there are none."""
    known, n = seeds.copy(), fine.shape[0]
    while True:
        top = fine[known].max() if known.any() else 0.0
        frontier = {(a, b) for i, j in np.argwhere(known) if top > 0 and fine[i, j] >= keep * top
                    for a, b in neighbours(i, j, n) if not known[a, b]}
        if not frontier:
            return np.where(known, fine, 0.0), int(known.sum())
        ranked = sorted(frontier, key=lambda ab: -max(fine[a, b] for a, b in neighbours(*ab, n) if known[a, b]))
        for a, b in ranked[:8]:
            known[a, b] = True


def lattice(fine: np.ndarray) -> tuple[np.ndarray, int]:
    kept = list(range(0, fine.shape[0], 2))
    interpolate = RegularGridInterpolator((kept, kept), fine[np.ix_(kept, kept)], method="cubic")
    every = np.stack(np.meshgrid(np.arange(fine.shape[0]), np.arange(fine.shape[0]), indexing="ij"), -1)
    return interpolate(every), len(kept) ** 2


def replay(args: argparse.Namespace) -> None:
    grid = origins(SIZE, *FINE)
    for path in args.files:
        data = np.load(path)
        print(f"\n{Path(path).stem}: {len(data['names'])} images, predicted probability median "
              f"{np.median(data['probability']):.4f}")
        for score in SCORES:
            results: dict[str, list[tuple[int, float]]] = {}
            for k in range(len(data["names"])):
                fine, coarse = data[f"fine_{score}"][k], data[f"coarse_{score}"][k]
                reference = combine(fine, grid, FINE[0])
                coarse_passes = coarse.size
                prior = coarse_prior(coarse)
                schemes = {
                    "coarse + best-first": (best_first(fine, prior, 17), coarse_passes),
                    "lattice, every 2nd origin": (lattice(fine), 0),
                    "coarse-seeded flood": (flood(fine, prior >= 0.3 * prior.max()), coarse_passes),
                }
                if "saliency" in data:
                    saliency = data["saliency"][k]
                    seeds = saliency >= np.sort(saliency.ravel())[-16]
                    schemes["saliency-seeded flood"] = (flood(fine, seeds), 0)
                for name, ((estimate, used), extra) in schemes.items():
                    results.setdefault(name, []).append((1 + used + extra, pearson(combine(estimate, grid, FINE[0]), reference)))
                if f"shifted_{score}" in data:
                    moved = origins(SIZE, FINE[0], FINE[1], SHIFT)
                    shifted = combine(data[f"shifted_{score}"][k], moved, FINE[0])
                    results.setdefault("shifted grid", []).append((1 + len(moved) ** 2, pearson(shifted, reference)))
            largest = np.array([g.max() for g in data[f"fine_{score}"]])
            print(f"  score {score}: largest drop of the exhaustive grid per image, median {np.median(largest):.4g} "
                  f"(min {largest.min():.4g}, max {largest.max():.4g})")
            for name, values in results.items():
                passes, r = np.array(values).T
                print(f"    {name:28s} passes median {np.median(passes):5.0f} max {passes.max():4.0f} | Pearson median "
                      f"{np.nanmedian(r):.3f} min {np.nanmin(r):.3f}, >= 0.9 on {np.mean(r >= 0.9):.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure")
    m.add_argument("--manifest", type=Path, required=True)
    m.add_argument("--data", type=Path, required=True, help="a folder of class folders of .jpg images")
    m.add_argument("--per-class", type=int, default=4)
    m.add_argument("--threads", type=int, default=2)
    m.add_argument("--checkpoint", type=Path, help="the weights of the export, for the saliency prior")
    m.add_argument("--shifted", action="store_true", help="also the exhaustive grid moved by 8 pixels")
    m.add_argument("--out", type=Path, required=True)
    r = commands.add_parser("replay")
    r.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args()
    measure(args) if args.command == "measure" else replay(args)


if __name__ == "__main__":
    main()
