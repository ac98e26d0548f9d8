"""The bundled sample crawl: deterministic, Common Crawl's layout, and its image server on loopback."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import FIXTURES

from danqing.config import SAMPLE_CRAWL_ID
from danqing.sample.crawl import SLOW_DELAY_S, build_sample_crawl
from danqing.sample.imageserver import ImageServer

EXAMPLES = FIXTURES / "danqing_examples"


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, dict]:
    dest = tmp_path_factory.mktemp("sample")
    return dest, build_sample_crawl(str(dest), examples=str(EXAMPLES))


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_two_builds_are_byte_identical(sample, tmp_path):
    dest, manifest = sample
    again = build_sample_crawl(str(tmp_path / "again"), examples=str(EXAMPLES))
    assert again == manifest
    first, second = _tree(dest), _tree(tmp_path / "again")
    assert first.keys() == second.keys()
    assert [k for k in first if first[k] != second[k]] == []


def test_layout_is_common_crawls(sample):
    dest, manifest = sample
    real = json.loads((FIXTURES / "commoncrawl" / "collinfo.json").read_text())
    ours = json.loads((dest / "collinfo.json").read_text())
    assert [c["id"] for c in ours] == [SAMPLE_CRAWL_ID]
    assert set(ours[0]) == set(real[0])
    listed = gzip.decompress((dest / f"crawl-data/{SAMPLE_CRAWL_ID}/warc.paths.gz").read_bytes()).decode().split()
    assert listed == manifest["warcs"] and 3 <= len(listed) <= 4
    for rel in listed:
        assert rel.startswith(f"crawl-data/{SAMPLE_CRAWL_ID}/segments/") and rel.endswith(".warc.gz")
        assert "/warc/" in rel and (dest / rel).stat().st_size > 0
    assert manifest["captions"] == 50


def test_records_look_like_common_crawls(sample):
    from warcio.archiveiterator import ArchiveIterator

    dest, manifest = sample
    kinds, languages, concurrent_ok = [], [], 0
    with open(dest / manifest["warcs"][0], "rb") as f:
        responses = {}
        for record in ArchiveIterator(f):
            kinds.append(record.rec_type)
            if record.rec_type == "response":
                responses[record.rec_headers.get_header("WARC-Record-ID")] = record
            if record.rec_type == "metadata":
                fields = dict(line.split(": ", 1) for line in record.content_stream().read().decode().splitlines())
                languages.append(json.loads(fields["languages-cld2"])["languages"][0]["code-iso-639-3"])
                concurrent_ok += record.rec_headers.get_header("WARC-Concurrent-To") in responses
    assert kinds[0] == "warcinfo" and kinds[1:4] == ["request", "response", "metadata"]
    assert languages == ["zho", "zho", "zho", "eng"] and concurrent_ok == 4


def test_last_warc_is_cut_mid_record(sample):
    dest, manifest = sample
    data = (dest / manifest["warcs"][-1]).read_bytes()
    with pytest.raises(EOFError):
        gzip.decompress(data)


def _get(server: ImageServer, host: str, path: str, timeout: float = 10):
    req = urllib.request.Request(f"http://{server.address}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers.get_content_type(), r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, None, b"", e.headers


def test_server_routes_by_host(sample):
    dest, _ = sample
    image = (EXAMPLES / "images" / "3436721.jpg").read_bytes()
    with ImageServer(str(dest)) as server:
        assert server.address.startswith("127.0.0.1:")
        assert set(server.host_overrides.values()) == {server.address}
        assert {"img.shop-a.test", "cdn.news-b.test", "img.mall-c.test", "pic.tw-d.test"} <= set(server.host_overrides)
        status, ctype, body, _ = _get(server, "img.shop-a.test", "/p/3436721.jpg")
        assert (status, ctype, body) == (200, "image/jpeg", image)
        assert _get(server, "cdn.news-b.test", "/p/3436721.jpg")[0] == 404  # right path, wrong host
        assert _get(server, "cdn.news-b.test", "/photos/gone/2099-review.jpg")[0] == 404
        assert _get(server, "img.shop-a.test", "/../../collinfo.json")[0] == 404
        assert _get(server, "_server.json", "/")[0] == 404
        status, ctype, body, _ = _get(server, "cdn.news-b.test", "/photos/banner.jpg")
        assert status == 200 and ctype == "text/html" and body.lstrip().startswith(b"<!DOCTYPE html>")
        assert _get(server, "www.mall-c.test", "/upload/news/264710.jpg")[3]["X-Robots-Tag"] == "noai, noimageai"


def test_server_robots_txt_per_host(sample):
    from protego import Protego

    dest, _ = sample
    with ImageServer(str(dest)) as server:
        status, _, body, _ = _get(server, "img.shop-a.test", "/robots.txt")
        robots = Protego.parse(body.decode())
        assert status == 200
        assert not robots.can_fetch("http://img.shop-a.test/private/2118792.jpg", "danqing-pipeline")
        assert robots.can_fetch("http://img.shop-a.test/p/3436721.jpg", "danqing-pipeline")
        assert _get(server, "pic.tw-d.test", "/robots.txt")[0] == 404  # no robots.txt: all allowed


def test_server_slow_url_answers_late(sample):
    dest, _ = sample
    with ImageServer(str(dest)) as server:
        with pytest.raises((TimeoutError, urllib.error.URLError)):
            _get(server, "cdn.news-b.test", "/photos/slow/7405834.jpg", timeout=0.5)
        started = time.monotonic()
        assert _get(server, "cdn.news-b.test", "/photos/slow/7405834.jpg")[0] == 200
        assert time.monotonic() - started >= SLOW_DELAY_S - 0.1


def test_server_command_writes_its_address(sample, tmp_path):
    dest, _ = sample
    address_file = tmp_path / "address"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "danqing.sample.imageserver", str(dest),
                             "--address-file", str(address_file)], cwd=root, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(root)})
    try:
        deadline = time.monotonic() + 20
        while not address_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        address = address_file.read_text()
        req = urllib.request.Request(f"http://{address}/food/805755.jpg", headers={"Host": "pic.tw-d.test"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.read() == (EXAMPLES / "images" / "805755.jpg").read_bytes()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
