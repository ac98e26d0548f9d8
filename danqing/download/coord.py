"""The store every worker of a crawl shares (Redis): one connection per event loop, keys under one prefix.

`coordination_url` is a Redis URL, optionally with `?prefix=NAME` (default "danqing"): tests and
benchmarks take a prefix of their own so parallel runs never meet. Every key expires, so nothing
outlives the crawl for long. A store that cannot be reached fails the shard (its task retries): carrying
on alone would multiply the per-host budgets by the number of workers, the one thing this must prevent.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from danqing.redact import redact

DEFAULT_PREFIX = "danqing"


class CoordinationError(RuntimeError):
    """The shared store cannot be reached: the shard fails rather than download without its budgets."""


def parse(url: str) -> tuple[str, str]:
    """(the Redis URL without our parameter, the key prefix)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = next((v for k, v in query if k == "prefix"), DEFAULT_PREFIX)
    rest = urlencode([(k, v) for k, v in query if k != "prefix"])
    return urlunsplit(parts._replace(query=rest)), prefix


class Store:
    """Key naming, plain values with a TTL, and a single-flight cache across workers."""

    def __init__(self, client, prefix: str, url: str = ""):
        self.client, self.prefix, self.url = client, prefix, url
        self.token = uuid.uuid4().hex[:12]  # this loop: names its leases and locks

    @classmethod
    async def connect(cls, url: str) -> Store:
        import redis.asyncio as aioredis

        redis_url, prefix = parse(url)
        client = aioredis.from_url(redis_url, socket_connect_timeout=5, socket_timeout=10,
                                   health_check_interval=30)
        store = cls(client, prefix, url)
        try:
            await client.ping()
        except Exception as e:  # noqa: BLE001 - whatever redis-py raises, the message names the store
            await client.aclose()
            raise store.error(e) from e
        return store

    def error(self, e: BaseException) -> CoordinationError:
        return CoordinationError(redact(f"coordination store {self.url} unreachable: {type(e).__name__}: {e}"))

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def get(self, key: str) -> bytes | None:
        return await self.client.get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self.client.set(key, value, px=max(1, int(ttl_s * 1000)))

    async def once(self, key: str, produce: Callable[[], Awaitable[bytes]], ttl_of: Callable[[bytes], float],
                   lock_s: float) -> bytes:
        """The value at `key`, produced by one worker while the others wait for it (robots.txt).

        ttl_of(value) says how long it stands; 0 = not stored (the next asker produces it again).
        A worker killed while producing holds the lock for lock_s at most; then another one produces.
        """
        lock = f"{key}:lock"
        poll = 0.01
        while True:
            got = await self.client.get(key)
            if got is not None:
                return got
            if await self.client.set(lock, self.token, nx=True, px=int(lock_s * 1000)):
                try:
                    # the worker that held the lock may have stored the value since our read above
                    got = await self.client.get(key)
                    if got is not None:
                        return got
                    value = await produce()
                    ttl = ttl_of(value)
                    if ttl > 0:
                        await self.set(key, value, ttl)
                finally:
                    await _release_lock(self.client, lock, self.token)
                return value
            await asyncio.sleep(poll * (0.5 + random.random()))
            poll = min(poll * 2, 0.2)

    async def close(self) -> None:
        await self.client.aclose()


_UNLOCK = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


async def _release_lock(client, lock: str, token: str) -> None:
    """Delete the lock only if it is still ours (it may have expired and been taken by another worker)."""
    await client.eval(_UNLOCK, 1, lock, token)
