"""The Airflow plugin: the funnel page reads the lineage store and needs an Airflow login."""

from __future__ import annotations

import sys

from conftest import ROOT
from fastapi.testclient import TestClient

from danqing import lineage

sys.path.insert(0, str(ROOT / "plugins"))
import danqing_plugin  # noqa: E402


def test_funnel_page_and_api(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/lineage.sqlite"
    monkeypatch.setenv("DANQING_LINEAGE_URL", url)
    lineage.record(url, crawl="CC-MAIN-2025-47", shard=0, stage="extract", status="done", run_id="r", try_number=1,
                   inputs=[], outputs={}, count_in=10, count_out=4, dropped={"page_not_zho": 6}, errors={},
                   seconds=1.0, code_version="0", config_hash="h")
    client = TestClient(danqing_plugin.create_app(dependencies=[]))
    assert client.get("/api/crawls").json() == ["CC-MAIN-2025-47"]
    [extract] = client.get("/api/funnel/CC-MAIN-2025-47").json()
    assert (extract["in"], extract["out"], extract["dropped"]) == (10, 4, {"page_not_zho": 6})
    page = client.get("/").text
    assert "CC-MAIN-2025-47" in page and "page_not_zho: 6" in page


def test_plugin_app_refuses_anonymous_requests():
    client = TestClient(danqing_plugin.DanqingPlugin.fastapi_apps[0]["app"])
    assert client.get("/api/crawls").status_code in (401, 403)
