"""Image hosts on loopback that meter what they see of us, a Redis with a key prefix of our own, and a
download task run as its own process (as a worker runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa

from danqing import io
from danqing.records import sample_id

ROOT = Path(__file__).resolve().parent.parent
IMAGES = sorted((Path(__file__).parent / "fixtures" / "danqing_examples" / "images").glob("*.jpg"))
REDIS_URL = os.environ.get("DANQING_TEST_REDIS", "redis://127.0.0.1:6379/2")


def host_site(root: Path, files: dict[str, int], rules: dict | None = None) -> Path:
    """{root}/www/<host>/img/<i>.jpg for i < files[host] (hard links to the fixture JPEGs), plus rules."""
    www = root / "www"
    for host, n in files.items():
        (www / host / "img").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            target = www / host / "img" / f"{i}.jpg"
            try:
                os.link(IMAGES[i % len(IMAGES)], target)
            except OSError:  # another file system
                shutil.copyfile(IMAGES[i % len(IMAGES)], target)
    (www / "_server.json").write_text(json.dumps(rules or {}))
    return root


def urls_of(host: str, n: int, start: int = 0) -> list[str]:
    return [f"http://{host}/img/{i}.jpg" for i in range(start, start + n)]


def write_input(path: Path, urls: list[str]) -> str:
    rows = [{"id": sample_id("w.warc.gz", i, u, f"alt {i}"), "page_url": "http://page.test/", "url": u,
             "alt_text": f"alt {i}", "caption": f"图片说明 {i}", "page_language": "zho", "charset": "utf-8",
             "warc_filename": "w.warc.gz", "warc_record_offset": i, "warc_record_length": 100, "drop_reason": ""}
            for i, u in enumerate(urls)]
    io.write_parquet(pa.Table.from_pylist(rows), str(path))
    return str(path)


_TASK = ("import sys; from danqing.config import PipelineConfig; from danqing.shard import run_local; "
         "run_local('download', [sys.argv[1]], sys.argv[2], PipelineConfig.model_validate_json(sys.argv[3]), "
         "crawl=sys.argv[4])")


def start_task(inp: str, out_prefix: str, cfg_json: str, crawl: str) -> subprocess.Popen:
    """One download task in its own process."""
    return subprocess.Popen([sys.executable, "-c", _TASK, inp, out_prefix, cfg_json, crawl], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


def _ping(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@contextmanager
def redis_server():
    """The machine's Redis (DANQING_TEST_REDIS); where none answers, a private redis-server on a free port."""
    if _ping(REDIS_URL):
        yield REDIS_URL
        return
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _ping(url):
            assert time.monotonic() < deadline and proc.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait()


@contextmanager
def coordination_url():
    """A coordination URL whose keys no other test run shares; they are deleted afterwards."""
    import redis

    with redis_server() as url:
        prefix = f"danqing-test-{uuid.uuid4().hex[:10]}"
        try:
            yield f"{url}?prefix={prefix}"
        finally:
            client = redis.Redis.from_url(url)
            keys = list(client.scan_iter(f"{prefix}:*"))
            if keys:
                client.delete(*keys)
