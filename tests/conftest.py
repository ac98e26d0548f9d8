"""Shared fixtures. Airflow is pointed at a throwaway home and a fresh PostgreSQL database
before anything imports it, as in production (metadata in PostgreSQL, not SQLite).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures"
PG_SERVER = os.environ.get("DANQING_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432")
AIRFLOW_DB = f"danqing_test_airflow_{os.getpid()}"

os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="danqing-airflow-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"{PG_SERVER}/{AIRFLOW_DB}"
# huggingface_hub reads this at import: the loopback hub stand-ins speak LFS, not Xet (OPS-NOTES).
os.environ["HF_HUB_DISABLE_XET"] = "1"
# Every dag.test() run of the session reports to OpenLineage through this file (tests/test_openlineage.py).
OPENLINEAGE_LOG = Path(os.environ["AIRFLOW_HOME"]) / "openlineage.jsonl"
os.environ["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(
    {"type": "file", "log_file_path": str(OPENLINEAGE_LOG), "append": True})
# Airflow 3.3's dag.test() fails when a run with a DeadlineAlert succeeds (it looks the alert up by its
# definition, not its id), so tests parse the DAG without one; tests/test_alerts.py turns it on.
os.environ["DANQING_RUN_DEADLINE_H"] = "0"

from danqing.config import PipelineConfig  # noqa: E402


def record_at(folder: Path | str, row: dict):
    """The WARC record a row points at, read back from its file, offset and length alone."""
    import gzip
    import io

    from warcio.archiveiterator import ArchiveIterator

    with open(Path(folder) / row["warc_filename"], "rb") as f:
        f.seek(row["warc_record_offset"])
        member = f.read(row["warc_record_length"])
    return next(iter(ArchiveIterator(io.BytesIO(gzip.decompress(member)))))


@pytest.fixture
def commoncrawl(tmp_path):
    """tests/fixtures/commoncrawl laid out like data.commoncrawl.org, served on loopback."""
    import shutil

    from source_helpers import LoopbackServer, static_files

    crawl = "CC-MAIN-2025-47"
    site = tmp_path / "cc"
    (site / "crawl-data" / crawl).mkdir(parents=True)
    shutil.copy(FIXTURES / "commoncrawl" / "collinfo.json", site / "collinfo.json")
    shutil.copy(FIXTURES / "commoncrawl" / f"{crawl}.warc.paths.gz", site / "crawl-data" / crawl / "warc.paths.gz")
    with LoopbackServer(static_files(site)) as srv:
        yield srv


@pytest.fixture
def cfg(tmp_path) -> PipelineConfig:
    return PipelineConfig.from_overrides({"root": str(tmp_path / "data")})


def create_pg_database(name: str) -> str:
    """A fresh, empty PostgreSQL database; returns its SQLAlchemy URL."""
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"{PG_SERVER}/{name}"


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata schema in a fresh PostgreSQL database, dropped after the session."""
    create_pg_database(AIRFLOW_DB)
    from airflow.utils.db import initdb

    initdb()
    yield
    from airflow import settings

    settings.dispose_orm()
    import sqlalchemy as sa

    engine = sa.create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{AIRFLOW_DB}" WITH (FORCE)'))
    engine.dispose()


def snapshot_dag():
    """danqing_snapshot as dag.test() runs it here: parsed from the repository, no retries."""
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / "danqing_snapshot.py")).get_dag("danqing_snapshot")
    for task in dag.tasks:
        task.retries = 0  # a failure here should fail the test now, not after backoff
    return dag


@dataclass
class SampleRun:
    cfg: PipelineConfig
    crawl: str
    run_id: str
    conf: dict


@pytest.fixture(scope="session")
def sample_run(airflow_db, tmp_path_factory) -> SampleRun:
    """danqing_snapshot on the bundled sample crawl with one WARC per shard (4 shards), run once per session
    for the crawl page, alert and OpenLineage tests."""
    from danqing import paths
    from danqing.config import SAMPLE_CRAWL_ID
    from danqing.sample.crawl import build_sample_crawl
    from danqing.sample.imageserver import ImageServer

    root = str(tmp_path_factory.mktemp("sample-run") / "data")
    build_sample_crawl(paths.sample_crawl_root(root))
    mp = pytest.MonkeyPatch()
    mp.setenv("DANQING_ROOT", root)
    try:
        with ImageServer(paths.sample_crawl_root(root)) as images:
            conf = {"crawl_id": SAMPLE_CRAWL_ID, "source": "sample", "shard_size": 1, "max_warcs": 0,
                    "config": {"download": {"host_overrides": images.host_overrides, "allow_loopback": True}}}
            run = snapshot_dag().test(run_conf=conf)
    finally:
        mp.undo()
    assert run.state == "success"
    return SampleRun(PipelineConfig(root=root), SAMPLE_CRAWL_ID, run.run_id, conf)
