#!/usr/bin/env python3
"""Reads a DICOM file with pydicom and reports what the Rust tests check of it.

Usage: read_with_pydicom.py FILE OUT.npy
Writes the pixel array (uint8/uint16 as decoded by pydicom) to OUT.npy and prints one JSON
object of attributes: top-level keywords with their values as strings, and the sequences the
overlay contract names, flattened to keyword paths.
"""
import json
import sys

import numpy as np
import pydicom


def flatten(dataset, prefix=""):
    out = {}
    for element in dataset:
        if element.tag.group == 0x7FE0 or not element.keyword:
            continue
        key = prefix + element.keyword
        if element.VR == "SQ":
            for n, item in enumerate(element.value):
                out.update(flatten(item, f"{key}[{n}]."))
        else:
            value = element.value
            if isinstance(value, pydicom.multival.MultiValue):
                value = "\\".join(str(v) for v in value)
            out[key] = str(value)
    return out


def main():
    ds = pydicom.dcmread(sys.argv[1])
    np.save(sys.argv[2], np.ascontiguousarray(ds.pixel_array))
    report = flatten(ds)
    report["file_meta.TransferSyntaxUID"] = str(ds.file_meta.TransferSyntaxUID)
    report["file_meta.MediaStorageSOPInstanceUID"] = str(ds.file_meta.MediaStorageSOPInstanceUID)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
