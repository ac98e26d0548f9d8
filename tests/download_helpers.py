"""A loopback HTTP server that injects the faults a crawl's image hosts produce, and counts requests."""

from __future__ import annotations

import functools
import gzip
import io
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from danqing.sample.loopback import Loopback

IMAGES = Path(__file__).parent / "fixtures" / "danqing_examples" / "images"

ROBOTS = b"User-agent: *\nDisallow: /private/\n"


@functools.cache
def png_bomb(side: int = 20000) -> bytes:
    """A tiny PNG whose header claims side x side pixels."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("1", (side, side)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


@functools.cache
def two_tone_png(side: int = 300) -> bytes:
    """Black and white noise: high contrast and sharp edges, but one bit per pixel of information."""
    import numpy as np
    from PIL import Image

    buf = io.BytesIO()
    bits = np.random.default_rng(0).integers(0, 2, (side, side), dtype=np.uint8) * 255
    Image.fromarray(bits).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


class FaultServer(Loopback):
    """Routes by path prefix; `hits[path]` counts every request (robots.txt included)."""

    def __init__(self, images: dict[str, bytes] | None = None, slow_s: float = 2.0):
        self.images = images or {p.name: p.read_bytes() for p in sorted(IMAGES.glob("*.jpg"))}
        self.hits: Counter = Counter()
        self.slow_s = slow_s
        self.bomb = png_bomb()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                with server._lock:
                    server.hits[self.path] += 1
                    n = server.hits[self.path]
                server.route(self, self.path, n)

        super().__init__(_QuietServer(("127.0.0.1", 0), Handler))
        self.port = self.httpd.server_address[1]

    def first_image(self) -> bytes:
        return next(iter(self.images.values()))

    def route(self, h: BaseHTTPRequestHandler, path: str, n: int) -> None:
        name = path.rsplit("/", 1)[-1]
        if path == "/robots.txt":
            return send(h, 200, ROBOTS, "text/plain")
        if path.startswith("/img/") and name in self.images:
            return send(h, 200, self.images[name])
        if path.startswith("/private/"):
            return send(h, 200, self.first_image())
        if path.startswith("/gone"):
            return send(h, 404, b"not found", "text/plain")
        if path.startswith("/flaky/"):  # 500 on the first request, then the image
            return send(h, 500, b"oops", "text/plain") if n == 1 else send(h, 200, self.first_image())
        if path.startswith("/down/"):  # 503 every time
            return send(h, 503, b"busy", "text/plain")
        if path.startswith("/ratelimit/"):  # 429 + Retry-After once, then the image
            if n == 1:
                return send(h, 429, b"slow down", "text/plain", {"Retry-After": "1"})
            return send(h, 200, self.first_image())
        if path.startswith("/slow"):
            time.sleep(self.slow_s)
            return send(h, 200, self.first_image())
        if path.startswith("/reset"):
            return reset_mid_body(h, self.first_image())
        if path.startswith("/loop/a"):
            return send(h, 302, b"", "text/plain", {"Location": "/loop/b"})
        if path.startswith("/loop/b"):
            return send(h, 302, b"", "text/plain", {"Location": "/loop/a"})
        if path.startswith("/meta"):
            return send(h, 302, b"", "text/plain", {"Location": "http://169.254.169.254/latest/meta-data/"})
        if path.startswith("/hop"):  # one harmless redirect to an image
            return send(h, 301, b"", "text/plain", {"Location": "/img/" + next(iter(self.images))})
        if path.startswith("/html"):
            return send(h, 200, b"<!doctype html><html><body>not an image</body></html>", "text/html")
        if path.startswith("/bomb"):
            return send(h, 200, self.bomb, "image/png")
        if path.startswith("/truncated"):
            data = self.first_image()
            return send(h, 200, data[: len(data) // 2])
        if path.startswith("/twotone"):  # sharp, but two tones only: too little entropy
            return send(h, 200, two_tone_png(), "image/png")
        if path.startswith("/noai"):
            return send(h, 200, self.first_image(), headers={"X-Robots-Tag": "noai"})
        if path.startswith("/gzbomb"):  # 4 MB of zeros in a few KB of gzip
            body = gzip.compress(b"\xff\xd8\xff" + b"\0" * 4_000_000)
            return send(h, 200, body, headers={"Content-Encoding": "gzip"})
        if path.startswith("/huge"):
            return send(h, 200, b"\xff\xd8\xff" + b"\0" * 1_200_000)
        return send(h, 404, b"no route", "text/plain")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's 5 drops SYNs under the downloader's concurrency

    def handle_error(self, request, client_address):  # clients that time out and reset are the point
        pass


def send(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "image/jpeg",
         headers: dict[str, str] | None = None) -> None:
    try:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the client gave up first (a timeout test)


def reset_mid_body(h: BaseHTTPRequestHandler, body: bytes) -> None:
    """Promise the whole body, send a tenth, then abort the connection with a TCP RST."""
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body[: len(body) // 10])
    h.wfile.flush()
    h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    h.connection.close()
    h.close_connection = True
