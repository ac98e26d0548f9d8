"""Per-host budgets that hold across workers: a real Redis, download tasks in their own processes, and a
real image server on loopback that meters, per host, what it sees of us."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
import redis
from politeness_helpers import coordination_url, host_site, start_task, urls_of, write_input

from danqing import io
from danqing.config import DownloadConfig, PipelineConfig
from danqing.download import coord, engine
from danqing.download.fetcher import Fetcher
from danqing.sample.imageserver import ImageServer
from danqing.shard import run_local
from danqing.stats import StageStats

CRAWL = "CC-MAIN-2099-01"
NO_VISUAL_FILTERS = {"min_side_px": 0, "min_aspect": 0.0, "max_aspect": 1e9, "min_pixel_std": 0,
                     "min_laplacian_var": 0, "min_hist_entropy_bits": 0}


def cfg_for(root, server: ImageServer | None, url: str, **download) -> PipelineConfig:
    return PipelineConfig.from_overrides({
        "root": str(root), "visual": NO_VISUAL_FILTERS,
        "download": {"host_overrides": server.host_overrides if server else {}, "allow_loopback": True,
                     "coordination_url": url, "coordination_lease_s": 1.0, "resize_mode": "center_crop",
                     "image_size_px": 64, "decode_workers": 1, "processes": 1, "backoff_s": 0.05, **download},
    })


async def fetch_in_loops(cfg: PipelineConfig, *url_lists: list[str]) -> list[list]:
    """Each list fetched by its own Fetcher (its own loop's state or its own store connection), at once."""
    async def one(urls):
        async with Fetcher(cfg.download, StageStats(), CRAWL) as f:
            return await asyncio.gather(*(f.fetch(u) for u in urls))

    return await asyncio.gather(*(one(urls) for urls in url_lists))


def arrivals(server: ImageServer, paths: set[str]) -> list[tuple[float, float]]:
    """(came, left) of every request for these paths, in order of arrival."""
    return sorted((came, left) for came, left, _, path, _ in server.meter.log if path in paths)


def most_at_once(spans: list[tuple[float, float]]) -> int:
    events = sorted([(came, 1) for came, _ in spans] + [(left, -1) for _, left in spans])
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def test_four_tasks_share_each_hosts_budget_and_its_robots_txt(tmp_path):
    slow, fast = "slow.test", "fast.test"
    site = host_site(tmp_path / "site", {slow: 40, fast: 100}, {
        "latency_s": {slow: 0.2},  # connections bind here: 2 at a time, 10 requests/s
        "limits": {fast: 20},  # requests per second bind here; the host answers 429 past 20
        "robots": {slow: "User-agent: *\nAllow: /\n", fast: "User-agent: *\nDisallow: /private/\n"}})
    with coordination_url() as url, ImageServer(str(site)) as server:
        cfg = cfg_for(tmp_path / "data", server, url, per_host_concurrency=2, per_host_requests_per_s=0,
                      host_budgets={fast: {"concurrency": 8, "requests_per_s": 20}})
        inputs = [write_input(tmp_path / f"in{t}.parquet", urls_of(slow, 10, 10 * t) + urls_of(fast, 25, 25 * t))
                  for t in range(4)]
        tasks = [start_task(inp, str(tmp_path / "out" / f"{t:05d}"), cfg.model_dump_json(), CRAWL)
                 for t, inp in enumerate(inputs)]
        assert [task.wait(timeout=120) for task in tasks] == [0] * 4
        seen = server.meter.summary()
        robots = Counter(host for _, _, host, path, _ in server.meter.log if path == "/robots.txt")
    reasons = [r for t in range(4)
               for r in pq.read_table(tmp_path / "out" / f"{t:05d}.parquet")["drop_reason"].to_pylist()]
    assert reasons == [""] * 140
    assert seen[slow]["max_in_flight"] == 2  # the budget, used in full, never passed: 4 tasks alone would make 8
    assert seen[fast]["too_many"] == 0 and 10 <= seen[fast]["max_per_s"] <= 20
    assert seen[fast]["max_in_flight"] <= 8
    assert robots == {slow: 1, fast: 1}  # once per host for the crawl, not once per task


@pytest.mark.parametrize("shared", [True, False])
def test_loops_share_a_budget_only_through_the_store(tmp_path, shared):
    """Without coordination_url each loop keeps its own budget, as before: two loops make 2 x C."""
    host = "slow.test"
    site = host_site(tmp_path / "site", {host: 8}, {"latency_s": {host: 0.3}})
    with coordination_url() as url, ImageServer(str(site)) as server:
        cfg = cfg_for(tmp_path, server, url if shared else "", per_host_concurrency=2, respect_robots=False)
        got = asyncio.run(fetch_in_loops(cfg, urls_of(host, 4), urls_of(host, 4, 4)))
        seen = server.meter.summary()[host]
    assert [r.reason for loop in got for r in loop] == [""] * 8
    assert seen["max_in_flight"] == (2 if shared else 4)


def test_a_task_killed_while_holding_connections_gives_them_back_within_its_lease(tmp_path):
    host = "hold.test"
    held, after = {f"/img/{i}.jpg" for i in range(2)}, {f"/img/{i}.jpg" for i in range(2, 6)}
    site = host_site(tmp_path / "site", {host: 6}, {"delay_s": {f"{host}{p}": 30 for p in held} |
                                                               {f"{host}{p}": 0.4 for p in after}})
    with coordination_url() as url, ImageServer(str(site)) as server:
        cfg = cfg_for(tmp_path / "data", server, url, per_host_concurrency=2, respect_robots=False,
                      read_timeout_s=60, total_timeout_s=60)
        task = start_task(write_input(tmp_path / "in.parquet", urls_of(host, 2)), str(tmp_path / "out" / "00000"),
                          cfg.model_dump_json(), CRAWL)
        deadline = time.monotonic() + 60
        while server.meter.in_flight[host] < 2:
            assert time.monotonic() < deadline and task.poll() is None
            time.sleep(0.02)
        redis_url, prefix = coord.parse(url)
        assert redis.Redis.from_url(redis_url).zcard(f"{prefix}:host:{{{host}}}:slots") == 2  # both slots are its
        task.kill()
        task.wait()
        killed = time.time()
        (got,) = asyncio.run(asyncio.wait_for(fetch_in_loops(cfg, urls_of(host, 4, 2)), 30))  # leaked: never
        spans = arrivals(server, after)
    assert [r.reason for r in got] == [""] * 4
    assert spans[0][0] - killed < cfg.download.coordination_lease_s + 1.0  # its leases lapsed, unrenewed
    assert most_at_once(spans) == 2  # and the whole budget is back, not what the killed task left of it


@pytest.mark.parametrize("shared", [True, False])
def test_a_429_seen_by_one_task_pauses_the_host_for_every_task(tmp_path, shared):
    host = "busy.test"
    key = f"{host}/img/0.jpg"
    site = host_site(tmp_path / "site", {host: 4}, {"status": {key: 429}, "headers": {key: {"Retry-After": "2"}}})
    with coordination_url() as url, ImageServer(str(site)) as server:
        cfg = cfg_for(tmp_path, server, url if shared else "", retries=0, respect_robots=False)

        async def scenario():
            async with Fetcher(cfg.download, StageStats(), CRAWL) as a, Fetcher(cfg.download, StageStats(), CRAWL) as b:
                first = await a.fetch(f"http://{key}")
                told = time.time()
                return first, told, await asyncio.gather(*(b.fetch(u) for u in urls_of(host, 3, 1)))

        first, told, rest = asyncio.run(scenario())
        came = [c for c, _ in arrivals(server, {f"/img/{i}.jpg" for i in (1, 2, 3)})]
    assert first.reason == "download_rate_limited" and [r.reason for r in rest] == [""] * 3
    if shared:
        assert min(came) > told + 1.8  # Retry-After: 2, honoured by a task that never saw the 429
    else:
        assert max(came) < told + 1.0  # one loop's 429 stays its own, as before


def test_a_tripped_host_is_skipped_by_every_task_until_its_cooldown_ends(tmp_path):
    dead = "dead.test"
    with coordination_url() as url:
        cfg = cfg_for(tmp_path, None, url, host_overrides={dead: "127.0.0.1:1"}, host_max_failures=2, retries=0,
                      host_cooldown_s=0.3, per_host_concurrency=1, respect_robots=False)

        async def scenario():
            stats = StageStats()
            async with Fetcher(cfg.download, stats, CRAWL) as a, Fetcher(cfg.download, StageStats(), CRAWL) as b:
                first = await asyncio.gather(*(a.fetch(u) for u in urls_of(dead, 2)))
                skipped = await b.fetch(f"http://{dead}/img/9.jpg")
                await asyncio.sleep(0.35)  # the cool-down
                return first, skipped, await b.fetch(f"http://{dead}/img/9.jpg"), stats

        first, skipped, again, stats = asyncio.run(scenario())
    assert [r.reason for r in first] == ["download_connection"] * 2
    assert stats.errors["download_host_tripped"] == 1
    assert skipped.reason == "download_host_tripped" and skipped.attempts == 1
    assert again.reason == "download_connection"  # tried again once the cool-down ended


def test_dns_failures_are_their_own_reason_and_one_lookup_serves_every_task(tmp_path):
    """`.invalid` never resolves (RFC 6761): the machine's resolver answers NXDOMAIN."""
    urls = [f"http://no-such-host.invalid/{i}.jpg" for i in range(3)]
    with coordination_url() as url:
        cfg = cfg_for(tmp_path, None, url, allow_loopback=False, retries=0, respect_robots=False)

        async def scenario():
            async with Fetcher(cfg.download, StageStats(), CRAWL) as a:
                first = await asyncio.gather(*(a.fetch(u) for u in urls[:2]))
            async with Fetcher(cfg.download, StageStats(), CRAWL) as b:  # another task, later
                return first, a.resolver.lookups, await b.fetch(urls[2]), b.resolver.lookups

        first, a_lookups, later, b_lookups = asyncio.run(scenario())
    assert [r.reason for r in first] + [later.reason] == ["download_dns"] * 3
    assert (a_lookups, b_lookups) == (1, 0)  # the second task had the answer from the store

    # A shard counts them apart from every other failure (embedded default: no store).
    local = cfg.model_copy(update={"download": cfg.download.model_copy(update={"coordination_url": ""})})
    run_local("download", [write_input(tmp_path / "in.parquet", urls)], str(tmp_path / "out" / "00000"), local)
    stats = io.read_json(str(tmp_path / "out" / "00000_stats.json"))["stats"]
    assert stats["dropped"] == {"download_dns": 3}


def test_a_value_stored_while_a_worker_waits_for_the_lock_is_not_produced_again():
    """A worker that read no value, then got the lock after its producer let go, takes the stored
    value: robots.txt is fetched once per host, however the workers interleave."""
    produced = []

    class StaleFirstRead:  # the worker's first read happened just before the other one stored the value
        def __init__(self, client):
            self.client, self.reads = client, 0

        def __getattr__(self, name):
            return getattr(self.client, name)

        async def get(self, key):
            self.reads += 1
            return None if self.reads == 1 else await self.client.get(key)

    async def produce() -> bytes:
        produced.append(1)
        return b"200\nUser-agent: *"

    async def run(url: str) -> bytes:
        first, second = await coord.Store.connect(url), await coord.Store.connect(url)
        try:
            key = first.key(CRAWL, "robots", "http://slow.test")
            assert await first.once(key, produce, lambda v: 60.0, 5.0) == b"200\nUser-agent: *"
            second.client = StaleFirstRead(second.client)
            return await second.once(key, produce, lambda v: 60.0, 5.0)
        finally:
            await first.close()
            await second.client.client.aclose()

    with coordination_url() as url:
        assert asyncio.run(run(url)) == b"200\nUser-agent: *"
    assert produced == [1]


def test_a_shards_loops_split_the_budget_only_without_a_store(monkeypatch):
    d = DownloadConfig(per_host_concurrency=8, per_host_requests_per_s=20, host_max_failures=16,
                       host_budgets={"cdn.test": {"concurrency": 16}}, coordination_url="")
    share = engine._share_of(d, 4)
    assert (share.per_host_concurrency, share.per_host_requests_per_s, share.host_max_failures) == (2, 5, 4)
    assert share.host_budgets["cdn.test"].concurrency == 4 and share.host_budgets["cdn.test"].requests_per_s is None
    shared = engine._share_of(d.model_copy(update={"coordination_url": "redis://127.0.0.1:6379/2"}), 4)
    assert (shared.per_host_concurrency, shared.per_host_requests_per_s, shared.host_max_failures) == (8, 20, 16)
    assert shared.concurrency == d.concurrency // 4  # the loop's own limit still splits


def test_the_coordination_url_comes_from_the_environment_and_stays_out_of_the_hash(monkeypatch):
    monkeypatch.delenv("DANQING_COORDINATION_URL", raising=False)
    assert PipelineConfig().download.coordination_url == ""  # the embedded default: no store
    base = PipelineConfig(root="/a").hash()
    monkeypatch.setenv("DANQING_COORDINATION_URL", "redis://:secret@redis:6379/2")
    assert PipelineConfig(root="/a").download.coordination_url == "redis://:secret@redis:6379/2"
    assert PipelineConfig(root="/a").hash() == base
    assert coord.parse("redis://h:1/2?prefix=t-1&ssl_cert_reqs=none") == ("redis://h:1/2?ssl_cert_reqs=none", "t-1")


def test_an_unreachable_store_fails_the_shard_with_the_password_masked():
    async def scenario():
        await coord.Store.connect("redis://:hunter22@127.0.0.1:1/0")

    with pytest.raises(coord.CoordinationError) as e:
        asyncio.run(scenario())
    assert "hunter22" not in str(e.value) and "127.0.0.1:1" in str(e.value)


def test_the_scoring_pod_gets_no_coordination_url(monkeypatch):
    """The pod does not download, and the URL may hold the store's password: it stays out of pod arguments."""
    from operators.scoring import _pod_config

    monkeypatch.setenv("DANQING_COORDINATION_URL", "redis://:hunter22@redis:6379/2")
    config = _pod_config(PipelineConfig())
    assert "coordination_url" not in config["download"] and "hunter22" not in str(config)
