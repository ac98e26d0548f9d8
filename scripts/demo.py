"""`make demo`: run danqing_snapshot on the bundled sample crawl under a real Airflow scheduler.

Starts `airflow standalone` (LocalExecutor, SQLite) and the sample image server on loopback,
triggers the DAG, waits for the run, stops what it started, prints the funnel and release path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from airflow_local import ROOT, airflow_env, free_port  # noqa: E402

DAG_ID = "danqing_snapshot"
TIMEOUT_S = 1800


def airflow(env: dict, *args: str) -> str:
    out = subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(f"airflow {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def airflow_json(env: dict, *args: str) -> list:
    """Output of an `airflow ... -o json` command; Airflow may print warnings before the JSON."""
    lines = airflow(env, *args, "-o", "json").splitlines()
    return next((json.loads(line) for line in reversed(lines) if line.startswith(("[", "{"))), [])


def wait_for_dag(env: dict, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            errors = airflow_json(env, "dags", "list-import-errors")
            if errors:
                raise SystemExit(f"DAG import errors:\n{errors}")
            if any(d["dag_id"] == DAG_ID for d in airflow_json(env, "dags", "list")):
                return
        except (RuntimeError, json.JSONDecodeError):
            pass  # the metadata DB is still being created
        time.sleep(5)
    raise SystemExit("the scheduler did not parse the DAGs in time")


def run_state(env: dict, run_id: str) -> str:
    runs = airflow_json(env, "dags", "list-runs", DAG_ID)
    return next((r["state"] for r in runs if r["run_id"] == run_id), "queued")


def stop(standalone: subprocess.Popen) -> None:
    """Stop airflow standalone and everything it started: idle LocalExecutor workers and log
    servers can outlive it, so whatever is left of its process group is killed after it."""
    os.killpg(standalone.pid, signal.SIGTERM)
    try:
        standalone.wait(60)
    except subprocess.TimeoutExpired:
        pass
    time.sleep(2)
    try:
        os.killpg(standalone.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the whole group is gone already


def main() -> int:
    from danqing import paths, report
    from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
    from danqing.sample.crawl import build_sample_crawl
    from danqing.sample.imageserver import ImageServer

    port = free_port()
    env = airflow_env(port)
    cfg = PipelineConfig.from_overrides({"root": env["DANQING_ROOT"]})
    sample = paths.sample_crawl_root(cfg.root)
    build_sample_crawl(sample)
    log_path = ROOT / ".airflow" / "standalone.log"
    print(f"starting airflow standalone on http://localhost:{port} (log: {log_path})", flush=True)
    with ImageServer(sample) as images, open(log_path, "w") as log:
        scheduler = subprocess.Popen(["airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            wait_for_dag(env, deadline)
            # New DAGs start paused, so the monthly refresh does not reach for the internet here.
            airflow(env, "dags", "unpause", DAG_ID)
            run_id = f"demo__{SAMPLE_CRAWL_ID}__{int(time.time())}"
            conf = {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": 2, "max_warcs": 0,
                    "config": {"download": {"host_overrides": images.host_overrides, "allow_loopback": True}}}
            airflow(env, "dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps(conf))
            print(f"triggered {DAG_ID} run {run_id}", flush=True)
            state = "queued"
            while time.monotonic() < deadline and state not in ("success", "failed"):
                time.sleep(10)
                state = run_state(env, run_id)
                print(f"  run state: {state}", flush=True)
        finally:
            stop(scheduler)
    print()
    print(report.funnel_table(cfg, SAMPLE_CRAWL_ID))
    print()
    if state != "success":
        print(f"run {run_id} ended {state}; see {log_path} and {ROOT / '.airflow' / 'logs'}")
        return 1
    print(f"release: {paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
