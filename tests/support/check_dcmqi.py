#!/usr/bin/env python3
"""Converts a Parametric Map written by dicom-xai into an NRRD volume with dcmqi's
`paramap2itkimage` (PyPI `dcmqi`), as a research site would load it, and compares the volume
with the map's own frames: its size, its origin (the first frame along the slice normal), its
slice spacing and every value. Prints the comparison as JSON; fails when the converter does.

Usage: check_dcmqi.py MAP.dcm WORK_FOLDER
"""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pydicom


def read_nrrd(path):
    """The header fields and the data of an NRRD file (raw or gzip encoding)."""
    with open(path, "rb") as f:
        content = f.read()
    head, _, body = content.partition(b"\n\n")
    fields = {}
    for line in head.decode("ascii").splitlines()[1:]:
        if line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    if fields["encoding"] == "gzip":
        body = gzip.decompress(body)
    assert fields["type"] == "float" and fields["endian"] == "little", fields
    sizes = [int(v) for v in fields["sizes"].split()]
    data = np.frombuffer(body, dtype="<f4").reshape(sizes[::-1])
    return fields, data


def vector(text):
    return np.array([float(v) for v in text.strip("()").split(",")])


def main() -> None:
    path, work = sys.argv[1], sys.argv[2]
    tool = os.path.join(os.path.dirname(sys.executable), "paramap2itkimage")
    run = subprocess.run(
        [tool, "--inputDICOM", path, "--outputDirectory", work, "-t", "nrrd"],
        capture_output=True, text=True,
    )
    if run.returncode != 0:
        sys.exit(f"paramap2itkimage failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    fields, volume = read_nrrd(os.path.join(work, "pmap.nrrd"))
    directions = [vector(d) for d in fields["space directions"].split(") (")]
    origin = vector(fields["space origin"])
    normal = directions[2] / np.linalg.norm(directions[2])
    spacing = float(np.linalg.norm(directions[2]))

    ds = pydicom.dcmread(path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    worst, matched = 0.0, 0
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        position = np.array([float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient])
        k = (position - origin) @ normal / spacing
        slice_index = int(round(k))
        assert abs(k - slice_index) < 1e-3, f"frame {index} lies between slices ({k})"
        worst = max(worst, float(np.abs(volume[slice_index] - frames[index]).max()))
        matched += 1
    print(json.dumps({
        "sizes": [int(v) for v in fields["sizes"].split()],
        "frames_matched": matched,
        "slice_spacing": spacing,
        "max_difference": worst,
        "warnings": [line for line in (run.stdout + run.stderr).splitlines()
                     if "WARNING" in line or "ERROR" in line],
    }))


if __name__ == "__main__":
    main()
