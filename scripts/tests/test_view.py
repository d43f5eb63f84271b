"""`make view` (scripts/view.py --check): a real Orthanc with DICOMweb, the demo study stored
in it, OHIF's files and configuration served, Orthanc's DICOMweb reached through the
viewer's own origin. Needs `make setup demo` (Orthanc, OHIF's dist, the demo study)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "assets" / "demo" / "study"
VIEW = ROOT / "scripts" / "view.py"


def view(*args: str, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VIEW), "--check", "--port", "0", "--state",
                           str(state), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (DEMO / "manifest.json").exists(), reason="make demo has not run")
def test_the_demo_study_is_served_through_the_viewers_origin(tmp_path):
    # a non-DICOM file beside the study is passed over, not stored
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "notes.txt").write_text("not DICOM")
    done = view(str(DEMO), str(extra), state=tmp_path / "state")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    manifest = json.loads((DEMO / "manifest.json").read_text())
    assert answer["files"] == len(list(DEMO.rglob("*.dcm"))) == 24
    (uid, series), = answer["series"].items()
    assert uid == manifest["studies"][0]["study_instance_uid"]
    assert series == [["MR", "AX T1 MPRAGE"]]
    # OHIF is configured against the viewer's own origin (the proxy), not Orthanc's port
    assert f"qidoRoot: '{answer['viewer']}/dicom-web'" in answer["app_config"]
    # the Orthanc it started is stopped, its database left under --state only
    assert (tmp_path / "state" / "orthanc.json").is_file()


def test_missing_inputs_are_named(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = view(str(empty), state=tmp_path / "state")
    assert done.returncode == 1
    assert f"no DICOM file under {empty}" in done.stderr
    done = subprocess.run([sys.executable, str(VIEW), "--check", "--dist", str(tmp_path),
                           str(empty)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert f"OHIF's viewer is missing in {tmp_path}" in done.stderr


def test_maps_are_told_apart_by_whether_they_cover_their_series(tmp_path):
    """OHIF 3.13 opens a Parametric Map only with a frame for every slice of its series."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sys.path.insert(0, str(ROOT / "scripts"))
    from view import PARAMETRIC_MAP, maps_by_coverage

    def write(name: str, sop_class: str, series: str, **attributes) -> Path:
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = sop_class
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
        ds.SeriesInstanceUID = series
        for key, value in attributes.items():
            setattr(ds, key, value)
        path = tmp_path / name
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        return path

    mr, source = "1.2.840.10008.5.1.4.1.1.4", generate_uid()
    files = [write(f"mr{i}.dcm", mr, source) for i in range(3)]
    for description, frames in (("whole", 3), ("partial", 1)):
        reference = Dataset()
        reference.SeriesInstanceUID = source
        files.append(write(f"{description}.dcm", PARAMETRIC_MAP, generate_uid(),
                           NumberOfFrames=frames, SeriesDescription=description,
                           ReferencedSeriesSequence=[reference]))
    assert maps_by_coverage(files) == (["whole"], [("partial", 1, 3)])
