"""Serve the sample crawl's image hosts on loopback, routed by the Host header.

Files live at {sample}/www/<host>/<path>; {sample}/www/_server.json adds per-URL delays, headers
and statuses, and per-host robots.txt, latency and rate limit (above it: 429 with Retry-After, as a
host that publishes its limit answers). Content-Type is sniffed from the bytes, so a .jpg that
holds HTML is served as text/html, like a real misconfigured CDN. Every request is metered per
host (`ImageServer.meter`): requests in flight and requests per second, what a host sees of us.
"""

from __future__ import annotations

import argparse
import json
import posixpath
import signal
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from danqing.io import atomic_write
from danqing.sample.loopback import Loopback

_MAGIC = [(b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG", "image/png"), (b"GIF8", "image/gif"),
          (b"RIFF", "image/webp")]


def sniff(data: bytes) -> str:
    """Content-Type from the first bytes."""
    for magic, ctype in _MAGIC:
        if data.startswith(magic):
            return ctype
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<")):
        return "text/html; charset=utf-8"
    return "application/octet-stream"


@dataclass
class Second:
    """One host's traffic in one wall-clock second."""

    requests: int = 0
    max_in_flight: int = 0
    too_many: int = 0  # answered 429


@dataclass
class HostMeter:
    """Per host: requests in flight now, and per second (int(time.time())) what it saw. Thread-safe."""

    in_flight: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    seconds: dict[str, dict[int, Second]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Second)))
    log: list[tuple[float, float, str, str, int]] = field(default_factory=list)  # (came, left, host, path, status)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def enter(self, host: str, limit: float | None) -> tuple[float, bool]:
        """Count a request's arrival: (its time, False when it is over the host's requests-per-second limit)."""
        with self._lock:
            now = time.time()
            second = self.seconds[host][int(now)]
            second.requests += 1
            self.in_flight[host] += 1
            second.max_in_flight = max(second.max_in_flight, self.in_flight[host])
            if limit is not None and second.requests > limit:
                second.too_many += 1
                return now, False
            return now, True

    def leave(self, came: float, host: str, path: str, status: int) -> None:
        with self._lock:
            self.in_flight[host] -= 1
            self.log.append((came, time.time(), host, path, status))

    def summary(self) -> dict[str, dict]:
        """host -> requests, 429s, max in flight, max requests in a second, and every second's figures."""
        with self._lock:
            return {host: {"requests": sum(s.requests for s in secs.values()),
                           "too_many": sum(s.too_many for s in secs.values()),
                           "max_in_flight": max(s.max_in_flight for s in secs.values()),
                           "max_per_s": max(s.requests for s in secs.values()),
                           "seconds": {t: (s.requests, s.max_in_flight) for t, s in sorted(secs.items())}}
                    for host, secs in self.seconds.items() if secs}

    def reset(self) -> None:
        with self._lock:
            self.seconds.clear()
            self.log.clear()


def _once(fn):
    """fn, callable many times but run only the first."""
    done = []

    def call():
        if not done:
            done.append(True)
            fn()
    return call


class _Handler(BaseHTTPRequestHandler):
    server_version = "danqing-sample/1.0"
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server names)
        self._metered(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._metered(body=False)

    def _metered(self, body: bool) -> None:
        rules: dict = self.server.rules
        meter: HostMeter = self.server.meter
        host = (self.headers.get("Host") or "").split(":", 1)[0].lower()
        path = posixpath.normpath(urlsplit(self.path).path)
        self.status = 0
        came, allowed = meter.enter(host, rules.get("limits", {}).get(host))
        self._leave = _once(lambda: meter.leave(came, host, path, self.status))
        try:
            if not allowed:
                # Counted by the second: the next one has room.
                return self._send(429, b"slow down\n", "text/plain", {"Retry-After": "1"}, body)
            latency = rules.get("latency_s", {}).get(host)
            if latency:
                time.sleep(latency)
            self._reply(host, path, body)
        finally:
            self._leave()

    def _reply(self, host: str, path: str, body: bool) -> None:
        www: Path = self.server.www
        rules: dict = self.server.rules
        key = f"{host}{path}"
        delay = rules.get("delay_s", {}).get(key)
        if delay:
            time.sleep(delay)
        if key in rules.get("status", {}):  # e.g. a 503 or a 429, with what "headers" give it
            return self._send(rules["status"][key], b"", "text/plain", rules.get("headers", {}).get(key, {}), body)
        if path == "/robots.txt" and host in rules.get("robots", {}):
            return self._send(200, rules["robots"][host].encode(), "text/plain", {}, body)
        file = (www / host / path.lstrip("/")).resolve()
        if not host or host[0] in "._" or not file.is_relative_to(www / host) or not file.is_file():
            return self._send(404, b"not found\n", "text/plain", {}, body)
        data = file.read_bytes()
        self._send(200, data, sniff(data), rules.get("headers", {}).get(key, {}), body)

    def _send(self, status: int, data: bytes, ctype: str, headers: dict, body: bool) -> None:
        self.status = status
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        # The request leaves the meter before the reply's last byte goes out: a client that has the whole
        # reply (and so may start its next request) never finds this one still counted in flight.
        payload = data if body else b""
        if not payload:
            self._leave()
            return self.end_headers()
        self.end_headers()
        self.wfile.write(payload[:-1])
        self._leave()
        self.wfile.write(payload[-1:])

    def log_message(self, format, *args) -> None:  # quiet: tests and the demo read their own logs
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # socketserver's 5 drops SYNs when a downloader opens many connections at once

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that gave up (timeouts) is normal
            super().handle_error(request, client_address)


class ImageServer(Loopback):
    """Context manager: the sample crawl's image hosts on 127.0.0.1, a free port, in a thread."""

    def __init__(self, sample_dir: str, port: int = 0):
        www = Path(sample_dir).resolve() / "www"
        rules_file = www / "_server.json"
        self.hosts = sorted(p.name for p in www.iterdir() if p.is_dir())
        super().__init__(_Server(("127.0.0.1", port), _Handler))
        self.httpd.www = www
        self.httpd.rules = json.loads(rules_file.read_text()) if rules_file.exists() else {}
        self.httpd.meter = self.meter = HostMeter()

    @property
    def host_overrides(self) -> dict[str, str]:
        """Fake host -> this server, for DownloadConfig.host_overrides."""
        return {host: self.address for host in self.hosts}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the sample crawl's images until killed.")
    parser.add_argument("sample_dir")
    parser.add_argument("--address-file", help="write 127.0.0.1:PORT here once listening")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = ImageServer(args.sample_dir, args.port)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with server:
        if args.address_file:
            with atomic_write(args.address_file) as f:  # readers never see a half-written address
                f.write(server.address.encode())
        print(f"serving {len(server.hosts)} hosts on {server.address}", flush=True)
        try:
            stopped.wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
