#!/usr/bin/env python3
"""Reference pixel values for the Rust decoding tests, computed with pydicom and numpy.

For each input file writes `<out>/<n>.values.npy` (float64, [frames, rows, columns, samples]:
pydicom's `pixel_array` after the Modality LUT for grey images, RGB for colour) and, for grey
images, `<out>/<n>.unit.npy` (float64, [frames, rows, columns]: the VOI transform to [0, 1]
computed here in numpy from the standard's formulas, independently of the Rust code), plus
`<out>/index.json` listing, per file, whether pydicom could decode it and why not.

VOI rules (PS3.3 C.11.2): VOI LUT Sequence first when present, else the first window
(WindowCenter/WindowWidth, VOILUTFunction LINEAR, LINEAR_EXACT or SIGMOID; LINEAR needs
width >= 1, the others width > 0), else min/max of the frame; enhanced multi-frame objects
take rescale and window from the frame's functional groups when the top level has none;
MONOCHROME1 is inverted (1 - y).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pydicom


def first_item(ds, keyword):
    seq = ds.get(keyword)
    return seq[0] if seq else None


def frame_macro(ds, frame, keyword):
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and frame < len(per_frame):
        item = first_item(per_frame[frame], keyword)
        if item is not None:
            return item
    shared = first_item(ds, "SharedFunctionalGroupsSequence")
    return first_item(shared, keyword) if shared is not None else None


def as_list(value):
    if value is None:
        return []
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [float(v) for v in value]
    return [float(value)]


def rescale_of(ds, frame):
    for item in (ds, frame_macro(ds, frame, "PixelValueTransformationSequence")):
        if item is None:
            continue
        slope, intercept = item.get("RescaleSlope"), item.get("RescaleIntercept")
        if slope is not None or intercept is not None:
            slope = float(slope) if slope not in (None, "") and float(slope) != 0 else 1.0
            intercept = float(intercept) if intercept not in (None, "") else 0.0
            return slope, intercept
    return 1.0, 0.0


def voi_of(ds, frame):
    for item in (ds, frame_macro(ds, frame, "FrameVOILUTSequence")):
        if item is None:
            continue
        lut = first_item(item, "VOILUTSequence")
        if lut is not None and "LUTDescriptor" in lut and "LUTData" in lut:
            descriptor = as_list(lut.LUTDescriptor)
            bits = int(descriptor[2])
            data = lut.LUTData
            entries = [float(v) for v in (data if isinstance(data, (list, tuple, pydicom.multival.MultiValue)) else [data])]
            if 1 <= bits <= 16 and entries:
                return ("table", descriptor[1], bits, np.asarray(entries))
        centers, widths = as_list(item.get("WindowCenter")), as_list(item.get("WindowWidth"))
        if centers and widths:
            function = str(item.get("VOILUTFunction", "LINEAR") or "LINEAR").strip().upper()
            if function not in ("LINEAR_EXACT", "SIGMOID"):
                function = "LINEAR"
            c, w = centers[0], widths[0]
            if (function == "LINEAR" and w >= 1) or (function != "LINEAR" and w > 0):
                return ("window", c, w, function)
    return ("minmax",)


def apply_voi(x, voi):
    x = x.astype(np.float64)
    if voi[0] == "window":
        _, c, w, function = voi
        if function == "LINEAR":
            y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0,
                         np.where(x > c - 0.5 + (w - 1) / 2, 1.0, (x - (c - 0.5)) / (w - 1) + 0.5))
        elif function == "LINEAR_EXACT":
            y = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))
        else:
            y = 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    elif voi[0] == "table":
        _, first, bits, entries = voi
        index = np.clip(np.floor(x - first), 0, len(entries) - 1).astype(np.int64)
        y = entries[index] / float(2 ** bits - 1)
    else:
        lo, hi = x.min(), x.max()
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.clip(y, 0.0, 1.0)


def reference(path: Path):
    ds = pydicom.dcmread(path)
    array = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1))
    rows, columns = int(ds.Rows), int(ds.Columns)
    array = np.asarray(array).reshape(frames, rows, columns, samples).astype(np.float64)
    photometric = str(ds.PhotometricInterpretation).strip()
    unit = None
    if photometric in ("MONOCHROME1", "MONOCHROME2") and samples == 1:
        unit = np.empty((frames, rows, columns))
        for frame in range(frames):
            slope, intercept = rescale_of(ds, frame)
            array[frame] = array[frame] * slope + intercept
            y = apply_voi(array[frame, :, :, 0], voi_of(ds, frame))
            unit[frame] = 1.0 - y if photometric == "MONOCHROME1" else y
    return array, unit, photometric, str(ds.file_meta.TransferSyntaxUID)


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    index = []
    for n, name in enumerate(sys.argv[2:]):
        entry = {"file": name, "id": n}
        try:
            values, unit, photometric, ts = reference(Path(name))
            np.save(out / f"{n}.values.npy", values)
            if unit is not None:
                np.save(out / f"{n}.unit.npy", unit)
            entry.update(ok=True, photometric=photometric, transfer_syntax=ts, has_unit=unit is not None)
        except Exception as error:  # the reason is the data: record it for the test to print
            entry.update(ok=False, error=f"{type(error).__name__}: {error}")
        index.append(entry)
    (out / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()
