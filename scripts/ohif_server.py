#!/usr/bin/env python3
"""OHIF v3's built viewer (assets/ohif/dist, `make assets`) served on loopback against an
Orthanc's DICOMweb: the web server of `make view` (scripts/view.py) and of the viewer test
(tests/support/ohif_viewer.py).

The app gets an app-config.js of its own, and /dicom-web/ is proxied to Orthanc from the
same origin (no CORS; Orthanc's BulkDataURIs are made to point back here).
"""
from __future__ import annotations

import http.client
import http.server
import threading
from pathlib import Path
from urllib.parse import urlsplit

APP_CONFIG = """window.config = {
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  maxNumberOfWebWorkers: 1,
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  showLoadingIndicator: false,
  investigationalUseDialog: { option: 'never' },
  defaultDataSourceName: 'orthanc',
  dataSources: [{
    namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
    sourceName: 'orthanc',
    configuration: {
      friendlyName: 'Orthanc',
      name: 'orthanc',
      wadoUriRoot: 'ORIGIN/wado',
      qidoRoot: 'ORIGIN/dicom-web',
      wadoRoot: 'ORIGIN/dicom-web',
      qidoSupportsIncludeField: false,
      imageRendering: 'wadors',
      thumbnailRendering: 'wadors',
      enableStudyLazyLoad: true,
      supportsFuzzyMatching: false,
      supportsWildcard: true,
      omitQuotationForMultipartRequest: true,
      bulkDataURI: { enabled: true },
    },
  }],
};
"""

TYPES = {
    ".js": "application/javascript", ".mjs": "application/javascript", ".css": "text/css",
    ".html": "text/html", ".json": "application/json", ".wasm": "application/wasm",
    ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon",
    ".woff2": "font/woff2", ".woff": "font/woff", ".map": "application/json",
}


def make_handler(dist: Path, orthanc: str, errors: list[str]):
    upstream = urlsplit(orthanc)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format, *args):  # noqa: A002 - the base class's name
            pass

        def do_GET(self):  # noqa: N802 - http.server's name
            self.route()

        def do_POST(self):  # noqa: N802
            self.route()

        def route(self):
            path = urlsplit(self.path).path
            if path.startswith("/dicom-web/") or path == "/wado" or path.startswith("/wado?"):
                return self.proxy()
            if path == "/app-config.js":
                origin = f"http://{self.headers.get('Host')}"
                return self.send(200, "application/javascript",
                                 APP_CONFIG.replace("ORIGIN", origin).encode())
            file = (dist / path.lstrip("/")).resolve()
            if not file.is_relative_to(dist) or not file.is_file():
                if Path(path).suffix:  # a missing asset, not a route of the app
                    return self.send(404, "text/plain", b"not found")
                file = dist / "index.html"  # the app's own routes (/viewer?...)
            self.send(200, TYPES.get(file.suffix, "application/octet-stream"), file.read_bytes())

        def send(self, status: int, kind: str, body: bytes, extra: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def proxy(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items()
                       if k.lower() in ("accept", "content-type")}
            # Orthanc builds BulkDataURIs from Host: make them point back here
            headers["Host"] = self.headers.get("Host", "")
            connection = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
            try:
                connection.request(self.command, self.path, body=body, headers=headers)
                answer = connection.getresponse()
                data = answer.read()
            except OSError as error:
                errors.append(f"proxy {self.command} {self.path}: {error}")
                return self.send(502, "text/plain", str(error).encode())
            finally:
                connection.close()
            if answer.status >= 400:
                errors.append(f"Orthanc answered {answer.status} to {self.command} {self.path}")
            self.send(answer.status, answer.getheader("Content-Type", "application/octet-stream"),
                      data)

    return Handler


class Server:
    """Serves `dist` on 127.0.0.1:`port` (0: a free one) in a thread of its own."""

    def __init__(self, dist: Path, orthanc: str, port: int = 0):
        self.errors: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", port), make_handler(dist.resolve(), orthanc, self.errors))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
