"""Shared fixtures. Airflow is pointed at a throwaway home and a fresh PostgreSQL database
before anything imports it, as in production (metadata in PostgreSQL, not SQLite).
"""

from __future__ import annotations

import os
import tempfile
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
