"""`make demo`: run danqing_snapshot on the bundled sample crawl under a real Airflow scheduler.

Starts `airflow standalone` (LocalExecutor, SQLite), the sample image server and stand-ins of the
Hugging Face and ModelScope hubs on loopback, triggers the DAG (release auto-approved), waits for the
run, stops what it started, prints the funnel, loads the release back from the Hugging Face stand-in
with `datasets`, and prints the repo, tag, row count and the release card's path.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from airflow_local import ROOT, airflow_env, free_port  # noqa: E402

DAG_ID = "danqing_snapshot"
TIMEOUT_S = 1800
REPO = "danqing/sample-crawl"  # the same name on both stand-in hubs


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


def load_back(endpoint: str, repo: str, tag: str) -> int:
    """Rows `datasets.load_dataset` reads from the hub at `endpoint` (read at import: a subprocess)."""
    import tempfile

    code = ("import datasets, sys; "
            "print(datasets.load_dataset(sys.argv[1], revision=sys.argv[2], split='train').num_rows)")
    with tempfile.TemporaryDirectory() as home:  # a fresh cache: the rows come over the wire
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": home, "HF_HUB_DISABLE_XET": "1",
               "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        out = subprocess.run([sys.executable, "-c", code, repo, tag], env=env, capture_output=True, text=True,
                             timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"datasets.load_dataset failed:\n{out.stderr[-3000:]}")
    return int(out.stdout.split()[-1])


def main() -> int:
    from danqing import paths, report
    from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
    from danqing.sample.crawl import build_sample_crawl
    from danqing.sample.hubs import HuggingFaceHub, ModelScopeHub
    from danqing.sample.imageserver import ImageServer

    port = free_port()
    env = airflow_env(port)
    tokens = {"huggingface": f"hf_demo_{secrets.token_hex(8)}", "modelscope": f"ms-demo-{secrets.token_hex(8)}"}
    cfg = PipelineConfig.from_overrides({"root": env["DANQING_ROOT"]})
    sample = paths.sample_crawl_root(cfg.root)
    build_sample_crawl(sample)
    log_path = ROOT / ".airflow" / "standalone.log"
    print(f"starting airflow standalone on http://localhost:{port} (log: {log_path})", flush=True)
    with (ImageServer(sample) as images, HuggingFaceHub(tokens["huggingface"]) as hf,
          ModelScopeHub(tokens["modelscope"]) as ms, open(log_path, "w") as log):
        hubs = {"huggingface": hf, "modelscope": ms}
        for kind, hub in hubs.items():  # the tokens reach the tasks as Airflow connections, as in production
            env[f"AIRFLOW_CONN_{kind.upper()}_DEFAULT"] = json.dumps(
                {"conn_type": "generic", "host": hub.url, "password": tokens[kind]})
        env["HF_HUB_DISABLE_XET"] = "1"  # the stand-in speaks LFS; huggingface.co also speaks Xet
        scheduler = subprocess.Popen(["airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            deadline = time.monotonic() + TIMEOUT_S
            wait_for_dag(env, deadline)
            # New DAGs start paused, so the monthly refresh does not reach for the internet here.
            airflow(env, "dags", "unpause", DAG_ID)
            run_id = f"demo__{SAMPLE_CRAWL_ID}__{int(time.time())}"
            conf = {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": 2, "max_warcs": 0,
                    "auto_approve": True,
                    "config": {"download": {"host_overrides": images.host_overrides, "allow_loopback": True},
                               "publish": {"targets": [{"kind": kind, "repo_id": REPO} for kind in hubs]}}}
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
        release = paths.release_dir(cfg.release_root, SAMPLE_CRAWL_ID)
        manifest = json.loads(Path(release, "manifest.json").read_text(encoding="utf-8"))
        tag = manifest["tag"]
        for kind, hub in hubs.items():
            files = hub.repos[REPO].files(tag) if REPO in hub.repos else {}
            print(f"{kind}: {REPO} on {hub.url}, tag {tag}, {len(files)} files")
        rows = load_back(hf.url, REPO, tag)
        print(f"datasets.load_dataset({REPO!r}, revision={tag!r}): {rows} rows (the release has {manifest['rows']})")
    print(f"release: {release}")
    print(f"release card: {release}/README.md")
    return 0 if rows == manifest["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
