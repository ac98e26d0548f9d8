"""The scoring task, built in one place: a GPU pod in production, in-process locally.

In a DAG, `score_task().expand(src=downloaded)` maps it over the download stage's shard
summaries (dicts with "shard" and "uri") and yields one score summary per shard, whichever
the mode. The mode is read when the DAG file is parsed: `score_task(mode)` or the
DANQING_SCORE_MODE environment variable, "local" (default) or "kubernetes".

- local: operators.stage's shard task, i.e. danqing.shard.run_shard("score", ...) in the worker,
  on the Celery queue DANQING_SCORE_QUEUE when set (a pool of GPU workers consumes it).
- kubernetes: one KubernetesPodOperator per shard on a GPU node (ScoreConfig.pod: image,
  namespace, GPUs, node selector, tolerations), running the CLI's pipeline form,
  `danqing --config JSON score --crawl C --shard N --input URI --xcom /airflow/xcom/return.json`,
  which writes the shard's summary there for the XCom sidecar. Credentials reach the pod from
  Kubernetes secrets (ScoreConfig.pod.secret_env, env_from_secrets), never through its arguments.
"""

from __future__ import annotations

import json
import os

MODES = ("local", "kubernetes")
XCOM_PATH = "/airflow/xcom/return.json"  # danqing.stages.score.XCOM_PATH, literal to keep parsing light


def score_task(mode: str | None = None, pod=None, task_id: str = "score"):
    """The scoring task for `mode`; call `.expand(src=<download summaries>)` on the result.

    pod: a danqing.config.PodConfig (default: PipelineConfig().score.pod).
    """
    mode = mode or os.environ.get("DANQING_SCORE_MODE", "local")
    if mode not in MODES:
        raise ValueError(f"score mode {mode!r} is not one of {MODES}")
    if mode == "local":
        from operators import stage

        queue = os.environ.get("DANQING_SCORE_QUEUE", "")
        return stage.shard_task(task_id).override(queue=queue) if queue else stage.shard_task(task_id)
    return _PodScoring(pod, task_id)


class _PodScoring:
    """Mirrors a @task's `.expand(src=...)` for the pod: shard summary -> pod arguments -> pod."""

    def __init__(self, pod, task_id: str):
        self.pod, self.task_id = pod, task_id

    def expand(self, src):
        arguments = pod_arguments_task.override(task_id=f"{self.task_id}_args").expand(src=src)
        return build_pod_operator(self.pod, task_id=self.task_id, mapped=True).expand(arguments=arguments)


def pod_arguments(src: dict, crawl: str, config: dict) -> list[str]:
    """Arguments of the pod's `danqing` for one shard: `--config` is global, so it comes before `score`."""
    return ["--config", json.dumps(config, sort_keys=True, ensure_ascii=False), "score",
            "--crawl", crawl, "--shard", str(src["shard"]), "--input", src["uri"], "--xcom", XCOM_PATH]


def _pod_config(cfg) -> dict:
    """The config the pod is given on its command line: no credential, no storage options, no pod section.

    Task arguments are readable by anyone who can read pods: the pod gets storage credentials and the
    lineage URL from Kubernetes secrets (score.pod.secret_env, env_from_secrets), and its own spec is
    not its business (config.hash() leaves score.pod out, so the pod's hash is the worker's).
    """
    from danqing.errors import UserError
    from danqing.redact import redact

    config = cfg.model_dump(mode="json", exclude={"storage_options": True, "lineage_url": True,
                                                  "source": {"storage_options"}, "score": {"pod"},
                                                  "download": {"coordination_url"}})  # its URL may hold a password
    if not cfg.score.workers:  # the pod's CPUs decode while its GPU scores: all but the one feeding the GPU
        config["score"]["workers"] = max(1, pod_cpus(cfg.score.pod.cpu) - 1)
    held = [path for path, value in _strings(config) if redact(value) != value]
    if held:
        raise UserError(f"the scoring pod's --config would carry a credential in {', '.join(held)}: "
                        f"give the pod it through a Kubernetes secret (score.pod.secret_env) instead")
    return config


def _strings(obj, path: str = ""):
    """(dotted path, value) of every string in a JSON-like value."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _strings(value, f"{path}.{key}" if path else str(key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(obj, str):
        yield path, obj


def pod_cpus(quantity: str) -> int:
    """Whole CPUs of a Kubernetes CPU quantity ("8", "7.5", "7500m")."""
    cores = float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    return max(1, int(cores))


def _arguments_for_run(src: dict) -> list[str]:
    from operators.context import run_context

    cfg, crawl, _ = run_context()
    return pod_arguments(src, crawl, _pod_config(cfg))


def _make_arguments_task():
    from airflow.sdk import task

    return task(task_id="score_args")(_arguments_for_run)


class _LazyTask:
    """Build the @task on first use, so importing this module does not import Airflow's SDK."""

    def __getattr__(self, name):
        return getattr(_make_arguments_task(), name)


pod_arguments_task = _LazyTask()


def pod_secrets(pod) -> list:
    """Kubernetes secrets as the pod's env: one key per variable (secret_env), or whole secrets (env_from_secrets)."""
    from airflow.providers.cncf.kubernetes.secret import Secret

    one = [Secret("env", name, *ref.split(":", 1)) for name, ref in sorted(pod.secret_env.items())]
    return one + [Secret("env", None, name) for name in pod.env_from_secrets]


def build_pod_operator(pod=None, task_id: str = "score", arguments: list[str] | None = None, mapped: bool = False,
                       **kwargs):
    """A KubernetesPodOperator scoring one shard on a GPU node (mapped=True: its `.partial(...)`)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    if pod is None:
        from danqing.config import PipelineConfig

        pod = PipelineConfig().score.pod
    limits = {"cpu": pod.cpu, "memory": pod.memory}
    if pod.gpus:
        limits["nvidia.com/gpu"] = str(pod.gpus)
    options = dict(
        task_id=task_id,
        name=f"danqing-{task_id}",
        namespace=pod.namespace,
        kubernetes_conn_id=pod.kubernetes_conn_id,
        image=pod.image,
        cmds=["danqing"],
        env_vars={**pod.env, "DANQING_RUN_ID": "{{ run_id }}", "DANQING_TRY_NUMBER": "{{ ti.try_number }}"},
        secrets=pod_secrets(pod),
        container_resources=k8s.V1ResourceRequirements(requests=dict(limits), limits=limits),
        node_selector=dict(pod.node_selector),
        tolerations=[k8s.V1Toleration(**t) for t in pod.tolerations],
        service_account_name=pod.service_account or None,
        startup_timeout_seconds=pod.startup_timeout_s,
        deferrable=True,  # the worker slot is freed while the pod is scheduled and runs
        get_logs=True,
        on_finish_action="delete_succeeded_pod",  # failed pods stay for on-call to inspect
        do_xcom_push=True,
        **kwargs,
    )
    if mapped:
        return KubernetesPodOperator.partial(**options)
    return KubernetesPodOperator(arguments=arguments or [], **options)
