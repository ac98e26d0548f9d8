"""Stage 0a: find crawls not yet processed and fetch their list of WARC files.

Common Crawl and the bundled sample crawl share one layout (collinfo.json, then
crawl-data/<id>/warc.paths.gz under a base URL), so both go through the same code.
"""

from __future__ import annotations

import gzip
import json

from danqing import io, lineage, paths, warcsource
from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
from danqing.redact import redact


def read_collinfo(uri: str, cfg: PipelineConfig | None = None) -> list[dict]:
    """The crawl list at `uri` (https, s3 or local): dicts with at least `id`."""
    cfg = cfg or PipelineConfig()
    with warcsource.open_input(uri, cfg) as f:
        crawls = json.loads(f.read())
    if not isinstance(crawls, list) or not all(isinstance(c, dict) and "id" in c for c in crawls):
        raise ValueError(redact(f"{uri}: not a collinfo.json list of crawls"))
    for c in crawls:  # ids become folders and run ids: a list from elsewhere is checked like user input
        paths.crawl_id(c["id"])
    return crawls


def new_crawls(collinfo: list[dict], processed: set[str], since: str | None = None) -> list[str]:
    """Ids of crawls not in `processed`, newest first; `since` (a date or a crawl id) cuts older ones."""
    cutoff = _cutoff(collinfo, since)
    fresh = [c for c in collinfo if c["id"] not in processed and c.get("from", "") >= cutoff]
    fresh.sort(key=lambda c: (c.get("from", ""), c["id"]), reverse=True)
    return [c["id"] for c in fresh]


def _cutoff(collinfo: list[dict], since: str | None) -> str:
    if not since:
        return ""
    if since.startswith("CC-MAIN-"):
        for c in collinfo:
            if c["id"] == since:
                return c.get("from", "")
        raise ValueError(f"since={since!r} is not a crawl of this collinfo")
    return since  # ISO date: "2024-01-01" sorts before "2024-01-01T..." timestamps


def source_base(cfg: PipelineConfig) -> str:
    """Base URL under which crawl-data/ lives; builds the sample crawl on first use."""
    if cfg.source.kind == "commoncrawl":
        return cfg.source.commoncrawl_url.rstrip("/") + "/"
    root = paths.sample_crawl_root(cfg.root)
    ready = f"{root}/crawl-data/{SAMPLE_CRAWL_ID}/warc.paths.gz"
    if not (io.exists(f"{root}/collinfo.json", cfg.storage_options) and io.exists(ready, cfg.storage_options)):
        from danqing.sample.crawl import build_sample_crawl

        build_sample_crawl(root)
    return root.rstrip("/") + "/"


def default_collinfo_uri(cfg: PipelineConfig) -> str:
    """Where the crawl list of the configured source lives."""
    if cfg.source.kind == "commoncrawl":
        return cfg.source.collinfo_url
    return source_base(cfg) + "collinfo.json"


def pending_crawls(cfg: PipelineConfig, collinfo_uri: str = "", limit: int = 1) -> list[str]:
    """Crawls the monthly refresh should start, newest first, at most `limit` (0 = all)."""
    crawls = new_crawls(read_collinfo(collinfo_uri or default_collinfo_uri(cfg), cfg),
                        lineage.crawls(cfg.lineage), cfg.source.since or None)
    if cfg.source.kind == "commoncrawl":
        crawls = [c for c in crawls if c != SAMPLE_CRAWL_ID]
    return crawls[:limit] if limit > 0 else crawls


def fetch_index(cfg: PipelineConfig, crawl: str) -> str:
    """Copy the crawl's warc.paths.gz into the pipeline's index folder; returns its URI."""
    dest = f"{paths.index_dir(cfg.root, crawl)}/warc.paths.gz"
    if io.exists(dest, cfg.storage_options):
        return dest  # a published crawl's list never changes
    uri = f"{source_base(cfg)}crawl-data/{crawl}/warc.paths.gz"
    with warcsource.open_input(uri, cfg) as f:
        data = f.read()
    if not gzip.decompress(data).strip():
        raise ValueError(redact(f"{uri}: empty list of WARC files"))
    with io.atomic_write(dest, "wb", cfg.storage_options) as out:
        out.write(data)
    return dest
