"""Airflow UI plugin: the DanQing crawl page (funnel, shard grid, errors, downloads, trend, sample lookup,
release), behind Airflow's login.

Plugin apps get no auth from Airflow, so a middleware checks every request before any route sees it:
pages, JSON, the OpenAPI schema, even a 404. Any logged-in user may read; the one action that changes
state (clear a run's failed task instances) also needs permission to edit the DAG, asked of Airflow's
auth manager.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.requests import HTTPConnection

PREFIX = "/danqing"
Authenticate = Callable[[HTTPConnection], Awaitable[Any]]


async def airflow_user(request: HTTPConnection):
    """The request's Airflow user (bearer token or the UI's session cookie), else HTTPException 401/403."""
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    return await get_user(request, None, await bearer_scheme(request))


def airflow_can_edit(user) -> bool:
    """May `user` change the pipeline DAG's task instances? Airflow's auth manager decides."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
    from airflow.models.dag import DagModel
    from danqing_page.crawl import DAG_ID

    details = DagDetails(id=DAG_ID, team_name=DagModel.get_team_name(DAG_ID))
    return get_auth_manager().is_authorized_dag(method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE,
                                                details=details, user=user)


def airflow_clear_failed(run_id: str, user) -> list[dict]:
    """Clear the run's failed task instances (and those downstream they held up) through Airflow's own
    clear endpoint, so the scheduler runs them again."""
    from airflow.api_fastapi.core_api.datamodels.task_instances import ClearTaskInstancesBody
    from airflow.api_fastapi.core_api.routes.public.task_instances import post_clear_task_instances
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.utils.session import create_session
    from danqing_page.crawl import DAG_ID
    from sqlalchemy import select

    with create_session() as session:
        failed = session.scalars(select(TI).where(TI.dag_id == DAG_ID, TI.run_id == run_id, TI.state == "failed"))
        targets = [(ti.task_id, ti.map_index) if ti.map_index >= 0 else ti.task_id for ti in failed]
        if not targets:
            return []
        body = ClearTaskInstancesBody(dag_run_id=run_id, task_ids=targets, only_failed=True, include_downstream=True,
                                      dry_run=False, reset_dag_runs=True,
                                      note=f"cleared from the DanQing page by {user.get_name()}")
        cleared = post_clear_task_instances(dag_id=DAG_ID, dag_bag=DBDagBag(), body=body, session=session, user=user)
        return [{"task_id": t.task_id, "map_index": t.map_index} for t in cleared.task_instances]


class RequireLogin:
    """ASGI middleware: no request reaches the app without a logged-in user. A browser asking for a page
    is sent to Airflow's login; anything else gets the 401/403."""

    def __init__(self, app, authenticate: Authenticate, login_url: Callable[[str], str]):
        self.app, self.authenticate, self.login_url = app, authenticate, login_url

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):  # lifespan
            return await self.app(scope, receive, send)
        connection = HTTPConnection(scope)
        try:
            user = await self.authenticate(connection)
        except HTTPException as exc:
            if scope["type"] == "websocket":
                return await send({"type": "websocket.close", "code": 1008})
            if scope["method"] == "GET" and "text/html" in connection.headers.get("accept", ""):
                response = RedirectResponse(self.login_url(str(connection.url)), status_code=303)
            else:
                response = JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
            return await response(scope, receive, send)
        scope.setdefault("state", {})["danqing_user"] = user
        return await self.app(scope, receive, send)


def airflow_login_url(next_url: str) -> str:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager().get_url_login(next_url=next_url)


def create_app(authenticate: Authenticate = airflow_user, can_edit: Callable[[Any], bool] = airflow_can_edit,
               clear_failed: Callable[[str, Any], list[dict]] = airflow_clear_failed,
               login_url: Callable[[str], str] = airflow_login_url, airflow_db: bool = True) -> FastAPI:
    """The plugin app. Tests pass their own authenticate/can_edit/clear_failed and airflow_db=False (lineage only)."""
    from danqing_page import crawl as pages
    from danqing_page import html

    from danqing.config import PipelineConfig
    from danqing.paths import crawl_id

    # No /docs or /redoc (they load Swagger from a CDN); the schema is behind the login like the rest.
    app = FastAPI(title="DanQing crawl page", docs_url=None, redoc_url=None)
    app.add_middleware(RequireLogin, authenticate=authenticate, login_url=login_url)

    def config() -> PipelineConfig:
        return PipelineConfig()

    def checked(crawl: str) -> str:
        try:
            return crawl_id(crawl)
        except ValueError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None

    def view(crawl: str, run: str | None) -> dict:
        cfg = config()
        if not airflow_db:
            return pages.gather(cfg, crawl, None, run)
        from airflow.utils.session import create_session

        with create_session() as session:
            return pages.gather(cfg, crawl, session, run)

    def user_of(request: Request):
        return request.scope["state"]["danqing_user"]

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request):
        crawls = pages.crawls(config())
        if crawls:  # the nav entry opens the newest crawl
            return RedirectResponse(f"{request.scope.get('root_path', '')}/crawl/{crawls[0]}", status_code=303)
        return html.index(crawls, request.scope.get("root_path", ""))

    @app.get("/go")
    def go(request: Request, crawl: str, run: str | None = None):
        return RedirectResponse(html.go_url(request.scope.get("root_path", ""), checked(crawl), run), status_code=303)

    @app.get("/crawl/{crawl}", response_class=HTMLResponse)
    def crawl_page(request: Request, crawl: str, run: str | None = None, sample: str = "") -> str:
        crawl = checked(crawl)
        data = view(crawl, run)
        trace = pages.sample(config(), crawl, sample.strip()) if sample.strip() else None
        return html.page(data, crawls=pages.crawls(config()), prefix=request.scope.get("root_path", ""),
                         can_edit=can_edit(user_of(request)), sample_id=sample.strip(), trace=trace)

    @app.get("/api/crawls")
    def crawls() -> list[str]:
        return pages.crawls(config())

    @app.get("/api/crawl/{crawl}")
    def crawl_data(crawl: str, run: str | None = None) -> dict:
        return view(checked(crawl), run)

    @app.get("/api/funnel/{crawl}")
    def funnel(crawl: str) -> list[dict]:
        return view(checked(crawl), None)["funnel"]

    @app.get("/api/crawl/{crawl}/sample/{sample_id}")
    def sample(crawl: str, sample_id: str) -> dict:
        trace = pages.sample(config(), checked(crawl), sample_id)
        if trace is None:
            raise HTTPException(status_code=404, detail=f"sample {sample_id} is not in the extract outputs of {crawl}")
        return trace

    @app.post("/api/runs/{run_id}/clear-failed")
    def clear(request: Request, run_id: str) -> dict:
        # JSON only: an HTML form on another site cannot send this content type without CORS.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise HTTPException(status_code=415, detail="send Content-Type: application/json")
        user = user_of(request)
        if not can_edit(user):
            raise HTTPException(status_code=403, detail="clearing task instances needs permission to edit the DAG")
        return {"run_id": run_id, "cleared": clear_failed(run_id, user)}

    return app


class DanqingPlugin(AirflowPlugin):
    name = "danqing"
    fastapi_apps = [{"app": create_app(), "url_prefix": PREFIX, "name": "DanQing crawl page"}]
    external_views = [{"name": "DanQing", "href": f"{PREFIX}/", "url_route": "danqing", "destination": "nav"}]
