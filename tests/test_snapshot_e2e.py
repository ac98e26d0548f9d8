"""danqing_snapshot end to end on the bundled sample crawl, with Airflow's dag.test().

Checks the release: rows exist, each traces back to its WARC record, the funnel adds up
at every stage, and a second run of the DAG gives the same release, byte for byte. The
release goes to loopback stand-ins of both hubs (auto-approved) and the second run sends
nothing new; a third run whose approval is rejected through Airflow's REST API uploads nothing.
"""

from __future__ import annotations

import json
import threading
import time

import pyarrow.parquet as pq
import pytest
from conftest import ROOT, record_at

from danqing import io, lineage, paths, report
from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig

pytestmark = pytest.mark.slow

HF_TOKEN, MS_TOKEN = "hf_e2e_token_Jd82k1", "ms-e2e-token-Pq47z9"
KINDS = ["huggingface", "modelscope"]


def targets(repo: str) -> list[dict]:
    return [{"kind": kind, "repo_id": repo} for kind in KINDS]


@pytest.fixture(scope="module")
def snapshot_dag():
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "danqing_snapshot.py")).get_dag(
        "danqing_snapshot")
    for task in dag.tasks:
        task.retries = 0  # a failure here should fail the test now, not after backoff
    return dag


@pytest.fixture(scope="module")
def hubs():
    """Both hubs on loopback, their tokens in the Airflow connections the upload task reads."""
    from danqing.sample.hubs import HuggingFaceHub, ModelScopeHub

    with HuggingFaceHub(HF_TOKEN) as hf, ModelScopeHub(MS_TOKEN) as ms:
        mp = pytest.MonkeyPatch()
        for kind, hub, token in [("HUGGINGFACE", hf, HF_TOKEN), ("MODELSCOPE", ms, MS_TOKEN)]:
            mp.setenv(f"AIRFLOW_CONN_{kind}_DEFAULT", json.dumps({"conn_type": "generic", "host": hub.url,
                                                                  "password": token}))
        yield {"huggingface": hf, "modelscope": ms, "commits": [], "output": []}
        mp.undo()


def captured(request) -> str:
    """What the runs printed so far (task logs included), taken from pytest's capture."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    out, err = capman.read_global_capture() if capman.is_globally_capturing() else ("", "")
    return out + err


@pytest.fixture(scope="module")
def release(snapshot_dag, airflow_db, hubs, tmp_path_factory, request):
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
                "auto_approve": True,
                "config": {"download": {"host_overrides": images.host_overrides, "allow_loopback": True},
                           "publish": {"targets": targets("danqing/sample")}}}
        for _ in range(2):
            run = snapshot_dag.test(run_conf=conf)
            assert run.state == "success"
            manifests.append(io.read_json(f"{paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)}/manifest.json"))
            hubs["commits"].append({k: len(hubs[k].repos["danqing/sample"].commits) for k in KINDS})
    hubs["output"].append(captured(request))
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


def test_release_goes_to_both_hubs_and_a_rerun_sends_nothing(release, hubs):
    cfg, manifests = release
    manifest = manifests[-1]
    for kind in KINDS:
        repo = hubs[kind].repos["danqing/sample"]
        files = repo.files(manifest["tag"])
        assert files[f"data/{SAMPLE_CRAWL_ID}/manifest.json"] and "README.md" in files
        assert all(files[p] == sha for p, sha in manifest["files"].items()
                   if p.startswith("data/") or (kind == "modelscope" and p.startswith("images/")))
    assert hubs["commits"][0] == hubs["commits"][1]  # the second run made no commit
    uploads = lineage.uploaded(cfg.lineage, SAMPLE_CRAWL_ID)
    assert sorted({(u["kind"], u["tag"]) for u in uploads}) == [(k, manifest["tag"]) for k in KINDS]
    assert {u["shard"] for u in uploads} == {int(s) for s in manifest["shard_files"]}
    table = report.funnel_table(cfg, SAMPLE_CRAWL_ID)  # `danqing lineage CRAWL`
    for kind in KINDS:
        assert f"published to {kind} danqing/sample ({hubs[kind].url}): tag {manifest['tag']}" in table


@pytest.fixture(scope="module")
def rejected(release, snapshot_dag, hubs, request):
    """A run whose approval a person rejects through Airflow's REST API, as the UI does."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    cfg, _ = release
    mp = pytest.MonkeyPatch()
    mp.setenv("DANQING_ROOT", cfg.root)
    mp.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    client = TestClient(create_app("core"))
    seen, before = {}, {k: len(hubs[k].requests) for k in KINDS}

    def reject() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not seen:
            waiting = client.get("/api/v2/dags/danqing_snapshot/dagRuns/~/hitlDetails").json()["hitl_details"]
            for detail in (d for d in waiting if not d["response_received"]):
                ti = detail["task_instance"]
                url = (f"/api/v2/dags/{ti['dag_id']}/dagRuns/{ti['dag_run_id']}/taskInstances/{ti['task_id']}/"
                       f"{ti['map_index']}/hitlDetails")
                assert client.patch(url, json={"chosen_options": ["Reject"], "params_input": {}}).status_code == 200
                seen.update(detail)
            time.sleep(0.5)

    conf = {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": 2, "max_warcs": 0, "auto_approve": False,
            "config": {"download": {"allow_loopback": True}, "publish": {"targets": targets("danqing/rejected")}}}
    responder = threading.Thread(target=reject, daemon=True)
    responder.start()
    run = snapshot_dag.test(run_conf=conf)
    responder.join(10)
    hubs["output"].append(captured(request))
    mp.undo()
    return {"state": run.state, "tasks": {ti.task_id: ti.state for ti in run.get_task_instances()},
            "detail": seen, "requests": {k: hubs[k].requests[before[k]:] for k in KINDS}}


def test_rejecting_the_approval_uploads_nothing(rejected, release):
    _, manifests = release
    assert rejected["state"] == "success"
    assert rejected["tasks"]["approve_release"] == "success" and rejected["tasks"]["upload"] == "skipped"
    assert rejected["requests"] == {k: [] for k in KINDS}  # not one call reached a hub
    detail = rejected["detail"]
    rows = manifests[-1]["rows"]
    assert detail["subject"] == f"Publish {SAMPLE_CRAWL_ID}: {rows:,} pairs as {manifests[-1]['tag']}?"
    for shown in [f"**{rows:,} pairs**", "danqing/rejected", "| extract |", "### Sample captions",
                  "### Dataset card", "configs:"]:
        assert shown in detail["body"], shown


def test_tokens_are_in_no_log_xcom_or_lineage_row(rejected, release, hubs):
    import sqlalchemy as sa
    from airflow import settings

    cfg, _ = release
    logs = "\n".join(hubs["output"])
    if "auto_approve is set" not in logs:
        pytest.skip("pytest's output capture is off (-s): the task logs were not captured")
    with settings.engine.connect() as conn:
        airflow_rows = [str(r) for table in ("xcom", "rendered_task_instance_fields", "hitl_detail", "dag_run")
                        for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    assert any("danqing/sample" in r for r in airflow_rows)  # the upload summaries are there
    lineage_rows = json.dumps([lineage.uploaded(cfg.lineage, SAMPLE_CRAWL_ID), lineage.latest(cfg.lineage,
                              SAMPLE_CRAWL_ID)], default=str)
    for token in (HF_TOKEN, MS_TOKEN):
        assert token not in logs and token not in lineage_rows
        assert not [r for r in airflow_rows if token in r]
