"""The DAGs against 'Common Crawl' on loopback: discovery starts new crawls, and a snapshot
run with source=commoncrawl plans real WARC paths from the real warc.paths.gz.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

from danqing import io, paths

CRAWL = "CC-MAIN-2025-47"
AFTER_PLAN = r"^(extract|refine|download|score|dedup|align|assemble|publish)$"

pytestmark = pytest.mark.slow


def _dag(dag_id: str):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    for task in dag.tasks:
        task.retries = 0
    return dag


def test_commoncrawl_snapshot_plans_real_paths(airflow_db, commoncrawl, tmp_path, monkeypatch):
    root = str(tmp_path / "data")
    monkeypatch.setenv("DANQING_ROOT", root)
    conf = {"crawl_id": CRAWL, "source": "commoncrawl", "shard_size": 3, "max_warcs": 10,
            "config": {"source": {"commoncrawl_url": commoncrawl.url + "/", "index_url": ""}}}  # whole WARCs
    # Reading WARCs stops at the network: everything after planning is marked done, not run.
    run = _dag("danqing_snapshot").test(run_conf=conf, mark_success_pattern=AFTER_PLAN)
    assert run.state == "success"
    shards = io.read_json(paths.plan_uri(root, CRAWL))
    sizes = [len(s["inputs"]) for s in shards]
    assert len(sizes) == 4 and sum(sizes) == 10 and max(sizes) <= 3
    first = shards[0]["inputs"][0]
    assert first == (f"{commoncrawl.url}/crawl-data/CC-MAIN-2025-47/segments/1762439342185.16/warc/"
                     "CC-MAIN-20251106200718-20251106230718-00000.warc.gz")


def test_discover_starts_a_snapshot_run_per_new_crawl(airflow_db, commoncrawl, tmp_path, monkeypatch):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    monkeypatch.setenv("DANQING_ROOT", str(tmp_path / "data"))
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    sync_bag_to_db(DagBag(dag_folder=str(ROOT / "dags")), "dags-folder", None)
    conf = {"collinfo_url": f"{commoncrawl.url}/collinfo.json", "limit": 2, "shard_size": 4, "max_warcs": 0}
    discover = _dag("danqing_discover")
    for _ in range(2):  # the second refresh finds the same crawls and starts nothing new
        assert discover.test(run_conf=conf).state == "success"
    with create_session() as session:
        started = session.query(DagRun).filter(DagRun.dag_id == "danqing_snapshot",
                                               DagRun.run_id.startswith("crawl__")).all()
        assert sorted(r.run_id for r in started) == ["crawl__CC-MAIN-2025-43", "crawl__CC-MAIN-2025-47"]
        assert {r.conf["crawl_id"] for r in started} == {"CC-MAIN-2025-43", "CC-MAIN-2025-47"}
