"""Publish a crawl: build its local release folder (danqing.publish.release); the hubs upload from it."""

from __future__ import annotations

from danqing import lineage
from danqing.config import PipelineConfig
from danqing.publish import release


def publish(cfg: PipelineConfig, crawl: str, assemble_uris: list[str],
            attempt: lineage.Attempt = lineage.CLI) -> dict:
    """Swap in {release_root}/{crawl}/ from the assembled shards; returns a small summary."""
    return release.build(cfg, crawl, assemble_uris, attempt)
