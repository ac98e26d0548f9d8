"""`make demo-stack`: the production topology on one machine, one process per component.

PostgreSQL (Airflow's metadata and the lineage store, each its own database), Redis as the
Celery broker, moto's S3 server on loopback as the storage root (reached through the
`aws_default` connection), and Airflow's api-server, scheduler, dag-processor, triggerer and
two Celery workers, the second also consuming the scoring queue (a GPU node pool in
production). Airflow reads the same settings as docker-compose.yml (docker/airflow.env).

The demo triggers danqing_snapshot for the sample crawl through the REST API with a token,
as an operator's script would, waits, checks the release and the lineage, prints the
executor, the storage root and the funnel, and stops everything it started, whatever
happens. tests/test_stack.py and scripts/bench_orchestration.py use the same `Stack`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_FILE = REPO / "docker" / "airflow.env"
PG_SERVER = os.environ.get("DANQING_STACK_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
REDIS = os.environ.get("DANQING_STACK_REDIS", "redis://127.0.0.1:6379")
REDIS_DB = int(os.environ.get("DANQING_STACK_REDIS_DB", "5"))
BUCKET = "danqing"
DAG_ID = "danqing_snapshot"
SCORE_QUEUE = "score"
# (name, queues): the second worker stands for the GPU node pool and takes the scoring queue too.
WORKERS = (("worker-1", "default"), ("worker-2", f"default,{SCORE_QUEUE}"))

# Shorter waits than production (docker/airflow.env), so a dead worker or scheduler is noticed in
# seconds on this machine: tests and demos only. The production values are in the README.
FAST = {
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "10",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
    "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
    "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "3600",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
    "DANQING_RETRY_DELAY_S": "2",
}


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """KEY=VALUE lines of a compose env file (comments and blank lines skipped)."""
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            children.setdefault(_parent(int(entry.name)), []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status < 500
    except (urllib.error.URLError, OSError):
        return False


def _pg(sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(sql))
    finally:
        engine.dispose()


class AirflowAPI:
    """Airflow's REST API as an operator's script uses it: a JWT from /auth/token, then /api/v2."""

    def __init__(self, url: str, username: str, password: str):
        self.api_url, self.username, self.password = url, username, password
        self._token = ""

    def token(self) -> str:
        """A JWT from /auth/token for a SimpleAuthManager user."""
        body = json.dumps({"username": self.username, "password": self.password}).encode()
        req = urllib.request.Request(f"{self.api_url}/auth/token", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())["access_token"]

    def api(self, method: str, path: str, body: dict | None = None):
        if not self._token:
            self._token = self.token()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}/api/v2{path}", data=data, method=method,
                                     headers={"Authorization": f"Bearer {self._token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            if e.code == 401:  # the token expired: get a new one once
                self._token = ""
            raise RuntimeError(f"{method} {path}: HTTP {e.code} {e.read()[:500]!r}") from e

    def wait_for_dag(self, dag_id: str = DAG_ID, timeout_s: float = 300) -> None:
        def parsed() -> bool:
            errors = self.api("GET", "/importErrors")["import_errors"]
            if errors:
                raise RuntimeError(f"DAG import errors: {errors}")
            try:
                self.api("GET", f"/dags/{dag_id}")
                return True
            except RuntimeError:
                return False

        self._wait(parsed, timeout_s, f"the dag-processor to parse {dag_id}")
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, conf: dict, run_id: str, dag_id: str = DAG_ID) -> str:
        self.api("POST", f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": None, "conf": conf})
        return run_id

    def run_state(self, run_id: str, dag_id: str = DAG_ID) -> str:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, run_id: str, dag_id: str = DAG_ID) -> list[dict]:
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000")["task_instances"]

    def wait_run(self, run_id: str, timeout_s: float = 1200, on_poll=None, dag_id: str = DAG_ID) -> str:
        """Poll the run until it ends; `on_poll(task_instances)` runs at each poll (the tests' hook)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.run_state(run_id, dag_id)
            if state in ("success", "failed"):
                return state
            if on_poll is not None:
                on_poll(self.task_instances(run_id, dag_id))
            time.sleep(1)
        return "timed out"

    def wait_healthy(self, timeout_s: float = 300) -> None:
        self._wait(lambda: _http_ok(f"{self.api_url}/api/v2/monitor/health"), timeout_s, "the api-server")

    def _wait(self, ready, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check()
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}")

    def _check(self) -> None:
        """Raise if something this client waits on has died (the stack's components)."""


class Stack(AirflowAPI):
    """The components as process groups under one work folder; a context manager that always stops them.

    settings: extra environment for every component (FAST by default).
    """

    def __init__(self, workdir: str | Path | None = None, settings: dict[str, str] | None = None,
                 workers: tuple[tuple[str, str], ...] = WORKERS, log=print, dags_folder: Path = REPO / "dags"):
        self.tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"danqing-stack-{self.tag}-"))
        self.logs = self.workdir / "logs"
        self.settings = FAST if settings is None else settings
        self.workers = dict(workers)
        self.dags_folder = dags_folder
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.databases = [f"danqing_stack_{self.tag}_airflow", f"danqing_stack_{self.tag}_lineage"]
        self.redis_prefix = f"danqing-stack-{self.tag}:"
        api_port = free_port()
        self.s3_port = free_port()
        self.trigger_log_port = free_port()
        self.health_port = free_port()
        super().__init__(f"http://127.0.0.1:{api_port}", "operator", secrets.token_urlsafe(12))
        self._stopped = False

    # --- configuration ----------------------------------------------------------------------

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def root(self) -> str:
        return f"s3://{BUCKET}/danqing"

    @property
    def release_root(self) -> str:
        return str(self.workdir / "release")

    @property
    def lineage_url(self) -> str:
        return f"{PG_SERVER}/{self.databases[1]}"

    def env(self) -> dict[str, str]:
        airflow_db = f"{PG_SERVER}/{self.databases[0]}"
        home = self.workdir / "airflow"
        env = dict(os.environ)
        env.update(read_env_file())
        env.update({
            "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            # this checkout's danqing and operators, whatever the venv's editable install points at
            "PYTHONPATH": str(REPO),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
            "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.trigger_log_port),
            "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_PORT": str(self.health_port),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__CELERY__BROKER_URL": f"{REDIS}/{REDIS_DB}",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{airflow_db}",
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX": self.redis_prefix,
            "AIRFLOW__API__PORT": self.api_url.rsplit(":", 1)[1],
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # every component signs and checks task tokens with this one secret (compose: AIRFLOW_JWT_SECRET)
            "AIRFLOW__API_AUTH__JWT_SECRET": self.jwt_secret,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({
                "conn_type": "aws", "login": "stack", "password": "stack-secret",
                "extra": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"}}),
            "DANQING_ROOT": self.root,
            "DANQING_LINEAGE_URL": self.lineage_url,
            # publish writes a local folder (the hub uploads read it); stage outputs stay on S3
            "DANQING_RELEASE_ROOT": self.release_root,
            "DANQING_COORDINATION_URL": f"{REDIS}/{REDIS_DB}",
        })
        env.update(self.settings)
        return env

    @property
    def jwt_secret(self) -> str:
        if not hasattr(self, "_jwt_secret"):
            self._jwt_secret = secrets.token_urlsafe(32)
        return self._jwt_secret

    # --- processes ----------------------------------------------------------------------------

    def start(self) -> Stack:
        self.logs.mkdir(parents=True, exist_ok=True)
        home = self.workdir / "airflow"
        home.mkdir(exist_ok=True)
        (home / "passwords.json").write_text(json.dumps({"operator": self.password}))
        self._check_redis()
        atexit.register(self.stop)
        for db in self.databases:
            _pg(f'CREATE DATABASE "{db}"')
        self.spawn("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.s3_port)])
        self.log(f"stack {self.tag}: PostgreSQL databases {', '.join(self.databases)}, "
                 f"Redis {REDIS}/{REDIS_DB} (keys {self.redis_prefix}*), S3 {self.s3_endpoint}")
        migrate = subprocess.run(["airflow", "db", "migrate"], env=self.env(), capture_output=True, text=True,
                                 timeout=600)
        if migrate.returncode:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}\n{migrate.stderr[-3000:]}")
        self._wait(lambda: _http_ok(f"{self.s3_endpoint}/"), 60, "moto's S3 server")
        self._make_bucket()
        for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
            self.start_component(name)
        for name in self.workers:
            self.start_component(name)
        self.wait_healthy(180)
        return self

    def command(self, name: str) -> list[str]:
        if name in self.workers:
            # Task logs are files under AIRFLOW_HOME on this one machine: no log server per worker.
            return ["airflow", "celery", "worker", "--queues", self.workers[name], "--celery-hostname",
                    f"{name}@%h", "--skip-serve-logs", "--without-mingle", "--without-gossip"]
        return ["airflow", name]

    def start_component(self, name: str) -> subprocess.Popen:
        return self.spawn(name, self.command(name))

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        """Start `args` in its own process group, logging to logs/<name>.log (appended across restarts)."""
        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal a component and every process under it, as if its machine died: Airflow runs each task
        in a process group of its own, so the worker's group alone would leave the task running."""
        proc = self.procs[name]
        for pid in [proc.pid, *_descendants(proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, sig) if pid == proc.pid else os.kill(pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)

    def alive(self, name: str) -> bool:
        return name in self.procs and self.procs[name].poll() is None

    def owner(self, pid: int) -> str | None:
        """The component that `pid` (a task process) runs under, or None."""
        mains = {p.pid: name for name, p in self.procs.items() if p.poll() is None}
        while pid > 1:
            if pid in mains:
                return mains[pid]
            pid = _parent(pid)
        return None

    def stop(self) -> None:
        """Stop every component (TERM, then KILL what is left of each group), drop the databases and keys."""
        if self._stopped:
            return
        self._stopped = True
        below = {pid for proc in self.procs.values() for pid in _descendants(proc.pid)}  # tasks have own groups
        for proc in reversed(list(self.procs.values())):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for db in self.databases:
            with contextlib.suppress(Exception):
                _pg(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(f"{REDIS}/{REDIS_DB}")
            for key in client.scan_iter(match=f"{self.redis_prefix}*", count=1000):
                client.delete(key)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    def __enter__(self) -> Stack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def workloads(self, name: str) -> list[dict]:
        """Task instances a worker was handed, from its log: task_id, map_index, try_number, run_id."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        out = []
        for line in text.splitlines():
            if "Executing workload in Celery" not in line or "ti=TaskInstanceDTO(" not in line:
                continue
            ti = line.split("ti=TaskInstanceDTO(", 1)[1]
            fields = {k: re.search(rf"\b{k}='?([^',)\s]+)", ti) for k in ("task_id", "run_id", "map_index",
                                                                        "try_number")}
            if all(fields.values()):
                out.append({k: m.group(1) for k, m in fields.items()})
        for w in out:
            w["map_index"], w["try_number"] = int(w["map_index"]), int(w["try_number"])
        return out

    # --- storage ------------------------------------------------------------------------------

    def storage_options(self) -> dict:
        return {"key": "stack", "secret": "stack-secret",
                "client_kwargs": {"endpoint_url": self.s3_endpoint, "region_name": "us-east-1"}}

    def upload_sample(self, root: str) -> dict:
        return upload_sample(self.workdir / "sample-crawl", root, self.storage_options())

    # --- helpers --------------------------------------------------------------------------------

    def _make_bucket(self) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.s3_endpoint, aws_access_key_id="stack",
                     aws_secret_access_key="stack-secret", region_name="us-east-1").create_bucket(Bucket=BUCKET)

    def _check_redis(self) -> None:
        import redis

        try:
            redis.Redis.from_url(f"{REDIS}/{REDIS_DB}", socket_connect_timeout=3).ping()
        except redis.RedisError as e:
            raise SystemExit(f"Redis is not answering at {REDIS} ({e}); start it (.ci/run shows how)") from e

    def _check(self) -> None:
        dead = [n for n, p in self.procs.items() if p.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited; see {self.logs}")


def upload_sample(local: Path, root: str, storage_options: dict) -> dict:
    """Build the sample crawl in `local` and copy it (not its image tree) under `root`, where the sample
    source reads it; returns the crawl's manifest."""
    from danqing import io, paths
    from danqing.sample.crawl import build_sample_crawl

    manifest = build_sample_crawl(str(local))
    fs, base = io.fs_for(paths.sample_crawl_root(root), storage_options)
    files = sorted(p for p in local.rglob("*") if p.is_file() and "www" not in p.relative_to(local).parts)
    files.sort(key=lambda p: p.name == "warc.paths.gz")  # last: its presence says the crawl is complete
    for f in files:
        fs.put_file(str(f), f"{base}/{f.relative_to(local).as_posix()}")
    return manifest


# --- the demo -----------------------------------------------------------------------------------

def sample_conf(host_overrides: dict[str, str], root: str = "", shard_size: int = 2) -> dict:
    """danqing_snapshot's conf for the sample crawl, its images served on loopback at `host_overrides`;
    under `root` (on S3), or the workers' DANQING_ROOT when empty."""
    from danqing.config import SAMPLE_CRAWL_ID

    config = {"root": root} if root else {}
    config["download"] = {"host_overrides": host_overrides, "allow_loopback": True}
    return {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": shard_size, "max_warcs": 0,
            "config": config}


def check_release(stack: Stack, root: str, release_root: str) -> dict:
    """The release's manifest, after checking every file against its checksum and the stage outputs on S3."""
    from danqing import io, paths
    from danqing.config import SAMPLE_CRAWL_ID

    so = stack.storage_options() if not paths.is_local(release_root) else None
    folder = paths.release_dir(release_root, SAMPLE_CRAWL_ID)
    manifest = io.read_json(f"{folder}/manifest.json", so)
    for name, digest in manifest["files"].items():
        if io.checksum(f"{folder}/{name}", so) != digest:
            raise AssertionError(f"{folder}/{name} does not match its manifest checksum")
    fs, base = io.fs_for(paths.crawl_dir(root, SAMPLE_CRAWL_ID), stack.storage_options())
    for stage in paths.STAGES[:-1]:
        outputs = [p for p in fs.ls(f"{base}/{stage}") if p.endswith("_stats.json")]
        if len(outputs) != manifest["shards"]:
            raise AssertionError(f"{stage}: {len(outputs)} done-markers on S3 for {manifest['shards']} shards")
    return manifest


def check_lineage(stack: Stack) -> list[dict]:
    """The funnel from PostgreSQL: every stage recorded, and each stage's counts add up."""
    from danqing import lineage, paths
    from danqing.config import SAMPLE_CRAWL_ID

    funnel = lineage.funnel(stack.lineage_url, SAMPLE_CRAWL_ID, paths.STAGES)
    if [s["stage"] for s in funnel] != paths.STAGES:
        raise AssertionError(f"lineage holds stages {[s['stage'] for s in funnel]}")
    for s in funnel:
        if s["in"] != s["out"] + sum(s["dropped"].values()):
            raise AssertionError(f"{s['stage']}: in {s['in']} != out {s['out']} + dropped")
    return funnel


def demo() -> int:
    from danqing import redact, report
    from danqing.config import SAMPLE_CRAWL_ID, PipelineConfig
    from danqing.sample.imageserver import ImageServer

    workdir = REPO / ".stack"
    if workdir.exists():
        import shutil

        shutil.rmtree(workdir)
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop everything on a kill too, not just on Ctrl-C
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    started = time.monotonic()
    with Stack(workdir) as stack:
        env = stack.env()
        print(f"executor: {env['AIRFLOW__CORE__EXECUTOR']}, workers: "
              + ", ".join(f"{n} [{q}]" for n, q in stack.workers.items()))
        print(f"api-server: {stack.api_url} (user operator, token from /auth/token); logs: {stack.logs}")
        print(f"metadata: {redact.redact(env['AIRFLOW__DATABASE__SQL_ALCHEMY_CONN'])}; "
              f"lineage: {redact.redact(stack.lineage_url)}; broker: {env['AIRFLOW__CELERY__BROKER_URL']}")
        root, release_root = stack.root, stack.release_root
        print(f"storage root: {root} (moto S3 at {stack.s3_endpoint}, connection aws_default); "
              f"release: {release_root}")
        stack.upload_sample(root)
        stack.wait_for_dag()
        print(f"components up in {time.monotonic() - started:.0f} s", flush=True)
        run_id = f"stack__{SAMPLE_CRAWL_ID}__{int(time.time())}"
        with ImageServer(str(stack.workdir / "sample-crawl")) as images:
            stack.trigger(sample_conf(images.host_overrides, root), run_id)
            print(f"triggered {DAG_ID} run {run_id} through the REST API", flush=True)
            t0 = time.monotonic()
            state = stack.wait_run(run_id)
        print(f"run {run_id}: {state} in {time.monotonic() - t0:.0f} s")
        handed = {name: stack.workloads(name) for name in stack.workers}
        for name, loads in handed.items():
            print(f"  {name}: {len(loads)} task instances ({', '.join(sorted({w['task_id'] for w in loads}))})")
        if state != "success":
            failed = [f"{t['task_id']}[{t['map_index']}]" for t in stack.task_instances(run_id)
                      if t["state"] not in ("success", "skipped")]
            print(f"not successful: {', '.join(failed)}; logs: {stack.logs}")
            return 1
        score_workers = {n for n, loads in handed.items() if any(w["task_id"] == "score" for w in loads)}
        if not score_workers <= {n for n, q in stack.workers.items() if SCORE_QUEUE in q.split(",")}:
            print(f"score ran on {score_workers}, which do not consume the {SCORE_QUEUE} queue")
            return 1
        manifest = check_release(stack, root, release_root)
        check_lineage(stack)
        cfg = PipelineConfig.from_overrides({"root": root, "lineage_url": stack.lineage_url,
                                             "storage_options": stack.storage_options()})
        print()
        print(report.funnel_table(cfg, SAMPLE_CRAWL_ID))
        print()
        print(f"release {manifest['tag']}: {manifest['rows']} rows in {manifest['shards']} shards, "
              f"{len(manifest['files'])} files checked against the manifest; lineage in PostgreSQL adds up")
    print(f"stopped every component; {time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(demo())
