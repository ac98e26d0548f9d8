"""Address forms for the SSRF guard, generated: every way of writing a refused IPv4 address (short,
numeric, octal, hex, IPv6 that carries it) is refused, in a URL and as a resolver's answer; the same
forms of a public address pass."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from danqing.download import guard

REFUSED = ["169.254.169.254", "127.0.0.1", "10.0.0.1", "10.1.2.3", "172.16.5.4", "192.168.0.1", "100.64.0.1",
           "0.0.0.0", "224.0.0.1", "192.0.0.170", "198.18.0.1", "255.255.255.255"]
PUBLIC = ["8.8.8.8", "93.184.216.34", "1.1.1.1"]


def forms(ip: str) -> dict[str, str]:
    """Hosts (as written in a URL) that reach `ip`."""
    v4 = ipaddress.IPv4Address(ip)
    n, (a, b, c, d) = int(v4), v4.packed
    hi, lo = f"{n >> 16:x}", f"{n & 0xFFFF:x}"
    teredo_client = n ^ 0xFFFFFFFF
    return {
        "dotted": ip, "trailing-dot": f"{ip}.", "decimal": str(n), "hex": hex(n),
        "HEX": hex(n).upper().replace("X", "x"),
        "octal": f"0{n:o}", "octal-dotted": ".".join(f"0{x:o}" for x in (a, b, c, d)),
        "hex-dotted": ".".join(hex(x) for x in (a, b, c, d)), "a.bcd": f"{a}.{n & 0xFFFFFF}",
        "a.b.cd": f"{a}.{b}.{(c << 8) | d}", "mixed": f"{hex(a)}.{b}.0{c:o}.{d}",
        "mapped": f"[::ffff:{ip}]", "mapped-hex": f"[::ffff:{hi}:{lo}]", "compatible": f"[::{ip}]",
        "compatible-hex": f"[::{hi}:{lo}]", "translated": f"[::ffff:0:{hi}:{lo}]", "nat64": f"[64:ff9b::{ip}]",
        "nat64-hex": f"[64:ff9b::{hi}:{lo}]", "nat64-local": f"[64:ff9b:1::{hi}:{lo}]",
        "6to4": f"[2002:{hi}:{lo}::1]", "6to4-expanded": f"[2002:{int(hi, 16):04x}:{int(lo, 16):04x}:0:0:0:0:1]",
        "teredo": f"[2001:0:4136:e378:8000:63bf:{teredo_client >> 16:x}:{teredo_client & 0xFFFF:x}]",
        "zone": f"[::ffff:{ip}%25eth0]",
    }


CASES = [(ip, kind, host) for ip in REFUSED for kind, host in forms(ip).items()]


@pytest.mark.parametrize(("ip", "kind", "host"), CASES, ids=[f"{ip}-{kind}" for ip, kind, _ in CASES])
def test_every_form_of_a_refused_address_is_refused(ip, kind, host):
    assert guard.check_url(f"http://{host}:80/latest/meta-data/") == guard.DOWNLOAD_BLOCKED_ADDRESS
    assert guard.check_url(f"https://{host}/x.jpg", allow_loopback=True) == guard.DOWNLOAD_BLOCKED_ADDRESS \
        or ipaddress.IPv4Address(ip).is_loopback


@pytest.mark.parametrize("ip", PUBLIC)
def test_the_same_forms_of_a_public_address_pass(ip):
    passing = {kind: guard.check_url(f"http://{host}/a.jpg") for kind, host in forms(ip).items()}
    # Only IPv4-compatible and IPv4-translated forms go nowhere public (deprecated / translator-only ranges).
    assert {kind for kind, reason in passing.items() if reason} <= {"compatible", "compatible-hex", "translated"}


@pytest.mark.parametrize("ip", REFUSED)
def test_a_resolver_answer_in_any_form_is_refused(ip):
    """A public name whose DNS answer (here: a host override) is a refused address in some IPv6 form."""
    async def resolve(target: str):
        resolver = guard.GuardedResolver({"img.example": target}, allow_loopback=False)
        try:
            return await resolver.resolve("img.example", 80)
        finally:
            await resolver.close()

    for kind in ("mapped", "nat64", "6to4", "teredo", "compatible"):
        target = forms(ip)[kind].split("%")[0]
        with pytest.raises(guard.BlockedAddress):
            asyncio.run(resolve(f"{target}:80"))
