"""Run one stage on one shard: skip if done, run, write atomically, stats, lineage.

The stats file is written last and doubles as the done-marker, so a killed run leaves
no marker and its rerun replaces whatever partial output it left. A stage's scratch (the
download resume cache) outlives a failed run for its rerun and is removed once the marker is written.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from danqing import __version__, io, lineage, paths
from danqing.config import PipelineConfig
from danqing.errors import UserError
from danqing.records import ROW_UNIQUE_COLUMNS, kept
from danqing.redact import redact
from danqing.stats import StageStats


@dataclass
class ShardJob:
    """What a stage needs to process one shard: its inputs and where its outputs go."""

    cfg: PipelineConfig
    crawl: str
    stage: str
    shard: int
    inputs: list[str]
    side_outputs: list[str] = field(default_factory=list)
    scratch_dirs: list[str] = field(default_factory=list)
    # The CLI writes where it is told; pipeline runs use the layout of paths.py.
    out_prefix: str | None = None

    def _uri(self, suffix: str) -> str:
        if self.out_prefix is not None:
            return f"{self.out_prefix}{suffix}"
        return paths.shard_uri(self.cfg.root, self.crawl, self.stage, self.shard, suffix)

    @property
    def recorded_inputs(self) -> list[str]:
        """The inputs as stats files and lineage keep them: a signed URL's signature or token masked."""
        return [redact(uri) for uri in self.inputs]

    @property
    def out(self) -> str:
        return self._uri(".parquet")

    def side(self, suffix: str) -> str:
        """URI of an extra output (a tar, embeddings); recorded in lineage with its checksum."""
        uri = self._uri(suffix)
        if uri not in self.side_outputs:
            self.side_outputs.append(uri)
        return uri

    def scratch(self, suffix: str) -> str:
        """URI of a folder kept across failed tries of this shard and removed once it is done."""
        uri = self._uri(suffix)
        if uri not in self.scratch_dirs:
            self.scratch_dirs.append(uri)
        return uri


# A stage returns its rows as a table, or as a reader of record batches that are written as
# they come, so memory stays flat in the size of the shard.
Process = Callable[[ShardJob, StageStats], pa.Table | pa.RecordBatchReader]


def run_shard(stage: str, crawl: str, shard: int, inputs: list[str], cfg: PipelineConfig,
              attempt: lineage.Attempt = lineage.CLI, process: Process | None = None) -> dict:
    """Run `stage` on one shard and return a small summary (fits an XCom)."""
    job = ShardJob(cfg, crawl, stage, shard, list(inputs))
    marker = paths.stats_uri(cfg.root, crawl, stage, shard)
    so = cfg.storage_options
    if io.exists(marker, so):
        done = io.read_json(marker, so)
        if done["config_hash"] == cfg.hash() and done["inputs"] == job.recorded_inputs:
            _record(job, attempt, "skipped", StageStats.from_dict(done["stats"]), done["outputs"])
            return _summary(job, StageStats.from_dict(done["stats"]), skipped=True)
    io.remove(marker, so)

    process = process or importlib.import_module(f"danqing.stages.{stage}").process
    stats = _run(job, process)

    outputs = {uri: io.checksum(uri, so) for uri in [job.out, *job.side_outputs]}
    io.write_json({"stats": stats.to_dict(), "config_hash": cfg.hash(), "inputs": job.recorded_inputs,
                   "outputs": outputs, "code_version": __version__}, marker, so)
    _clear_scratch(job)
    _record(job, attempt, "done", stats, outputs)
    return _summary(job, stats)


def run_local(stage: str, inputs: list[str], out_prefix: str, cfg: PipelineConfig,
              crawl: str = "local", shard: int = 0) -> dict:
    """Run a stage outside the pipeline layout (the CLI): no skip, no lineage."""
    job = ShardJob(cfg, crawl, stage, shard, list(inputs), out_prefix=out_prefix)
    stats = _run(job, importlib.import_module(f"danqing.stages.{stage}").process)
    io.write_json({"stats": stats.to_dict(), "inputs": job.recorded_inputs, "outputs": [job.out, *job.side_outputs],
                   "config_hash": cfg.hash(), "code_version": __version__}, job._uri("_stats.json"),
                  cfg.storage_options)
    _clear_scratch(job)
    return _summary(job, stats)


def kept_rows(uri: str, cfg: PipelineConfig, needs: tuple[str, ...] = ()) -> pa.Table:
    """Rows an upstream stage kept, without its drop_reason; UserError when a column in `needs` is missing."""
    table = io.read_parquet(uri, storage_options=cfg.storage_options)
    missing = [name for name in needs if name not in table.column_names]
    if missing:
        raise UserError(f"{redact(uri)} has no {' or '.join(map(repr, missing))} column (it has "
                        f"{', '.join(table.column_names) or 'none'}): give the output of the stage before this one")
    return kept(table)


def with_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """`table` with column `name` set to `values`, in place of any column of that name it had already."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def with_reasons(table: pa.Table, reasons: list[str]) -> pa.Table:
    """Attach this stage's drop_reason column ("" = kept)."""
    if "drop_reason" in table.column_names:
        table = table.drop_columns(["drop_reason"])
    return table.append_column("drop_reason", pa.array(reasons, pa.string()))


def _run(job: ShardJob, process: Process) -> StageStats:
    """Run the stage and stream its rows to parquet atomically, counting kept and dropped rows."""
    stats = StageStats()
    started = time.monotonic()
    rows = process(job, stats)
    if isinstance(rows, pa.Table):
        rows = pa.RecordBatchReader.from_batches(rows.schema, rows.to_batches())
    so = job.cfg.storage_options
    dictionary = [name for name in rows.schema.names if name not in ROW_UNIQUE_COLUMNS]
    with (io.atomic_write(job.out, storage_options=so) as f,
          pq.ParquetWriter(f, rows.schema, compression="zstd", use_dictionary=dictionary) as w):
        for batch in rows:  # a streaming stage does its work here, batch by batch
            for reason in pc.value_counts(batch.column("drop_reason")).to_pylist():
                stats.count(reason["values"] or None, reason["counts"])
            w.write_batch(batch)
    stats.seconds = time.monotonic() - started
    return stats


def _clear_scratch(job: ShardJob) -> None:
    """Called only after the shard is committed: a failure before that leaves the scratch for the rerun."""
    for uri in job.scratch_dirs:
        io.remove(uri, job.cfg.storage_options)


def _summary(job: ShardJob, stats: StageStats, skipped: bool = False) -> dict:
    return {"stage": job.stage, "shard": job.shard, "uri": job.out, "total": stats.total,
            "kept": stats.kept, "skipped": skipped}


def _record(job: ShardJob, attempt: lineage.Attempt, status: str, stats: StageStats, outputs: dict) -> None:
    lineage.record(
        job.cfg.lineage,
        crawl=job.crawl, shard=job.shard, stage=job.stage, status=status,
        run_id=attempt.run_id, try_number=attempt.try_number,
        inputs=job.recorded_inputs, outputs=outputs,
        count_in=stats.total, count_out=stats.kept,
        dropped=dict(stats.dropped), errors=dict(stats.errors), seconds=stats.seconds,
        code_version=__version__, config_hash=job.cfg.hash(),
    )
