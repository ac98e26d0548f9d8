"""docker-compose.yml and the Dockerfiles cannot run here: parse them and check their shape."""

from __future__ import annotations

import json
import tomllib

import yaml
from conftest import ROOT


def test_compose_services_share_one_image_and_production_backends():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "airflow-init", "api-server", "scheduler", "dag-processor", "triggerer",
            "worker"} <= set(services)
    for name in ("api-server", "scheduler", "dag-processor", "triggerer", "worker"):
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
        assert env["DANQING_LINEAGE_URL"].startswith("postgresql")
        assert services[name]["build"]["dockerfile"] == "docker/Dockerfile"
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "airflow-init" not in services["airflow-init"]["depends_on"]


def _instructions(path):
    """[instruction, argument] pairs, continuation lines joined."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_airflow_image_installs_pinned_requirements_and_the_package():
    steps = _instructions("docker/Dockerfile")
    assert steps[0] == ["FROM", "apache/airflow:3.3.2-python3.11"]
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any("-r /opt/danqing/requirements.txt" in r for r in runs)
    compiler = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and "build-essential" in arg)
    package = next(i for i, (op, arg) in enumerate(steps) if op == "RUN" and arg.endswith(" /opt/danqing"))
    assert compiler < package  # danqing.imgscan compiles at install
    copies = [arg for op, arg in steps if op == "COPY"]
    for folder in ("danqing", "operators", "dags", "plugins"):
        assert any(f" {folder} " in f" {c} " for c in copies), folder
    pinned = (ROOT / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in pinned


def test_scorer_image_builds_the_package_with_a_compiler_and_runs_the_score_cli():
    steps = _instructions("docker/Dockerfile.scorer")
    assert steps[0][0] == "FROM" and "cuda" in steps[0][1]
    runs = [arg for op, arg in steps if op == "RUN"]
    compiler = next(i for i, r in enumerate(runs) if " gcc " in f" {r} " and "python3.11-dev" in r)
    package = next(i for i, r in enumerate(runs) if r.startswith("pip install --no-deps ."))
    assert compiler < package  # danqing.imgscan compiles at install
    # The pod's command is the `danqing` script that `pip install .` puts on the venv's PATH.
    assert json.loads(dict(steps)["CMD"])[:2] == ["danqing", "score"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["danqing"] == "danqing.cli:main"
