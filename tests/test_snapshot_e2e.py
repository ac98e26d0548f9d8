"""danqing_snapshot end to end on the bundled sample crawl, with Airflow's dag.test().

Checks the release: rows exist, each traces back to its WARC record, the funnel adds up
at every stage, and a second run of the DAG gives the same release, byte for byte.
"""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, record_at

from danqing import io, lineage, paths, report
from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def snapshot_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "danqing_snapshot.py")).get_dag(
        "danqing_snapshot")
    for task in dag.tasks:
        task.retries = 0  # a failure here should fail the test now, not after backoff
    return dag


@pytest.fixture(scope="module")
def release(snapshot_dag, airflow_db, tmp_path_factory):
    from danqing.sample.crawl import build_sample_crawl
    from danqing.sample.imageserver import ImageServer

    root = str(tmp_path_factory.mktemp("e2e") / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("DANQING_ROOT", root)
    cfg = PipelineConfig(root=root)
    sample = paths.sample_crawl_root(root)
    build_sample_crawl(sample)
    manifests = []
    with ImageServer(sample) as images:
        conf = {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": 2, "max_warcs": 0,
                "config": {"download": {"host_overrides": images.host_overrides, "allow_loopback": True}}}
        for _ in range(2):
            run = snapshot_dag.test(run_conf=conf)
            assert run.state == "success"
            manifests.append(io.read_json(f"{paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)}/manifest.json"))
    mp.undo()
    return cfg, manifests


def test_release_has_rows_and_card(release):
    cfg, manifests = release
    folder = paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)
    pairs = pq.read_table(f"{folder}/data/{SAMPLE_CRAWL_ID}")
    assert pairs.num_rows > 0 and pairs.num_rows == manifests[-1]["rows"]
    card = open(f"{folder}/README.md", encoding="utf-8").read()
    assert "randomly initialised" in card and "| extract |" in card and "| caption length (chars) |" in card
    similarity = io.read_json(f"{folder}/similarity.json")["models"]["danqing-tiny:random-seed0"]
    assert similarity["in_band"] == pairs.num_rows and sum(similarity["counts"]) == similarity["pairs"]


def test_every_row_traces_to_its_warc_record(release):
    cfg, _ = release
    sample = paths.sample_crawl_root(cfg.root)
    pairs = pq.read_table(f"{paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)}/data/{SAMPLE_CRAWL_ID}").to_pylist()
    for row in pairs:
        record = record_at(sample, row)
        assert record.rec_type == "response"
        assert record.rec_headers.get_header("WARC-Target-URI") == row["page_url"]


def test_funnel_adds_up_at_every_stage(release):
    cfg, _ = release
    funnel = lineage.funnel(cfg.lineage, SAMPLE_CRAWL_ID, paths.STAGES)
    assert [s["stage"] for s in funnel] == paths.STAGES
    for stage in funnel:
        assert stage["in"] == stage["out"] + sum(stage["dropped"].values()), stage
    for up, down in zip(funnel, funnel[1:], strict=False):
        assert down["in"] == up["out"], (up["stage"], down["stage"])
    assert funnel[-1]["out"] > 0
    assert "extract" in report.funnel_table(cfg, SAMPLE_CRAWL_ID)


def test_rerun_gives_the_same_release(release):
    _, (first, second) = release
    assert first == second


def test_lineage_traces_a_kept_sample(release):
    cfg, _ = release
    pairs = pq.read_table(f"{paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)}/data/{SAMPLE_CRAWL_ID}")
    sample_id = pairs["id"][0].as_py()
    path = report.sample_path(cfg, SAMPLE_CRAWL_ID, sample_id)
    assert "warc" in path and "released" in path
    for stage in ["extract", "refine", "download", "score", "dedup", "align", "assemble"]:
        assert f"  {stage}" in path


def test_release_is_recorded_for_cross_crawl_dedup(release):
    cfg, manifests = release
    released = io.read_parquet(f"{paths.released_dir(cfg.root, SAMPLE_CRAWL_ID)}/ids.parquet")
    assert released.num_rows == manifests[-1]["rows"]
