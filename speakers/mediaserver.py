"""A small HTTP media server with Range support, for tests, benchmarks and trying the agent out.

Production media are served by the web app or any HTTP server / CDN; this one only serves files from one
folder by name, in a thread, with byte ranges (so resumed downloads can be exercised for real).
"""

from __future__ import annotations

import logging
import re
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

logger = logging.getLogger(__name__)

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Log requests at DEBUG instead of printing them."""
        logger.debug("media server: " + format, *args)

    def do_GET(self) -> None:
        """Serve a file, whole or a byte range."""
        name = self.path.split("?", 1)[0].lstrip("/")
        path = self.server.root / name
        self.server.requests.append((name, self.headers.get("Range")))
        if not _NAME.match(name) or not path.is_file():
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        status = HTTPStatus.OK
        match = _RANGE.match(self.headers.get("Range", ""))
        if match:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else end
            if start >= len(data):
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = HTTPStatus.PARTIAL_CONTENT
        body = data[start : end + 1]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        if status == HTTPStatus.PARTIAL_CONTENT:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.end_headers()
        cut = self.server.cut_after.pop(name, None)
        if cut is not None:
            # a fault on purpose: send part of the body, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    root: Path
    requests: list[tuple[str, str | None]]
    cut_after: dict[str, int]


class MediaServer:
    """Serves the files of `root` at http://host:port/<name>."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _Server((host, port), _Handler)
        self._server.root = Path(root)
        self._server.requests = []
        self._server.cut_after = {}
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """http://host:port"""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, name: str) -> str:
        """URL of one file."""
        return f"{self.base_url}/{name}"

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        """(file name, Range header) of every request so far."""
        return self._server.requests

    def cut_next(self, name: str, after_bytes: int) -> None:
        """Make the next response for `name` stop after `after_bytes` of body and drop the connection."""
        self._server.cut_after[name] = after_bytes

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="media-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> MediaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
