"""`make bench-orchestration`: what Airflow + Celery cost per shard task, with no work in the task.

Starts the production-shaped stack (scripts/stack.py: PostgreSQL, Redis, api-server, scheduler,
dag-processor, triggerer, two Celery workers) with a DAG that maps a no-op task over N shards,
triggers it through the REST API and reads every task instance's queued / start / end times.
Everything a no-op task takes is orchestration: the scheduler queueing it, Celery delivering it,
the worker forking the task runner, the runner parsing the DAG file and talking to the API server.

    python scripts/bench_orchestration.py [--shards 64] [--concurrency 1] [--runs 2]

Prints per task: queue-to-start latency, start-to-end (the runner's own overhead), and slot-seconds
per task (the stage's wall time x worker slots / N): the time a shard task costs a worker slot
beyond its work, to compare with a production shard's run time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import FAST, Stack  # noqa: E402

DAG_ID = "danqing_bench_orchestration"
SHARD_TASKS = 6  # extract, refine, download, score, align, assemble: danqing_snapshot's mapped tasks
DAG = '''
"""A no-op mapped over N shards: scripts/bench_orchestration.py measures the orchestration alone."""
from airflow.sdk import Param, dag, get_current_context, task


@dag(dag_id="danqing_bench_orchestration", schedule=None, catchup=False, max_active_tasks=64,
     params={"shards": Param(64, type="integer", minimum=1)}, default_args={"retries": 0})
def bench():
    @task
    def plan() -> list[dict]:
        return [{"shard": s} for s in range(get_current_context()["params"]["shards"])]

    @task
    def noop(src: dict) -> dict:
        return {"shard": src["shard"], "uri": ""}

    noop.expand(src=plan())


bench()
'''


def _t(value: str) -> float:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def measure(stack: Stack, shards: int, run_id: str) -> dict:
    stack.trigger({"shards": shards}, run_id, DAG_ID)
    state = stack.wait_run(run_id, 1800, dag_id=DAG_ID)
    if state != "success":
        raise SystemExit(f"run {run_id} ended {state}; logs in {stack.logs}")
    tis = [t for t in stack.task_instances(run_id, DAG_ID) if t["task_id"] == "noop"]
    queued = [_t(t["queued_when"]) for t in tis]
    start, end = [_t(t["start_date"]) for t in tis], [_t(t["end_date"]) for t in tis]
    return {"tasks": len(tis), "wall_s": max(end) - min(queued),
            "queue_to_start_s": statistics.median(s - q for s, q in zip(start, queued, strict=True)),
            "start_to_end_s": statistics.median(e - s for e, s in zip(end, start, strict=True))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=64)
    ap.add_argument("--concurrency", type=int, default=1, help="task slots per Celery worker")
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    dags = Path(tempfile.mkdtemp(prefix="danqing-bench-dags-"))
    (dags / "bench_orchestration.py").write_text(DAG)
    settings = {**FAST, "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(args.concurrency)}
    with Stack(settings=settings, dags_folder=dags, log=lambda *_: None) as stack:
        slots = len(stack.workers) * args.concurrency
        stack.wait_for_dag(DAG_ID)
        print(f"CeleryExecutor, {len(stack.workers)} workers x {args.concurrency} slot(s); "
              f"{args.shards} mapped no-op tasks per run")
        results = []
        for i in range(args.runs):
            r = measure(stack, args.shards, f"bench_{i}_{int(time.time())}")
            r["slot_s_per_task"] = r["wall_s"] * slots / r["tasks"]
            results.append(r)
            print(f"run {i + 1}: stage wall {r['wall_s']:.1f} s; per task: queue->start {r['queue_to_start_s']:.2f} s "
                  f"(median), start->end {r['start_to_end_s']:.2f} s (median), "
                  f"{r['slot_s_per_task']:.2f} slot-seconds", flush=True)
    per_task = statistics.median(r["slot_s_per_task"] for r in results)
    per_shard = per_task * SHARD_TASKS
    print(f"orchestration per shard task: {per_task:.2f} slot-seconds (median of {len(results)} runs); "
          f"a shard passes {SHARD_TASKS} mapped tasks: {per_shard:.1f} s")
    for minutes in (2, 5, 10):
        print(f"  = {100 * per_shard / (minutes * 60):.1f}% of a shard whose stages take {minutes} minutes in all")


if __name__ == "__main__":
    main()
