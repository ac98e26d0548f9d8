"""Run an `airflow` command against this checkout's local install (SQLite, ./dags, ./plugins)."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def airflow_env(port: int = 8080) -> dict[str, str]:
    """Environment for a local Airflow: its home, metadata DB and the project's folders."""
    home = ROOT / ".airflow"
    home.mkdir(exist_ok=True)
    venv_bin = ROOT / ".venv" / "bin"
    env = dict(os.environ)
    env.update({
        # `airflow standalone` starts its components as `airflow` from PATH.
        "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_MAP_LENGTH": "8192",  # as docker/airflow.env: a crawl's shards in one run
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        # Local install only: the UI opens without a login.
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{port}/execution/",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "DANQING_ROOT": env.get("DANQING_ROOT", str(ROOT / "data")),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def free_port(preferred: int = 8080) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]


if __name__ == "__main__":
    env = airflow_env(free_port())
    os.execvpe("airflow", ["airflow", *sys.argv[1:]], env)
