"""What the crawl page shows, gathered from the lineage store and Airflow's metadata database.

Stages and task ids are read, never listed: the grid's rows are the run's tasks in the DAG's order,
a mapped task gets one cell per shard, a whole-crawl task that records lineage per shard (dedup,
publish) gets one cell per shard too, and any other task (planning, approval, upload) one wide cell.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict

from danqing import health, io, lineage, paths, report
from danqing.config import PipelineConfig

DAG_ID = "danqing_snapshot"

# Airflow task-instance states as the grid shows them.
CELL_STATE = {
    "success": "done", "failed": "failed", "running": "running", "deferred": "running", "restarting": "running",
    "awaiting_input": "running", "up_for_retry": "up for retry", "up_for_reschedule": "up for retry",
}
NOT_STARTED = "not started"  # none, scheduled, queued, upstream_failed, skipped, removed
WORST_FIRST = ["failed", "up for retry", "running", NOT_STARTED, "done"]
ACTIVE_RUN = ("queued", "running")


def crawls(cfg: PipelineConfig) -> list[str]:
    """Crawls with lineage, newest id first."""
    return sorted(lineage.crawls(cfg.lineage), reverse=True)


def runs_of(session, crawl: str, limit: int = 20) -> list:
    """The crawl's danqing_snapshot runs, newest first (a run's crawl is its conf's crawl_id)."""
    from airflow.models.dagrun import DagRun
    from sqlalchemy import select

    query = select(DagRun).where(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).limit(500)
    return [r for r in session.scalars(query) if (r.conf or {}).get("crawl_id") == crawl][:limit]


def gather(cfg: PipelineConfig, crawl: str, session, run_id: str | None = None) -> dict:
    """Everything the crawl page shows, as plain data (also served as JSON)."""
    rows = lineage.latest(cfg.lineage, crawl)
    runs = runs_of(session, crawl) if session is not None else []
    run = next((r for r in runs if r.run_id == run_id), runs[0] if runs else None)
    tis, order, mapped = _task_instances(session, run) if run is not None else ([], [], set())
    stages = stage_order(rows, order)
    grid = build_grid(rows, tis, order, mapped, stages)
    downloads = [health.download_health(r) for r in sorted(rows, key=lambda r: r["shard"]) if r["stage"] == "download"]
    return {
        "crawl": crawl,
        "dag_id": DAG_ID,
        "thresholds": cfg.alerts.model_dump(include={"min_download_success", "max_kept_drift", "min_rows"}),
        "runs": [_run_summary(r) for r in runs],
        "run": _run_summary(run) if run is not None else None,
        "stages": stages,
        "funnel": [{**s, "dropped": dict(s["dropped"]), "errors": dict(s["errors"])}
                   for s in lineage.funnel(cfg.lineage, crawl, stages)],
        "grid": grid,
        "errors": top_errors(rows, tis),
        "downloads": downloads,
        "failure_classes": failure_classes(downloads),
        "progress": progress(grid, lineage.run_rows(cfg.lineage, crawl, run.run_id) if run else [], run),
        "trend": trend(cfg, crawl),
        "release": release(cfg, crawl),
        "alerts": [{k: a[k] for k in ("created_at", "code", "shard", "stage", "message", "run_id")}
                   for a in lineage.alerts_raised(cfg.lineage, crawl)[:50]],
        "findings": [f.__dict__ for f in health.findings(crawl, rows, cfg.alerts)],
    }


def stage_order(rows: list[dict], task_order: list[str]) -> list[str]:
    """The stages in lineage, in the DAG's task order (then the pipeline's, then by name)."""
    def key(stage: str):
        if stage in task_order:
            return (0, task_order.index(stage), stage)
        return (1, paths.STAGES.index(stage) if stage in paths.STAGES else len(paths.STAGES), stage)

    return sorted({r["stage"] for r in rows}, key=key)


def build_grid(rows: list[dict], tis: list, order: list[str], mapped: set[str], stages: list[str]) -> dict:
    """{"shards": [...], "rows": [{"task", "per_shard", "cells": [...]}]}: one row per task of the run
    (or per stage in lineage when there is no run), a cell per shard or one for the whole crawl."""
    by_key = {(r["stage"], r["shard"]): r for r in rows}
    by_task: dict[str, list] = defaultdict(list)
    for ti in tis:
        by_task[ti.task_id].append(ti)
    shards = sorted({r["shard"] for r in rows} | {_shard(ti) for ti in tis if ti.map_index >= 0 and _over_shards(ti)})
    out = []
    for task in order or stages:
        task_tis = by_task.get(task, [])
        others = [ti for ti in task_tis if ti.map_index >= 0 and not _over_shards(ti)]
        if others:  # mapped over something else (dedup's sources and groups of cells): one cell, the worst
            worst = min(others, key=lambda ti: WORST_FIRST.index(CELL_STATE.get(ti.state or "none", NOT_STARTED)))
            out.append({"task": task, "per_shard": False, "cells": [_cell(task, None, worst, None)]})
            continue
        expanded = {_shard(ti): ti for ti in task_tis if ti.map_index >= 0}
        whole = next((ti for ti in task_tis if ti.map_index < 0), None)
        per_shard = task in mapped or bool(expanded) or any((task, s) in by_key for s in shards)
        if per_shard:
            cells = [_cell(task, s, expanded.get(s) or whole, by_key.get((task, s))) for s in shards]
        else:
            cells = [_cell(task, None, whole, None)]
        out.append({"task": task, "per_shard": per_shard, "cells": cells})
    return {"shards": shards, "rows": out}


def _cell(task: str, shard: int | None, ti, row: dict | None) -> dict:
    if ti is not None:
        raw = ti.state or "none"
        state = CELL_STATE.get(raw, NOT_STARTED)
    else:  # no run (the CLI) or a task this run does not have: lineage alone says done
        raw = "no task instance"
        state = "done" if row is not None else NOT_STARTED
    return {"task": task, "shard": shard, "state": state, "raw": raw,
            "try": ti.try_number if ti is not None else None,
            "log_url": ti.log_url if ti is not None else "",
            "rows_in": row["count_in"] if row else None, "kept": row["count_out"] if row else None,
            "lineage": f"{row['status']} in run {row['run_id']}" if row else ""}


def top_errors(rows: list[dict], tis: list, limit: int = 15) -> list[dict]:
    """Error codes by count, with the shards they hit: record/host events, download failures, failed tasks."""
    found: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in rows:
        for code, n in r["errors"].items():
            found[(code, r["stage"])][r["shard"]] += n
        if r["stage"] == "download":
            for code, n in health.download_health(r)["failed"].items():
                found[(code, r["stage"])][r["shard"]] += n
    for ti in tis:
        if ti.state == "failed":
            found[("task_failed", ti.task_id)][_shard(ti)] += 1
    ranked = sorted(found.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:limit]
    return [{"code": code, "stage": stage, "count": sum(shards.values()),
             "shards": [{"shard": s, "count": n} for s, n in shards.most_common()]}
            for (code, stage), shards in ranked]


def failure_classes(downloads: list[dict]) -> list[dict]:
    """Download failures of the crawl by class and reason, with their share of the attempts."""
    from danqing.download.fetcher import error_class

    attempted = sum(d["attempted"] for d in downloads)
    reasons = Counter()
    for d in downloads:
        reasons.update(d["failed"])
    return [{"class": error_class(reason), "reason": reason, "rows": n,
             "share": n / attempted if attempted else None,
             "shards": sum(1 for d in downloads if d["failed"].get(reason))}
            for reason, n in sorted(reasons.items(), key=lambda kv: (error_class(kv[0]), -kv[1]))]


def progress(grid: dict, run_rows: list[dict], run) -> dict:
    """Throughput of the run (candidate pairs extracted and images fetched per second of wall time; shards it
    skipped as done do not count) and, while it runs, an ETA: a linear estimate from the share of its cells done."""
    if run is None or run.start_date is None:
        return {}
    now = dt.datetime.now(dt.UTC)
    elapsed = ((run.end_date or now) - run.start_date).total_seconds()
    done_here = [r for r in run_rows if r["status"] == "done"]
    pairs = sum(r["count_in"] for r in done_here if r["stage"] == "extract")
    images = sum(health.download_health(r)["fetched"] for r in done_here if r["stage"] == "download")
    cells = [c for row in grid["rows"] for c in row["cells"]]
    done = sum(c["state"] == "done" for c in cells)
    out = {"elapsed_s": elapsed, "pairs": pairs, "images": images,
           "pairs_per_s": pairs / elapsed if elapsed > 0 else None,
           "images_per_s": images / elapsed if elapsed > 0 else None,
           "cells_done": done, "cells": len(cells), "running": run.state in ACTIVE_RUN}
    if out["running"] and 0 < done < len(cells):
        remaining = elapsed * (len(cells) - done) / done
        out.update(eta_s=remaining, eta=(now + dt.timedelta(seconds=remaining)).isoformat(timespec="minutes"))
    return out


def trend(cfg: PipelineConfig, current: str) -> list[dict]:
    """Kept ratio per stage for each released crawl (and this one), oldest first."""
    out = []
    for crawl in sorted(lineage.crawls(cfg.lineage)):
        funnel = lineage.funnel(cfg.lineage, crawl, paths.STAGES)
        released = any(s["stage"] == "publish" for s in funnel)
        if released or crawl == current:
            out.append({"crawl": crawl, "released": released,
                        "kept": {s["stage"]: (s["out"] / s["in"] if s["in"] else None) for s in funnel}})
    return out


def release(cfg: PipelineConfig, crawl: str) -> dict:
    """Where the crawl's release went: the local folder (its manifest) and hub repos, tags and commits."""
    folder = paths.release_dir(cfg.release_root, crawl)
    manifest_uri = f"{folder}/manifest.json"
    manifest = io.read_json(manifest_uri, cfg.storage_options) if io.exists(manifest_uri, cfg.storage_options) else None
    hubs: dict[tuple, dict] = {}
    for u in lineage.uploaded(cfg.lineage, crawl):
        key = (u["kind"], u["endpoint"], u["repo_id"], u["tag"], u["commit_id"])
        hub = hubs.setdefault(key, {"kind": u["kind"], "endpoint": u["endpoint"], "repo_id": u["repo_id"],
                                    "tag": u["tag"], "commit_id": u["commit_id"], "shards": [], "files": 0,
                                    "at": u["created_at"]})
        hub["shards"].append(u["shard"])
        hub["files"] += len(u["files"])
    return {"folder": folder, "manifest": {k: manifest.get(k) for k in ("rows", "shards", "tag")} if manifest
            else None, "hubs": list(hubs.values())}


def sample(cfg: PipelineConfig, crawl: str, sample_id: str) -> dict | None:
    return report.sample_trace(cfg, crawl, sample_id)


def _task_instances(session, run) -> tuple[list, list[str], set[str]]:
    """The run's task instances, its tasks in topological order (the DAG's own order among equals), and
    which of them are mapped."""
    from airflow.models.dagbag import DBDagBag
    from airflow.models.taskinstance import TaskInstance
    from sqlalchemy import select

    tis = list(session.scalars(select(TaskInstance).where(TaskInstance.dag_id == run.dag_id,
                                                           TaskInstance.run_id == run.run_id)))
    dag = DBDagBag().get_dag_for_run(run, session)
    if dag is None:  # the DAG is gone: order by when the tasks started
        first = sorted(tis, key=lambda t: (t.start_date is None, t.start_date or dt.datetime.max, t.task_id))
        return tis, list(dict.fromkeys(t.task_id for t in first)), set()
    ids = list(dag.task_ids)
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    order: list[str] = []
    while len(order) < len(ids):
        ready = [t for t in ids if t not in order and upstream[t] <= set(order)]
        if not ready:  # a cycle cannot be; keep the rest in definition order
            order += [t for t in ids if t not in order]
            break
        order.append(ready[0])
    return tis, order, {t.task_id for t in dag.tasks if t.is_mapped}


def _run_summary(run) -> dict:
    return {"run_id": run.run_id, "state": str(run.state), "queued_at": _iso(run.queued_at),
            "start_date": _iso(run.start_date), "end_date": _iso(run.end_date)}


def _iso(value) -> str | None:
    return value.isoformat(timespec="seconds") if value else None


def _over_shards(ti) -> bool:
    """Mapped over shards: labelled as a shard, or not labelled (its map index is the shard)."""
    return not ti.rendered_map_index or paths.shard_of_label(ti.rendered_map_index) is not None


def _shard(ti) -> int:
    shard = paths.shard_of_label(ti.rendered_map_index)
    return ti.map_index if shard is None else shard
