"""Airflow UI page: the funnel of every crawl, from the lineage store, behind Airflow's login."""

from __future__ import annotations

import html

from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse


def _lineage_url() -> str:
    from danqing.config import PipelineConfig

    return PipelineConfig().lineage


def _auth() -> list:
    # Plugin apps get no auth by themselves: require an Airflow session like the UI's own pages.
    from airflow.api_fastapi.core_api.security import requires_authenticated

    return [Depends(requires_authenticated())]


def _check_crawl(crawl: str) -> None:
    from fastapi import HTTPException

    from danqing.paths import crawl_id

    try:
        crawl_id(crawl)
    except ValueError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


def create_app(dependencies: list | None = None) -> FastAPI:
    from danqing import lineage
    from danqing.paths import STAGES

    app = FastAPI(title="DanQing lineage", dependencies=_auth() if dependencies is None else dependencies)

    @app.get("/api/crawls")
    def crawls() -> list[str]:
        return sorted(lineage.crawls(_lineage_url()), reverse=True)

    @app.get("/api/funnel/{crawl}")
    def funnel(crawl: str) -> list[dict]:
        _check_crawl(crawl)
        return [{**s, "dropped": dict(s["dropped"]), "errors": dict(s["errors"])}
                for s in lineage.funnel(_lineage_url(), crawl, STAGES)]

    @app.get("/", response_class=HTMLResponse)
    def page() -> str:
        parts = ["<html><head><meta charset='utf-8'><title>DanQing funnel</title>",
                 "<style>body{font-family:sans-serif;margin:1.5em}td,th{padding:2px 10px;text-align:right}"
                 "td:last-child,th:last-child{text-align:left}</style></head><body><h1>DanQing funnel</h1>"]
        for crawl in crawls():
            parts.append(f"<h2>{html.escape(crawl)}</h2><table><tr><th>stage</th><th>shards</th><th>in</th>"
                         "<th>out</th><th>dropped by reason</th></tr>")
            for s in funnel(crawl):
                reasons = ", ".join(f"{html.escape(k)}: {v}" for k, v in sorted(s["dropped"].items()))
                parts.append(f"<tr><td>{s['stage']}</td><td>{s['shards']}</td><td>{s['in']}</td>"
                             f"<td>{s['out']}</td><td>{reasons or '-'}</td></tr>")
            parts.append("</table>")
        parts.append("</body></html>")
        return "".join(parts)

    return app


class DanqingPlugin(AirflowPlugin):
    name = "danqing"
    fastapi_apps = [{"app": create_app(), "url_prefix": "/danqing", "name": "DanQing lineage"}]
    external_views = [{"name": "DanQing funnel", "href": "/danqing/", "url_route": "danqing", "destination": "nav"}]
