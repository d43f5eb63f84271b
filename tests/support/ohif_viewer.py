#!/usr/bin/env python3
"""Open a study in OHIF v3 in headless Chromium and photograph a Parametric Map fused over
its source series (tests/ohif_viewer.rs).

    ohif_viewer.py --dist assets/ohif/dist --orthanc http://127.0.0.1:PORT --study UID
                   --source-series UID --map FILE.dcm --out DIR [--sr-series UID]

Serves OHIF's `dist/` on a free loopback port with scripts/ohif_server.py (an app-config.js
of its own, /dicom-web/ proxied to Orthanc from the same origin: no CORS). Chromium is driven through the
DevTools protocol over a pipe (--remote-debugging-pipe: no websocket, no port). A double
click on the map's thumbnail in OHIF's study browser puts it in the viewport, and OHIF shows
the source volume with the map fused over it; OHIF's own services (`window.services`, set by
its cornerstone extension) then tell when the map is loaded and where points land.

Writes DIR/fused.png, and DIR/unfused.png (the same viewport and camera with the map's actor
hidden), and prints one JSON object: where sample points of the map's frame on the shown
slice land in the screenshots (x, y) with the map's value there (and every frame's value at
the same points), the viewport's rectangle, and the page's console errors. With --sr-series also DIR/sr.png and the page text with the
SR shown. The verdict on the pictures is the Rust test's.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom

WIDTH, HEIGHT = 1280, 800


# the web server (OHIF's files, its configuration, Orthanc behind /dicom-web/) is make
# view's too
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
from ohif_server import Server  # noqa: E402

# --- Chromium over the DevTools protocol (a pipe: fds 3 and 4, NUL-separated JSON) --------

class Browser:
    def __init__(self, deadline: float):
        self.deadline = deadline
        self.profile = tempfile.TemporaryDirectory()
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def hand_over():  # in the child: the pipe ends Chromium expects as fds 3 and 4
            a, b = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.log = open(Path(self.profile.name) / "chromium.log", "w")
        self.process = subprocess.Popen(
            ["chromium", "--headless", "--no-sandbox", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile.name}", "--hide-scrollbars", "--mute-audio",
             # software WebGL2 (SwiftShader through ANGLE): the viewport renders with it
             "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
             "--no-first-run", "--disable-background-timer-throttling",
             "--disable-renderer-backgrounding", f"--window-size={WIDTH},{HEIGHT}",
             "about:blank"],
            preexec_fn=hand_over, close_fds=False, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.writer = to_browser_w
        self.reader = from_browser_r
        self.buffer = b""
        self.next_id = 0
        self.session: str | None = None
        self.console: list[str] = []

    def close(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        for fd in (self.writer, self.reader):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        self.profile.cleanup()

    def _read(self) -> dict:
        while b"\0" not in self.buffer:
            if time.monotonic() > self.deadline:
                raise TimeoutError("Chromium did not answer before the deadline")
            import select
            ready, _, _ = select.select([self.reader], [], [], 1.0)
            if not ready:
                continue
            chunk = os.read(self.reader, 1 << 20)
            if not chunk:
                self.log.flush()
                log = (Path(self.profile.name) / "chromium.log").read_text(errors="replace")
                raise EOFError(f"Chromium closed its DevTools pipe (it exited): {log[-2000:]}")
            self.buffer += chunk
        raw, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(raw)

    def _event(self, message: dict):
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            text = details.get("exception", {}).get("description") or details.get("text")
            self.console.append(f"exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            parts = [a.get("value", a.get("description", "")) for a in params.get("args", [])]
            self.console.append("console.error: " + " ".join(str(p) for p in parts)[:500])
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.console.append(f"log: {entry.get('text')} {entry.get('url', '')}"[:500])

    def call(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.writer, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read()
            if answer.get("id") == self.next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer.get("result", {})
            self._event(answer)

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target["targetId"], "flatten": True},
                                 session=False)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        # a reader who has seen OHIF's onboarding tour: it would cover the viewport
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));")})
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise RuntimeError(f"in the page: {text}")
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, what: str, limit: float):
        """Polls `expression` until it gives a truthy value; its value."""
        until = min(time.monotonic() + limit, self.deadline)
        last_error = None
        while time.monotonic() < until:
            try:
                value = self.evaluate(expression)
                if value:
                    return value
            except RuntimeError as error:
                last_error = error
            time.sleep(0.25)
        raise TimeoutError(f"{what}: not within {limit:.0f} s (last error: {last_error}); "
                           f"console: {self.console[-10:]}")

    def double_click(self, x: float, y: float):
        for count in (1, 2):
            for kind in ("mousePressed", "mouseReleased"):
                self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y,
                                                       "button": "left", "clickCount": count})

    def open_series(self, description: str):
        """Double-clicks the series' thumbnail, as a reader does to view it."""
        x, y = self.wait_for(THUMBNAIL.replace("DESCRIPTION", json.dumps(description)),
                             f"a thumbnail of {description!r}", 20)
        self.double_click(x, y)

    def wait_for_toasts(self, limit: float) -> list[str]:
        """Waits until OHIF's notifications are gone (they would cover the viewport); what
        they said."""
        said: list[str] = []
        until = min(time.monotonic() + limit, self.deadline)
        while time.monotonic() < until:
            now = self.evaluate(TOASTS)
            said.extend(t for t in now if t not in said)
            if not now:
                return said
            time.sleep(0.25)
        raise TimeoutError(f"OHIF's notifications stayed on screen: {said}")

    def screenshot(self, path: Path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))


# --- what the map says: sample points of one frame in patient coordinates -----------------

def map_frames(path: Path) -> tuple[np.ndarray, list[np.ndarray], np.ndarray, np.ndarray]:
    """The map's values (frames, rows, columns), each frame's position, its row and column
    directions scaled by the pixel spacing."""
    ds = pydicom.dcmread(path)
    values = ds.pixel_array.astype(np.float64).reshape(-1, ds.Rows, ds.Columns)
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    along_row = orientation[:3] * spacing[1]  # one column further
    along_column = orientation[3:] * spacing[0]  # one row further
    positions = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
                 for f in ds.PerFrameFunctionalGroupsSequence]
    return values, positions, along_row, along_column


# --- the page: scripts run in OHIF -------------------------------------------------------

READY = """(() => {
  const s = window.services;
  if (!s || !s.displaySetService) return null;
  const sets = s.displaySetService.getActiveDisplaySets();
  const grid = s.viewportGridService.getState();
  if (!grid.activeViewportId) return null;
  return sets.map(d => ({uid: d.displaySetInstanceUID, series: d.SeriesInstanceUID,
                         modality: d.Modality, description: d.SeriesDescription || ''}));
})()"""

def in_viewport(body: str) -> str:
    """A page script with OHIF's services `s`, the active viewport's id `viewportId` and
    its cornerstone viewport `viewport` (null before one is made) in scope."""
    return ("(() => { const s = window.services;"
            " const viewportId = s.viewportGridService.getState().activeViewportId;"
            " const viewport = s.cornerstoneViewportService.getCornerstoneViewport(viewportId);"
            f" {body} }})()")


# the first series drawn in its stack viewport: switching the viewport before that races
# OHIF's own image loading (a "viewport has been destroyed" exception and an error toast)
STACK_DRAWN = in_viewport("""
  return !!(viewport && viewport.getCurrentImageId && viewport.getCurrentImageId()
            && viewport.getImageData && viewport.getImageData());""")

# the centre of a series' thumbnail in OHIF's study browser
THUMBNAIL = """(() => {
  const item = [...document.querySelectorAll('[data-cy^="study-browser-thumbnail"]')]
    .find(t => t.textContent.includes(DESCRIPTION));
  if (!item) return null;
  item.scrollIntoView({block: 'center'});
  const r = item.getBoundingClientRect();
  return [r.left + r.width / 2, r.top + r.height / 2];
})()"""

# the map's volume loaded, and both volumes on the viewport's actors
FUSED = in_viewport("""
  const pmap = s.displaySetService.getDisplaySetByUID(DISPLAY_SET);
  if (!pmap || !pmap.isLoaded || !viewport || !viewport.getActors) return null;
  const actors = viewport.getActors();
  const volume = a => String(a.referencedId || a.uid);
  if (actors.length < 2 || !actors.some(a => volume(a) === DISPLAY_SET)) return null;
  return actors.map(volume);""")

# OHIF's onboarding tour (a first visit in a fresh profile) covers the viewport: skip it
SKIP_TOUR = """(() => {
  const skip = [...document.querySelectorAll('.shepherd-element button')]
    .find(b => b.textContent.trim() === 'Skip all');
  if (skip) skip.click();
  return !document.querySelector('.shepherd-element');
})()"""

# the Structured Report's display set once OHIF has loaded it
SR_READ = """(() => {
  const d = window.services.displaySetService.getDisplaySetByUID(DISPLAY_SET);
  if (!d || !d.isLoaded) return null;
  return {imaging_measurement_report: !!d.isImagingMeasurementReport,
          rehydratable: !!d.isRehydratable,
          measurements: (d.measurements || []).map(m => ({
            tracking: m.TrackingIdentifier, coordinates: (m.coords || []).length,
            labels: (m.labels || []).map(l => [l.label, l.value])}))};
})()"""

# the text behind an error notice's "Show Details" (OHIF's own account of an error)
SHOW_DETAILS = """new Promise(resolve => {
  const button = [...document.querySelectorAll('button')]
    .find(b => b.textContent.trim() === 'Show Details');
  if (!button) return resolve(null);
  button.click();
  setTimeout(() => resolve(document.body.innerText), 500);
})"""

# OHIF's notifications (toasts) on screen now
TOASTS = "[...document.querySelectorAll('[data-sonner-toast]')].map(t => t.textContent)"

FRAMES = "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"

CAMERA = in_viewport("""
  const camera = viewport.getCamera();
  return {focalPoint: Array.from(camera.focalPoint), position: Array.from(camera.position),
          normal: Array.from(camera.viewPlaneNormal)};""")

MOVE = in_viewport("""
  const camera = viewport.getCamera();
  const d = DISTANCE, n = camera.viewPlaneNormal;
  viewport.setCamera({focalPoint: camera.focalPoint.map((v, i) => v + d * n[i]),
                      position: camera.position.map((v, i) => v + d * n[i])});
  viewport.render();
  return true;""")

PROJECT = in_viewport("""
  const rect = viewport.canvas.getBoundingClientRect();
  return {rect: [rect.left, rect.top, rect.width, rect.height],
          points: POINTS.map(p => { const c = viewport.worldToCanvas(p);
                                    return [rect.left + c[0], rect.top + c[1]]; })};""")

HIDE_MAP = in_viewport("""
  const entry = viewport.getActors().find(a => String(a.referencedId || a.uid) === DISPLAY_SET);
  entry.actor.setVisibility(false);
  viewport.render();
  return true;""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dist", type=Path, required=True)
    parser.add_argument("--orthanc", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--source-series", required=True)
    parser.add_argument("--map", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sr-series")
    parser.add_argument("--timeout", type=float, default=90.0)
    args = parser.parse_args()
    # a SIGTERM runs the clean-up below too: Chromium is in a session of its own
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    started = time.monotonic()
    deadline = started + args.timeout
    args.out.mkdir(parents=True, exist_ok=True)
    ds = pydicom.dcmread(args.map, stop_before_pixels=True)
    map_series = ds.SeriesInstanceUID
    values, positions, along_row, along_column = map_frames(args.map)

    server = Server(args.dist, args.orthanc)
    browser = Browser(deadline)
    report: dict = {"port": server.port}
    try:
        browser.open_page()
        wanted = json.dumps([map_series, args.source_series] + ([args.sr_series] if args.sr_series else []))

        def load_study() -> list[dict]:
            """The study opened afresh, its first series drawn: its display sets."""
            browser.call("Page.navigate", {
                "url": f"http://127.0.0.1:{server.port}/viewer?StudyInstanceUIDs={args.study}"})
            sets = browser.wait_for(
                f"((x) => x && {wanted}.every(u => x.some(d => d.series === u)) ? x : null)({READY})",
                "OHIF lists the study's display sets", 60)
            browser.wait_for(SKIP_TOUR, "the onboarding tour skipped", 10)
            browser.wait_for(STACK_DRAWN, "the first series drawn", 30)
            time.sleep(0.5)
            return sets

        sets = load_study()
        report["display_sets"] = sets
        report["seconds_to_study"] = round(time.monotonic() - started, 1)
        pmap = next(d for d in sets if d["series"] == map_series)
        report["map_modality"] = pmap["modality"]
        uid = json.dumps(pmap["uid"])
        browser.open_series(pmap["description"])
        report["actors"] = browser.wait_for(FUSED.replace("DISPLAY_SET", uid),
                                            "the map fused over its source volume", 60)
        report["notifications"] = browser.wait_for_toasts(20)

        # a slice with both much map and much zero on it, brought into view
        camera = browser.evaluate(CAMERA)
        normal = np.array(camera["normal"])
        focal = np.array(camera["focalPoint"])
        flat = values.reshape(len(values), -1)
        best = int(np.argmax(flat.max(axis=1) * (flat == 0).mean(axis=1)))
        distance = float(np.dot(positions[best] - focal, normal))
        browser.evaluate(MOVE.replace("DISTANCE", repr(distance)))
        for _ in range(3):
            browser.evaluate(FRAMES)
        time.sleep(1.0)  # the viewport draws on its own animation frames
        camera = browser.evaluate(CAMERA)
        focal = np.array(camera["focalPoint"])
        offsets = [abs(float(np.dot(p - focal, normal))) for p in positions]
        shown = int(np.argmin(offsets))
        report["frame"] = {"index": shown, "wanted": best, "off_mm": offsets[shown],
                           "frames": len(values), "max": float(values[shown].max())}

        # sample points of the shown frame: a grid, centre of each pixel
        frame = values[shown]
        rows, columns = np.meshgrid(np.arange(2, frame.shape[0], 6),
                                    np.arange(2, frame.shape[1], 6), indexing="ij")
        rows, columns = rows.ravel(), columns.ravel()
        world = (positions[shown][None, :] + columns[:, None] * along_row[None, :]
                 + rows[:, None] * along_column[None, :])
        projected = browser.evaluate(PROJECT.replace("POINTS", json.dumps(world.tolist())))
        report["viewport"] = projected["rect"]
        # the map's largest value within 3 pixels: a probe whose neighbourhood is all zero
        # must show no colour even after the viewer's interpolation
        padded = np.pad(frame, 3)
        near = np.lib.stride_tricks.sliding_window_view(padded, (7, 7)).max(axis=(2, 3))
        report["probes"] = [[x, y, float(frame[r, c]), float(near[r, c])] for (x, y), r, c
                            in zip(projected["points"], rows, columns)]
        # every frame's values at the same points: which slice's map the picture shows
        report["frame_values"] = np.round(values[:, rows, columns], 6).tolist()

        fused = args.out / "fused.png"
        browser.screenshot(fused)
        browser.evaluate(HIDE_MAP.replace("DISPLAY_SET", uid))
        for _ in range(3):
            browser.evaluate(FRAMES)
        time.sleep(0.5)
        unfused = args.out / "unfused.png"
        browser.screenshot(unfused)
        report["screenshots"] = {"fused": str(fused), "unfused": str(unfused)}
        report["notifications"] += browser.evaluate(TOASTS)
        report["text"] = browser.evaluate("document.body.innerText")

        if args.sr_series:
            # afresh, as a reader opening the report would: otherwise OHIF draws the SR's
            # image with the map's colour map and window left in the viewport
            sets = load_study()
            sr = next(d for d in sets if d["series"] == args.sr_series)
            report["sr_display_set"] = sr
            browser.open_series(sr["description"])
            # what OHIF's SR parser made of the report: its measurement groups and labels
            report["sr_read"] = browser.wait_for(SR_READ.replace("DISPLAY_SET", json.dumps(
                sr["uid"])), "OHIF loads the Structured Report", 30)
            time.sleep(2.0)  # the SR viewport draws, or says why not
            for _ in range(3):
                browser.evaluate(FRAMES)
            shot = args.out / "sr.png"
            browser.screenshot(shot)
            report["screenshots"]["sr"] = str(shot)
            report["sr_notifications"] = browser.evaluate(TOASTS)
            report["sr_error_details"] = browser.evaluate(SHOW_DETAILS)
            report["sr_text"] = browser.evaluate("document.body.innerText")
    except Exception as error:  # noqa: BLE001 - reported whole to the test, with a picture
        report["error"] = f"{type(error).__name__}: {error}"
        try:
            failed = args.out / "failure.png"
            browser.screenshot(failed)
            report["failure_screenshot"] = str(failed)
            report["text"] = browser.evaluate("document.body.innerText")
        except Exception:  # noqa: BLE001
            pass
    finally:
        report["console"] = browser.console
        report["proxy_errors"] = server.errors
        report["seconds"] = round(time.monotonic() - started, 1)
        browser.close()
        server.close()
    print(json.dumps(report))


if __name__ == "__main__":
    main()
