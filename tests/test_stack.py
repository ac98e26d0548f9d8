"""The production topology under failure: a Celery worker killed mid-shard, the scheduler killed and
restarted mid-run. One stack (scripts/stack.py: PostgreSQL, Redis, moto S3, api-server, scheduler,
dag-processor, triggerer, two Celery workers) serves both; runs are triggered through the REST API.

An undisturbed run of the sample crawl gives the reference release. A second run, under another
storage root, loses the worker that runs a download shard (kill -9 of its whole process tree, as
when a node dies): the shard is retried on the other worker; once the retry runs, the scheduler is
killed and a new one started. That run must succeed with the same release manifest (checksums).
"""

from __future__ import annotations

import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from stack import Stack, check_lineage, check_release, sample_conf  # noqa: E402

from danqing.config import SAMPLE_CRAWL_ID  # noqa: E402

pytestmark = pytest.mark.slow

RUN_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from danqing.sample.imageserver import ImageServer

    with Stack(tmp_path_factory.mktemp("stack"), log=lambda *_: None) as s:
        roots = {"baseline": f"{s.root}/baseline", "disturbed": f"{s.root}/disturbed"}
        for root in roots.values():
            s.upload_sample(root)
        s.wait_for_dag()
        with ImageServer(str(s.workdir / "sample-crawl")) as images:
            yield s, images, roots


@pytest.fixture(scope="module")
def baseline(stack):
    s, images, roots = stack
    run = s.trigger(sample_conf(images.host_overrides, roots["baseline"]), "baseline")
    assert s.wait_run(run, RUN_TIMEOUT_S) == "success"
    return check_release(s, roots["baseline"], s.release_root)


class Disturbance:
    """Called at every poll of the run: kills the worker running a download shard, then, once that
    shard's retry runs on the other worker, brings the dead worker back and restarts the scheduler."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.victim: dict | None = None  # the killed download: map_index, worker
        self.scheduler_restarted_while: list[str] = []

    def __call__(self, tis: list[dict]) -> None:
        s = self.stack
        downloads = {t["map_index"]: t for t in tis if t["task_id"] == "download"}
        if self.victim is None:
            for t in downloads.values():
                worker = s.owner(t["pid"]) if t["state"] == "running" and t["pid"] else None
                if worker in s.workers and t["try_number"] == 1:
                    s.kill(worker)
                    self.victim = {"map_index": t["map_index"], "worker": worker}
                    return
        elif not self.scheduler_restarted_while:
            retry = downloads[self.victim["map_index"]]
            if retry["try_number"] >= 2 and retry["state"] in ("running", "success"):
                s.start_component(self.victim["worker"])  # its machine comes back, as a pod would
                s.kill("scheduler")
                self.scheduler_restarted_while = sorted(f"{t['task_id']}[{t['map_index']}]:{t['state']}"
                                                        for t in tis if t["state"] not in ("success", None))
                s.start_component("scheduler")


@pytest.fixture(scope="module")
def disturbed(stack, baseline):
    s, images, roots = stack
    hit = Disturbance(s)
    run = s.trigger(sample_conf(images.host_overrides, roots["disturbed"]), "disturbed")
    state = s.wait_run(run, RUN_TIMEOUT_S, on_poll=hit)
    tis = {(t["task_id"], t["map_index"]): t for t in s.task_instances(run)}
    return state, hit, tis


def test_killed_worker_mid_download_is_retried_on_the_other_worker(stack, baseline, disturbed):
    s, _, roots = stack
    state, hit, tis = disturbed
    assert hit.victim is not None, "no download shard was seen running on a worker"
    assert state == "success"
    victim = tis[("download", hit.victim["map_index"])]
    assert victim["state"] == "success" and victim["try_number"] == 2
    # Which worker was handed each try, from the workers' own logs.
    tries = {name: {w["try_number"] for w in s.workloads(name)
                    if w["run_id"] == "disturbed" and w["task_id"] == "download"
                    and w["map_index"] == hit.victim["map_index"]} for name in s.workers}
    survivor = next(n for n in s.workers if n != hit.victim["worker"])
    assert tries[hit.victim["worker"]] == {1} and tries[survivor] == {2}
    # The same release as the undisturbed run: every file's checksum, rows and version.
    assert check_release(s, roots["disturbed"], s.release_root) == baseline
    funnel = {f["stage"]: f for f in check_lineage(s)}
    assert funnel["publish"]["out"] == baseline["rows"]


def test_scheduler_killed_and_restarted_mid_run_still_completes(stack, disturbed):
    s, _, _ = stack
    state, hit, tis = disturbed
    assert hit.scheduler_restarted_while, "the scheduler was not restarted during the run"
    assert any(not t.endswith(":success") for t in hit.scheduler_restarted_while)  # work was still pending
    assert state == "success"
    assert all(t["state"] == "success" for t in tis.values())
    log = (s.logs / "scheduler.log").read_text(errors="replace")
    assert log.count("Starting the scheduler") == 2  # the killed one and its successor
    assert s.api("GET", "/dags/danqing_snapshot/dagRuns/disturbed")["conf"]["crawl_id"] == SAMPLE_CRAWL_ID
