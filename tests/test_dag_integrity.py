"""Every DAG file imports cleanly and fast, with retries set and the expected task graph."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from conftest import ROOT


@pytest.fixture(scope="module")
def dagbag(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"danqing_snapshot", "danqing_discover"} <= set(dagbag.dag_ids)


def test_every_task_retries_with_backoff(dagbag):
    for dag in dagbag.dags.values():
        for task in dag.tasks:
            assert task.retries >= 1, task.task_id
            assert task.retry_exponential_backoff, task.task_id


def test_snapshot_graph(dagbag):
    dag = dagbag.get_dag("danqing_snapshot")
    order = ["fetch_index", "plan", "extract", "refine", "download", "score", "dedup_plan", "dedup_partition",
             "dedup_groups", "dedup_pairs", "dedup_merge", "dedup", "align",
             "assemble", "publish", "approve_release", "upload"]
    assert {t.task_id for t in dag.tasks} == set(order)
    for up, down in zip(order, order[1:], strict=False):
        assert down in dag.get_task(up).downstream_task_ids, (up, down)


def test_snapshot_params_are_validated(dagbag):
    from airflow.sdk import Param
    from airflow.sdk.exceptions import ParamValidationError

    params = dagbag.get_dag("danqing_snapshot").params
    params.validate()
    for name, bad in [("crawl_id", "not-a-crawl"), ("source", "ftp"), ("shard_size", 0)]:
        with pytest.raises(ParamValidationError):
            Param(bad, **params.get_param(name).schema).resolve()


def test_dag_files_import_fast_without_heavy_modules():
    """Parsing must not import torch, pyarrow or the stage code: that runs in tasks only."""
    code = (
        "import sys, time; t = time.monotonic();"
        f"sys.path.insert(0, {str(ROOT / 'dags')!r});"
        "import danqing_snapshot, danqing_discover;"
        "heavy = [m for m in ('torch', 'open_clip', 'pyarrow', 'duckdb', 'danqing.stages.extract')"
        " if m in sys.modules];"
        "print(heavy, round(time.monotonic() - t, 2))"
    )
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, _ = out.stdout.strip().rsplit(" ", 1)
    assert heavy == "[]", out.stdout
    assert time.monotonic() - started < 60


def test_core_package_never_imports_airflow():
    offenders = [p for p in (ROOT / "danqing").rglob("*.py") if "airflow" in p.read_text()
                 and ("import airflow" in p.read_text() or "from airflow" in p.read_text())]
    assert offenders == []
