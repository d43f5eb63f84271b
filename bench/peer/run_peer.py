#!/usr/bin/env python3
"""The peer of `make bench`: dicom-xai's end-to-end work built the way a site would build it
in Python, so that `benches/pipeline.rs` can time both side by side.

    run_peer.py --config SITE.toml --out DIR [--seed S] [--patch P --stride S] [--top-k K] STUDY...

What it does, stage by stage (each stage's seconds go to `DIR/timings.json`), and which part
of dicom-xai it mirrors:

- decode (pydicom): read every file under the inputs, keep the image series, order the slices
  along the slice normal, decode `pixel_array`, apply the Modality LUT and the VOI transform
  with pydicom (`apply_modality_lut`, `apply_voi_lut`: VOI LUT table, else the first window),
  and scale the VOI output range to grey levels in [0, 1]; MONOCHROME1 inverted. This is
  what `src/dicom/voi.rs` computes.
- classify (Pillow, numpy, onnxruntime): per model of the site configuration, the slice is
  resized to the model's input size with Pillow's BILINEAR filter on the float image
  (mode "F", as `src/model/preprocess.rs` reproduces), replicated to 3 channels, normalised
  with the manifest's mean and std, NCHW, and run through the same ONNX file with
  onnxruntime in batches of `[runtime] batch_size`. Softmax of the logits; the predicted class
  is the argmax; the `top_k` slices with the highest probability of a tumour class (any
  class but "notumor") are explained for their predicted class, as dicom-xai chooses them.
- gradcam (PyTorch + pytorch-grad-cam): `pytorch_grad_cam.GradCAM` on the torchvision model
  with the very weights the ONNX export used: for a trained export, the checkpoint its
  manifest's provenance line names, found in models/checkpoints/, checkpoints/ or
  assets/checkpoints/ and loaded by onnx/xai_models.py; for a random-weight one,
  `torch.manual_seed(seed)`, the torchvision constructor with 4 classes, and for ViT the head
  weight drawn from N(0, 0.02) (the `--random-init` of onnx/README.md); on the layer the manifest names as `feature_tensor`
  (DenseNet169: `features.norm5`; ViT-B/16: the last encoder block's `ln_1`, with the
  grad-cam documentation's `reshape_transform` dropping the class token), targets
  `ClassifierOutputTarget(class)`, the explained slices in one batch, inside a `with` block as
  its README recommends. Each map is brought to the slice's grid with Pillow's BILINEAR.
- saliency (PyTorch autograd): |d logit / d input|, the largest over channels, the explained
  slices in one batch (`torch.autograd.grad` with respect to the input only).
- occlusion (numpy + onnxruntime): exhaustive: square patches of `[methods.occlusion] patch`
  pixels every `stride` pixels on the model input (the last one flush with the far edge),
  filled with the input's per-channel mean, in batches of 4 x batch_size; a pixel's heat is
  the mean drop of the class probability over the patches that cover it, each weighted by
  the smooth sin^2 window dicom-xai uses (a plain average, as Captum's, correlated with ours
  at only 0.45 to 0.89 on the trained models, whose drops change sharply from patch to
  patch), negative drops clipped to 0.
- write (matplotlib colour map, Pillow, highdicom): the slice upscaled 2x, the heat map in
  the configured colour map blended at the configured opacity, a legend band burned in
  (model, UNTRAINED, method, class, probability, NOT FOR DIAGNOSTIC USE), written as an RGB
  Secondary Capture with `highdicom.sc.SCImage.from_ref_dataset` into the source study, one
  series per model and method, SeriesDescription "... NOT FOR DIAGNOSTIC USE".

What it writes besides the overlays (`DIR/<StudyInstanceUID>/<series>/<sop>.dcm`):
`DIR/results.json` (per model: every slice's label and probabilities, every explanation with
its map file, and the largest |PyTorch - onnxruntime| logit difference on the explained
slices, a check that both run the same model), `DIR/maps/<model>/<method>/<sop>.npy` (each map
on the slice's rows x columns, float32) and `DIR/timings.json` (seconds per stage, and the
software versions).

It does no quality checks (dicom-xai's in-brain fraction, deletion/insertion, agreement),
which is why the comparison's configuration sets `[quality] faithfulness_steps = 0`.
"""
from __future__ import annotations

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tomllib  # noqa: E402
from collections import defaultdict  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Iterator  # noqa: E402

import highdicom as hd  # noqa: E402
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import pydicom  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from pydicom.pixels import apply_modality_lut, apply_voi_lut  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "onnx"))
import xai_models  # noqa: E402  (the export's own checkpoint loader: the same weights)

sys.path.insert(0, str(ROOT / "bench"))
from occlusion_grid import origins, windowed_mean  # noqa: E402  (the method's grid, shared)

NO_TUMOUR = "notumor"
METHODS = ("gradcam", "saliency", "occlusion")
STAGES = ("startup", "decode", "load", "classify", "gradcam", "saliency", "occlusion", "write")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
NOT_FOR_DIAGNOSTIC_USE = "NOT FOR DIAGNOSTIC USE"


class Stopwatch:
    """Seconds spent per stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


# ----------------------------------------------------------------------------- decoding


@dataclass
class Slice:
    path: Path
    dataset: pydicom.Dataset
    grey: np.ndarray  # windowed grey levels in [0, 1], rows x columns, float32


def voi_range(ds: pydicom.Dataset) -> tuple[float, float]:
    """The output range of pydicom's `apply_voi_lut` for `ds` (its documented y_min, y_max)."""
    if "VOILUTSequence" in ds:
        bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
        return 0.0, float(2**bits - 1)
    if ds.get("ModalityLUTSequence"):
        return 0.0, float(2 ** int(ds.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    bits = int(ds.BitsStored)
    if int(ds.PixelRepresentation) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        low, high = low * slope + intercept, high * slope + intercept
    return low, high


def unit_grey(ds: pydicom.Dataset) -> np.ndarray:
    """One grey frame as windowed levels in [0, 1], as dicom-xai feeds its models."""
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    if "VOILUTSequence" in ds or ("WindowCenter" in ds and "WindowWidth" in ds):
        low, high = voi_range(ds)
        grey = (apply_voi_lut(values, ds, prefer_lut=True) - low) / (high - low)
    else:  # no VOI: stretch the frame's own range
        span = values.max() - values.min()
        grey = (values - values.min()) / span if span > 0 else np.zeros_like(values)
    grey = np.clip(grey, 0.0, 1.0)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        grey = 1.0 - grey
    return grey.astype(np.float32)


def read_series(inputs: list[Path]) -> dict[str, list[Slice]]:
    """Image series under `inputs` by SeriesInstanceUID, slices ordered along the normal."""
    files = sorted(p for root in inputs for p in (root.rglob("*") if root.is_dir() else [root]) if p.is_file())
    series: dict[str, list[Slice]] = defaultdict(list)
    for path in files:
        try:
            ds = pydicom.dcmread(path)
        except pydicom.errors.InvalidDicomError:
            continue  # not DICOM (the study's manifest.json)
        if "PixelData" not in ds:
            continue
        series[ds.SeriesInstanceUID].append(Slice(path, ds, unit_grey(ds)))

    def position(s: Slice) -> float:
        orientation = np.asarray(s.dataset.ImageOrientationPatient, dtype=np.float64)
        normal = np.cross(orientation[:3], orientation[3:])
        return float(np.dot(normal, np.asarray(s.dataset.ImagePositionPatient, dtype=np.float64)))

    return {uid: sorted(slices, key=position) for uid, slices in series.items()}


# ----------------------------------------------------------------------------- models


def torch_model(arch: str, classes: int, seed: int) -> torch.nn.Module:
    """The random-weight torchvision model onnx/export.py exported (`--random-init`, onnx/README.md)."""
    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=classes)
    if arch.startswith("vit"):
        torch.nn.init.normal_(model.heads.head.weight, std=0.02)
    return model.eval()


# Where a trained export's checkpoint is found: a site's, the shipped ones, their reassembly.
CHECKPOINT_FOLDERS = ("models/checkpoints", "checkpoints", "assets/checkpoints")


def trained_model(manifest_path: Path, arch: str, labels: list[str]) -> torch.nn.Module:
    """The torchvision model with the weights of the checkpoint a trained export names in its
    provenance line (`checkpoint NAME;`, written by onnx/export.py), loaded by the same code."""
    text = manifest_path.read_text()
    found = re.search(r"checkpoint (\S+?);", text)
    if found is None:
        raise SystemExit(f"{manifest_path}: trained, but no `checkpoint NAME;` provenance line")
    for folder in CHECKPOINT_FOLDERS:
        candidate = ROOT / folder / found.group(1)
        if candidate.is_file():
            return xai_models.make_model(arch, labels, checkpoint=candidate)
    raise SystemExit(f"{manifest_path}: checkpoint {found.group(1)} is in none of {', '.join(CHECKPOINT_FOLDERS)}")


def target_layer(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    """The module whose output is the manifest's `feature_tensor`."""
    if arch.startswith("densenet"):
        return model.features.norm5
    # the last encoder block's first LayerNorm: pytorch-grad-cam's ViT recipe (its `norm1`),
    # and the tensor onnx/export.py names for the ViT
    return model.encoder.layers[-1].ln_1


def vit_reshape_transform(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """pytorch-grad-cam's ViT recipe: drop the class token, tokens to an NCHW grid."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


@dataclass
class Model:
    name: str
    arch: str
    labels: list[str]
    spec: dict
    output_kind: str
    trained: bool
    version: str
    session: onnxruntime.InferenceSession
    torch: torch.nn.Module
    output_name: str
    logit_gap: float = 0.0  # largest |PyTorch - onnxruntime| logit seen
    onnx_logits: dict[int, np.ndarray] = field(default_factory=dict)

    def input(self, grey: np.ndarray) -> np.ndarray:
        """The model input of one slice: [C, H, W], float32."""
        image = Image.fromarray(grey.astype(np.float32))
        size = (self.spec["width"], self.spec["height"])
        resized = np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float32)
        mean, std = self.spec["mean"], self.spec["std"]
        return np.stack([(resized - np.float32(mean[c])) / np.float32(std[c]) for c in range(self.spec["channels"])])

    def logits(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.spec["name"]: batch})[0]

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        scores = self.logits(batch).astype(np.float64)
        if self.output_kind == "probabilities":
            return scores
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        return scores / scores.sum(axis=1, keepdims=True)


def load_model(manifest_path: Path, seed: int, threads: int) -> Model:
    manifest = tomllib.loads(manifest_path.read_text())
    spec = manifest["input"]
    if spec["layout"] != "NCHW":
        raise SystemExit(f"{manifest_path}: the peer handles NCHW torchvision models only")
    arch = manifest["model"]["name"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(
        str(manifest_path.parent / manifest["model"]["onnx"]), options, providers=["CPUExecutionProvider"]
    )
    labels = list(manifest["model"]["labels"])
    return Model(
        name=arch,
        arch=arch,
        labels=labels,
        spec=spec,
        output_kind=manifest["output"]["kind"],
        trained=bool(manifest["model"].get("trained", True)),
        version=str(manifest["model"].get("version", "1")),
        session=session,
        torch=(
            trained_model(manifest_path, arch, labels)
            if manifest["model"].get("trained", False)
            else torch_model(arch, len(labels), seed)
        ),
        output_name=manifest["output"]["name"],
    )


# ----------------------------------------------------------------------------- methods


def to_slice(heat: np.ndarray, rows: int, columns: int) -> np.ndarray:
    """A model-input map on the slice's grid (Pillow BILINEAR), non-negative."""
    image = Image.fromarray(heat.astype(np.float32))
    return np.maximum(np.asarray(image.resize((columns, rows), Image.BILINEAR), dtype=np.float32), 0.0)


def gradcam(model: Model, inputs: np.ndarray, classes: list[int]) -> np.ndarray:
    # torchvision's DenseNet applies ReLU in place to the output of `features.norm5`, which
    # the activation that pytorch-grad-cam keeps shares storage with (grad-cam issues #26,
    # #147): copying it in `reshape_transform` keeps the layer's own output, the tensor
    # dicom-xai reads (the manifest's feature_tensor). Without the copy the map is that of
    # the rectified activations (Pearson 0.97 with ours on the demo study).
    reshape = vit_reshape_transform if model.arch.startswith("vit") else torch.clone
    with GradCAM(model=model.torch, target_layers=[target_layer(model.torch, model.arch)], reshape_transform=reshape) as cam:
        maps = cam(input_tensor=torch.from_numpy(inputs), targets=[ClassifierOutputTarget(c) for c in classes])
        check_logits(model, cam.outputs.detach().numpy())
    return maps


def saliency(model: Model, inputs: np.ndarray, classes: list[int]) -> np.ndarray:
    x = torch.from_numpy(inputs).requires_grad_(True)
    logits = model.torch(x)
    score = logits[torch.arange(len(classes)), torch.tensor(classes)].sum()
    (gradient,) = torch.autograd.grad(score, x)
    check_logits(model, logits.detach().numpy())
    return gradient.abs().amax(dim=1).numpy()


def check_logits(model: Model, torch_logits: np.ndarray) -> None:
    """Records how far PyTorch's logits are from onnxruntime's on the explained slices."""
    onnx_logits = np.stack(list(model.onnx_logits.values()))
    model.logit_gap = max(model.logit_gap, float(np.abs(torch_logits - onnx_logits).max()))


def occlusion(model: Model, x: np.ndarray, target: int, patch: int, stride: int, batch: int) -> np.ndarray:
    """Exhaustive occlusion of one input [C, H, W]: windowed mean probability drop per pixel."""
    _, height, width = x.shape
    fill = x.mean(axis=(1, 2)).astype(np.float32)[:, None, None]
    original = model.probabilities(x[None])[0, target]
    patches = [(r, c) for r in origins(height, patch, stride) for c in origins(width, patch, stride)]
    drops = []
    for first in range(0, len(patches), batch):
        group = patches[first : first + batch]
        occluded = np.repeat(x[None], len(group), axis=0)
        for n, (r, c) in enumerate(group):
            occluded[n, :, r : r + patch, c : c + patch] = fill
        drops.extend(original - model.probabilities(occluded)[:, target])
    return windowed_mean(patches, drops, height, width, patch).astype(np.float32)


# ----------------------------------------------------------------------------- writing


def render(grey: np.ndarray, heat: np.ndarray, lines: list[str], colour_map: str, opacity: float) -> np.ndarray:
    """The overlay: slice 2x, heat in the colour map blended over it, a legend band below."""
    top = float(heat.max())
    colours = matplotlib.colormaps[colour_map](heat / top if top > 0 else heat)[..., :3]
    weight = opacity * (heat / top if top > 0 else heat)[..., None]
    blended = (1.0 - weight) * grey[..., None] + weight * colours
    rows, columns = grey.shape
    image = Image.fromarray((blended * 255.0 + 0.5).astype(np.uint8)).resize((columns * 2, rows * 2), Image.BILINEAR)
    font = ImageFont.truetype(FONT, 18) if Path(FONT).exists() else ImageFont.load_default(18)
    band = 12 + 26 * len(lines)
    canvas = Image.new("RGB", (image.width, image.height + band), (0, 0, 0))
    canvas.paste(image, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((10, image.height + 8 + 26 * i), line, font=font, fill=(255, 255, 255))
    return np.asarray(canvas)


def write_overlay(
    source: Slice, rgb: np.ndarray, series_uid: str, series_number: int, instance: int, description: str, derivation: str, out: Path
) -> Path:
    ds = source.dataset
    orientation = [float(v) for v in ds.ImageOrientationPatient]
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ds,
        pixel_array=rgb,
        photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
        bits_allocated=8,
        coordinate_system=hd.CoordinateSystemNames.PATIENT,
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=instance,
        manufacturer="site XAI pipeline (Python peer)",
        patient_orientation=(patient_axis(orientation[:3]), patient_axis(orientation[3:])),
        transfer_syntax_uid=pydicom.uid.ExplicitVRLittleEndian,
        series_description=description,
    )
    sc.BurnedInAnnotation = "YES"
    if "BodyPartExamined" in ds:  # without it dciodvfy asks for Laterality (Type 2C)
        sc.BodyPartExamined = ds.BodyPartExamined
    sc.DerivationDescription = derivation
    source_item = pydicom.Dataset()
    source_item.ReferencedSOPClassUID = ds.SOPClassUID
    source_item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    sc.SourceImageSequence = [source_item]
    path = out / ds.StudyInstanceUID / series_uid / f"{sc.SOPInstanceUID}.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    sc.save_as(path, enforce_file_format=True)
    return path


def patient_axis(direction: list[float]) -> str:
    """The PatientOrientation letters of a direction cosine (DICOM LPS)."""
    letters = ""
    for value, (plus, minus) in sorted(zip(direction, (("L", "R"), ("P", "A"), ("H", "F"))), key=lambda t: -abs(t[0])):
        if abs(value) > 1e-3:
            letters += plus if value > 0 else minus
    return letters or "L"


# ----------------------------------------------------------------------------- the run


@dataclass
class Settings:
    manifests: list[Path]
    methods: list[str]
    top_k: int
    batch_size: int
    threads: int
    patch: int
    stride: int
    colour_map: str
    opacity: float
    series_number_base: int


def settings_from(path: Path, args: argparse.Namespace) -> Settings:
    """What the peer takes from dicom-xai's site configuration (config/README.md keys)."""
    site = tomllib.loads(path.read_text())
    explain = site.get("explain", {})
    occlusion_settings = site.get("methods", {}).get("occlusion", {})
    if occlusion_settings.get("baseline", "mean") != "mean":
        raise SystemExit(f"{path}: the peer fills occluded patches with the input's mean only")
    if explain.get("slices", "top-k") != "top-k":
        raise SystemExit(f"{path}: the peer explains the top-k slices only")
    methods = [m for m in explain.get("methods", ["occlusion"])]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"{path}: the peer has no method {unknown[0]!r} (it has {', '.join(METHODS)})")
    return Settings(
        manifests=[(path.parent / m["manifest"]).resolve() for m in site["models"] if m.get("enabled", True)],
        methods=methods,
        top_k=args.top_k or int(explain.get("top_k", 3)),
        batch_size=int(site.get("runtime", {}).get("batch_size", 8)),
        threads=int(site.get("runtime", {}).get("intra_threads", 0)),
        patch=args.patch or int(occlusion_settings.get("patch", 48)),
        stride=args.stride or int(occlusion_settings.get("stride", 24)),
        colour_map=explain.get("colour_map", "inferno"),
        opacity=float(explain.get("opacity", 0.45)),
        series_number_base=int(site.get("output", {}).get("series_number_base", 9900)),
    )


def run(settings: Settings, inputs: list[Path], out: Path, seed: int, clock: Stopwatch) -> dict:
    with clock.stage("decode"):
        all_series = read_series(inputs)
    with clock.stage("load"):
        models = [load_model(m, seed, settings.threads) for m in settings.manifests]
    torch.set_grad_enabled(True)
    results: dict = {"series": []}
    series_number = settings.series_number_base
    for series_uid, slices in all_series.items():
        series_result = {"series_instance_uid": series_uid, "models": []}
        for model in models:
            with clock.stage("classify"):
                inputs_ = np.stack([model.input(s.grey) for s in slices])
                logits = np.concatenate(
                    [model.logits(inputs_[i : i + settings.batch_size]) for i in range(0, len(slices), settings.batch_size)]
                )
                shifted = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
                probabilities = shifted / shifted.sum(axis=1, keepdims=True) if model.output_kind == "logits" else logits
                predicted = probabilities.argmax(axis=1)
                tumour = [i for i, label in enumerate(model.labels) if label != NO_TUMOUR]
                score = probabilities[:, tumour].max(axis=1).astype(np.float32)
                chosen = sorted(range(len(slices)), key=lambda i: (-score[i], i))[: settings.top_k]
                classes = [int(predicted[i]) for i in chosen]
                model.onnx_logits = {i: logits[i] for i in chosen}
            model_result = {
                "model": model.name,
                "slices": [
                    {
                        "sop_instance_uid": s.dataset.SOPInstanceUID,
                        "label": model.labels[int(predicted[i])],
                        "probabilities": dict(zip(model.labels, probabilities[i].tolist())),
                    }
                    for i, s in enumerate(slices)
                ],
                "explanations": [],
            }
            chosen_inputs = inputs_[chosen]
            maps: dict[str, list[np.ndarray]] = {}
            for method in settings.methods:
                with clock.stage(method):
                    if method == "gradcam":
                        model_maps = list(gradcam(model, chosen_inputs, classes))
                    elif method == "saliency":
                        model_maps = list(saliency(model, chosen_inputs, classes))
                    else:
                        model_maps = [
                            occlusion(model, x, c, settings.patch, settings.stride, 4 * settings.batch_size)
                            for x, c in zip(chosen_inputs, classes)
                        ]
                    maps[method] = [to_slice(m, *slices[i].grey.shape) for m, i in zip(model_maps, chosen)]
            for method in settings.methods:
                with clock.stage("write"):
                    overlay_series = hd.UID()
                    series_number += 1
                    for n, (i, c, heat) in enumerate(zip(chosen, classes, maps[method])):
                        source = slices[i]
                        label, probability = model.labels[c], float(probabilities[i, c])
                        untrained = "" if model.trained else " UNTRAINED"
                        lines = [
                            f"{model.name} v{model.version}{untrained}  {method}",
                            f"class {label}  p = {probability:.2f}",
                            NOT_FOR_DIAGNOSTIC_USE,
                        ]
                        rgb = render(source.grey, heat, lines, settings.colour_map, settings.opacity)
                        derivation = f"method={method}; class={label}; probability={probability:.4f}; colour map={settings.colour_map}"
                        description = f"XAI {method} {model.name}{untrained} - {NOT_FOR_DIAGNOSTIC_USE}"
                        path = write_overlay(source, rgb, overlay_series, series_number, n + 1, description, derivation, out)
                        map_path = out / "maps" / model.name / method / f"{source.dataset.SOPInstanceUID}.npy"
                        map_path.parent.mkdir(parents=True, exist_ok=True)
                        np.save(map_path, heat)
                        model_result["explanations"].append(
                            {
                                "method": method,
                                "sop_instance_uid": source.dataset.SOPInstanceUID,
                                "file": str(source.path),
                                "class": label,
                                "map": str(map_path.relative_to(out)),
                                "output_file": str(path.relative_to(out)),
                            }
                        )
            model_result["max_logit_difference_torch_vs_onnxruntime"] = model.logit_gap
            series_result["models"].append(model_result)
        results["series"].append(series_result)
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="dicom-xai site configuration (TOML)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-weight exports (default 0)")
    parser.add_argument("--top-k", type=int, default=None, help="override [explain] top_k")
    parser.add_argument("--patch", type=int, default=None, help="override [methods.occlusion] patch")
    parser.add_argument("--stride", type=int, default=None, help="override [methods.occlusion] stride")
    parser.add_argument("inputs", type=Path, nargs="+")
    args = parser.parse_args(argv)
    clock = Stopwatch()
    clock.seconds["startup"] = time.perf_counter() - STARTED
    settings = settings_from(args.config, args)
    args.out.mkdir(parents=True, exist_ok=True)
    results = run(settings, args.inputs, args.out, args.seed, clock)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    timings = {
        "seconds": {stage: round(clock.seconds.get(stage, 0.0), 4) for stage in STAGES},
        "total": round(time.perf_counter() - STARTED, 4),
        "software": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "onnxruntime": onnxruntime.__version__,
            "pydicom": pydicom.__version__,
            "highdicom": hd.__version__,
            "grad-cam": _version("grad-cam"),
        },
    }
    (args.out / "timings.json").write_text(json.dumps(timings, indent=1))
    return 0


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
