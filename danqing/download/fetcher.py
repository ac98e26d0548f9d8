"""Async HTTP for images: global and per-host limits, timeouts, size cap, guarded redirects,
retries by failure class, a circuit breaker per host, robots.txt and X-Robots-Tag.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

from danqing.config import DownloadConfig
from danqing.download import guard, robots
from danqing.http import retry_after
from danqing.stats import StageStats

DOWNLOAD_NOT_FOUND = "download_not_found"  # 404, 410
DOWNLOAD_HTTP_ERROR = "download_http_error"  # any other status we cannot use (403, 204, 3xx without Location)
DOWNLOAD_HTTP_5XX = "download_http_5xx"
DOWNLOAD_RATE_LIMITED = "download_rate_limited"  # 429 still after retries, or Retry-After too long
DOWNLOAD_TIMEOUT = "download_timeout"
DOWNLOAD_CONNECTION = "download_connection"  # refused, reset, closed mid-body, temporary DNS failure
DOWNLOAD_DNS = "download_dns"  # the name does not exist
DOWNLOAD_TOO_LARGE = "download_too_large"
DOWNLOAD_TOO_MANY_REDIRECTS = "download_too_many_redirects"  # also a redirect loop
DOWNLOAD_HOST_TRIPPED = "download_host_tripped"

TRANSIENT = frozenset({DOWNLOAD_HTTP_5XX, DOWNLOAD_RATE_LIMITED, DOWNLOAD_TIMEOUT, DOWNLOAD_CONNECTION,
                       DOWNLOAD_HOST_TRIPPED, robots.ROBOTS_UNREACHABLE})
_REDIRECTS = (301, 302, 303, 307, 308)
# Failures that say a host is down or overloaded (not that one file is missing).
_HOST_FAILURES = frozenset({DOWNLOAD_HTTP_5XX, DOWNLOAD_RATE_LIMITED, DOWNLOAD_TIMEOUT, DOWNLOAD_CONNECTION})


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
    """One aiohttp session per shard; `fetch(url)` never raises for anything a server can do."""

    def __init__(self, cfg: DownloadConfig, stats: StageStats):
        self.cfg, self.stats = cfg, stats
        self._global = asyncio.Semaphore(cfg.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._failures: dict[str, int] = {}
        self._tripped: set[str] = set()

    async def __aenter__(self) -> Fetcher:
        cfg = self.cfg
        connector = aiohttp.TCPConnector(
            limit=cfg.concurrency, limit_per_host=0, ttl_dns_cache=300,
            resolver=guard.GuardedResolver(cfg.host_overrides, cfg.allow_loopback))
        timeout = aiohttp.ClientTimeout(total=cfg.total_timeout_s, sock_connect=cfg.connect_timeout_s,
                                        sock_read=cfg.read_timeout_s)
        self.session = aiohttp.ClientSession(
            connector=connector, timeout=timeout, headers={"User-Agent": cfg.user_agent},
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False)
        self.robots = robots.RobotsCache(self._fetch_robots, cfg.user_agent)
        return self

    async def __aexit__(self, *exc) -> None:
        await self.session.close()

    async def fetch(self, url: str) -> Fetched:
        """The image bytes or a failure reason, after retries of transient failures."""
        attempts = 0
        while True:
            attempts += 1
            got = await self._follow(url)
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

    async def _follow(self, url: str) -> Fetched:
        """One try: every hop of the redirect chain checked by the guard and robots.txt."""
        seen = {url}
        for _ in range(self.cfg.max_redirects + 1):
            reason = guard.check_url(url, self.cfg.allow_loopback)
            if reason is None and self.cfg.respect_robots:
                reason = await self.robots.check(url)
            if reason:
                return Fetched(reason)
            hop = await self._hop(url)
            if hop.fetched is not None:
                return hop.fetched
            url = hop.location
            if url in seen:
                return Fetched(DOWNLOAD_TOO_MANY_REDIRECTS)
            seen.add(url)
        return Fetched(DOWNLOAD_TOO_MANY_REDIRECTS)

    async def _hop(self, url: str) -> _Hop:
        host = (urlsplit(url).hostname or "").lower()
        if host in self._tripped:
            return _Hop(Fetched(DOWNLOAD_HOST_TRIPPED))
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self.cfg.per_host_concurrency)
        # Host slot first, then a global one: a crowded host never holds global slots while it waits.
        async with sem, self._global:
            if host in self._tripped:
                return _Hop(Fetched(DOWNLOAD_HOST_TRIPPED))
            hop = await self._request(url)
        reason = hop.fetched.reason if hop.fetched else ""
        self._note(host, reason)
        return hop

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

    def _note(self, host: str, reason: str) -> None:
        """Circuit breaker: enough consecutive host-level failures trip the host for the shard."""
        if reason not in _HOST_FAILURES:
            self._failures[host] = 0
            return
        self._failures[host] = self._failures.get(host, 0) + 1
        if self._failures[host] >= self.cfg.host_max_failures and host not in self._tripped:
            self._tripped.add(host)
            self.stats.error(DOWNLOAD_HOST_TRIPPED)

    async def _fetch_robots(self, url: str) -> tuple[int, bytes] | str:
        """GET a robots.txt (redirects followed, each hop guarded); a reason code when unreachable."""
        timeout = aiohttp.ClientTimeout(total=self.cfg.robots_timeout_s, sock_connect=self.cfg.connect_timeout_s)
        for _ in range(5):
            if guard.check_url(url, self.cfg.allow_loopback):
                return 404, b""  # no rules: the image request meets the guard itself and says why
            try:
                async with self.session.get(url, allow_redirects=False, timeout=timeout) as resp:
                    if resp.status in _REDIRECTS and resp.headers.get("Location"):
                        url = urljoin(url, resp.headers["Location"])
                        continue
                    body = await read_capped(resp, 500_000) if resp.status < 300 else b""
                    return resp.status, body or b""
            except Exception as e:  # noqa: BLE001 - an unreachable robots.txt is a reason, not a crash
                reason = _exception_reason(e)
                # A refused address: as above, the image request meets the guard and says why.
                return (404, b"") if reason == guard.DOWNLOAD_BLOCKED_ADDRESS else reason
        return robots.ROBOTS_UNREACHABLE


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
        if isinstance(cause, socket.gaierror) and cause.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return DOWNLOAD_DNS
        return DOWNLOAD_CONNECTION
    if isinstance(e, TimeoutError):
        return DOWNLOAD_TIMEOUT
    if isinstance(e, (aiohttp.InvalidURL, ValueError, UnicodeError)):
        return guard.DOWNLOAD_BAD_URL
    return DOWNLOAD_CONNECTION
