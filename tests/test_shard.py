"""The shard runner: skip when done, replace on rerun, leave nothing partial, record lineage."""

from __future__ import annotations

import time
from pathlib import Path

import pyarrow as pa
import pytest

from danqing import io, lineage, paths
from danqing.shard import run_shard, with_reasons

CRAWL = "CC-MAIN-2099-01"


def _keep_even(job, stats):
    numbers = list(range(10))
    stats.error("record_corrupt")
    return with_reasons(pa.table({"id": [str(n) for n in numbers]}), ["" if n % 2 == 0 else "odd" for n in numbers])


def test_run_writes_output_stats_and_lineage(cfg):
    summary = run_shard("refine", "CC-MAIN-2025-47", 3, ["in.parquet"], cfg, lineage.Attempt("run1", 1),
                        process=_keep_even)
    uri = paths.shard_uri(cfg.root, "CC-MAIN-2025-47", "refine", 3)
    assert summary == {"stage": "refine", "shard": 3, "uri": uri, "total": 10, "kept": 5, "skipped": False}
    assert io.read_parquet(summary["uri"]).num_rows == 10
    marker = io.read_json(paths.stats_uri(cfg.root, "CC-MAIN-2025-47", "refine", 3))
    assert marker["stats"]["dropped"] == {"odd": 5}
    assert marker["stats"]["errors"] == {"record_corrupt": 1}
    assert marker["outputs"][summary["uri"]] == io.checksum(summary["uri"])
    [row] = lineage.latest(cfg.lineage, "CC-MAIN-2025-47")
    assert (row["stage"], row["shard"], row["run_id"]) == ("refine", 3, "run1")
    assert (row["count_in"], row["count_out"]) == (10, 5)
    assert row["config_hash"] == cfg.hash()


def test_second_run_skips_and_changed_config_reruns(cfg):
    calls = []

    def counting(job, stats):
        calls.append(job.shard)
        return _keep_even(job, stats)

    run_shard("refine", CRAWL, 0, ["a"], cfg, process=counting)
    assert run_shard("refine", CRAWL, 0, ["a"], cfg, process=counting)["skipped"] is True
    assert calls == [0]
    changed = cfg.model_copy(update={"refine": cfg.refine.model_copy(update={"max_unknown_tokens": 1})})
    assert changed.hash() != cfg.hash()
    assert run_shard("refine", CRAWL, 0, ["a"], changed, process=counting)["skipped"] is False
    assert calls == [0, 0]


def test_killed_run_leaves_no_marker_and_rerun_replaces(cfg):
    def dies(job, stats):
        with io.atomic_write(job.side(".tar")) as f:
            f.write(b"partial")
            raise KeyboardInterrupt  # a worker killed mid-write

    with pytest.raises(KeyboardInterrupt):
        run_shard("download", CRAWL, 1, ["a"], cfg, process=dies)
    assert not io.exists(paths.stats_uri(cfg.root, CRAWL, "download", 1))
    assert not io.exists(paths.shard_uri(cfg.root, CRAWL, "download", 1, ".tar"))
    assert list((Path(cfg.root) / CRAWL / "download").glob("*")) == []  # no temp files left behind
    run_shard("download", CRAWL, 1, ["a"], cfg, process=_keep_even)
    assert io.read_parquet(paths.shard_uri(cfg.root, CRAWL, "download", 1)).num_rows == 10


def test_scratch_survives_a_failed_run_and_goes_once_the_shard_is_done(cfg, monkeypatch):
    scratch = Path(paths.shard_uri(cfg.root, CRAWL, "download", 2, "_cache"))

    def with_scratch(job, stats):
        with io.atomic_write(job.scratch("_cache") + "/part.bin") as f:
            f.write(b"fetched")
        return _keep_even(job, stats)

    def storage_down(*_args, **_kwargs):
        raise OSError("storage down")

    with monkeypatch.context() as m:
        m.setattr(io, "write_json", storage_down)  # fails at the marker, the last write of the run
        with pytest.raises(OSError, match="storage down"):
            run_shard("download", CRAWL, 2, ["a"], cfg, process=with_scratch)
    assert (scratch / "part.bin").exists()
    run_shard("download", CRAWL, 2, ["a"], cfg, process=with_scratch)
    assert not scratch.exists()
    assert io.read_parquet(paths.shard_uri(cfg.root, CRAWL, "download", 2)).num_rows == 10


def test_stage_time_is_counted_for_tables_and_streams(cfg):
    def slow_table(job, stats):
        time.sleep(0.2)
        return _keep_even(job, stats)

    def slow_stream(job, stats):
        table = _keep_even(job, stats)

        def batches():
            time.sleep(0.2)
            yield from table.to_batches()

        return pa.RecordBatchReader.from_batches(table.schema, batches())

    for shard, process in enumerate([slow_table, slow_stream]):
        run_shard("refine", CRAWL, shard, ["a"], cfg, process=process)
        marker = io.read_json(paths.stats_uri(cfg.root, CRAWL, "refine", shard))
        assert marker["stats"]["seconds"] >= 0.2 and marker["stats"]["kept"] == 5
