"""Fetch and decode a shard's URLs: one event loop, or several, one per process.

One loop with decode threads stays well short of two cores: aiohttp's parsing, PIL's JPEG encoder
and the glue between them all want the GIL. So a big shard is cut into shares: every n-th URL of
the schedule, with 1/n of the global limit and decoders, each share fetched by its own loop and
decode pool in its own process (this one runs the first share). A child writes its results into the
shard's resume cache as the parent does and streams them back, pickled, a frame each on stdout.
Results are merged by URL, so the shard's output does not depend on how many loops fetched it.

Per-host budgets, robots.txt and DNS answers: with a coordination store every loop of every worker
shares them (hosts.py); without one each loop keeps its own, with 1/n of the per-host limits, and
asks robots.txt once per loop and host.

Run as `python -m danqing.download.engine` for a child: a pickled job on stdin, framed results on stdout.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import sys
from collections import defaultdict
from collections.abc import Callable
from urllib.parse import urlsplit

from danqing.config import DownloadConfig
from danqing.cpus import usable_cpus
from danqing.download import decode as dec
from danqing.download.cache import ResultCache
from danqing.download.fetcher import Fetcher, error_class
from danqing.download.frames import HEADER, widen_pipes
from danqing.download.pool import SINGLE_THREADED, open_pool
from danqing.stats import StageStats

# A child costs ~0.7 s of CPU in imports: below this many URLs per loop it does not pay.
MIN_URLS_PER_LOOP = 500


def fetch(urls: list[str], d: DownloadConfig, settings: dec.Settings, stats: StageStats,
          cache: ResultCache | None = None, crawl: str = "local") -> dict[str, dict]:
    """url -> result (reason, error_class, sizes, hashes, jpg) for every URL; never raises per URL."""
    order = schedule(urls)
    n = loops(d, len(order))
    if n == 1:
        return _run_loop(fetch_all(order, d, settings, stats, cache, crawl=crawl))
    shares = [order[i::n] for i in range(n)]
    return _run_loop(_fetch_split(shares, _share_of(d, n), settings, stats, cache, crawl))


def loops(d: DownloadConfig, n_urls: int) -> int:
    """How many event loops (processes) fetch a shard of n_urls."""
    if d.processes:
        return max(1, min(d.processes, n_urls))
    return max(1, min(usable_cpus(), n_urls // MIN_URLS_PER_LOOP))


def schedule(urls: list[str]) -> list[str]:
    """Deterministic order that interleaves hosts, so no host's queue holds up the others."""
    by_host: dict[str, list[str]] = defaultdict(list)
    for url in sorted(urls):
        by_host[_host(url)].append(url)
    ranked = [(i, host, url) for host, group in by_host.items() for i, url in enumerate(group)]
    return [url for _, _, url in sorted(ranked)]


async def fetch_all(urls: list[str], d: DownloadConfig, settings: dec.Settings, stats: StageStats,
                    cache: ResultCache | None = None, on_result: Callable[[str, dict], None] | None = None,
                    crawl: str = "local") -> dict[str, dict]:
    """One event loop's share: fetch, decode in the pool, record each result in the cache as it comes."""
    loop = asyncio.get_running_loop()
    results: dict[str, dict] = {}
    writes = []
    # Bounds requests and bodies held in memory while the decoders catch up. Taken right before a request,
    # not while a URL waits for its host's budget: a slow host's queue never holds up the other hosts.
    room = asyncio.Semaphore(2 * d.concurrency)

    async def one(url: str) -> None:
        got = await fetcher.fetch(url, room)
        r = {"reason": got.reason, "http_status": got.http_status, "attempts": got.attempts,
             "bytes": len(got.body) if got.body is not None else None}
        if got.body is not None:
            try:
                r.update(await decoders.decode(got.body))
            finally:
                room.release()
        r["error_class"] = error_class(r["reason"])
        results[url] = r
        if on_result is not None:
            on_result(url, r)
        if cache is not None:
            cache.add(url, r)
            if len(cache) >= d.cache_flush_every:
                writes.append(loop.run_in_executor(None, cache.write, cache.take()))

    decoders = await open_pool(settings, d.decode_pool, d.decode_workers)
    try:
        async with Fetcher(d, stats, crawl) as fetcher:
            await asyncio.gather(*(one(u) for u in urls))
    finally:
        if cache is not None:
            writes.append(loop.run_in_executor(None, cache.write, cache.take()))
        await asyncio.gather(*writes)
        await decoders.close()
    return results


def _share_of(d: DownloadConfig, n: int) -> DownloadConfig:
    """One loop's limits when n loops fetch a shard: together they stay within the shard's.

    Per-host budgets shared through a coordination store hold for all loops at once: they are not split.
    """
    update = {
        "concurrency": max(1, d.concurrency // n),
        "decode_workers": max(1, (d.decode_workers or usable_cpus()) // n),  # not n pools of one per CPU
        "processes": 1,
    }
    if not d.coordination_url:
        update |= {
            "per_host_concurrency": max(1, d.per_host_concurrency // n),
            "per_host_requests_per_s": d.per_host_requests_per_s / n,
            "host_budgets": {host: b.model_copy(update={
                "concurrency": None if b.concurrency is None else max(1, b.concurrency // n),
                "requests_per_s": None if b.requests_per_s is None else b.requests_per_s / n,
            }) for host, b in d.host_budgets.items()},
            "host_max_failures": max(1, d.host_max_failures // n),
        }
    return d.model_copy(update=update)


async def _fetch_split(shares: list[list[str]], d: DownloadConfig, settings: dec.Settings, stats: StageStats,
                       cache: ResultCache | None, crawl: str) -> dict[str, dict]:
    """The first share here, the others in child processes started first, so their imports overlap."""
    results: dict[str, dict] = {}
    children = [asyncio.create_task(_child(pickle.dumps((share, d, settings, cache, crawl)), results, stats))
                for share in shares[1:]]
    try:
        results.update(await fetch_all(shares[0], d, settings, stats, cache, crawl=crawl))
        await asyncio.gather(*children)
    finally:
        for task in children:
            task.cancel()
        await asyncio.gather(*children, return_exceptions=True)
    return results


async def _child(job: bytes, results: dict[str, dict], stats: StageStats) -> None:
    """One share in a child process: its results stream back a frame each as they come, then its error counts."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "danqing.download.engine", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, limit=1 << 24, env={**os.environ, **SINGLE_THREADED})
    errors = None
    try:
        proc.stdin.write(job)
        await proc.stdin.drain()
        proc.stdin.close()
        while True:
            (n,) = HEADER.unpack(await proc.stdout.readexactly(HEADER.size))
            url, r = pickle.loads(await proc.stdout.readexactly(n))
            if url is None:  # the last frame
                errors = r
                break
            results[url] = r
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the child died: its exit status says so below
    except BaseException:  # cancelled: the parent failed, the child must not outlive it
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if await proc.wait() != 0 or errors is None:
        # What it finished is in the resume cache: a retry of the shard fetches only the rest.
        raise RuntimeError(f"download child process ended early (exit status {proc.returncode})")
    for reason, count in errors.items():
        stats.error(reason, count)


def _host(url: str) -> str:
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _run_loop(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def _die_with_parent() -> None:
    """Linux: a killed shard task takes its children along instead of leaving them fetching."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the child ends when its share is done
        pass


def _child_main() -> None:
    _die_with_parent()
    widen_pipes()
    # Frames go to the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    urls, d, settings, cache, crawl = pickle.loads(sys.stdin.buffer.read())

    def send(url: str | None, r: dict) -> None:
        frame = pickle.dumps((url, r), protocol=pickle.HIGHEST_PROTOCOL)
        out.write(HEADER.pack(len(frame)))
        out.write(frame)
        out.flush()

    stats = StageStats()
    _run_loop(fetch_all(urls, d, settings, stats, cache, on_result=send, crawl=crawl))
    send(None, dict(stats.errors))
    out.close()


if __name__ == "__main__":
    _child_main()
