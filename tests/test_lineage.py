"""The lineage store on SQLite (local default) and PostgreSQL (production), and its funnel."""

from __future__ import annotations

import os

import pytest
from conftest import create_pg_database

from danqing import lineage


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    lineage.engine.cache_clear()  # each test gets a new database under the same name
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


def test_uploads_keep_the_newest_row_per_shard_and_target(url):
    row = dict(crawl="CC-MAIN-2025-47", kind="huggingface", repo_id="org/danqing", endpoint="https://hub.example",
               tag="CC-MAIN-2025-47-abc", run_id="r", try_number=1)
    lineage.record_upload(url, **row, shard=0, commit_id="c1", files={"data/x/pairs-00000.parquet": "aa"})
    lineage.record_upload(url, **row, shard=0, commit_id="c2", files={"data/x/pairs-00000.parquet": "bb"})
    lineage.record_upload(url, **{**row, "kind": "modelscope"}, shard=0, commit_id="m1", files={})
    lineage.record_upload(url, **{**row, "crawl": "CC-MAIN-2025-43"}, shard=1, commit_id="o", files={})
    got = lineage.uploaded(url, "CC-MAIN-2025-47")
    assert [(r["kind"], r["commit_id"]) for r in got] == [("huggingface", "c2"), ("modelscope", "m1")]
    assert got[0]["files"] == {"data/x/pairs-00000.parquet": "bb"}


def test_a_bare_postgresql_url_uses_psycopg2():
    """SQLAlchemy 2.1 maps postgresql:// to psycopg 3 (not installed): the store names psycopg2 itself."""
    bare = create_pg_database(f"danqing_test_lineage_bare_{os.getpid()}").replace("postgresql+psycopg2://",
                                                                                    "postgresql://")
    assert lineage.engine(bare).dialect.driver == "psycopg2"
    lineage.record(bare, **_row())
    assert lineage.crawls(bare) == {"CC-MAIN-2025-47"}
    lineage.engine(bare).dispose()
