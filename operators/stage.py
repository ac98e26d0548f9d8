"""Airflow tasks for the pipeline: each body is one call into danqing and returns a small dict.

Tasks pass URIs (a shard number and the upstream output's URI), never data.
"""

from __future__ import annotations

import os
from datetime import timedelta

from airflow.sdk import get_current_context, task

from operators.alerts import page_on_failure
from operators.context import run_context

# Exponential backoff between tries; every task is idempotent (it replaces its own output).
# DANQING_RETRY_DELAY_S sets the first delay (the stack's tests shorten it).
DEFAULT_ARGS = {
    "retries": 3,
    "retry_delay": timedelta(seconds=float(os.environ.get("DANQING_RETRY_DELAY_S", "30"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=30),
    "on_failure_callback": page_on_failure,
}


@task
def fetch_index() -> str:
    """Copy the crawl's warc.paths.gz into the run's storage; returns its URI."""
    from danqing.stages import discover

    cfg, crawl, _ = run_context()
    return discover.fetch_index(cfg, crawl)


@task
def plan(index_uri: str) -> list[dict]:
    """Plan shards; one dict per shard to map over (just its number: 8,192 of them stay a small XCom)."""
    from danqing.stages import plan as planner

    cfg, crawl, _ = run_context()
    return [{"shard": s} for s in planner.plan(cfg, crawl, index_uri)]


def shard_task(stage: str):
    """A mapped task running `stage` on one shard; `src` is the upstream task's summary."""

    @task(task_id=stage, map_index_template="{{ shard_label }}")
    def run(src: dict) -> dict:
        from danqing.paths import shard_label
        from danqing.shard import run_shard

        get_current_context()["shard_label"] = shard_label(src["shard"])
        cfg, crawl, attempt = run_context()
        if stage == "extract":
            from danqing.stages.plan import shard_inputs

            inputs = shard_inputs(cfg, crawl, src["shard"])
        elif stage == "dedup":
            inputs = [src["uri"], src["decisions"]]
        else:
            inputs = [src["uri"]]
        summary = run_shard(stage, crawl, src["shard"], inputs, cfg, attempt)
        after_stage(cfg, crawl, stage, [src["shard"]], attempt)
        return summary

    return run


def after_stage(cfg, crawl: str, stage: str, shards: list[int], attempt) -> None:
    """Once a stage's shards are committed: OpenLineage inputs/outputs, then the data-quality check."""
    from operators import alerts, openlineage

    openlineage.report_stage(cfg, crawl, stage, shards)
    alerts.check_quality(cfg, crawl, shards, attempt.run_id, link=get_current_context()["ti"].log_url)


# Dedup, partitioned (danqing.stages.dedup): one plan, partitions mapped over sources (runs of score
# shards, slices of earlier releases), pairs mapped over groups of cells, one merge, then the
# per-shard "dedup" writes.

@task
def dedup_plan(scored: list[dict]) -> list[dict]:
    """Learn the cells on a sample and size the groups; one dict per source to partition."""
    from danqing.dedup import partitions

    cfg, crawl, _ = run_context()
    plan = partitions.plan(cfg, crawl, sorted(s["uri"] for s in scored))
    return [{"plan": plan["uri"], "source": s} for s in plan["sources"]]


@task(map_index_template="{{ source_label }}")
def dedup_partition(src: dict) -> str:
    """One source (a run of score shards, or slices of earlier releases) into its groups; returns the plan's URI."""
    from danqing.dedup import partitions

    get_current_context()["source_label"] = src["source"]["name"]
    cfg, _, _ = run_context()
    partitions.partition(cfg, partitions.load_plan(cfg, src["plan"], sources=False), src["source"])
    return src["plan"]


@task
def dedup_groups(partitioned: list[str]) -> list[dict]:
    """One dict per group of cells, once every source is partitioned."""
    from danqing.dedup import partitions

    cfg, _, _ = run_context()
    uri = partitioned[0]
    return [{"plan": uri, "group": g} for g in range(partitions.load_plan(cfg, uri, sources=False)["groups"])]


@task(map_index_template="{{ group_label }}")
def dedup_pairs(src: dict) -> dict:
    """The close, exact and perceptual pairs inside one group."""
    from danqing.dedup import partitions

    get_current_context()["group_label"] = f"g{src['group']:05d}"
    cfg, _, _ = run_context()
    uri = partitions.find_pairs(cfg, partitions.load_plan(cfg, src["plan"]), src["group"])
    return {"plan": src["plan"], "uri": uri}


@task
def dedup_merge(pairs: list[dict]) -> list[dict]:
    """Union-find over the pairs; one dict per shard for the "dedup" writes."""
    from danqing.dedup import partitions
    from danqing.stages import dedup

    cfg, _, _ = run_context()
    plan = partitions.load_plan(cfg, pairs[0]["plan"])
    decisions = dedup.merge(cfg, plan, sorted(p["uri"] for p in pairs))
    return [{"shard": u["ordinal"], "uri": u["uri"], "decisions": decisions}
            for u in partitions.units(plan, "shard")]


@task
def publish(assembled: list[dict]) -> dict:
    """Swap in the crawl's release folder: parquet, tars, manifest, dataset card."""
    from danqing.stages.publish import publish as publish_release

    cfg, crawl, attempt = run_context()
    summary = publish_release(cfg, crawl, [a["uri"] for a in assembled], attempt)
    after_stage(cfg, crawl, "publish", [a["shard"] for a in assembled], attempt)
    return summary


@task
def new_crawl_runs() -> list[dict]:
    """One danqing_snapshot trigger per crawl not yet processed, newest first."""
    from danqing.config import PipelineConfig
    from danqing.stages.discover import pending_crawls

    params = get_current_context()["params"]
    cfg = PipelineConfig.from_overrides({"source": {"kind": "commoncrawl"}})
    return [
        {
            "trigger_run_id": f"crawl__{crawl}",
            "conf": {"crawl_id": crawl, "source": "commoncrawl", "shard_size": params["shard_size"],
                     "max_warcs": params["max_warcs"], "config": {}},
        }
        for crawl in pending_crawls(cfg, params["collinfo_url"], params["limit"])
    ]
