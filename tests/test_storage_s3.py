"""Stages on an s3:// root (a real moto S3 server on loopback), with credentials taken from an
Airflow AWS connection the way production tasks take them.
"""

from __future__ import annotations

import json

import pytest
from source_helpers import moto_s3

from danqing import io, paths
from danqing.config import PipelineConfig
from danqing.sample.crawl import build_sample_crawl
from danqing.shard import run_shard


@pytest.fixture(scope="module")
def s3():
    with moto_s3("danqing") as server:
        yield server


def test_stages_write_and_read_s3_and_skip_when_done(s3, tmp_path, monkeypatch):
    endpoint, client = s3
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "test", "password": "test",
        "extra": {"endpoint_url": endpoint, "region_name": "us-east-1"}}))
    from operators.storage import s3_storage_options

    cfg = PipelineConfig.from_overrides({"root": "s3://danqing/data", "lineage_url": f"sqlite:///{tmp_path}/l.db",
                                         "storage_options": s3_storage_options()})
    manifest = build_sample_crawl(str(tmp_path / "crawl"))
    warc = str(tmp_path / "crawl" / manifest["warcs"][0])

    extracted = run_shard("extract", "CC-MAIN-2099-01", 0, [warc], cfg)
    refined = run_shard("refine", "CC-MAIN-2099-01", 0, [extracted["uri"]], cfg)
    assert refined["uri"] == paths.shard_uri("s3://danqing/data", "CC-MAIN-2099-01", "refine", 0)
    assert 0 < refined["kept"] <= refined["total"] == extracted["kept"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="danqing")["Contents"]}
    assert {"data/CC-MAIN-2099-01/extract/00000.parquet", "data/CC-MAIN-2099-01/refine/00000_stats.json"} <= keys
    assert not any(".tmp-" in k for k in keys)
    marker = io.read_json(paths.stats_uri(cfg.root, "CC-MAIN-2099-01", "refine", 0), cfg.storage_options)
    assert marker["stats"]["kept"] == refined["kept"]
    assert run_shard("refine", "CC-MAIN-2099-01", 0, [extracted["uri"]], cfg)["skipped"] is True


def test_remote_root_needs_a_lineage_database():
    with pytest.raises(ValueError, match="lineage_url"):
        _ = PipelineConfig(root="s3://danqing/data", lineage_url="").lineage
