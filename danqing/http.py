"""Polite reads from a crawl archive: rate-bounded, retried with backoff, throttle-aware.

Common Crawl answers overload with 503 SlowDown (S3, CloudFront) or 429 with Retry-After;
both slow this worker's token bucket down and wait, never fail the shard at once.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from danqing import ratelimit
from danqing.config import SourceConfig
from danqing.redact import redact

T = TypeVar("T")
_local = threading.local()


class Retryable(Exception):
    """A transient failure: retry after `wait` seconds (None = exponential backoff)."""

    def __init__(self, what: str, wait: float | None = None, throttled: bool = False):
        super().__init__(redact(what))  # it may quote a signed URL or a library's message holding one
        self.wait, self.throttled = wait, throttled


class SourceError(OSError):
    """A read that failed for good: permanent status or retries spent (its message masks credentials)."""

    def __init__(self, what: str):
        super().__init__(redact(what))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


def with_retries(call: Callable[[], T], host: str, src: SourceConfig, sleep=time.sleep) -> T:
    """Run `call` under the host's token bucket, retrying Retryable failures with backoff."""
    bucket = ratelimit.bucket(host, src.requests_per_s, src.burst)
    for attempt in range(src.retries + 1):
        bucket.acquire()
        try:
            result = call()
        except Retryable as e:
            if e.throttled:
                bucket.slow_down()
            if attempt == src.retries:
                raise SourceError(f"{host}: gave up after {attempt + 1} tries: {e}") from e
            backoff = min(src.max_backoff_s, src.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
            sleep(min(src.max_backoff_s, e.wait) if e.wait is not None else backoff)
            continue
        bucket.recover()
        return result
    raise AssertionError("unreachable")


def host_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _pool():
    import urllib3

    if not hasattr(_local, "pool"):
        _local.pool = urllib3.PoolManager(num_pools=16, maxsize=4, retries=False)
    return _local.pool


def _request(url: str, src: SourceConfig, start: int = 0, end: int | None = None):
    """One GET of bytes [start, end): the streaming response, or Retryable / a permanent error."""
    import urllib3

    headers = {"User-Agent": "danqing-pipeline/0.1"}
    if start or end is not None:
        headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
    timeout = urllib3.Timeout(connect=min(10.0, src.timeout_s), read=src.timeout_s)
    try:
        resp = _pool().request("GET", url, headers=headers, preload_content=False, timeout=timeout)
    except (urllib3.exceptions.HTTPError, OSError) as e:
        raise Retryable(f"{type(e).__name__}: {e}") from e
    status = resp.status
    if status == 206 or (status == 200 and "Range" not in headers):
        return resp
    body = resp.read(4096)
    resp.release_conn()
    wait = retry_after(resp.headers.get("Retry-After"))
    if status in (429, 503) or b"SlowDown" in body:
        raise Retryable(f"HTTP {status}", wait, throttled=True)
    if status >= 500 or status == 408:
        raise Retryable(f"HTTP {status}", wait)
    if status == 404:
        raise FileNotFoundError(2, "not found (HTTP 404)", redact(url))
    raise SourceError(f"{url}: HTTP {status}")  # 403, 416, or a 200 that ignored the Range


def open_http(url: str, src: SourceConfig, start: int = 0):
    """A streaming response from byte `start` to the end of `url`."""
    return with_retries(lambda: _request(url, src, start), host_of(url), src)


def read_http(url: str, src: SourceConfig, start: int = 0, end: int | None = None) -> bytes:
    """Bytes [start, end) of `url`; a reply cut short is asked for again."""
    import urllib3

    def call() -> bytes:
        resp = _request(url, src, start, end)
        try:
            data = resp.read()
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise Retryable(f"{type(e).__name__}: {e}") from e
        finally:
            resp.release_conn()
        if end is not None and len(data) != end - start:
            raise SourceError(f"{url}: asked for {end - start} bytes at {start}, got {len(data)}")
        return data

    return with_retries(call, host_of(url), src)
