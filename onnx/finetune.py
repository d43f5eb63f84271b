#!/usr/bin/env python3
"""Fine-tune DenseNet169 / ViT-B/16 on a four-class brain-tumour MRI set, then export it.

    python onnx/finetune.py --arch densenet169 --data brain-tumor-mri/ --epochs 20 --out models/
    python onnx/finetune.py --arch vit_b_16 --data slices/ --pretrained vit_b_16-imagenet.pth --out models/

Data: the public Kaggle layout ``DATA/Training/<class>/*.jpg`` and ``DATA/Testing/<class>/*``
(a tenth of Training, stratified, becomes the validation split), or one folder
``DATA/<class>/*`` split 70/15/15 into train/validation/test, stratified and seeded. Class
folders are matched to ``--labels`` (default glioma, meningioma, notumor, pituitary); the
Kaggle set's ``no_tumor`` spelling is accepted for ``notumor``.

Training: slices read as grey, replicated to RGB, resized to ``--image-size`` (default the
architecture's 224), ImageNet mean/std; augmentation on the training split only (horizontal
flips, rotations up to 10 degrees, brightness and contrast within 10%). AdamW (weight decay
0.05) with a cosine schedule over all steps, cross-entropy, early stopping on validation
accuracy (``--patience`` epochs), the best epoch's weights kept. CUDA when present.

Outputs in ``OUT``: ``<arch>-finetuned.pth`` (the state dict), ``metrics.json`` (per epoch
losses and validation accuracy; on the test split: accuracy, per-class precision, recall and
F1, confusion matrix), ``confusion.png``, and the export of ``export.py`` from that
checkpoint: ``<arch>.onnx`` and the manifest ``<arch>.toml`` with ``trained = true``.

No pretrained weights can be downloaded here: ``--pretrained FILE`` takes a local state dict
(ImageNet or any other; a classifier head of another size is left out and drawn fresh).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))
import export  # noqa: E402
import xai_models  # noqa: E402

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}
SPELLINGS = {"notumor": ("notumor", "no_tumor", "no-tumor", "normal")}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DataError(ValueError):
    """The data folder does not hold what fine-tuning needs."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=list(xai_models.ARCHS))
    p.add_argument("--data", required=True, metavar="DIR", help="Kaggle layout or DIR/<class>/")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default %(default)s)")
    p.add_argument("--subset", type=float, default=1.0, metavar="FRACTION",
                   help="use this fraction of every split (stratified), for quick runs")
    p.add_argument("--pretrained", metavar="FILE", help="a local state dict to start from")
    p.add_argument("--image-size", type=int, default=None,
                   help="training resolution (default: the architecture's 224; ViTs need 224)")
    p.add_argument("--patience", type=int, default=5, help="early stopping (epochs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", default=",".join(xai_models.DEFAULT_LABELS))
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--no-export", action="store_true", help="stop after metrics.json")
    p.add_argument("--out", required=True, metavar="DIR")
    args = p.parse_args(argv)
    args.labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    if not 0.0 < args.subset <= 1.0:
        p.error("--subset must be in (0, 1]")
    if args.epochs < 1 or args.batch < 1:
        p.error("--epochs and --batch must be at least 1")
    return args


# --------------------------------------------------------------------------- data


def class_folder(parent: Path, label: str) -> Path | None:
    """The sub-folder of `parent` holding `label`'s images (case and spelling tolerant)."""
    names = SPELLINGS.get(label, (label,))
    for child in sorted(parent.iterdir()) if parent.is_dir() else []:
        if child.is_dir() and child.name.lower() in names:
            return child
    return None


def images_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def labelled(parent: Path, labels: list[str]) -> list[tuple[Path, int]]:
    items = []
    missing = []
    for index, label in enumerate(labels):
        folder = class_folder(parent, label)
        if folder is None:
            missing.append(label)
            continue
        items += [(path, index) for path in images_of(folder)]
    if missing:
        raise DataError(f"{parent}: no folder for class(es) {', '.join(missing)}")
    return items


def stratified_split(items, fractions, seed):
    """Splits (path, class) items by the given fractions within each class."""
    rng = random.Random(seed)
    parts = [[] for _ in fractions]
    for cls in sorted({c for _, c in items}):
        members = [it for it in items if it[1] == cls]
        rng.shuffle(members)
        start = 0
        for i, fraction in enumerate(fractions):
            end = len(members) if i == len(fractions) - 1 else start + round(fraction * len(members))
            parts[i] += members[start:end]
            start = end
    return parts


def splits(data: Path, labels: list[str], seed: int, subset: float):
    """(train, validation, test) lists of (path, class)."""
    training, testing = class_folder(data, "training"), class_folder(data, "testing")
    if training and testing:
        train, val = stratified_split(labelled(training, labels), (0.9, 0.1), seed)
        test = labelled(testing, labels)
    else:
        train, val, test = stratified_split(labelled(data, labels), (0.7, 0.15, 0.15), seed)
    if subset < 1.0:
        train, val, test = (stratified_split(s, (subset, 1 - subset), seed)[0] for s in (train, val, test))
    for name, part in (("training", train), ("validation", val), ("test", test)):
        if not part:
            raise DataError(f"{data}: the {name} split is empty")
    return train, val, test


class Slices(torch.utils.data.Dataset):
    """Grey slices as normalised RGB tensors."""

    def __init__(self, items, size: int, augment: bool):
        self.items = items
        steps = [transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR)]
        if augment:
            steps += [
                transforms.RandomHorizontalFlip(),
                transforms.RandomRotation(10),
                transforms.ColorJitter(brightness=0.1, contrast=0.1),
            ]
        steps += [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        self.transform = transforms.Compose(steps)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, cls = self.items[index]
        with Image.open(path) as image:
            grey = image.convert("L").convert("RGB")
        return self.transform(grey), cls


# --------------------------------------------------------------------------- model


def start_model(arch: str, labels: list[str], pretrained: str | None, seed: int) -> torch.nn.Module:
    """The architecture with `len(labels)` outputs; `pretrained` weights where they fit (a
    head of another size is left out and stays freshly drawn)."""
    model = xai_models.build_random(arch, len(labels), seed)
    if pretrained:
        state = xai_models.normalise_keys(xai_models.read_checkpoint(pretrained), arch)
        expected = model.state_dict()
        head_keys = {k for k in expected if k.startswith(("classifier.", "heads.head.", "head."))}
        skipped = [k for k in head_keys if k in state and state[k].shape != expected[k].shape]
        for k in skipped:
            del state[k]
        for k in head_keys:
            if k not in state:
                state[k] = expected[k]
        xai_models.apply_state_dict(model, state, pretrained, arch)
        if skipped:
            print(f"note: {pretrained}: classifier head of another size left out ({', '.join(skipped)})",
                  file=sys.stderr)
    return model


def evaluate(model, loader, device, classes: int):
    """(mean loss, confusion matrix [true, predicted])."""
    model.eval()
    confusion = np.zeros((classes, classes), dtype=np.int64)
    total, count = 0.0, 0
    loss_fn = torch.nn.CrossEntropyLoss(reduction="sum")
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += float(loss_fn(logits, y))
            count += len(y)
            for t, p in zip(y.tolist(), logits.argmax(1).tolist()):
                confusion[t, p] += 1
    return total / max(count, 1), confusion


def scores(confusion: np.ndarray, labels: list[str]) -> dict:
    """Accuracy and per-class precision, recall and F1 of a confusion matrix."""
    per_class = {}
    for i, label in enumerate(labels):
        tp = int(confusion[i, i])
        predicted = int(confusion[:, i].sum())
        actual = int(confusion[i, :].sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": actual}
    total = int(confusion.sum())
    return {
        "accuracy": float(np.trace(confusion)) / total if total else 0.0,
        "per_class": per_class,
        "confusion_matrix": confusion.tolist(),
        "labels": labels,
    }


def confusion_png(confusion: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    """The confusion matrix as a picture: rows true, columns predicted, counts in cells."""
    cell, margin = 90, 150
    n = len(labels)
    image = Image.new("RGB", (margin + n * cell + 20, margin + n * cell + 40), "white")
    draw = ImageDraw.Draw(image)
    try:
        font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 14)
    except OSError:
        font = ImageFont.load_default()
    peak = max(int(confusion.max()), 1)
    draw.text((10, 10), title, fill="black", font=font)
    draw.text((margin, margin - 45), "predicted", fill="black", font=font)
    draw.text((10, margin + n * cell + 10), "rows: true class", fill="black", font=font)
    for i, label in enumerate(labels):
        draw.text((margin + i * cell + 5, margin - 25), label, fill="black", font=font)
        draw.text((10, margin + i * cell + cell // 2 - 7), label, fill="black", font=font)
        for j in range(n):
            value = int(confusion[i, j])
            shade = int(255 - 200 * value / peak)
            box = (margin + j * cell, margin + i * cell, margin + (j + 1) * cell - 2, margin + (i + 1) * cell - 2)
            draw.rectangle(box, fill=(shade, shade, 255))
            draw.text((box[0] + cell // 2 - 10, box[1] + cell // 2 - 7), str(value),
                      fill="black" if shade > 120 else "white", font=font)
    image.save(path)


# --------------------------------------------------------------------------- training


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    info = xai_models.arch_info(args.arch)
    size = args.image_size or 224
    if info.family == "vit" and size != 224:
        raise DataError(f"{args.arch} needs 224x224 inputs (its position embeddings are fixed)")
    train, val, test = splits(Path(args.data), args.labels, args.seed, args.subset)
    loader = lambda items, augment, shuffle: torch.utils.data.DataLoader(  # noqa: E731
        Slices(items, size, augment), batch_size=args.batch, shuffle=shuffle,
        num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed))
    train_loader = loader(train, True, True)
    val_loader, test_loader = loader(val, False, False), loader(test, False, False)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = start_model(args.arch, args.labels, args.pretrained, args.seed).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    steps = args.epochs * max(len(train_loader), 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps)))
    loss_fn = torch.nn.CrossEntropyLoss()
    history, best, best_state, since_best = [], -1.0, None, 0
    started = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        total, count = 0.0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimiser.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        val_loss, val_confusion = evaluate(model, val_loader, device, len(args.labels))
        val_accuracy = float(np.trace(val_confusion)) / max(int(val_confusion.sum()), 1)
        history.append({"epoch": epoch + 1, "train_loss": total / max(count, 1),
                        "val_loss": val_loss, "val_accuracy": val_accuracy})
        print(f"epoch {epoch + 1}: train loss {total / max(count, 1):.4f}, "
              f"validation loss {val_loss:.4f}, accuracy {val_accuracy:.3f}", file=sys.stderr)
        if val_accuracy > best:
            best, since_best = val_accuracy, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            since_best += 1
            if since_best >= args.patience:
                print(f"early stop: no better validation accuracy for {args.patience} epochs",
                      file=sys.stderr)
                break
    seconds = time.perf_counter() - started
    if best_state is not None:
        model.load_state_dict(best_state)
    _, confusion = evaluate(model, test_loader, device, len(args.labels))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / f"{args.arch}-finetuned.pth"
    torch.save({k: v.cpu() for k, v in model.state_dict().items()}, checkpoint)
    metrics = {
        "arch": args.arch,
        "device": str(device),
        "splits": {"train": len(train), "validation": len(val), "test": len(test)},
        "image_size": size,
        "epochs_run": len(history),
        "best_validation_accuracy": best,
        "training_seconds": seconds,
        "history": history,
        "test": scores(confusion, args.labels),
        "checkpoint": checkpoint.name,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    confusion_png(confusion, args.labels, out / "confusion.png",
                  f"{args.arch}: test accuracy {metrics['test']['accuracy']:.3f}")
    if not args.no_export:
        exported = export.run(export.parse_args([
            "--arch", args.arch, "--checkpoint", str(checkpoint), "--labels", ",".join(args.labels),
            "--out", str(out)]))
        metrics["export"] = {"onnx": exported.onnx_path.name, "manifest": exported.manifest_path.name,
                             "max_abs_error": {str(b): e for b, e in exported.errors.items()}}
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        metrics = run(args)
    except (DataError, xai_models.CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    test = metrics["test"]
    print(f"{args.arch}: test accuracy {test['accuracy']:.3f} over {metrics['splits']['test']} images; "
          f"{metrics['epochs_run']} epochs in {metrics['training_seconds']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
