"""The scoring task: the rendered GPU pod spec, the mapped DAG wiring, and the pod's command run for real."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from score_helpers import examples, write_download_shard

from danqing import io, lineage
from danqing.config import PodConfig
from danqing.stages import score
from operators.scoring import build_pod_operator, pod_arguments, score_task

POD = PodConfig(image="registry.example/danqing-scorer:1.2", namespace="gpu-jobs", gpus=2,
                node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
                tolerations=[{"key": "nvidia.com/gpu", "operator": "Equal", "value": "present",
                              "effect": "NoSchedule"}],
                env={"DANQING_ROOT": "s3://bucket/danqing"})


def test_rendered_pod_spec_has_gpu_image_placement_and_command():
    args = pod_arguments({"shard": 7, "uri": "s3://b/c/download/00007.parquet"}, "CC-MAIN-2025-47", {"root": "s3://b"})
    pod = build_pod_operator(POD, arguments=args).build_pod_request_obj(dry_run=True)
    base = next(c for c in pod.spec.containers if c.name == "base")
    assert base.image == "registry.example/danqing-scorer:1.2"
    assert base.resources.limits["nvidia.com/gpu"] == "2"
    assert pod.metadata.namespace == "gpu-jobs"
    assert pod.spec.node_selector == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    [tol] = pod.spec.tolerations
    assert (tol.key, tol.operator, tol.value, tol.effect) == ("nvidia.com/gpu", "Equal", "present", "NoSchedule")
    assert base.command == ["danqing"]
    assert base.args[0] == "--config" and json.loads(base.args[1]) == {"root": "s3://b"}
    assert base.args[2:9] == ["score", "--crawl", "CC-MAIN-2025-47", "--shard", "7",
                              "--input", "s3://b/c/download/00007.parquet"]
    assert base.args[-2:] == ["--xcom", score.XCOM_PATH]
    assert {e.name: e.value for e in base.env}["DANQING_ROOT"] == "s3://bucket/danqing"
    assert any(c.name == "airflow-xcom-sidecar" for c in pod.spec.containers)  # do_xcom_push


def test_pod_operator_policy():
    op = build_pod_operator(POD, arguments=[])
    assert op.deferrable and op.get_logs and op.do_xcom_push
    assert op.on_finish_action.value == "delete_succeeded_pod"


def test_no_gpu_pod_has_no_gpu_limit():
    pod = build_pod_operator(POD.model_copy(update={"gpus": 0}), arguments=[]).build_pod_request_obj(dry_run=True)
    assert "nvidia.com/gpu" not in pod.spec.containers[0].resources.limits


def test_dag_wiring_maps_pods_over_shards():
    from airflow.sdk import DAG, task

    @task
    def downloaded() -> list[dict]:
        return [{"shard": 0, "uri": "u0"}]

    with warnings.catch_warnings(), DAG("t_kpo", schedule=None) as dag:
        warnings.simplefilter("ignore")
        score_task("kubernetes", POD).expand(src=downloaded())
    assert set(dag.task_ids) == {"downloaded", "score_args", "score"}
    pod_task = dag.get_task("score")
    assert pod_task.partial_kwargs["image"] == POD.image
    assert dag.get_task("score_args").upstream_task_ids == {"downloaded"}
    assert pod_task.upstream_task_ids == {"score_args"}

    with DAG("t_local", schedule=None) as local_dag:
        score_task("local").expand(src=downloaded())
    assert set(local_dag.task_ids) == {"downloaded", "score"}
    with pytest.raises(ValueError):
        score_task("slurm")


def test_pods_command_scores_a_shard_and_pushes_xcom(cfg, tmp_path, monkeypatch):
    """The pod's command and arguments, run as the image runs them: the installed `danqing` script."""
    pairs = [(n.split(".")[0], c, d) for n, c, d in examples(6)]
    uri = write_download_shard(cfg, "CC-MAIN-2099-01", 4, pairs)
    monkeypatch.setenv("DANQING_RUN_ID", "manual__1")  # the pod's templated env, read by the CLI
    monkeypatch.setenv("DANQING_TRY_NUMBER", "2")
    xcom = tmp_path / "airflow" / "xcom" / "return.json"
    args = pod_arguments({"shard": 4, "uri": uri}, "CC-MAIN-2099-01", cfg.model_dump(mode="json"))
    args[args.index("--xcom") + 1] = str(xcom)
    [program] = build_pod_operator(POD, arguments=args).cmds
    run = subprocess.run([str(Path(sys.executable).parent / program), *args], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    summary = json.loads(xcom.read_text())
    assert json.loads(run.stdout) == summary
    assert (summary["shard"], summary["total"], summary["kept"], summary["skipped"]) == (4, 6, 6, False)
    assert io.read_parquet(summary["uri"]).num_rows == 6
    [row] = [r for r in lineage.latest(cfg.lineage, "CC-MAIN-2099-01") if r["stage"] == "score"]
    assert (row["run_id"], row["try_number"], row["status"]) == ("manual__1", 2, "done")


def test_pod_decodes_on_all_but_one_of_its_cpus(cfg):
    from operators.scoring import _pod_config, pod_cpus

    assert [pod_cpus(q) for q in ("8", "7.5", "7500m", "500m")] == [8, 7, 7, 1]
    assert _pod_config(cfg)["score"]["workers"] == 7  # the default pod has 8 CPUs
    assert cfg.hash() == cfg.model_copy(update={"score": cfg.score.model_copy(update={"workers": 7})}).hash()
    assert cfg.hash() == cfg.model_copy(update={"download": cfg.download.model_copy(update={"processes": 2})}).hash()
    assert cfg.hash() != cfg.model_copy(update={"score": cfg.score.model_copy(update={"batch_size": 7})}).hash()
    two = cfg.score.model_copy(update={"workers": 2})
    assert _pod_config(cfg.model_copy(update={"score": two}))["score"]["workers"] == 2  # set by hand: kept


def test_operators_module_stays_light():
    code = "import sys, operators.scoring; assert not {'torch', 'open_clip', 'faiss'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY"


def _secret_laden_config(tmp_path):
    from danqing.config import PipelineConfig

    return PipelineConfig.from_overrides({
        "root": "s3://bucket/danqing", "lineage_url": f"postgresql+psycopg2://danqing:{SECRET}@db/lineage",
        "storage_options": {"key": "AKIAEXAMPLE", "secret": SECRET},
        "source": {"storage_options": {"key": "AKIAEXAMPLE", "secret": SECRET, "client_kwargs": {"region_name": "x"}}},
        "score": {"pod": {"env": {"DANQING_ROOT": "s3://bucket/danqing", "DANQING_MODE": "gpu-pod-42"},
                          "secret_env": {"DANQING_LINEAGE_URL": "danqing-lineage:url"},
                          "env_from_secrets": ["danqing-s3"]}}})


def test_pod_arguments_carry_no_storage_options_pod_env_or_credential(tmp_path):
    from danqing.config import PipelineConfig
    from operators.scoring import _pod_config

    cfg = _secret_laden_config(tmp_path)
    config = _pod_config(cfg)
    args = pod_arguments({"shard": 1, "uri": "s3://bucket/danqing/x/download/00001.parquet"}, "CC-MAIN-2025-47", config)
    text = " ".join(args)
    for held in (SECRET, "AKIAEXAMPLE", "storage_options", "gpu-pod-42", "danqing-lineage", '"pod"'):
        assert held not in text
    assert PipelineConfig.from_overrides(config).hash() == cfg.hash()  # the pod's done-marker matches the worker's


def test_pod_gets_credentials_from_kubernetes_secrets(tmp_path):
    cfg = _secret_laden_config(tmp_path)
    args = pod_arguments({"shard": 1, "uri": "u"}, "CC-MAIN-2025-47", {"root": cfg.root})
    pod = build_pod_operator(cfg.score.pod, arguments=args).build_pod_request_obj(dry_run=True)
    base = next(c for c in pod.spec.containers if c.name == "base")
    by_name = {e.name: e for e in base.env}
    ref = by_name["DANQING_LINEAGE_URL"].value_from.secret_key_ref
    assert (ref.name, ref.key, by_name["DANQING_LINEAGE_URL"].value) == ("danqing-lineage", "url", None)
    assert [e.secret_ref.name for e in base.env_from] == ["danqing-s3"]
    assert by_name["DANQING_ROOT"].value == "s3://bucket/danqing"
    assert SECRET not in repr(pod.to_dict())


@pytest.mark.parametrize("env", [{"DANQING_LINEAGE_URL": f"postgresql://u:{SECRET}@db/x"}, {"HF_TOKEN": SECRET}])
def test_a_credential_in_the_pods_plain_env_is_refused(env):
    from danqing.config import ConfigError, PipelineConfig

    with pytest.raises(ConfigError, match="put it in a Kubernetes secret") as refused:
        PipelineConfig.from_overrides({"score": {"pod": {"env": env}}})
    assert SECRET not in str(refused.value)


def test_a_credential_anywhere_else_in_the_pods_config_is_refused():
    from danqing.config import PipelineConfig
    from danqing.errors import UserError
    from operators.scoring import _pod_config

    cfg = PipelineConfig.from_overrides({"source": {"index_url": f"https://u:{SECRET}@index.example/cc-index/"}})
    with pytest.raises(UserError, match=r"source\.index_url") as refused:
        _pod_config(cfg)
    assert SECRET not in str(refused.value)
