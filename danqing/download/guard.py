"""SSRF guard: crawl URLs never reach private, loopback, link-local or metadata addresses.

Checked on every hop: the URL's literal host here, every name through GuardedResolver (so a
public name that resolves, or later re-resolves, to 169.254.169.254 is refused too). Every form
of an address is brought to the one it reaches before deciding: short and numeric IPv4
(127.1, 2130706433, 0x7f.1) and IPv6 that carries IPv4 (mapped, NAT64, 6to4, Teredo, compatible).
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


# IPv6 ranges that carry an IPv4 address in their last 32 bits (RFC 6052 NAT64, RFC 8215 local NAT64,
# RFC 6145 IPv4-translated, RFC 4291's deprecated IPv4-compatible): a packet to them reaches that IPv4 host.
_V4_IN_LAST_32 = [ipaddress.IPv6Network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48", "::ffff:0:0:0/96", "::/96")]
_HEX_DIGITS = frozenset("0123456789abcdefx.")


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names by itself, in every form a resolver or browser reads as one, else None.

    Beside the dotted quad and IPv6 ([v6], zone ids), inet_aton's short and numeric IPv4 forms:
    10.1, 127.1, 2130706433, 0x7f.1, 0177.0.0.1 (a resolver turns these into addresses without DNS).
    """
    h = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".").split("%", 1)[0]
    if not h:
        return None
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    if set(h) <= _HEX_DIGITS and h[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(h))
        except OSError:
            return None
    return None


def embedded_ipv4(addr: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: mapped, 6to4, Teredo (server and client), NAT64, compatible."""
    if addr.ipv4_mapped is not None:
        return [addr.ipv4_mapped]
    if addr.sixtofour is not None:
        return [addr.sixtofour]
    if addr.teredo is not None:
        return list(addr.teredo)
    if int(addr) > 1 and any(addr in net for net in _V4_IN_LAST_32):  # :: and ::1 are not IPv4
        return [ipaddress.IPv4Address(addr.packed[-4:])]
    return []


def blocked(ip: str, allow_loopback: bool = False) -> bool:
    """True for any address that is not globally routable (loopback only when allowed), in any form."""
    addr = literal_address(ip)
    if addr is None:
        return True
    inner = embedded_ipv4(addr) if isinstance(addr, ipaddress.IPv6Address) else []
    if inner:  # the embedded IPv4 host is where a packet ends up
        return any(blocked(str(v4), allow_loopback) for v4 in inner)
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
    if literal_address(host) is None:
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
