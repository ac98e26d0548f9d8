"""Opt-outs: robots.txt per host and X-Robots-Tag noai / noimageai.

robots.txt is fetched once per event loop, or, with a coordination store, once per host for every
worker of the crawl: one worker fetches it while the others wait, and the answer stands for a day
(RFC 9309 caps caching at 24 hours); a failed fetch stands for a minute, so a later task asks again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

ROBOTS_DISALLOWED = "robots_disallowed"
ROBOTS_NOAI = "robots_noai"
ROBOTS_UNREACHABLE = "robots_unreachable"

AI_DIRECTIVES = {"noai", "noimageai"}


def agent_token(user_agent: str) -> str:
    """The product token robots.txt groups name: "danqing-pipeline/0.1 (...)" -> "danqing-pipeline"."""
    return user_agent.split("/", 1)[0].split()[0].lower()


def noai(header_values: list[str], user_agent: str) -> bool:
    """True when an X-Robots-Tag opts this image out of AI use, for all agents or for ours.

    "noai, noimageai" applies to every agent; "otherbot: noai" only to otherbot, and the
    directives after an agent prefix stay with that agent until the next prefix.
    """
    ours = agent_token(user_agent)
    for value in header_values:
        applies = True
        for token in value.split(","):
            token = token.strip().lower()
            head, sep, rest = token.partition(":")
            if sep and head.strip() not in ("unavailable_after", "max-snippet", "max-image-preview",
                                            "max-video-preview"):
                applies = head.strip() in ("*", ours)
                token = rest.strip()
            if applies and token in AI_DIRECTIVES:
                return True
    return False


ROBOTS_TTL_S = 86_400.0
FAILED_TTL_S = 60.0

# fetch(url) -> (http status, body), or the reason code of a failure to reach the server at all.
Fetch = Callable[[str], Awaitable[tuple[int, bytes] | str]]


class RobotsCache:
    """robots.txt per scheme://host:port, fetched at most once however many samples wait on it.

    `store` (a coord.Store) shares the answers under `key_prefix`; `passing` are reasons that say
    nothing of the rules (the host is paused or tripped right now): they are neither kept nor shared.
    A worker killed while fetching holds the others back lock_s at most.
    """

    def __init__(self, fetch: Fetch, user_agent: str, store=None, key_prefix: str = "",
                 passing: frozenset[str] = frozenset(), lock_s: float = 60.0):
        self._fetch = fetch
        self.user_agent = user_agent
        self._store, self._key_prefix, self._passing, self._lock_s = store, key_prefix, passing, lock_s
        self._rules: dict[str, asyncio.Future] = {}

    async def check(self, url: str) -> str | None:
        """Reason the URL is off limits to us, or None."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        fut = self._rules.get(origin)
        if fut is None:
            fut = self._rules[origin] = asyncio.ensure_future(self._load(origin))
        rules = await fut
        if isinstance(rules, str):
            if rules in self._passing and self._rules.get(origin) is fut:
                del self._rules[origin]  # the next URL of the host asks again
            return rules
        if rules is True or rules.can_fetch(url, agent_token(self.user_agent)):
            return None
        return ROBOTS_DISALLOWED

    async def _load(self, origin: str):
        """Protego rules; True = no rules (4xx: allow all); a reason code when there is no answer.

        A server error on robots.txt means "assume complete disallow" (RFC 9309): robots_unreachable,
        transient so a rerun asks again. A host that cannot be reached at all fails with the reason
        its images would fail with (timeout, DNS...), since none of them can be fetched either.
        """
        from protego import Protego

        if self._store is None:
            got = await self._fetch(f"{origin}/robots.txt")
        else:
            got = await self._shared(origin)
        if isinstance(got, str):
            return got
        status, body = got
        if 200 <= status < 300:
            return Protego.parse(body.decode("utf-8", "replace"))
        if 400 <= status < 500:
            return True
        return ROBOTS_UNREACHABLE

    async def _shared(self, origin: str) -> tuple[int, bytes] | str:
        """One worker of the crawl fetches; the answer is stored as b"<status>\\n<body>" or b"!<reason>"."""
        async def produce() -> bytes:
            got = await self._fetch(f"{origin}/robots.txt")
            return b"!" + got.encode() if isinstance(got, str) else b"%d\n" % got[0] + got[1]

        def ttl_of(value: bytes) -> float:
            if not value.startswith(b"!"):
                return ROBOTS_TTL_S if int(value.split(b"\n", 1)[0]) < 500 else FAILED_TTL_S
            return 0.0 if value[1:].decode() in self._passing else FAILED_TTL_S

        value = await self._store.once(f"{self._key_prefix}{origin}", produce, ttl_of, self._lock_s)
        if value.startswith(b"!"):
            return value[1:].decode()
        status, _, body = value.partition(b"\n")
        return int(status), body
