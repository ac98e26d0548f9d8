"""Stage 3 against a real loopback server that injects every fault the brief lists."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from download_helpers import FaultServer
from source_helpers import moto_s3, s3_options

from danqing import io
from danqing.config import DownloadConfig, PipelineConfig
from danqing.cpus import usable_cpus
from danqing.download import engine, guard, robots
from danqing.download.engine import loops, schedule
from danqing.download.fetcher import _exception_reason
from danqing.records import sample_id
from danqing.shard import run_local

HOST = "img.test"

# path -> (drop_reason, error_class) the shard must end with.
CASES = {
    "/img/159500.jpg": ("", ""),
    "/img/1755201.jpg": ("", ""),
    "/hop": ("", ""),
    "/gone.jpg": ("download_not_found", "permanent"),
    "/flaky/a.jpg": ("", ""),
    "/down/a.jpg": ("download_http_5xx", "transient"),
    "/ratelimit/a.jpg": ("", ""),
    "/slow.jpg": ("download_timeout", "transient"),
    "/reset.jpg": ("download_connection", "transient"),
    "/loop/a": ("download_too_many_redirects", "permanent"),
    "/meta": ("download_blocked_address", "permanent"),
    "/html": ("download_not_image", "permanent"),
    "/bomb.png": ("download_decompression_bomb", "permanent"),
    "/truncated.jpg": ("download_truncated", "permanent"),
    "/huge.jpg": ("download_too_large", "permanent"),
    "/gzbomb.jpg": ("download_too_large", "permanent"),
    "/img/no such.jpg": ("download_not_found", "permanent"),
    "http://127.0.0.1:1/a.jpg": ("download_connection", "transient"),
    "/private/a.jpg": ("robots_disallowed", "permanent"),
    "/noai.jpg": ("robots_noai", "permanent"),
    "/twotone.png": ("visual_low_entropy", "permanent"),
}


def make_cfg(root: Path | str, port: int, **download) -> PipelineConfig:
    return PipelineConfig.from_overrides({
        "root": str(root),
        "download": {"host_overrides": {HOST: f"127.0.0.1:{port}", "meta.test": "169.254.169.254:80"},
                     "allow_loopback": True, "connect_timeout_s": 1.0, "read_timeout_s": 0.5,
                     "total_timeout_s": 2.0, "retries": 1, "backoff_s": 0.05, "max_bytes": 1_000_000,
                     "resize_mode": "center_crop", "image_size_px": 128, "decode_pool": "thread",
                     "decode_workers": 2, "coordination_url": "", "per_host_requests_per_s": 0, **download},
    })


def write_input(path: Path, urls: list[str]) -> str:
    rows = [{"id": sample_id("w.warc.gz", i, u, f"alt {i}"), "page_url": f"http://{HOST}/page{i}.html", "url": u,
             "alt_text": f"alt {i}", "caption": f"图片说明 {i}", "page_language": "zho", "charset": "utf-8",
             "warc_filename": "w.warc.gz", "warc_record_offset": i, "warc_record_length": 100, "drop_reason": ""}
            for i, u in enumerate(urls)]
    uri = str(path / "refine.parquet")
    io.write_parquet(pa.Table.from_pylist(rows), uri)
    return uri


def run(cfg: PipelineConfig, inp: str, out: Path) -> pa.Table:
    run_local("download", [inp], str(out / "00000"), cfg)
    assert not (out / "00000_cache").exists()  # the shard is done: its resume cache is gone
    return pq.read_table(out / "00000.parquet")


def assert_image_spans(table: pa.Table, tar_path: Path) -> None:
    """tar_offset/tar_size give each kept row's image bytes in the tar (its stored JPEG), and are null elsewhere."""
    assert table.schema.field("tar_offset").type == table.schema.field("tar_size").type == pa.int64()
    data = tar_path.read_bytes()
    with tarfile.open(tar_path) as tar:
        for r in table.to_pylist():
            if r["drop_reason"]:
                assert r["tar_offset"] is None and r["tar_size"] is None
                continue
            image = data[r["tar_offset"]:r["tar_offset"] + r["tar_size"]]
            assert image == tar.extractfile(f"{r['id']}.jpg").read()
            assert hashlib.sha256(image).hexdigest() == r["sha256"]


def run_failing_at_commit(cfg: PipelineConfig, inp: str, prefix: str) -> None:
    """Fetch everything and write the parquet and the tar, then fail writing the stats (the commit)."""
    def storage_down(*_args, **_kwargs):
        raise OSError("storage down")

    with pytest.MonkeyPatch.context() as m:
        m.setattr(io, "write_json", storage_down)
        with pytest.raises(OSError, match="storage down"):
            run_local("download", [inp], prefix, cfg)


def with_resume(cfg: PipelineConfig, mode: str) -> PipelineConfig:
    return cfg.model_copy(update={"download": cfg.download.model_copy(update={"resume": mode})})


@pytest.fixture
def server():
    with FaultServer() as s:
        yield s


def test_every_fault_ends_in_its_status_and_a_rerun_fetches_only_transient_failures(tmp_path, server):
    cfg = make_cfg(tmp_path / "data", server.port)
    urls = [p if p.startswith("http") else f"http://{HOST}{p}" for p in CASES]
    inp = write_input(tmp_path, urls)
    table = run(cfg, inp, tmp_path / "out")
    got = {r["url"].removeprefix(f"http://{HOST}"): (r["drop_reason"], r["error_class"]) for r in table.to_pylist()}
    assert got == CASES
    assert table["url"].to_pylist() == urls  # every row, same order
    rows = {r["url"].removeprefix(f"http://{HOST}"): r for r in table.to_pylist()}
    assert rows["/flaky/a.jpg"]["attempts"] == 2 and rows["/ratelimit/a.jpg"]["attempts"] == 2
    assert rows["/img/159500.jpg"]["status"] == "success"
    assert (rows["/img/159500.jpg"]["stored_width"], rows["/img/159500.jpg"]["width"]) == (128, 800)
    assert len(rows["/img/159500.jpg"]["sha256"]) == 64 and len(rows["/img/159500.jpg"]["phash"]) == 16
    assert rows["/noai.jpg"]["status"] == "opted_out" and rows["/twotone.png"]["status"] == "filtered"
    assert server.hits["/robots.txt"] == 1
    assert server.hits["/private/a.jpg"] == 0  # robots.txt is asked before the image

    tar1 = (tmp_path / "out" / "00000.tar").read_bytes()
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {m.mtime for m in tar.getmembers()} == {0}
    kept = sorted(r["id"] for r in table.to_pylist() if not r["drop_reason"])
    assert names == sorted(f"{k}.{ext}" for k in kept for ext in ("jpg", "json", "txt"))
    assert_image_spans(table, tmp_path / "out" / "00000.tar")

    # A run that fails at its commit keeps its cache; the rerun fetches only the transient failures.
    run_failing_at_commit(cfg, inp, str(tmp_path / "again" / "00000"))
    assert (tmp_path / "again" / "00000_cache").is_dir()
    before = server.hits.copy()
    table2 = run(cfg, inp, tmp_path / "again")
    new = server.hits - before
    transient = {p for p, (_, cls) in CASES.items() if cls == "transient" and p.startswith("/")}
    assert {p for p in new if p != "/robots.txt"} == transient
    assert table2.drop_columns(["attempts"]) == table.drop_columns(["attempts"])
    assert (tmp_path / "again" / "00000.tar").read_bytes() == tar1


def test_resume_modes(tmp_path, server):
    urls = [f"http://{HOST}/gone.jpg", f"http://{HOST}/down/b.jpg", f"http://{HOST}/img/218517.jpg"]
    inp = write_input(tmp_path, urls)
    cfg = make_cfg(tmp_path / "data", server.port, retries=0)
    prefix = str(tmp_path / "out" / "00000")
    run_failing_at_commit(cfg, inp, prefix)  # leaves all three results in the cache
    before = server.hits.copy()
    run_failing_at_commit(with_resume(cfg, "failed"), inp, prefix)
    assert set(server.hits - before) - {"/robots.txt"} == {"/gone.jpg", "/down/b.jpg"}
    before = server.hits.copy()
    run_failing_at_commit(with_resume(cfg, "off"), inp, prefix)
    assert set(server.hits - before) - {"/robots.txt"} == {"/gone.jpg", "/down/b.jpg", "/img/218517.jpg"}
    before = server.hits.copy()
    table = run(cfg, inp, tmp_path / "out")  # transient, the default
    assert set(server.hits - before) - {"/robots.txt"} == {"/down/b.jpg"}
    assert table["drop_reason"].to_pylist() == ["download_not_found", "download_http_5xx", ""]


def test_killed_run_resumes_without_refetching(tmp_path):
    with FaultServer(slow_s=30) as server:
        fast = [f"http://{HOST}/img/{name}" for name in list(server.images)[:12]]
        urls = fast + [f"http://{HOST}/slow.jpg"]
        inp = write_input(tmp_path, urls)
        cfg = make_cfg(tmp_path / "data", server.port, read_timeout_s=60, total_timeout_s=60,
                       cache_flush_every=1, respect_robots=False)
        script = ("import sys; from danqing.config import PipelineConfig; from danqing.shard import run_local; "
                  "run_local('download', [sys.argv[1]], sys.argv[2], PipelineConfig.model_validate_json(sys.argv[3]))")
        proc = subprocess.Popen([sys.executable, "-c", script, inp, str(tmp_path / "out" / "00000"),
                                 cfg.model_dump_json()], cwd=Path(__file__).parent.parent)
        cache = tmp_path / "out" / "00000_cache"
        deadline = time.monotonic() + 30
        while len(list(cache.glob("*.parquet"))) < len(fast) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.kill()
        proc.wait()
        assert not (tmp_path / "out" / "00000.parquet").exists()
        assert len(list(cache.glob("*.parquet"))) >= len(fast)  # the killed run left its cache
        before = server.hits.copy()
        server.slow_s = 0
        table = run(cfg, inp, tmp_path / "out")  # and the finished rerun removed it
        assert set(server.hits - before) == {"/slow.jpg"}
        fresh = run(with_resume(cfg, "off"), inp, tmp_path / "fresh")
    assert table["drop_reason"].to_pylist() == [""] * len(urls)
    assert (tmp_path / "fresh" / "00000.tar").read_bytes() == (tmp_path / "out" / "00000.tar").read_bytes()
    assert fresh.drop_columns(["attempts"]) == table.drop_columns(["attempts"])


def test_a_shard_split_over_processes_gives_the_same_output_and_cache(tmp_path, server):
    names = list(server.images)
    urls = [f"http://{HOST}/img/{i}/{names[i % len(names)]}" for i in range(60)]
    urls += [f"http://{HOST}{p}" for p in ("/gone.jpg", "/down/x.jpg", "/down/y.jpg", "/html", "/private/x.jpg",
                                             "/truncated.jpg")]
    inp = write_input(tmp_path, urls + urls[:3])  # rows sharing a URL share its result
    outputs = {}
    for n in (1, 2):
        before = server.hits["/robots.txt"]
        outputs[n] = run(make_cfg(tmp_path / "data", server.port, processes=n), inp, tmp_path / f"p{n}")
        assert server.hits["/robots.txt"] - before == n  # each loop asks once: n loops really ran
    assert outputs[2] == outputs[1]
    assert (tmp_path / "p2" / "00000.tar").read_bytes() == (tmp_path / "p1" / "00000.tar").read_bytes()
    stats = {n: json.loads((tmp_path / f"p{n}" / "00000_stats.json").read_text())["stats"] for n in (1, 2)}
    assert stats[2]["errors"] == stats[1]["errors"] and stats[1]["errors"]["download_retry"] == 2

    # The child writes its results into the shard's cache: after a failed run, the rerun fetches only the
    # transient failures.
    cfg = make_cfg(tmp_path / "data", server.port, processes=2)
    run_failing_at_commit(cfg, inp, str(tmp_path / "p2" / "00000"))
    before = server.hits.copy()
    assert run(cfg, inp, tmp_path / "p2") == outputs[2]
    assert set(server.hits - before) - {"/robots.txt"} == {"/down/x.jpg", "/down/y.jpg"}


def test_the_cache_on_s3_stays_after_a_failed_run_and_goes_after_a_finished_one(tmp_path, server):
    urls = [f"http://{HOST}/img/159500.jpg", f"http://{HOST}/down/s3.jpg"]
    inp = write_input(tmp_path, urls)
    with moto_s3("danqing") as (endpoint, client):
        cfg = make_cfg("s3://danqing/data", server.port).model_copy(update={"storage_options": s3_options(endpoint)})

        def keys() -> set[str]:
            return {o["Key"] for o in client.list_objects_v2(Bucket="danqing").get("Contents", [])}

        run_failing_at_commit(cfg, inp, "s3://danqing/out/00000")
        assert any(k.startswith("out/00000_cache/") for k in keys())
        before = server.hits.copy()
        run_local("download", [inp], "s3://danqing/out/00000", cfg)
        assert set(server.hits - before) - {"/robots.txt"} == {"/down/s3.jpg"}
        assert keys() == {"out/00000.parquet", "out/00000.tar", "out/00000_stats.json"}
        table = io.read_parquet("s3://danqing/out/00000.parquet", storage_options=cfg.storage_options)
    assert table["drop_reason"].to_pylist() == ["", "download_http_5xx"]


def test_a_child_that_fails_fails_the_shard():
    import asyncio

    from danqing.download.engine import _child
    from danqing.stats import StageStats

    with pytest.raises(RuntimeError, match="ended early"):
        asyncio.run(_child(b"not a job", {}, StageStats()))


def test_loops_per_shard():
    assert loops(DownloadConfig(), 10) == 1  # too small to pay for a child's start
    assert loops(DownloadConfig(), 10**6) == usable_cpus()
    assert loops(DownloadConfig(processes=3), 2) == 2


def test_loops_share_the_shards_limits_and_decoders(monkeypatch):
    monkeypatch.setattr(engine, "usable_cpus", lambda: 8)
    share = engine._share_of(DownloadConfig(concurrency=64, per_host_concurrency=8), 4)
    assert (share.concurrency, share.per_host_concurrency, share.processes) == (16, 2, 1)
    assert share.decode_workers == 2  # 8 CPUs over 4 loops, not 8 decoders in each
    assert engine._share_of(DownloadConfig(decode_workers=3), 4).decode_workers == 1


def test_process_pool_and_shared_urls(tmp_path, server):
    url = f"http://{HOST}/img/185765.jpg"
    inp = write_input(tmp_path, [url, url, f"http://{HOST}/img/197142.jpg"])
    cfg = make_cfg(tmp_path / "data", server.port, decode_pool="process", resize_mode="keep_ratio")
    table = run(cfg, inp, tmp_path / "out")
    assert table["drop_reason"].to_pylist() == ["", "", ""]
    assert server.hits["/img/185765.jpg"] == 1  # fetched once for both rows
    assert table["stored_height"].to_pylist()[2] == 128 and table["stored_width"].to_pylist()[2] == 187
    assert_image_spans(table, tmp_path / "out" / "00000.tar")  # rows sharing a URL: a member each


def test_loopback_refused_unless_allowed_and_breaker_trips(tmp_path, server):
    urls = [f"http://{HOST}/img/159500.jpg", "http://127.0.0.1:9/x.jpg", "http://meta.test/latest"]
    cfg = make_cfg(tmp_path / "data", server.port, allow_loopback=False)
    table = run(cfg, write_input(tmp_path, urls), tmp_path / "out")
    assert set(table["drop_reason"].to_pylist()) == {"download_blocked_address"}
    assert sum(server.hits.values()) == 0

    dead = [f"http://dead.test/{i}.jpg" for i in range(12)]
    cfg = make_cfg(tmp_path / "data", server.port, host_overrides={"dead.test": "127.0.0.1:1"},
                   host_max_failures=3, retries=0, respect_robots=False, per_host_concurrency=1)
    run_local("download", [write_input(tmp_path, dead)], str(tmp_path / "dead" / "00000"), cfg)
    table = pq.read_table(tmp_path / "dead" / "00000.parquet")
    reasons = table["drop_reason"].to_pylist()
    assert reasons.count("download_connection") == 3
    assert reasons.count("download_host_tripped") == 9
    stats = io.read_json(str(tmp_path / "dead" / "00000_stats.json"))
    assert stats["stats"]["errors"]["download_host_tripped"] == 1
    assert stats["stats"]["total"] == stats["stats"]["kept"] + sum(stats["stats"]["dropped"].values())


@pytest.mark.parametrize("error, reason", [
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "download_dns"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"), "download_dns_temporary"),
    (guard.BlockedAddress("x"), "download_blocked_address"),
])
def test_dns_failures_by_class(error, reason):
    """No DNS query leaves the machine in tests, so the resolver's errors are classified directly."""
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("h.test", 80, False, True, None, None, None)
    assert _exception_reason(aiohttp.ClientConnectorDNSError(key, error)) == reason


@pytest.mark.parametrize("ip, allow_loopback, refused", [
    ("8.8.8.8", False, False), ("127.0.0.1", False, True), ("127.0.0.1", True, False), ("::1", True, False),
    ("10.1.2.3", True, True), ("172.16.0.1", True, True), ("192.168.1.1", True, True),
    ("169.254.169.254", True, True), ("::ffff:169.254.169.254", True, True), ("fd00:ec2::254", True, True),
    ("100.64.0.1", True, True), ("0.0.0.0", True, True), ("224.0.0.1", True, True), ("2606:4700::1", True, False),
])
def test_guard_blocked(ip, allow_loopback, refused):
    assert guard.blocked(ip, allow_loopback) is refused


@pytest.mark.parametrize("url, reason", [
    ("http://example.com/a.jpg", None), ("ftp://example.com/a.jpg", "download_bad_url"),
    ("http://169.254.169.254/", "download_blocked_address"), ("http://[::1]:80/", "download_blocked_address"),
    ("http://10.0.0.1/a.jpg", "download_blocked_address"), ("javascript:alert(1)", "download_bad_url"),
    ("http://example.com:99999/", "download_bad_url"),
])
def test_guard_check_url(url, reason):
    assert guard.check_url(url) == reason


@pytest.mark.parametrize("values, opted_out", [
    (["noai"], True), (["noindex, noimageai"], True), (["NoAI"], True), (["noindex"], False),
    (["otherbot: noai"], False), (["danqing-pipeline: noai"], True), (["otherbot: noindex, noai"], False),
    (["otherbot: noindex", "noai"], True), (["unavailable_after: 2030-01-01, noai"], True), ([], False),
])
def test_x_robots_tag(values, opted_out):
    assert robots.noai(values, PipelineConfig().download.user_agent) is opted_out


def test_schedule_interleaves_hosts_deterministically():
    urls = [f"http://a.test/{i}" for i in range(3)] + [f"http://b.test/{i}" for i in range(2)]
    assert schedule(list(reversed(urls))) == ["http://a.test/0", "http://b.test/0", "http://a.test/1",
                                              "http://b.test/1", "http://a.test/2"]


def test_decode_pool_survives_a_dead_worker():
    import asyncio

    from download_helpers import IMAGES

    from danqing.download.decode import Settings
    from danqing.download.pool import open_pool

    body = (IMAGES / "159500.jpg").read_bytes()

    async def scenario():
        pool = await open_pool(Settings.of(PipelineConfig()), "process", 1)
        try:
            first = pool._workers[0]
            first.proc.kill()  # what a decoder crash on a hostile file looks like from here
            while pool._workers[0] is first:
                await asyncio.sleep(0.01)
            return await pool.decode(body), await pool.decode(b"<html>")
        finally:
            await pool.close()

    ok, html = asyncio.run(scenario())
    assert ok["reason"] == "" and ok["width"] == 800
    assert html["reason"] == "download_not_image"
