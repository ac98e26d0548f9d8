"""The lineage store on SQLite (local default) and PostgreSQL (production), and its funnel."""

from __future__ import annotations

import os

import pytest
from conftest import create_pg_database

from danqing import lineage


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/lineage.sqlite"
    return create_pg_database(f"danqing_test_lineage_{os.getpid()}")


def _row(**kw):
    row = dict(crawl="CC-MAIN-2025-47", shard=0, stage="extract", status="done", run_id="r", try_number=1,
               inputs=["w.warc.gz"], outputs={"o.parquet": "abc"}, count_in=10, count_out=7,
               dropped={"caption_too_short": 3}, errors={}, seconds=1.0, code_version="0", config_hash="h")
    return row | kw


def test_funnel_sums_latest_attempt_per_shard(url):
    lineage.record(url, **_row(shard=0, count_in=10, count_out=7, dropped={"caption_too_short": 3}))
    lineage.record(url, **_row(shard=1, count_in=5, count_out=1, dropped={"page_not_zho": 4}))
    # A retry of shard 1 replaces its first attempt in the funnel, it does not add to it.
    lineage.record(url, **_row(shard=1, try_number=2, count_in=5, count_out=2, dropped={"page_not_zho": 3}))
    lineage.record(url, **_row(stage="refine", count_in=7, count_out=6, dropped={"caption_boilerplate": 1}))
    lineage.record(url, **_row(crawl="CC-MAIN-2025-43"))
    [extract, refine] = lineage.funnel(url, "CC-MAIN-2025-47", ["extract", "refine"])
    assert (extract["in"], extract["out"], dict(extract["dropped"]), extract["shards"]) == (
        15, 9, {"caption_too_short": 3, "page_not_zho": 3}, 2)
    assert (refine["in"], refine["out"]) == (7, 6)
    assert lineage.crawls(url) == {"CC-MAIN-2025-47", "CC-MAIN-2025-43"}
