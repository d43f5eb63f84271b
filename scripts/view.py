#!/usr/bin/env python3
"""`make view`: the studies `make run` processed, in OHIF v3, in a browser.

    view.py [--port 3000] [--state state/viewer] [--check] FOLDER...

Starts an Orthanc of its own (Debian `orthanc` with `orthanc-dicomweb`; loopback only, a
fresh database under --state), stores every DICOM file under the FOLDERs in it (the source
study and the outputs: overlays, Parametric Maps, the Structured Report), serves OHIF's
built viewer (assets/ohif/dist, `make assets`) on 127.0.0.1:PORT against Orthanc's DICOMweb,
prints each study's address and waits for Ctrl-C, then stops Orthanc. On another machine:
`ssh -L PORT:127.0.0.1:PORT HOST` and open the address there.

In OHIF, the Parametric Maps of the one-pass methods are fused over the source series
(double-click a map's thumbnail; opacity and colour map in the segmentation panel), the
overlays are series of their own, and the Structured Report shows the findings.

--check: store, ask OHIF's proxy for every study's series, print them and the app's
configuration as JSON and stop (what scripts/tests/test_view.py runs).

Exit 1 with a message when Orthanc, its DICOMweb plugin or OHIF's files are missing, the
port is taken, or a file is refused.
"""
from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ohif_server import Server  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
DIST = ROOT / "assets" / "ohif" / "dist"
PARAMETRIC_MAP = "1.2.840.10008.5.1.4.1.1.30"


def fail(message: str) -> None:
    print(f"make view: {message}", file=sys.stderr)
    sys.exit(1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, accept: str = "application/json"):
    headers = {"Accept": accept}
    if data is not None:
        headers["Content-Type"] = "application/dicom"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers),
                                timeout=60) as answer:
        return json.loads(answer.read() or b"null")


class Orthanc:
    """An Orthanc on loopback ports with DICOMweb, its database in `state`."""

    def __init__(self, state: Path):
        for needed, package in ((ORTHANC, "orthanc"), (DICOMWEB, "orthanc-dicomweb")):
            if not needed.exists():
                fail(f"{needed} is missing: run `make setup` (Debian package {package})")
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        self.http = free_port()
        config = {
            "Name": "DICOM-XAI-VIEW", "StorageDirectory": str(state / "db"),
            "IndexDirectory": str(state / "db"), "HttpPort": self.http,
            "DicomPort": free_port(), "DicomAet": "XAIVIEW", "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [str(DICOMWEB)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        (state / "orthanc.json").write_text(json.dumps(config, indent=2))
        self.log = state / "orthanc.log"
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(ORTHANC), str(state / "orthanc.json")], cwd=state,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        self.url = f"http://127.0.0.1:{self.http}"
        for _ in range(300):
            try:
                request(f"{self.url}/system")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.process.poll() is not None:
                    fail(f"Orthanc did not start; its log: {self.log}")
                time.sleep(0.1)
        self.stop()
        fail(f"Orthanc did not answer within 30 s; its log: {self.log}")

    def store(self, path: Path) -> str:
        """Stores one file; its StudyInstanceUID's Orthanc ID."""
        answer = request(f"{self.url}/instances", path.read_bytes())
        return answer["ParentStudy"]

    def study_uid(self, orthanc_id: str) -> str:
        return request(f"{self.url}/studies/{orthanc_id}")["MainDicomTags"]["StudyInstanceUID"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def dicom_files(folders: list[Path]) -> list[Path]:
    """Every file under `folders` that starts like a DICOM file (preamble + DICM)."""
    found = []
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else [folder]:
            if path.is_file():
                with open(path, "rb") as f:
                    if f.read(132)[128:132] == b"DICM":
                        found.append(path)
    return found


def maps_by_coverage(files: list[Path]) -> tuple[list[str], list[tuple[str, int, int]]]:
    """The Parametric Maps among `files` with a frame for every slice of their source series
    (descriptions), and the others (description, frames, slices)."""
    import pydicom  # the project's .venv has it; only needed here

    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    slices: dict[str, int] = {}
    for h in headers:
        if h.SOPClassUID != PARAMETRIC_MAP:
            slices[h.SeriesInstanceUID] = slices.get(h.SeriesInstanceUID, 0) + int(
                getattr(h, "NumberOfFrames", 1) or 1)
    whole, partial = [], []
    for h in headers:
        if h.SOPClassUID != PARAMETRIC_MAP:
            continue
        source = h.ReferencedSeriesSequence[0].SeriesInstanceUID
        frames, total = int(h.NumberOfFrames), slices.get(source, 0)
        if frames == total:
            whole.append(h.SeriesDescription)
        else:
            partial.append((h.SeriesDescription, frames, total))
    return whole, sorted(partial)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--state", type=Path, default=ROOT / "state" / "viewer")
    parser.add_argument("--dist", type=Path, default=DIST)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    if not (args.dist / "index.html").is_file():
        fail(f"OHIF's viewer is missing in {args.dist}: run `make assets` (it needs npm)")
    files = dicom_files(args.folders)
    if not files:
        fail(f"no DICOM file under {', '.join(map(str, args.folders))}: run `make run` first")
    # SIGTERM (make, a terminal closing) stops Orthanc as Ctrl-C does
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    orthanc = Orthanc(args.state)
    try:
        studies: dict[str, str] = {}
        for path in files:
            try:
                studies.setdefault(orthanc.store(path), path.name)
            except urllib.error.HTTPError as error:
                fail(f"Orthanc refused {path}: {error}")
        uids = sorted(orthanc.study_uid(s) for s in studies)
        try:
            server = Server(args.dist, orthanc.url, args.port)
        except OSError as error:
            fail(f"cannot serve on 127.0.0.1:{args.port} ({error}); choose another: "
                 f"make view VIEW_PORT=N")
        base = f"http://127.0.0.1:{server.port}"
        if args.check:
            series = {}
            for uid in uids:
                listed = request(f"{base}/dicom-web/studies/{uid}/series",
                                 accept="application/dicom+json")
                series[uid] = sorted(
                    (s.get("00080060", {}).get("Value", [""])[0],
                     s.get("0008103E", {}).get("Value", [""])[0]) for s in listed)
            with urllib.request.urlopen(f"{base}/app-config.js", timeout=30) as answer:
                app_config = answer.read().decode()
            print(json.dumps({"files": len(files), "viewer": base, "series": series,
                              "app_config": app_config}))
            server.close()
            return
        print(f"{len(files)} files stored in a viewer-only Orthanc ({orthanc.url}, log "
              f"{orthanc.log}). OHIF:")
        for uid in uids:
            print(f"  {base}/viewer?StudyInstanceUIDs={uid}")
        whole, partial = maps_by_coverage(files)
        if whole or partial:
            print(f"{len(whole)} Parametric Maps cover their series: OHIF fuses them.")
        if partial:
            print("These cover some slices only; OHIF 3.13 cannot open them (its loader needs "
                  "a frame for every slice), their overlay series show the same maps:")
            for description, frames, slices in partial:
                print(f"  {description}: {frames} of {slices} slices")
        print("Double-click a map's thumbnail (XAI map ...) to fuse it over its series. "
              "From another machine: ssh -L "
              f"{server.port}:127.0.0.1:{server.port} THIS_HOST. Ctrl-C stops the viewer.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
        server.close()
    finally:
        orthanc.stop()


if __name__ == "__main__":
    main()
