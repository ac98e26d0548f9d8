"""SSRF guard: crawl URLs never reach private, loopback, link-local or metadata addresses.

Checked on every hop: the URL's literal host here, every name through GuardedResolver (so a
public name that resolves, or later re-resolves, to 169.254.169.254 is refused too).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

DOWNLOAD_BLOCKED_ADDRESS = "download_blocked_address"
DOWNLOAD_BAD_URL = "download_bad_url"


class BlockedAddress(OSError):
    """A name resolved only to addresses the guard refuses."""


def blocked(ip: str, allow_loopback: bool = False) -> bool:
    """True for any address that is not globally routable (loopback only when allowed)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_loopback:
        return not allow_loopback
    # is_global is False for 10/8, 172.16/12, 192.168/16, 169.254/16, 100.64/10, fc00::/7, fe80::/10, ...
    return not addr.is_global or addr.is_multicast


def check_url(url: str, allow_loopback: bool = False) -> str | None:
    """Reason to refuse a URL before any connection, or None."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return DOWNLOAD_BAD_URL
    if parts.scheme not in ("http", "https") or not host:
        return DOWNLOAD_BAD_URL
    return _host_verdict(host, allow_loopback)


@functools.lru_cache(maxsize=4096)
def _host_verdict(host: str, allow_loopback: bool) -> str | None:
    """Cached per host: a shard asks about the same few hosts thousands of times."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: GuardedResolver checks what it resolves to
    return DOWNLOAD_BLOCKED_ADDRESS if blocked(host, allow_loopback) else None


def parse_override(target: str, default_port: int) -> tuple[str, int]:
    """"ip:port", "[v6]:port" or a bare ip -> (ip, port)."""
    if target.startswith("["):
        host, _, port = target[1:].partition("]:")
        return host.rstrip("]"), int(port) if port else default_port
    if target.count(":") == 1:
        host, port = target.split(":")
        return host, int(port)
    return target, default_port


class GuardedResolver(AbstractResolver):
    """DNS with host overrides applied first, and refused addresses filtered from every answer."""

    def __init__(self, overrides: dict[str, str], allow_loopback: bool, inner: AbstractResolver | None = None):
        self.overrides = {k.lower(): v for k, v in overrides.items()}
        self.allow_loopback = allow_loopback
        self._inner = inner or ThreadedResolver()  # e.g. dns.CachingResolver: answers shared between loops

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        target = self.overrides.get(host.lower())
        if target is not None:
            ip, port = parse_override(target, port)
            fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
            answers = [ResolveResult(hostname=host, host=ip, port=port, family=fam, proto=0, flags=0)]
        else:
            answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if not blocked(a["host"], self.allow_loopback)]
        if not allowed:
            raise BlockedAddress(f"{host} resolves only to refused addresses")
        return allowed

    async def close(self) -> None:
        await self._inner.close()
