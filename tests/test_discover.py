"""Discovery: the real collinfo.json and warc.paths.gz served by a loopback 'data.commoncrawl.org'."""

from __future__ import annotations

import gzip
import json

import pytest
from source_helpers import FIXTURES, LoopbackServer

from danqing import io, lineage, paths
from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
from danqing.stages import discover, plan

CRAWL = "CC-MAIN-2025-47"


def cc_config(cfg: PipelineConfig, srv: LoopbackServer, **source) -> PipelineConfig:
    return PipelineConfig.from_overrides({**cfg.model_dump(), "source": {
        "kind": "commoncrawl", "commoncrawl_url": srv.url + "/", "collinfo_url": srv.url + "/collinfo.json",
        "index_url": "", "backoff_s": 0.01, **source}})  # whole WARCs: the loopback site has no index


def test_read_collinfo_over_http(commoncrawl):
    crawls = discover.read_collinfo(commoncrawl.url + "/collinfo.json")
    assert len(crawls) == 118
    assert crawls[0]["id"] == CRAWL and crawls[-1]["id"] == "CC-MAIN-2008-2009"


def test_read_collinfo_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"id": "CC-MAIN-2025-47"}))
    with pytest.raises(ValueError):
        discover.read_collinfo(str(tmp_path / "x.json"))


COLLINFO = json.loads((FIXTURES / "collinfo.json").read_text())


@pytest.mark.parametrize("processed, since, expected_head, expected_len", [
    (set(), None, ["CC-MAIN-2025-47", "CC-MAIN-2025-43"], 118),
    ({"CC-MAIN-2025-47"}, None, ["CC-MAIN-2025-43", "CC-MAIN-2025-38"], 117),
    (set(), "2025-01-01", ["CC-MAIN-2025-47"], 11),
    ({"CC-MAIN-2025-47", "CC-MAIN-2025-43"}, "CC-MAIN-2025-38", ["CC-MAIN-2025-38"], 1),
    ({c["id"] for c in COLLINFO}, None, [], 0),
])
def test_new_crawls(processed, since, expected_head, expected_len):
    crawls = discover.new_crawls(COLLINFO, processed, since)
    assert crawls[: len(expected_head)] == expected_head
    assert len(crawls) == expected_len
    assert not set(crawls) & processed


def test_new_crawls_rejects_unknown_since():
    with pytest.raises(ValueError):
        discover.new_crawls(COLLINFO, set(), "CC-MAIN-1999-01")


def _mark_processed(cfg: PipelineConfig, crawl: str) -> None:
    lineage.record(cfg.lineage, crawl=crawl, shard=0, stage="extract", status="done", run_id="t", try_number=1,
                   inputs=[], outputs={}, count_in=0, count_out=0, dropped={}, errors={}, seconds=0.0,
                   code_version="t", config_hash="t")


def test_pending_crawls_skips_processed_and_the_sample_id(cfg, commoncrawl, tmp_path):
    cc = cc_config(cfg, commoncrawl)
    _mark_processed(cc, CRAWL)
    assert discover.pending_crawls(cc, "", limit=2) == ["CC-MAIN-2025-43", "CC-MAIN-2025-38"]
    # A collinfo that also lists the sample crawl (dated 2099, so it would come first).
    listed = [{"id": SAMPLE_CRAWL_ID, "from": "2099-01-01T00:00:00"}, *COLLINFO]
    (tmp_path / "collinfo.json").write_text(json.dumps(listed))
    assert discover.pending_crawls(cc, str(tmp_path / "collinfo.json"), limit=1) == ["CC-MAIN-2025-43"]
    assert len(discover.pending_crawls(cc, str(tmp_path / "collinfo.json"), limit=0)) == 117
    since = cc.model_copy(update={"source": cc.source.model_copy(update={"since": "2025-06-01"})})
    assert discover.pending_crawls(since, "", limit=0) == ["CC-MAIN-2025-43", "CC-MAIN-2025-38",
                                                          "CC-MAIN-2025-33", "CC-MAIN-2025-30", "CC-MAIN-2025-26"]


def test_fetch_index_copies_the_real_list_once(cfg, commoncrawl):
    cc = cc_config(cfg, commoncrawl)
    uri = discover.fetch_index(cc, CRAWL)
    assert uri == f"{paths.index_dir(cc.root, CRAWL)}/warc.paths.gz"
    assert open(uri, "rb").read() == (FIXTURES / f"{CRAWL}.warc.paths.gz").read_bytes()
    served = len(commoncrawl.requests)
    assert discover.fetch_index(cc, CRAWL) == uri
    assert len(commoncrawl.requests) == served  # already there: not fetched again


def test_fetch_index_missing_crawl_fails_without_output(cfg, commoncrawl):
    cc = cc_config(cfg, commoncrawl)
    with pytest.raises(FileNotFoundError):
        discover.fetch_index(cc, "CC-MAIN-2025-43")
    assert not io.exists(f"{paths.index_dir(cc.root, 'CC-MAIN-2025-43')}/warc.paths.gz")


def test_snapshot_plans_real_commoncrawl_paths(cfg, commoncrawl):
    """Done-when: source=commoncrawl plans the real WARC paths; reading would start at the network."""
    cc = cc_config(cfg, commoncrawl)
    uri = discover.fetch_index(cc, CRAWL)
    shards = plan.plan(cc, CRAWL, uri)
    assert shards == list(range(8192))
    real = gzip.decompress((FIXTURES / f"{CRAWL}.warc.paths.gz").read_bytes()).decode().split()
    planned = [spec for s in shards for spec in plan.shard_inputs(cc, CRAWL, s)]
    assert planned == [commoncrawl.url + "/" + p for p in real]


def test_sample_source_uses_the_same_path(cfg):
    pytest.importorskip("danqing.sample.crawl")
    uri = discover.fetch_index(cfg, SAMPLE_CRAWL_ID)
    root = paths.sample_crawl_root(cfg.root)
    assert open(uri, "rb").read() == open(f"{root}/crawl-data/{SAMPLE_CRAWL_ID}/warc.paths.gz", "rb").read()
    assert discover.pending_crawls(cfg, "", limit=5) == [SAMPLE_CRAWL_ID]
    shards = plan.plan(cfg, SAMPLE_CRAWL_ID, uri)
    inputs = [spec for s in shards for spec in plan.shard_inputs(cfg, SAMPLE_CRAWL_ID, s)]
    assert inputs and all(spec.startswith(root + "/crawl-data/") for spec in inputs)
