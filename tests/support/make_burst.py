"""Write N single-slice studies for burst tests: copies of one DICOM file, each with its own
StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID and patient, in DIR/studyNNN/IM0001.dcm.

UIDs are derived from the index (the same N gives the same UIDs), so reruns are comparable.
"""

import argparse
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", required=True, type=Path, help="a DICOM image")
    parser.add_argument("--out", required=True, type=Path, help="folder to write into")
    parser.add_argument("--count", required=True, type=int, help="studies to write")
    args = parser.parse_args()
    if args.count < 1:
        parser.error("--count must be at least 1")
    for index in range(args.count):
        ds = pydicom.dcmread(args.source)
        ds.StudyInstanceUID = generate_uid(entropy_srcs=["burst-study", str(index)])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=["burst-series", str(index)])
        ds.SOPInstanceUID = generate_uid(entropy_srcs=["burst-instance", str(index)])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientID = f"BURST{index:04d}"
        ds.PatientName = f"BURST^{index:04d}"
        folder = args.out / f"study{index:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        ds.save_as(folder / "IM0001.dcm", enforce_file_format=True)


if __name__ == "__main__":
    main()
