"""docker-compose.yml and the Dockerfiles cannot run here: parse them and check their shape."""

from __future__ import annotations

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
    lines = [line.strip() for line in (ROOT / path).read_text().splitlines()]
    return [line.split(None, 1) for line in lines if line and not line.startswith("#")]


def test_airflow_image_installs_pinned_requirements_and_the_package():
    steps = _instructions("docker/Dockerfile")
    assert steps[0] == ["FROM", "apache/airflow:3.3.2-python3.11"]
    runs = [arg for op, arg in steps if op == "RUN"]
    assert any("-r /opt/danqing/requirements.txt" in r for r in runs)
    copies = [arg for op, arg in steps if op == "COPY"]
    for folder in ("danqing", "operators", "dags", "plugins"):
        assert any(f" {folder} " in f" {c} " for c in copies), folder
    pinned = (ROOT / "requirements.txt").read_text()
    assert "apache-airflow==3.3.2" in pinned
