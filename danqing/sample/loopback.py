"""An HTTP server on loopback answering from a thread of its own: what the image server and the stand-in hubs share."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer
from typing import Self


class Loopback:
    """Wraps a bound server (address 127.0.0.1:0 for a free port); start() and stop(), or a context manager."""

    def __init__(self, httpd: ThreadingHTTPServer):
        self.httpd = httpd
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        """host:port it listens on."""
        host, port = self.httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
