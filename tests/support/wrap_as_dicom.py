#!/usr/bin/env python3
"""Wraps labelled JPEG/PNG slices as DICOM MR images, the way a PACS would hold them.

Usage: wrap_as_dicom.py IN_DIR OUT_DIR
IN_DIR holds one folder per label of images; OUT_DIR gets <label>/<name>.dcm for each: grey
8-bit MONOCHROME2 (colour reduced to luma as Pillow's "L" does), one study per image, and a
LINEAR_EXACT VOI window (centre 127.5, width 255) so that stored value v reads as v / 255, as
the training pipeline read the JPEG. Prints how many files it wrote.
"""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid


def wrap(image: Path, out: Path) -> None:
    pixels = np.asarray(Image.open(image).convert("L"), dtype=np.uint8)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.FrameOfReferenceUID = generate_uid()
    ds.Modality = "MR"
    ds.PatientName = "EVAL^SUBSET"
    ds.PatientID = "EVAL"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.WindowCenter = 127.5
    ds.WindowWidth = 255
    ds.VOILUTFunction = "LINEAR_EXACT"
    ds.PixelData = pixels.tobytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(out, enforce_file_format=True)


def main() -> int:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    written = 0
    for image in sorted(source.glob("*/*")):
        if image.suffix.lower() in (".jpg", ".jpeg", ".png"):
            wrap(image, target / image.parent.name / f"{image.stem}.dcm")
            written += 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
