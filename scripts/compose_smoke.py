"""The run half of scripts/compose_smoke.sh: the sample crawl through the compose stack's Celery workers.

Reads the operator's password the way a person would (from the api-server container), uploads the
sample crawl to the stack's S3 store, serves its images on loopback inside each worker container
(the download stage's address guard admits loopback only), triggers danqing_snapshot through the
REST API, waits, and checks that both workers ran tasks and that the release is complete.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stack import AirflowAPI, sample_conf, upload_sample  # noqa: E402

IMAGE_PORT = 8000
ROOT = "s3://danqing/data"  # docker-compose.yml's default DANQING_ROOT
RELEASE = "/opt/airflow/release"


def compose(*args: str, check: bool = True) -> str:
    out = subprocess.run(["docker-compose", *args], capture_output=True, text=True, timeout=600)
    if check and out.returncode:
        raise RuntimeError(f"docker-compose {' '.join(args)}: {out.stderr[-2000:]}")
    return out.stdout


def docker(*args: str) -> str:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=600, check=True).stdout


def main() -> int:
    from danqing.config import SAMPLE_CRAWL_ID

    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--s3", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    started = time.monotonic()

    api = AirflowAPI(args.api, "operator", "")
    api.wait_healthy(600)
    generated = "/opt/airflow/simple_auth_manager_passwords.json.generated"
    api.password = json.loads(compose("exec", "-T", "api-server", "cat", generated))["operator"]
    print(f"api-server healthy at {args.api} after {time.monotonic() - started:.0f} s; token for `operator`")

    so = {"key": "danqing", "secret": "danqing-local", "client_kwargs": {"endpoint_url": args.s3,
                                                                       "region_name": "us-east-1"}}
    local = Path(args.work) / "sample-crawl"
    manifest = upload_sample(local, ROOT, so)
    print(f"sample crawl uploaded to {ROOT} ({len(manifest['warcs'])} WARCs)")

    workers = compose("ps", "-q", "worker").split()
    for cid in workers:
        docker("cp", str(local), f"{cid}:/tmp/")
        docker("exec", "-d", cid, "python", "-m", "danqing.sample.imageserver", "/tmp/sample-crawl",
               "--port", str(IMAGE_PORT))
    print(f"{len(workers)} worker containers, each serving the sample's images on 127.0.0.1:{IMAGE_PORT}")

    api.wait_for_dag(timeout_s=600)
    run_id = f"smoke__{SAMPLE_CRAWL_ID}__{int(time.time())}"
    api.trigger(sample_conf({h: f"127.0.0.1:{IMAGE_PORT}" for h in manifest["hosts"]}), run_id)
    print(f"triggered danqing_snapshot run {run_id} through the REST API")
    t0 = time.monotonic()
    state = api.wait_run(run_id, timeout_s=1800)
    print(f"run {run_id}: {state} in {time.monotonic() - t0:.0f} s")

    ok = state == "success"
    for cid in workers:
        name = docker("inspect", "-f", "{{.Name}}", cid).strip().lstrip("/")
        loads = [ln for ln in docker("logs", cid).splitlines() if "Executing workload in Celery" in ln]
        loads += [ln for ln in subprocess.run(["docker", "logs", cid], capture_output=True, text=True).stderr
                  .splitlines() if "Executing workload in Celery" in ln]
        print(f"  {name}: {len(loads)} task instances")
        ok &= bool(loads)
    if not ok:
        bad = [f"{t['task_id']}[{t['map_index']}]={t['state']}" for t in api.task_instances(run_id)
               if t["state"] != "success"]
        print(f"FAILED: {', '.join(bad) or 'a worker ran no task'}")
        return 1
    release = json.loads(compose("exec", "-T", "worker", "cat", f"{RELEASE}/{SAMPLE_CRAWL_ID}/manifest.json"))
    print(compose("exec", "-T", "worker", "danqing", "lineage", SAMPLE_CRAWL_ID).rstrip())
    print(f"release {release['tag']}: {release['rows']} rows in {release['shards']} shards, "
          f"{len(release['files'])} files, in the workers' release volume")
    print(f"compose smoke passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
