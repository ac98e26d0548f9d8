"""How many CPUs this process may use.

os.cpu_count() counts the node's CPUs. A Kubernetes pod with a CPU limit is throttled by its cgroup's
quota, and a worker pinned by taskset or a cpuset runs on fewer cores; "one per CPU" defaults size
themselves here so they do not start more processes than the process can run at once.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = "/sys/fs/cgroup"


def usable_cpus(cgroup_root: str | os.PathLike = CGROUP_ROOT) -> int:
    """The smaller of the CPUs this process may run on and its cgroup's CPU quota, rounded up; at least 1."""
    n = _affinity()
    quota = cgroup_quota(cgroup_root)
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def cgroup_quota(cgroup_root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """CPUs' worth of time the cgroup allows per period; None when there is no quota or it cannot be read."""
    root = Path(cgroup_root)
    v2 = _read(root / "cpu.max")  # "max 100000" or "150000 100000"
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _ratio(quota, period)
    # cgroup v1: a quota of -1 means none.
    return _ratio(_read(root / "cpu" / "cpu.cfs_quota_us"), _read(root / "cpu" / "cpu.cfs_period_us"))


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux (a developer's Mac)
        return os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str | None, period: str | None) -> float | None:
    try:
        q, p = int(quota), int(period)  # "max", garbage or a missing file: no quota
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None
