"""The lineage store: one row per (crawl, shard, stage, attempt), in SQLite or PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import sqlalchemy as sa

from danqing import paths

metadata = sa.MetaData()

runs = sa.Table(
    "danqing_lineage",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl", sa.String(64), nullable=False, index=True),
    sa.Column("shard", sa.Integer, nullable=False),
    sa.Column("stage", sa.String(32), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # done | skipped
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("try_number", sa.Integer, nullable=False),
    sa.Column("inputs", sa.JSON, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),  # {uri: sha256}
    sa.Column("count_in", sa.Integer, nullable=False),
    sa.Column("count_out", sa.Integer, nullable=False),
    sa.Column("dropped", sa.JSON, nullable=False),
    sa.Column("errors", sa.JSON, nullable=False),
    sa.Column("seconds", sa.Float, nullable=False),
    sa.Column("code_version", sa.String(64), nullable=False),
    sa.Column("config_hash", sa.String(64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


# Where a release went: one row per (crawl, shard, hub target) upload, so `danqing lineage` and the
# funnel page can name the repo, tag and commit that hold each shard's files.
uploads = sa.Table(
    "danqing_uploads",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl", sa.String(64), nullable=False, index=True),
    sa.Column("shard", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),  # huggingface | modelscope
    sa.Column("repo_id", sa.String(250), nullable=False),
    sa.Column("endpoint", sa.String(250), nullable=False),  # the hub's base URL, no credentials
    sa.Column("tag", sa.String(250), nullable=False),
    sa.Column("commit_id", sa.String(64), nullable=False),
    sa.Column("files", sa.JSON, nullable=False),  # {path in repo: sha256}
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("try_number", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)


# Alerts raised for a crawl (failed shards, data quality, overdue runs): one row per (run, shard, stage,
# code), so a rerun of a check pages once and the funnel page can list what paged.
alerts = sa.Table(
    "danqing_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("crawl", sa.String(64), nullable=False, index=True),
    sa.Column("run_id", sa.String(250), nullable=False),
    sa.Column("shard", sa.Integer, nullable=False),  # -1 = the whole run
    sa.Column("stage", sa.String(64), nullable=False),  # the stage or task id ("" = the whole run)
    sa.Column("code", sa.String(64), nullable=False),  # see docs/RUNBOOK.md
    sa.Column("message", sa.Text, nullable=False),  # redacted before it gets here
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("crawl", "run_id", "shard", "stage", "code", name="danqing_alerts_once"),
)


@dataclass(frozen=True)
class Attempt:
    """Who ran a stage: an Airflow run id and try number, or the CLI."""

    run_id: str = "cli"
    try_number: int = 1


CLI = Attempt()


@lru_cache(maxsize=8)
def engine(url: str) -> sa.Engine:
    if url.startswith("postgresql://"):  # SQLAlchemy 2.1 reads it as psycopg 3, which is not installed
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite:///"):
        from pathlib import Path

        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    eng = sa.create_engine(url, pool_pre_ping=True)
    try:
        metadata.create_all(eng)
    except sa.exc.DatabaseError:  # another task created the tables between the check and the CREATE
        metadata.create_all(eng)
    return eng


def record(url: str, **row) -> None:
    paths.crawl_id(row["crawl"])  # a lineage key: checked like every other way in
    row.setdefault("created_at", dt.datetime.now(dt.UTC))
    with engine(url).begin() as conn:
        conn.execute(runs.insert().values(**row))


def record_upload(url: str, **row) -> None:
    """One shard's files as they landed on one hub repo (repo, tag, commit, checksums)."""
    paths.crawl_id(row["crawl"])
    row.setdefault("created_at", dt.datetime.now(dt.UTC))
    with engine(url).begin() as conn:
        conn.execute(uploads.insert().values(**row))


def uploaded(url: str, crawl: str) -> list[dict]:
    """The newest upload row per (shard, kind, repo) of a crawl: where its release is now."""
    with engine(url).connect() as conn:
        rows = conn.execute(sa.select(uploads).where(uploads.c.crawl == crawl).order_by(uploads.c.id)).mappings().all()
    newest: dict[tuple, dict] = {}
    for r in rows:
        newest[(r["shard"], r["kind"], r["repo_id"])] = {**r, "files": _as_dict(r["files"])}
    return sorted(newest.values(), key=lambda r: (r["kind"], r["repo_id"], r["shard"]))


def record_alert(url: str, **row) -> bool:
    """Store an alert; False when the same (crawl, run, shard, stage, code) was raised already."""
    row.setdefault("created_at", dt.datetime.now(dt.UTC))
    try:
        with engine(url).begin() as conn:
            conn.execute(alerts.insert().values(**row))
    except sa.exc.IntegrityError:
        return False
    return True


def alerts_raised(url: str, crawl: str) -> list[dict]:
    """A crawl's alerts, newest first."""
    with engine(url).connect() as conn:
        query = sa.select(alerts).where(alerts.c.crawl == crawl).order_by(alerts.c.id.desc())
        return [dict(r) for r in conn.execute(query).mappings()]


def latest(url: str, crawl: str) -> list[dict]:
    """The newest row per (shard, stage) of a crawl: the state its outputs are in now."""
    with engine(url).connect() as conn:
        rows = conn.execute(sa.select(runs).where(runs.c.crawl == crawl).order_by(runs.c.id)).mappings().all()
    return _newest_per_shard_stage(rows)


def run_rows(url: str, crawl: str, run_id: str) -> list[dict]:
    """The newest row per (shard, stage) that one Airflow run wrote: what that run did, even where a later
    run has since recorded the same shards."""
    with engine(url).connect() as conn:
        query = sa.select(runs).where(runs.c.crawl == crawl, runs.c.run_id == run_id).order_by(runs.c.id)
        rows = conn.execute(query).mappings().all()
    return _newest_per_shard_stage(rows)


def _newest_per_shard_stage(rows) -> list[dict]:
    newest = {(r["shard"], r["stage"]): r for r in rows}  # rows come oldest first
    return [{**r, "dropped": _as_dict(r["dropped"]), "errors": _as_dict(r["errors"])} for r in newest.values()]


def crawls(url: str) -> set[str]:
    """Crawls with at least one stage recorded: the ones discovery must not start again."""
    with engine(url).connect() as conn:
        return set(conn.execute(sa.select(runs.c.crawl).distinct()).scalars())


def funnel(url: str, crawl: str, stages: list[str]) -> list[dict]:
    """Per stage: in, out and dropped by reason, summed over shards."""
    by_stage: dict[str, dict] = {}
    for r in latest(url, crawl):
        s = by_stage.setdefault(r["stage"], {"stage": r["stage"], "in": 0, "out": 0, "dropped": Counter(),
                                             "errors": Counter(), "shards": 0})
        s["in"] += r["count_in"]
        s["out"] += r["count_out"]
        s["dropped"].update(_as_dict(r["dropped"]))
        s["errors"].update(_as_dict(r["errors"]))
        s["shards"] += 1
    return [by_stage[s] for s in stages if s in by_stage]


def _as_dict(value) -> dict:
    return json.loads(value) if isinstance(value, str) else (value or {})
