"""The SSRF guard decides on the address a host reaches, whatever form it is written in; the
dependencies it relies on are declared."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib

import pytest
from conftest import ROOT
from packaging.requirements import Requirement

from danqing.download import guard

METADATA = "169.254.169.254"


@pytest.mark.parametrize("host", [
    "[64:ff9b::a9fe:a9fe]", "[64:ff9b:1::a9fe:a9fe]", "[::a9fe:a9fe]", "[::169.254.169.254]",
    "[2002:a9fe:a9fe::1]", "[::ffff:a9fe:a9fe]", "[::ffff:0:a9fe:a9fe]", "[2001:0:4136:e378:8000:63bf:5601:5601]",
    "10.1", "127.1", "2130706433", "0x7f.1", "0177.0.0.1", "0x7f000001", "017700000001", "169.254.43518",
    "0", "0x0", "127.0.0.1.", "[::1%25eth0]", "[fe80::1%25eth0]",
])
def test_every_form_of_a_private_address_is_refused(host):
    assert guard.check_url(f"http://{host}/latest/meta-data/") == guard.DOWNLOAD_BLOCKED_ADDRESS


@pytest.mark.parametrize("host", ["8.8.8.8", "134744072", "0x8.0x8.0x8.0x8", "[2002:808:808::1]", "[64:ff9b::808:808]",
                                  "[2606:4700::1111]", "img.example.cn", "1e100.net", "0xcafe.example"])
def test_public_addresses_and_names_pass(host):
    assert guard.check_url(f"http://{host}/a.jpg") is None


def test_resolved_answers_are_judged_the_same_way():
    assert guard.blocked("::ffff:0:a9fe:a9fe") and guard.blocked("64:ff9b::7f00:1")
    assert not guard.blocked("64:ff9b::7f00:1", allow_loopback=True)  # NAT64 of loopback is loopback
    assert guard.literal_address("0x7f.1") == guard.literal_address("127.0.0.1")


def _third_party_imports() -> set[str]:
    names = set()
    for path in (ROOT / "danqing").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("danqing", "__future__")}


def test_every_import_of_the_core_is_a_declared_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {Requirement(r).name.lower().replace("_", "-") for r in project["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    optional = {"uvloop"}  # tried, with asyncio as the fallback
    missing = {name for name in _third_party_imports() - optional
               if not {d.lower().replace("_", "-") for d in providers.get(name, [name])} & declared}
    assert missing == set()
    assert any(r.startswith("aiohttp>=") for r in project["dependencies"])  # the guard leans on its checks
