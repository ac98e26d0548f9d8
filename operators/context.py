"""The running task's config, crawl id and attempt, read from its run's params: where tasks and alerts start."""

from __future__ import annotations

from airflow.sdk import get_current_context


def pipeline_config(params: dict):
    """The run's PipelineConfig: defaults, the `config` param's overrides, then the form fields."""
    from danqing.config import PipelineConfig

    overrides = dict(params.get("config") or {})
    overrides["source"] = {
        **overrides.get("source", {}),
        "kind": params["source"],
        "warcs_per_shard": params["shard_size"],
        "max_warcs": params["max_warcs"],
    }
    cfg = PipelineConfig.from_overrides(overrides)
    if cfg.root.startswith("s3://") and not cfg.storage_options:
        from operators.storage import s3_storage_options

        cfg = cfg.model_copy(update={"storage_options": s3_storage_options()})
    return cfg


def run_context():
    """Config, crawl id and attempt of the running task."""
    from danqing.lineage import Attempt
    from danqing.paths import crawl_id

    ctx = get_current_context()
    params = ctx["params"]
    # The trigger form checks the id too, but runs triggered with other conf reach here unchecked.
    return pipeline_config(params), crawl_id(params["crawl_id"]), Attempt(ctx["run_id"], ctx["ti"].try_number)
