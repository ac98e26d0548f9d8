"""docker-compose.yml and the Dockerfiles, parsed (scripts/compose_smoke.sh runs them: not part of make test)."""

from __future__ import annotations

import json
import sys
import tomllib

import yaml
from conftest import ROOT

AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer", "worker", "flower")


def _compose_env(service: dict) -> dict:
    """A service's environment as the containers get it: the env_file, then `environment`."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from stack import read_env_file

    return {**read_env_file(ROOT / service["env_file"]), **service["environment"]}


def test_compose_follows_airflow_3_with_production_backends():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "s3", *AIRFLOW_SERVICES}
    assert services["flower"]["profiles"] == ["flower"]
    secrets = set()
    for name in AIRFLOW_SERVICES:
        svc = services[name]
        env = _compose_env(svc)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        # SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3, which is not installed
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql+psycopg2://")
        assert env["DANQING_LINEAGE_URL"].startswith("postgresql+psycopg2://")
        assert env["DANQING_COORDINATION_URL"].startswith("redis://redis:6379/")
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
        secrets.add(env["AIRFLOW__API_AUTH__JWT_SECRET"])
        assert svc["build"]["dockerfile"] == "docker/Dockerfile"
        assert svc["build"]["args"]["AIRFLOW_IMAGE"] == "${AIRFLOW_BASE_IMAGE:-apache/airflow:3.3.2-python3.11}"
        if name != "airflow-init":
            assert svc["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
            assert "healthcheck" in svc
    # one secret for every component, from the environment (never a default baked into the file)
    assert len(secrets) == 1 and next(iter(secrets)).startswith("${AIRFLOW_JWT_SECRET:?")
    assert "airflow-init" not in services["airflow-init"]["depends_on"]
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16}"
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7}"
    for name in ("postgres", "redis", "s3"):
        assert "healthcheck" in services[name]
    queues = services["worker"]["command"][services["worker"]["command"].index("--queues") + 1].split(",")
    assert _compose_env(services["worker"])["DANQING_SCORE_QUEUE"] in queues


def test_image_lock_pins_every_requirement_as_tested():
    lock = dict(line.split("==") for line in (ROOT / "docker" / "constraints.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            name = name.split("[")[0].lower().replace("_", "-")
            assert lock[name] == version, name
    assert lock["celery"].startswith("5.6.")  # 5.7 breaks the Celery provider's import


def _instructions(path):
    """[instruction, argument] pairs, continuation lines joined."""
    text = (ROOT / path).read_text().replace("\\\n", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_airflow_image_installs_pinned_requirements_and_the_package():
    steps = _instructions("docker/Dockerfile")
    assert steps[:2] == [["ARG", "AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11"], ["FROM", "${AIRFLOW_IMAGE}"]]
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any("-r /opt/danqing/requirements.txt" in r and "-c /opt/danqing/constraints.txt" in r for r in runs)
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
