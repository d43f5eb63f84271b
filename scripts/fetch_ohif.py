#!/usr/bin/env python3
"""Fetch OHIF v3's built viewer (the `dist/` of the `@ohif/app` npm package) into
assets/ohif/dist/, for tests/ohif_viewer.rs.

The package is fetched with `npm pack` (the registry configured for npm, whose integrity
check npm applies), its sha512 checked again against the pinned one, and `package/dist/`
extracted. A second run finds the stamp and does nothing. Skipped with a message when npm
is missing (the OHIF test then says what to install). Exit 1 naming the package on a
mismatch.
"""
from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "assets" / "ohif"
PACKAGE = "@ohif/app"
VERSION = "3.13.2"
INTEGRITY = (
    "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
STAMP = TARGET / f".ohif-app-{VERSION}.extracted"


def fail(message: str) -> None:
    print(f"fetch_ohif: {message}", file=sys.stderr)
    sys.exit(1)


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def main() -> None:
    if STAMP.exists() and STAMP.read_text() == INTEGRITY and (TARGET / "dist/index.html").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        print("fetch_ohif: npm not found, OHIF not fetched (tests/ohif_viewer.rs needs it)")
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as temporary:
        work = Path(temporary)
        print(f"fetch_ohif: downloading {PACKAGE}@{VERSION}")
        result = subprocess.run(
            [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(work), "--silent"],
            capture_output=True, text=True, cwd=work,
        )
        tarballs = list(work.glob("*.tgz"))
        if result.returncode != 0 or len(tarballs) != 1:
            fail(f"could not fetch {PACKAGE}@{VERSION}: {result.stderr.strip()}")
        tarball = tarballs[0]
        actual = integrity_of(tarball)
        if actual != INTEGRITY:
            fail(f"{tarball.name}: integrity {actual} does not match the pinned {INTEGRITY}")
        staging = work / "extracted"
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith("package/dist/")]
            if not members:
                fail(f"{tarball.name} has no package/dist/")
            archive.extractall(staging, members=members, filter="data")
        if TARGET.exists():
            shutil.rmtree(TARGET)
        TARGET.mkdir(parents=True)
        shutil.move(str(staging / "package" / "dist"), TARGET / "dist")
        size = tarball.stat().st_size
    unpacked = sum(p.stat().st_size for p in (TARGET / "dist").rglob("*") if p.is_file())
    STAMP.write_text(INTEGRITY)
    print(
        f"fetch_ohif: {PACKAGE}@{VERSION} ready in {time.monotonic() - started:.1f} s "
        f"({size / 1e6:.0f} MB fetched, {unpacked / 1e6:.0f} MB in assets/ohif/dist)"
    )


if __name__ == "__main__":
    main()
