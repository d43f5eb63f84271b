#!/usr/bin/env python3
"""Reads a Parametric Map written by dicom-xai back with pydicom and highdicom and checks it
against its sources: the report's frames, the source slices' geometry and the maps that
`dicom-xai explain` writes for the same slices.

Usage: check_parametric_map.py MAP.dcm REPORT_ENTRY.json SOURCE_DIR [SOP=heatmap.npy ...]

REPORT_ENTRY.json is the map's entry of report.json (method, frames, output UIDs). Prints one
JSON object of what was measured; exits non-zero with the reason when a check fails.
"""

import json
import sys
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom

PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"
POSITION_TOLERANCE_MM = 1e-3


def fail(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(1)


def main() -> None:
    map_path, entry_path, source_dir = sys.argv[1:4]
    expected_maps = dict(arg.split("=", 1) for arg in sys.argv[4:])
    entry = json.loads(Path(entry_path).read_text())
    ds = pydicom.dcmread(map_path)
    # highdicom's reader must accept it as a Parametric Map
    pm = hd.pm.ParametricMap.from_dataset(ds)
    if ds.SOPClassUID != PARAMETRIC_MAP:
        fail(f"SOP class {ds.SOPClassUID}")
    if ds.SOPInstanceUID != entry["output_sop_instance_uid"]:
        fail("SOPInstanceUID differs from the report")
    if ds.SeriesInstanceUID != entry["output_series_instance_uid"]:
        fail("SeriesInstanceUID differs from the report")
    if "NOT FOR DIAGNOSTIC USE" not in ds.SeriesDescription:
        fail(f"SeriesDescription {ds.SeriesDescription!r}")

    sources = {}
    for path in Path(source_dir).rglob("*"):
        if path.is_file():
            try:
                source = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:
                continue
            if "SOPInstanceUID" in source:
                sources[source.SOPInstanceUID] = source

    frames = entry["frames"]
    if int(ds.NumberOfFrames) != len(frames):
        fail(f"{ds.NumberOfFrames} frames, the report names {len(frames)}")
    pixels = pm.pixel_array if hasattr(pm, "pixel_array") else ds.pixel_array
    pixels = np.asarray(pixels, dtype=np.float32).reshape(len(frames), ds.Rows, ds.Columns)
    if not np.all(np.isfinite(pixels)) or pixels.min() < 0:
        fail("values must be finite and >= 0")

    shared = ds.SharedFunctionalGroupsSequence[0]
    mapping = shared.RealWorldValueMappingSequence[0]
    unit = mapping.MeasurementUnitsCodeSequence[0]
    if (unit.CodeValue, unit.CodingSchemeDesignator) != ("{ratio}", "UCUM"):
        fail(f"unit {unit.CodeValue} {unit.CodingSchemeDesignator}")
    if float(mapping.RealWorldValueSlope) != 1.0 or float(mapping.RealWorldValueIntercept) != 0.0:
        fail("the value mapping is not the identity")
    orientation = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    spacing = [float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing]

    series_uids = set()
    worst_position = 0.0
    positions = []
    for index, (frame, item) in enumerate(zip(frames, ds.PerFrameFunctionalGroupsSequence)):
        reference = item.DerivationImageSequence[0].SourceImageSequence[0]
        if reference.ReferencedSOPInstanceUID != frame["sop_instance_uid"]:
            fail(f"frame {index + 1} derives from {reference.ReferencedSOPInstanceUID}")
        source = sources.get(frame["sop_instance_uid"])
        if source is None:
            fail(f"source {frame['sop_instance_uid']} not found under {source_dir}")
        series_uids.add(source.SeriesInstanceUID)
        if source.FrameOfReferenceUID != ds.FrameOfReferenceUID:
            fail("FrameOfReferenceUID differs from the source")
        if (int(source.Rows), int(source.Columns)) != (int(ds.Rows), int(ds.Columns)):
            fail("the map is not on the source's grid")
        if np.abs(np.subtract(orientation, [float(v) for v in source.ImageOrientationPatient])).max() > 1e-4:
            fail("orientation differs from the source")
        if np.abs(np.subtract(spacing, [float(v) for v in source.PixelSpacing])).max() > 1e-4:
            fail("pixel spacing differs from the source")
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        expected = [float(v) for v in source.ImagePositionPatient]
        worst_position = max(worst_position, float(np.abs(np.subtract(position, expected)).max()))
        positions.append(position)
    if worst_position > POSITION_TOLERANCE_MM:
        fail(f"frame positions differ from the sources by {worst_position} mm")

    # frames follow the series' spatial order: monotone along the slice normal
    normal = np.cross(orientation[:3], orientation[3:])
    along = [float(np.dot(normal, p)) for p in positions]
    steps = np.diff(along)
    if len(steps) and not (np.all(steps > 0) or np.all(steps < 0)):
        fail(f"frames are not in spatial order: {along}")

    referenced = [item.SeriesInstanceUID for item in ds.ReferencedSeriesSequence]
    if referenced != sorted(series_uids):
        fail(f"ReferencedSeriesSequence {referenced}, the sources are in {sorted(series_uids)}")

    worst_value = 0.0
    for sop, npy in expected_maps.items():
        index = next(i for i, f in enumerate(frames) if f["sop_instance_uid"] == sop)
        expected = np.load(npy).astype(np.float32)
        if expected.shape != pixels[index].shape:
            fail(f"{sop}: explain's map is {expected.shape}, the frame {pixels[index].shape}")
        scale = max(float(expected.max()), 1e-12)
        worst_value = max(worst_value, float(np.abs(pixels[index] - expected).max()) / scale)
    if worst_value > 1e-5:
        fail(f"frame values differ from explain's heatmap.npy by {worst_value} of the peak")

    print(json.dumps({
        "frames": len(frames),
        "worst_position_mm": worst_position,
        "worst_value_relative": worst_value,
        "compared_with_explain": len(expected_maps),
        "peak": float(pixels.max()),
    }))


if __name__ == "__main__":
    main()
