"""Secrets planted in the environment, an Airflow connection and the config, then every way out searched:
the CLI's output and errors, the warnings of a damaged read, source errors, the GPU pod's arguments and
spec, lineage, stats and XCom summaries. None may hold a secret."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, create_pg_database
from source_helpers import LoopbackServer

from danqing import io, lineage, redact
from danqing.config import PipelineConfig
from danqing.http import SourceError

PASSWORD = "pg-Secret-0f9e8d7c"
TOKEN = "hf_PlantedToken1234567890"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPLANTED"
SIGNATURE = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
SECRETS = [PASSWORD, TOKEN, AWS_SECRET, SIGNATURE]


def _clean(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, f"{secret} leaked: {text[:300]}"


@pytest.fixture(scope="module")
def pg_url():
    """A lineage store whose URL carries a password (trust auth ignores it; printing it would leak it)."""
    name = f"danqing_test_secrets_{os.getpid()}"
    url = create_pg_database(name)
    return url.replace("://postgres@", f"://postgres:{PASSWORD}@")


def _danqing(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "danqing.cli", *argv], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, env={**os.environ, **(env or {})})


def test_the_cli_never_prints_a_planted_secret(tmp_path, pg_url):
    env = {"DANQING_LINEAGE_URL": pg_url, "HF_TOKEN": TOKEN, "AWS_SECRET_ACCESS_KEY": AWS_SECRET}
    nothing = _danqing("lineage", "CC-MAIN-2025-47", env=env)  # nothing recorded: says where it looked
    assert nothing.returncode == 0 and "no lineage recorded" in nothing.stdout and "postgres:***@" in nothing.stdout
    bad = _danqing("--config", json.dumps({"lineage_url": f"u:{PASSWORD}@db", "storage_options": {"secret": AWS_SECRET},
                                           "download": {"max_bytes": -1}}), "lineage", "CC-MAIN-2025-47", env=env)
    assert bad.returncode == 2
    missing = _danqing("extract", f"{tmp_path}/none.warc.gz?token={TOKEN}", "--out", str(tmp_path / "o"), env=env)
    assert missing.returncode == 2
    _clean(nothing.stdout, nothing.stderr, bad.stdout, bad.stderr, missing.stdout, missing.stderr)


def test_source_errors_mask_signed_urls_and_tokens(cfg):
    from danqing import warcsource

    with LoopbackServer(lambda path, headers: (403, {}, b"denied")) as srv:
        url = f"{srv.url}/crawl.warc.gz?X-Amz-Credential=AKIA/x&X-Amz-Signature={SIGNATURE}&access_token={TOKEN}"
        with pytest.raises(SourceError) as failed:
            warcsource.open_input(url, cfg).read(10)
    _clean(str(failed.value), repr(failed.value))
    assert "X-Amz-Signature=***" in str(failed.value)


def test_a_damaged_reads_warnings_mask_the_input_url(tmp_path, caplog):
    from danqing.shard import run_local

    damaged = b"\x1f\x8b\x08\x00 this member is damaged"
    with LoopbackServer(lambda path, headers: (200, {}, damaged)) as srv:
        url = f"{srv.url}/crawl.warc.gz?X-Amz-Signature={SIGNATURE}&token={TOKEN}"
        cfg = PipelineConfig.from_overrides({"root": str(tmp_path / "data")})
        run_local("extract", [url], str(tmp_path / "o"), cfg)
    assert "warc_corrupt" in caplog.text or "warc_truncated" in caplog.text
    _clean(caplog.text, (tmp_path / "o_stats.json").read_text())


def test_the_pod_spec_and_arguments_hold_no_secret_from_config_or_connection(tmp_path, monkeypatch):
    """The worker's config, storage options from an Airflow AWS connection included, turned into the pod's task."""
    from operators.context import pipeline_config
    from operators.scoring import _pod_config, build_pod_operator, pod_arguments

    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({
        "conn_type": "aws", "login": "AKIAPLANTED", "password": AWS_SECRET,
        "extra": {"endpoint_url": "http://127.0.0.1:9"}}))
    monkeypatch.setenv("DANQING_ROOT", "s3://bucket/danqing")
    monkeypatch.setenv("DANQING_LINEAGE_URL", f"postgresql+psycopg2://u:{PASSWORD}@db/lineage")
    params = {"source": "sample", "shard_size": 2, "max_warcs": 0, "config": {
        "source": {"storage_options": {"token": TOKEN}},
        "score": {"pod": {"secret_env": {"DANQING_LINEAGE_URL": "danqing-lineage:url", "HF_TOKEN": "hub:token"},
                          "env_from_secrets": ["danqing-s3"], "env": {"DANQING_ROOT": "s3://bucket/danqing"}}}}}
    cfg = pipeline_config(params)
    assert cfg.storage_options["secret"] == AWS_SECRET  # the worker has it, from the connection
    args = pod_arguments({"shard": 3, "uri": "s3://bucket/danqing/x/download/00003.parquet"}, "CC-MAIN-2025-47",
                         _pod_config(cfg))
    pod = build_pod_operator(cfg.score.pod, arguments=args).build_pod_request_obj(dry_run=True)
    _clean(" ".join(args), json.dumps(pod.to_dict(), default=str), redact.redact(repr(cfg.storage_options)))


def test_lineage_stats_and_summaries_hold_no_secret(tmp_path, monkeypatch):
    from warc_helpers import cc_records, members

    from danqing.shard import run_shard

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    cfg = PipelineConfig.from_overrides({"root": str(tmp_path / "data"),
                                         "storage_options": {"auto_mkdir": True},
                                         "source": {"storage_options": {"secret": AWS_SECRET}}})
    warc = tmp_path / "w.warc.gz"
    warc.write_bytes(b"".join(members(cc_records(3)))[:-20])  # cut: a warning and an error count too
    summary = run_shard("extract", "CC-MAIN-2099-01", 0, [str(warc)], cfg)
    stats = io.read_json(f"{cfg.root}/CC-MAIN-2099-01/extract/00000_stats.json")
    rows = lineage.latest(cfg.lineage, "CC-MAIN-2099-01")
    _clean(json.dumps(summary), json.dumps(stats), json.dumps(rows, default=str), cfg.hash())
    assert stats["stats"]["errors"] == {"warc_truncated": 1}
