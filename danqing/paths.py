"""The one place that formats URIs: {root}/{crawl}/{stage}/{shard:05d}{suffix}."""

from __future__ import annotations

import re

# Stage order of the pipeline; one name per stage across module, task_id and folder.
STAGES = ["extract", "refine", "download", "score", "dedup", "align", "assemble", "publish"]

# Common Crawl's ids as collinfo.json lists them (CC-MAIN-2025-47; the oldest are CC-MAIN-2012 and
# CC-MAIN-2008-2009), the sample's included. A crawl id becomes a folder, a lineage key and a hub tag,
# so nothing else may pass: no separators, no dots, no spaces.
CRAWL_ID_PATTERN = r"^CC-MAIN-[0-9]{4}(-[0-9]{2}|-[0-9]{4})?$"  # also the DAG param's JSON-schema pattern
_CRAWL_ID = re.compile(CRAWL_ID_PATTERN)


def crawl_id(value: object) -> str:
    """`value` if it is a crawl id, else ValueError: the one check for ids from users, conf and URLs."""
    if not isinstance(value, str) or not _CRAWL_ID.fullmatch(value):
        shown = repr(value)[:80]
        raise ValueError(f"crawl id {shown} is not of the form CC-MAIN-YYYY-WW (as in Common Crawl's collinfo.json)")
    return value


def is_local(uri: str) -> bool:
    """A plain path or file:// URI, as opposed to an object store or web URL."""
    return "://" not in uri or uri.startswith("file://")


def crawl_dir(root: str, crawl: str) -> str:
    """Every path under a crawl goes through here, so an id cannot climb out of the root."""
    return f"{root.rstrip('/')}/{crawl_id(crawl)}"


def stage_dir(root: str, crawl: str, stage: str) -> str:
    return f"{crawl_dir(root, crawl)}/{stage}"


def shard_uri(root: str, crawl: str, stage: str, shard: int, suffix: str = ".parquet") -> str:
    return f"{stage_dir(root, crawl, stage)}/{shard:05d}{suffix}"


def shard_of(uri: str) -> int:
    """The shard number of a stage output: .../00003.parquet -> 3 (the inverse of shard_uri)."""
    match = re.search(r"(\d+)\.parquet$", uri)
    if match is None:
        raise ValueError(f"no shard number in {uri}")
    return int(match.group(1))


def shard_label(shard: int) -> str:
    """How a shard's task instance is named in Airflow's UI (its rendered map index)."""
    return f"shard {shard:05d}"


def shard_of_label(label: str | None) -> int | None:
    """The inverse of shard_label; None for any other label."""
    match = re.fullmatch(r"shard (\d+)", label or "")
    return int(match.group(1)) if match else None


def stats_uri(root: str, crawl: str, stage: str, shard: int) -> str:
    return shard_uri(root, crawl, stage, shard, "_stats.json")


def index_dir(root: str, crawl: str) -> str:
    return f"{crawl_dir(root, crawl)}/index"


def plan_uri(root: str, crawl: str) -> str:
    return f"{index_dir(root, crawl)}/shards.json"


def plan_shard_uri(root: str, crawl: str, shard: int) -> str:
    """One shard's inputs, so a task reads a small file rather than the whole plan."""
    return f"{index_dir(root, crawl)}/shards/{shard:05d}.json"


def sample_crawl_root(root: str) -> str:
    return f"{root.rstrip('/')}/sample-crawl"


def release_dir(release_root: str, crawl: str) -> str:
    return crawl_dir(release_root, crawl)


def released_dir(root: str, crawl: str | None = None) -> str:
    """The index of images already released, per crawl: later crawls dedup against it."""
    base = f"{root.rstrip('/')}/released-index"
    return base if crawl is None else crawl_dir(base, crawl)
