"""Async HTTP for images: a global limit per loop, the per-host budget, timeouts, size cap, guarded
redirects, retries by failure class, robots.txt and X-Robots-Tag.

What is known of each host (its budget, a Retry-After pause, its breaker), robots.txt and DNS answers
are kept by this loop, or shared by every worker of the crawl through the coordination store
(DownloadConfig.coordination_url): see hosts.py, robots.py and dns.py.
"""

from __future__ import annotations

import asyncio
import math
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from danqing.config import DownloadConfig
from danqing.download import dns, guard, robots
from danqing.download.coord import Store
from danqing.download.hosts import PAUSED, TRIPPED, Hosts, Lease, LocalHosts, SharedHosts
from danqing.http import retry_after
from danqing.stats import StageStats

DOWNLOAD_NOT_FOUND = "download_not_found"  # 404, 410
DOWNLOAD_HTTP_ERROR = "download_http_error"  # any other status we cannot use (403, 204, 3xx without Location)
DOWNLOAD_HTTP_5XX = "download_http_5xx"
DOWNLOAD_RATE_LIMITED = "download_rate_limited"  # 429 still after retries, or Retry-After too long
DOWNLOAD_TIMEOUT = "download_timeout"
DOWNLOAD_CONNECTION = "download_connection"  # refused, reset, closed mid-body
DOWNLOAD_DNS = "download_dns"  # the name does not exist
DOWNLOAD_DNS_TEMPORARY = "download_dns_temporary"  # the resolver did not answer (timed out, failed)
DOWNLOAD_TOO_LARGE = "download_too_large"
DOWNLOAD_TOO_MANY_REDIRECTS = "download_too_many_redirects"  # also a redirect loop
DOWNLOAD_HOST_TRIPPED = "download_host_tripped"

TRANSIENT = frozenset({DOWNLOAD_HTTP_5XX, DOWNLOAD_RATE_LIMITED, DOWNLOAD_TIMEOUT, DOWNLOAD_CONNECTION,
                       DOWNLOAD_DNS_TEMPORARY, DOWNLOAD_HOST_TRIPPED, robots.ROBOTS_UNREACHABLE})
_REDIRECTS = (301, 302, 303, 307, 308)
# Failures that say a host is down or overloaded (not that one file is missing).
_HOST_FAILURES = frozenset({DOWNLOAD_HTTP_5XX, DOWNLOAD_RATE_LIMITED, DOWNLOAD_TIMEOUT, DOWNLOAD_CONNECTION,
                            DOWNLOAD_DNS_TEMPORARY})
# What a host's state says instead of a request: skipped until its cool-down ends, or paused past our wait.
_REFUSALS = {TRIPPED: DOWNLOAD_HOST_TRIPPED, PAUSED: DOWNLOAD_RATE_LIMITED}


def error_class(reason: str) -> str:
    """"" for success, "transient" (a rerun tries again) or "permanent" (never refetched)."""
    if not reason:
        return ""
    return "transient" if reason in TRANSIENT else "permanent"


@dataclass
class Fetched:
    reason: str = ""  # "" = body holds the image bytes
    http_status: int = 0
    body: bytes | None = None
    attempts: int = 0
    wait_s: float | None = None  # Retry-After of a 429/503


@dataclass
class _Hop:
    fetched: Fetched | None = None  # the hop ended the fetch
    location: str | None = None  # or it redirects here


class Fetcher:
    """One aiohttp session per event loop; `fetch(url)` never raises for anything a server can do.

    `crawl` names the crawl whose robots.txt answers are shared (with a coordination store).
    """

    def __init__(self, cfg: DownloadConfig, stats: StageStats, crawl: str = "local"):
        self.cfg, self.stats, self.crawl = cfg, stats, crawl
        self._global = asyncio.Semaphore(cfg.concurrency)

    async def __aenter__(self) -> Fetcher:
        cfg = self.cfg
        self.store = await Store.connect(cfg.coordination_url) if cfg.coordination_url else None
        self.hosts: Hosts = SharedHosts(cfg, self.store) if self.store is not None else LocalHosts(cfg)
        self.resolver = dns.CachingResolver(self.store)
        connector = aiohttp.TCPConnector(
            limit=cfg.concurrency, limit_per_host=0, ttl_dns_cache=300,
            resolver=guard.GuardedResolver(cfg.host_overrides, cfg.allow_loopback, self.resolver))
        timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s, sock_connect=cfg.connect_timeout_s,
                                        sock_read=cfg.read_timeout_s)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": cfg.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        self.robots = robots.RobotsCache(
            self._fetch_robots, cfg.user_agent, self.store,
            key_prefix=self.store.key(self.crawl, "robots", "") if self.store is not None else "",
            passing=frozenset(_REFUSALS.values()),
            # Long enough for a fetch that waits out a pause and follows its redirects.
            lock_s=cfg.max_retry_after_s + 6 * cfg.robots_timeout_s)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()
        await self.hosts.close()
        if self.store is not None:
            await self.store.close()

    async def fetch(self, url: str, room: asyncio.Semaphore | None = None) -> Fetched:
        """The image bytes or a failure reason, after retries of transient failures.

        `room` bounds the bodies a caller holds: a permit is taken right before each request (never while
        waiting for a host's budget, where it would hold up other hosts); the caller keeps it when the body
        comes back, and releases it once done with the body.
        """
        attempts = 0
        while True:
            attempts += 1
            got = await self._follow(url, room)
            got.attempts = attempts
            if got.reason not in _HOST_FAILURES or attempts > self.cfg.retries:
                return got
            wait = self.cfg.backoff_s * 2 ** (attempts - 1)
            if got.wait_s is not None:
                if got.wait_s > self.cfg.max_retry_after_s:
                    return got  # a rerun of the shard tries again later
                wait = max(wait, got.wait_s)
            self.stats.error("download_retry")
            await asyncio.sleep(wait)

    async def _follow(self, url: str, room: asyncio.Semaphore | None) -> Fetched:
        """One try: every hop of the redirect chain checked by the guard and robots.txt."""
        seen = {url}
        for _ in range(self.cfg.max_redirects + 1):
            reason = guard.check_url(url, self.cfg.allow_loopback)
            if reason is None and self.cfg.respect_robots:
                reason = await self.robots.check(url)
            if reason:
                return Fetched(reason)
            hop = await self._hop(url, room)
            if hop.fetched is not None:
                return hop.fetched
            url = hop.location
            if url in seen:
                return Fetched(DOWNLOAD_TOO_MANY_REDIRECTS)
            seen.add(url)
        return Fetched(DOWNLOAD_TOO_MANY_REDIRECTS)

    async def _hop(self, url: str, room: asyncio.Semaphore | None) -> _Hop:
        host = (urlsplit(url).hostname or "").lower()
        lease = await self.hosts.acquire(host)
        if isinstance(lease, str):  # paused past our wait: retrying within this run is no use
            return _Hop(Fetched(_REFUSALS[lease], wait_s=math.inf if lease == PAUSED else None))
        try:
            # Host slot first, then a global one: a crowded host never holds global slots while it waits.
            async with self._global:
                if room is not None:
                    await room.acquire()
                hop = None
                try:
                    await self.hosts.on_time(lease)
                    hop = await self._request(url)
                finally:
                    if room is not None and (hop is None or hop.fetched is None or hop.fetched.body is None):
                        room.release()  # no body for the caller to hold: the permit goes back now
        except BaseException:
            await asyncio.shield(self.hosts.release(lease, None))
            raise
        got = hop.fetched or Fetched()
        await self._done(lease, got.reason, got.http_status, got.wait_s)
        return hop

    async def _done(self, lease: Lease, reason: str | None, status: int, wait_s: float | None) -> None:
        """Tell the host's state how a request went (reason None: say nothing to the breaker); the slot back."""
        if wait_s is None and status == 429:
            wait_s = self.cfg.backoff_s  # slow down, without a word of how long
        if wait_s:
            await self.hosts.pause(lease.host, wait_s)  # before the slot is free for the next request
        if await self.hosts.release(lease, reason in _HOST_FAILURES if reason is not None else None):
            self.stats.error(DOWNLOAD_HOST_TRIPPED)

    async def _request(self, url: str) -> _Hop:
        try:
            async with self.session.get(url, allow_redirects=False) as resp:
                status = resp.status
                if status in _REDIRECTS:
                    location = resp.headers.get("Location")
                    if not location:
                        return _Hop(Fetched(DOWNLOAD_HTTP_ERROR, status))
                    return _Hop(location=urljoin(url, location))
                if not 200 <= status < 300:
                    return _Hop(self._status_failure(resp))
                if self.cfg.respect_robots and robots.noai(resp.headers.getall("X-Robots-Tag", []),
                                                           self.cfg.user_agent):
                    return _Hop(Fetched(robots.ROBOTS_NOAI, status))
                body = await self._read_capped(resp)
                if body is None:
                    return _Hop(Fetched(DOWNLOAD_TOO_LARGE, status))
                return _Hop(Fetched("", status, body))
        except Exception as e:  # noqa: BLE001 - every failure becomes a reason code, none escapes
            return _Hop(Fetched(_exception_reason(e)))

    def _status_failure(self, resp: aiohttp.ClientResponse) -> Fetched:
        status = resp.status
        if status in (404, 410):
            return Fetched(DOWNLOAD_NOT_FOUND, status)
        wait = retry_after(resp.headers.get("Retry-After"))
        if status == 429:
            return Fetched(DOWNLOAD_RATE_LIMITED, status, wait_s=wait)
        if status >= 500 or status == 408:
            return Fetched(DOWNLOAD_HTTP_5XX, status, wait_s=wait)
        return Fetched(DOWNLOAD_HTTP_ERROR, status)

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes | None:
        return await read_capped(resp, self.cfg.max_bytes)

    async def _fetch_robots(self, url: str) -> tuple[int, bytes] | str:
        """GET a robots.txt (redirects followed, each hop guarded and within the host's budget); a reason
        code when unreachable."""
        for _ in range(5):
            if guard.check_url(url, self.cfg.allow_loopback):
                return 404, b""  # no rules: the image request meets the guard itself and says why
            lease = await self.hosts.acquire((urlsplit(url).hostname or "").lower())
            if isinstance(lease, str):
                return _REFUSALS[lease]
            try:
                got = await self._robots_hop(url)
            except BaseException:
                await asyncio.shield(self.hosts.release(lease, None))
                raise
            if isinstance(got, str):
                await self._done(lease, None, 0, None)
                return got
            status, body, location, wait_s = got
            await self._done(lease, None, status, wait_s)  # robots.txt answers feed no breaker
            if location is None:
                return status, body
            url = location
        return robots.ROBOTS_UNREACHABLE

    async def _robots_hop(self, url: str) -> tuple[int, bytes, str | None, float | None] | str:
        """(status, body, where it redirects, Retry-After), or a reason code."""
        timeout = aiohttp.ClientTimeout(total=self.cfg.robots_timeout_s, sock_connect=self.cfg.connect_timeout_s)
        try:
            async with self.session.get(url, allow_redirects=False, timeout=timeout) as resp:
                wait = retry_after(resp.headers.get("Retry-After")) if resp.status in (429, 503) else None
                if resp.status in _REDIRECTS and resp.headers.get("Location"):
                    return resp.status, b"", urljoin(url, resp.headers["Location"]), wait
                body = await read_capped(resp, 500_000) if resp.status < 300 else b""
                return resp.status, body or b"", None, wait
        except Exception as e:  # noqa: BLE001 - an unreachable robots.txt is a reason, not a crash
            reason = _exception_reason(e)
            # A refused address: as above, the image request meets the guard and says why.
            return (404, b"", None, None) if reason == guard.DOWNLOAD_BLOCKED_ADDRESS else reason


async def read_capped(resp: aiohttp.ClientResponse, cap: int) -> bytes | None:
    """The body, or None past `cap` bytes: told by Content-Length, else counted while streaming.

    Content-Length of a compressed body says nothing of its decoded size (a gzip bomb), so those stream.
    """
    if resp.content_length is not None and resp.content_length > cap:
        return None
    if resp.content_length is not None and not resp.headers.get("Content-Encoding"):
        return await resp.read()
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > cap:
            return None
    return bytes(buf)


def _exception_reason(e: BaseException) -> str:
    if isinstance(e, aiohttp.ClientConnectorDNSError):
        cause = e.os_error
        if isinstance(cause, guard.BlockedAddress):
            return guard.DOWNLOAD_BLOCKED_ADDRESS
        if isinstance(cause, socket.gaierror) and cause.errno in dns.NOT_FOUND:
            return DOWNLOAD_DNS
        return DOWNLOAD_DNS_TEMPORARY
    if isinstance(e, TimeoutError):
        return DOWNLOAD_TIMEOUT
    if isinstance(e, (aiohttp.InvalidURL, ValueError, UnicodeError)):
        return guard.DOWNLOAD_BAD_URL
    return DOWNLOAD_CONNECTION
