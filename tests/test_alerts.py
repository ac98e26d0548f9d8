"""A shard that fails for good pages on-call through the webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace

from operators.alerts import page_on_failure


def test_failure_posts_the_shard_to_the_webhook(monkeypatch):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("DANQING_ALERT_WEBHOOK", f"http://127.0.0.1:{server.server_port}/page")
    ti = SimpleNamespace(dag_id="danqing_snapshot", task_id="download", map_index=7, try_number=4)
    page_on_failure({"ti": ti, "run_id": "r1", "params": {"crawl_id": "CC-MAIN-2025-47"},
                     "exception": RuntimeError("host unreachable")})
    server.shutdown()
    assert received == [{"dag_id": "danqing_snapshot", "task_id": "download", "shard": 7, "run_id": "r1",
                         "try_number": 4, "crawl": "CC-MAIN-2025-47", "error": "host unreachable"}]


def test_unreachable_webhook_does_not_raise(monkeypatch):
    monkeypatch.setenv("DANQING_ALERT_WEBHOOK", "http://127.0.0.1:9/nothing-listens")
    ti = SimpleNamespace(dag_id="d", task_id="t", map_index=-1, try_number=1)
    page_on_failure({"ti": ti, "run_id": "r", "params": {}})
