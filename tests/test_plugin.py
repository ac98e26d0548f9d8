"""The crawl page's app on its own (no Airflow): every route needs a login, the page draws what lineage
holds, and clearing failed task instances needs permission to edit the DAG.
tests/test_crawl_page_browser.py checks the same against a real Airflow api-server in Chromium."""

from __future__ import annotations

import re
import sys
from types import SimpleNamespace

import pytest
from conftest import ROOT
from crawl_helpers import record_crawl
from fastapi import HTTPException
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from danqing import lineage

sys.path.insert(0, str(ROOT / "plugins"))
import danqing_plugin  # noqa: E402

CRAWL = "CC-MAIN-2025-47"
VIEWER = SimpleNamespace(name="viewer")


async def _viewer(request):
    return VIEWER


async def _anonymous(request):
    raise HTTPException(status_code=401, detail="Not authenticated")


@pytest.fixture
def crawl_lineage(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/lineage.sqlite"
    monkeypatch.setenv("DANQING_ROOT", str(tmp_path))
    monkeypatch.setenv("DANQING_LINEAGE_URL", url)
    record_crawl(url, CRAWL, shards=4, rows=400, download_failed={2: 0.4})
    lineage.record_alert(url, crawl=CRAWL, run_id="scheduled__r1", shard=2, stage="download",
                         code="download_success_low", message="download success 60% <b>")
    return url


def _client(**kwargs) -> TestClient:
    kwargs = {"authenticate": _viewer, "can_edit": lambda user: False, "airflow_db": False,
              "login_url": lambda nxt: f"/auth/login?next={nxt}", **kwargs}
    return TestClient(danqing_plugin.create_app(**kwargs), root_path="/danqing")


def test_every_route_refuses_anonymous_requests(crawl_lineage):
    """The plugin as Airflow mounts it, with Airflow's own authentication: no user, no answer."""
    app = danqing_plugin.DanqingPlugin.fastapi_apps[0]["app"]
    client = TestClient(app, root_path="/danqing")
    paths = {getattr(r, "path", "") for r in app.routes} | {"/docs", "/redoc", "/no/such/page"}
    assert {"/openapi.json", "/crawl/{crawl}", "/api/runs/{run_id}/clear-failed"} <= paths
    for path in sorted(paths):
        url = path.format(crawl=CRAWL, run_id="r1", sample_id="x")
        for method in ("GET", "POST"):
            answer = client.request(method, url, headers={"Accept": "application/json"}, follow_redirects=False)
            assert answer.status_code in (401, 403), (method, url, answer.status_code)
            assert CRAWL not in answer.text and "openapi" not in answer.text
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/ws"):  # no websocket either
        pass
    assert closed.value.code == 1008
    # A browser asking for a page goes to Airflow's login instead.
    page = _client(authenticate=_anonymous).get(f"/crawl/{CRAWL}", headers={"Accept": "text/html"},
                                                follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/auth/login?next=")


def test_page_draws_funnel_grid_errors_downloads_and_alerts(crawl_lineage):
    client = _client()
    assert client.get("/", follow_redirects=False).headers["location"] == f"/danqing/crawl/{CRAWL}"
    page = client.get(f"/crawl/{CRAWL}").text
    # Funnel: one bar per stage, kept plus each drop reason as a segment.
    assert page.count("<text x='82'") == 7 and "data-reason='kept'" in page
    assert "data-reason='caption_too_short'" in page and "data-reason='download_timeout'" in page
    # Grid without an Airflow run: lineage alone says which shard-stages are done (no log links then).
    assert len(re.findall(r"class='cell done' data-task='refine'", page)) == 4
    # The shard with 40% failed downloads is highlighted under the 80% threshold; the others are not.
    low = re.findall(r"<tr class='low' data-shard='(\d+)'>", page)
    assert low == ["2"] and "60.2%" in page
    assert "<td>transient</td><td><code>download_timeout</code>" in page
    assert "<code>download_retry</code>" in page and "<code>download_timeout</code>" in page  # top errors
    assert "download success 60% &lt;b&gt;" in page  # alerts, escaped
    data = client.get(f"/api/crawl/{CRAWL}").json()
    assert [s["stage"] for s in data["funnel"]] == ["extract", "refine", "download", "score", "dedup", "align",
                                                    "assemble"]
    assert [(f["shard"], f["code"]) for f in data["findings"]] == [(2, "download_success_low")]
    assert data["trend"][0]["crawl"] == CRAWL and not data["trend"][0]["released"]


def test_bad_crawl_ids_are_404(crawl_lineage):
    client = _client()
    assert client.get("/crawl/..%2F..%2Fetc").status_code == 404
    assert client.get("/api/crawl/not-a-crawl").status_code == 404


def test_clearing_failed_task_instances_needs_dag_edit_permission(crawl_lineage):
    cleared = []

    def clear(run_id, user):
        cleared.append((run_id, user.name))
        return [{"task_id": "extract", "map_index": 1}]

    url, json_headers = "/api/runs/manual__1/clear-failed", {"Content-Type": "application/json"}
    assert _client(clear_failed=clear).post(url, json={}).status_code == 403
    editor = _client(clear_failed=clear, can_edit=lambda user: True)
    assert editor.post(url, content="x=1", headers={"Content-Type": "application/x-www-form-urlencoded"}
                       ).status_code == 415  # a cross-site form cannot send it
    answer = editor.post(url, content="{}", headers=json_headers)
    assert answer.status_code == 200 and answer.json()["cleared"] == [{"task_id": "extract", "map_index": 1}]
    assert cleared == [("manual__1", "viewer")]


def test_throughput_and_eta_of_a_running_run():
    import datetime as dt

    from danqing_page import crawl

    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    run = SimpleNamespace(run_id="manual__1", start_date=started, end_date=None, state="running")
    cells = [{"state": s} for s in ["done"] * 4 + ["running", "up for retry"] + ["not started"] * 6]
    rows = [{"stage": "extract", "shard": 0, "status": "done", "count_in": 1200, "count_out": 900, "dropped": {}},
            {"stage": "download", "shard": 0, "status": "done", "count_in": 900, "count_out": 500,
             "dropped": {"download_timeout": 300, "visual_blurry": 100}},
            {"stage": "extract", "shard": 1, "status": "skipped", "count_in": 5000, "count_out": 10, "dropped": {}}]
    p = crawl.progress({"rows": [{"cells": cells}]}, rows, run)
    assert (p["pairs"], p["images"], p["cells_done"], p["cells"]) == (1200, 600, 4, 12)  # skipped shards do not count
    assert p["pairs_per_s"] == pytest.approx(2.0, rel=0.01) and p["images_per_s"] == pytest.approx(1.0, rel=0.01)
    assert p["eta_s"] == pytest.approx(1200, rel=0.01)  # 4 of 12 cells in 10 min: 20 min more
    assert "eta_s" not in crawl.progress({"rows": [{"cells": cells}]}, rows,
                                         SimpleNamespace(**{**run.__dict__, "state": "failed"}))


def test_trend_across_released_crawls_and_where_the_release_went(crawl_lineage):
    url = crawl_lineage
    older = "CC-MAIN-2025-43"
    record_crawl(url, older, shards=4, rows=400, seed=1)
    for crawl in (older, CRAWL):  # both released
        for shard in range(4):
            lineage.record(url, crawl=crawl, shard=shard, stage="publish", status="done", run_id="r", try_number=1,
                           inputs=[], outputs={}, count_in=10, count_out=10, dropped={}, errors={}, seconds=0.0,
                           code_version="0", config_hash="h")
    lineage.record_upload(url, crawl=CRAWL, shard=0, kind="huggingface", repo_id="org/danqing-cc",
                          endpoint="https://huggingface.co", tag=CRAWL, commit_id="0123456789abcdef0123",
                          files={"data/00000.parquet": "ab"}, run_id="r", try_number=1)
    page = _client().get(f"/crawl/{CRAWL}").text
    assert "<svg class='trend'" in page and page.count("<polyline") == 8  # one line per stage over two crawls
    assert "<td>CC-MAIN-2025-43</td>" in page and "<td>CC-MAIN-2025-47</td>" in page
    assert f"https://huggingface.co/datasets/org/danqing-cc/tree/{CRAWL}" in page and "0123456789ab" in page


def test_grid_folds_tasks_mapped_over_sources_or_groups_into_one_cell():
    """dedup_partition (per source) and dedup_pairs (per group of cells) are not per shard: one cell
    each, showing the worst state and linking to that task instance's log."""
    from danqing_page import crawl

    from danqing.paths import shard_label

    def ti(task, i, label, state):
        return SimpleNamespace(task_id=task, map_index=i, rendered_map_index=label, state=state, try_number=1,
                               log_url=f"/log/{task}/{i}")

    tis = [ti("score", i, shard_label(i), "success") for i in range(3)]
    tis += [ti("dedup_partition", i, name, state) for i, (name, state) in enumerate(
        [("s00000", "success"), ("s00001", "running"), ("s00002", "success"), ("r000-0000000000", "failed")])]
    tis += [ti("dedup_pairs", i, f"g{i:05d}", "success") for i in range(7)]
    tasks = ["score", "dedup_partition", "dedup_pairs"]
    grid = crawl.build_grid([], tis, tasks, set(tasks), [])
    assert grid["shards"] == [0, 1, 2]  # no columns for released slices or groups
    rows = {r["task"]: r for r in grid["rows"]}
    assert rows["score"]["per_shard"] and [c["state"] for c in rows["score"]["cells"]] == ["done"] * 3
    (partition,) = rows["dedup_partition"]["cells"]
    assert not rows["dedup_partition"]["per_shard"]
    assert (partition["state"], partition["log_url"]) == ("failed", "/log/dedup_partition/3")
    assert [c["state"] for c in rows["dedup_pairs"]["cells"]] == ["done"]
