"""usable_cpus: affinity and cgroup quota, read from fake cgroup files under tmp_path."""

from __future__ import annotations

import asyncio
import os

import pytest

from danqing.config import DownloadConfig, PipelineConfig
from danqing.cpus import usable_cpus
from danqing.download import decode as dec
from danqing.download import engine, pool


@pytest.fixture
def affinity(monkeypatch):
    """Pin the process, as taskset would, to n CPUs."""
    def pin(n: int) -> None:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(n)), raising=False)
    return pin


def v2(root, text: str):
    (root / "cpu.max").write_text(text + "\n")
    return root


def v1(root, quota: str, period: str = "100000"):
    (root / "cpu").mkdir()
    (root / "cpu" / "cpu.cfs_quota_us").write_text(quota + "\n")
    (root / "cpu" / "cpu.cfs_period_us").write_text(period + "\n")
    return root


@pytest.mark.parametrize("text, pinned, expected", [
    ("150000 100000", 8, 2),  # 1.5 CPUs rounds up
    ("200000 100000", 8, 2),
    ("50000 100000", 8, 1),
    ("max 100000", 8, 8),  # no quota: the affinity decides
    ("800000 100000", 3, 3),  # a quota above the pinned CPUs does not add any
])
def test_cgroup_v2(tmp_path, affinity, text, pinned, expected):
    affinity(pinned)
    assert usable_cpus(v2(tmp_path, text)) == expected


@pytest.mark.parametrize("quota, period, expected", [
    ("250000", "100000", 3),
    ("100000", "100000", 1),
    ("-1", "100000", 8),  # -1: no quota
])
def test_cgroup_v1(tmp_path, affinity, quota, period, expected):
    affinity(8)
    assert usable_cpus(v1(tmp_path, quota, period)) == expected


@pytest.mark.parametrize("make", [
    lambda root: v2(root, "lots"),
    lambda root: v2(root, ""),
    lambda root: v2(root, "150000 0"),
    lambda root: v1(root, "abc"),
    lambda root: v1(root, "150000", "soon"),
    lambda root: root,  # no files at all
    lambda root: (root / "cpu.max").mkdir(),  # unreadable
])
def test_garbage_or_missing_files_mean_no_quota(tmp_path, affinity, make):
    affinity(5)
    make(tmp_path)
    assert usable_cpus(tmp_path) == 5


def test_at_least_one(tmp_path, affinity):
    affinity(4)
    assert usable_cpus(v2(tmp_path, "1000 100000")) == 1  # 0.01 CPU still runs one


def test_this_machine():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)


def test_download_defaults_honour_it(monkeypatch):
    monkeypatch.setattr(engine, "usable_cpus", lambda: 3)
    monkeypatch.setattr(pool, "usable_cpus", lambda: 3)
    assert engine.loops(DownloadConfig(), 10**6) == 3
    assert engine.loops(DownloadConfig(processes=5), 10**6) == 5  # an explicit count wins

    async def decode_threads(workers: int) -> int:
        p = await pool.open_pool(dec.Settings.of(PipelineConfig()), "thread", workers)
        await p.close()
        return p._executor._max_workers

    assert asyncio.run(decode_threads(0)) == 3
    assert asyncio.run(decode_threads(2)) == 2
