"""Publish a crawl: build its local release folder (danqing.publish.release); the hubs upload from it."""

from __future__ import annotations

from danqing import lineage, paths
from danqing.config import PipelineConfig
from danqing.publish import release
from danqing.stages import align


def publish(cfg: PipelineConfig, crawl: str, assemble_uris: list[str],
            attempt: lineage.Attempt = lineage.CLI) -> dict:
    """Swap in {release_root}/{crawl}/ from the assembled shards; returns a small summary."""
    aligned = [paths.shard_uri(cfg.root, crawl, "align", paths.shard_of(uri)) for uri in assemble_uris]
    summary = release.build(cfg, crawl, assemble_uris, align.histogram(cfg, crawl, aligned), attempt)
    if cfg.dedup.released_index:  # later crawls dedup against what this release now holds
        from danqing.stages.dedup import add_release

        add_release(cfg, crawl, assemble_uris)
    return summary
