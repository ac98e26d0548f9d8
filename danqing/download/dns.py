"""DNS answers cached per event loop and, with a coordination store, shared by every loop of every worker.

The system resolver (getaddrinfo in a thread) is asked once per name and TTL however many loops want
it, and a name that does not exist is remembered too (aiohttp keeps no negative answers): a dead domain
with thousands of URLs costs one lookup, not one per URL and loop. At scale, an overloaded resolver is
the other big cause of lost images, after throttling. The guard (guard.GuardedResolver) still checks
every address, cached or not.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from danqing.download.coord import Store

# getaddrinfo's answers for a name that does not exist (NXDOMAIN, or no address of the family).
NOT_FOUND = frozenset({socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)})
ANSWER_TTL_S = 300.0  # getaddrinfo tells no TTL: as long as aiohttp's connector keeps an answer
MISSING_TTL_S = 300.0
FAILED_TTL_S = 5.0  # a resolver that timed out is asked again soon


class CachingResolver(AbstractResolver):
    """Answers (and failures) per (name, family): this loop's, then the store's, then the system's."""

    def __init__(self, store: Store | None = None):
        self._inner = ThreadedResolver()
        self._store = store
        self._cache: dict[tuple[str, int], tuple[float, list | dict]] = {}
        self._pending: dict[tuple[str, int], asyncio.Future] = {}
        self.lookups = 0  # questions put to the system resolver by this loop

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        key = (host.lower(), int(family))
        hit = self._cache.get(key)
        if hit is None or hit[0] <= time.monotonic():
            fut = self._pending.get(key)
            if fut is None:
                fut = self._pending[key] = asyncio.ensure_future(self._answer(*key))
                fut.add_done_callback(lambda _: self._pending.pop(key, None))
            hit = self._cache[key] = await asyncio.shield(fut)
        answer = hit[1]
        if isinstance(answer, dict):
            raise socket.gaierror(answer["errno"], answer["error"])
        return [ResolveResult(hostname=host, host=ip, port=port, family=fam, proto=proto, flags=flags)
                for ip, fam, proto, flags in answer]

    async def _answer(self, host: str, family: int) -> tuple[float, list | dict]:
        """(monotonic expiry, [(ip, family, proto, flags)...] or {"errno", "error"})."""
        shared = self._store.key("dns", f"{host}/{family}") if self._store is not None else None
        if shared is not None:
            got = await self._store.client.get(shared)
            ttl_ms = await self._store.client.pttl(shared) if got is not None else 0
            if got is not None and ttl_ms > 0:
                return time.monotonic() + ttl_ms / 1000, json.loads(got)
        self.lookups += 1
        try:
            infos = await self._inner.resolve(host, 0, socket.AddressFamily(family))
            answer: list | dict = [(r["host"], r["family"], r["proto"], r["flags"]) for r in infos]
            ttl = ANSWER_TTL_S
        except socket.gaierror as e:
            answer = {"errno": e.errno, "error": str(e.strerror or e)}
            ttl = MISSING_TTL_S if e.errno in NOT_FOUND else FAILED_TTL_S
        if shared is not None:
            await self._store.set(shared, json.dumps(answer).encode(), ttl)
        return time.monotonic() + ttl, answer

    async def close(self) -> None:
        await self._inner.close()
