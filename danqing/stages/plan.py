"""Stage 0b: cut a crawl into shards Airflow can map over (never more than max_shards).

Without a columnar index a shard is a few whole WARCs. With one, DuckDB selects the
HTML records in the wanted languages and a shard is byte ranges of those records only,
which skips the ~95% of a crawl that is not Chinese.
"""

from __future__ import annotations

import contextlib
import gzip
import itertools
import json
import math
from collections.abc import Iterable, Iterator

from danqing import io, paths, warcsource
from danqing.config import PipelineConfig, SourceConfig
from danqing.stages.discover import source_base


def plan(cfg: PipelineConfig, crawl: str, index_uri: str) -> list[int]:
    """Write the crawl's shard plan and return the shard numbers (a small XCom)."""
    warcs = read_paths(index_uri, cfg)
    if cfg.source.max_warcs:
        warcs = warcs[: cfg.source.max_warcs]
    base = source_base(cfg)
    if cfg.source.index_url:
        with _index(cfg, crawl, warcs if cfg.source.max_warcs else None) as (n, records):
            count = write_plan(cfg, crawl, range_shards(records, n, base, cfg.source))
    else:
        chunks = split(warcs, cfg.source.warcs_per_shard, cfg.source.max_shards)
        count = write_plan(cfg, crawl, (([base + p for p in chunk], {}) for chunk in chunks))
    return list(range(count))


def shard_inputs(cfg: PipelineConfig, crawl: str, shard: int) -> list[str]:
    """The input specs of one shard (reads only that shard's file, not the whole plan)."""
    so = cfg.storage_options
    if io.exists(paths.plan_shard_uri(cfg.root, crawl, shard), so):
        return io.read_json(paths.plan_shard_uri(cfg.root, crawl, shard), so)["inputs"]
    return io.read_json(paths.plan_uri(cfg.root, crawl), so)[shard]["inputs"]  # a plan written elsewhere


def shard_languages(cfg: PipelineConfig, crawl: str, shard: int) -> dict[tuple[str, int], str]:
    """(warc_filename, record offset) -> the index's content_languages, for a shard planned from the index.

    Byte-range reads skip the metadata records that carry CLD2's labels: the index has the same ones.
    """
    uri = paths.plan_shard_uri(cfg.root, crawl, shard)
    if not io.exists(uri, cfg.storage_options):
        return {}
    by_warc = io.read_json(uri, cfg.storage_options).get("languages", {})
    return {(name, int(off)): langs for name, offsets in by_warc.items() for off, langs in offsets.items()}


def read_paths(uri: str, cfg: PipelineConfig) -> list[str]:
    """The WARC paths of a warc.paths.gz, in file order."""
    with io.open_uri(uri, "rb", cfg.storage_options) as f:
        text = gzip.decompress(f.read()).decode()
    return [line.strip() for line in text.splitlines() if line.strip()]


def shard_count(n: int, per_shard: int, max_shards: int) -> int:
    """Shards for n items: per_shard each, but the shard size grows rather than pass max_shards."""
    return min(max_shards, math.ceil(n / per_shard)) if n else 0


def split(items: list, per_shard: int, max_shards: int) -> list[list]:
    """Consecutive chunks whose sizes differ by at most one."""
    k = shard_count(len(items), per_shard, max_shards)
    return [items[i * len(items) // k: (i + 1) * len(items) // k] for i in range(k)]


def range_shards(records: Iterable[tuple[str, int, int, str]], n: int, base: str,
                 src: SourceConfig) -> Iterator[tuple[list[str], dict[str, dict[int, str]]]]:
    """Group sorted (warc_filename, offset, length, languages) records into shards: per-WARC range
    specs, and each record's languages by WARC and offset."""
    k = shard_count(n, src.ranges_per_shard, src.max_shards)
    it = iter(records)
    for i in range(k):
        size = (i + 1) * n // k - i * n // k
        by_warc: dict[str, list[tuple[int, int]]] = {}
        languages: dict[str, dict[int, str]] = {}
        for _ in range(size):
            name, off, length, langs = next(it)
            by_warc.setdefault(name, []).append((off, length))
            languages.setdefault(name, {})[off] = langs or ""
        yield [warcsource.format_spec(base + name, ranges) for name, ranges in by_warc.items()], languages


def select_records(cfg: PipelineConfig, crawl: str, warcs: list[str] | None = None
                   ) -> list[tuple[str, int, int, str]]:
    """(warc_filename, offset, length, content_languages) of 200 HTML records in the wanted languages, sorted."""
    with _index(cfg, crawl, warcs) as (_, records):
        return list(records)


_QUERY = """
    SELECT warc_filename, warc_record_offset, warc_record_length, content_languages, count(*) OVER () AS n
    FROM read_parquet($table, hive_partitioning = false)
    WHERE fetch_status = 200
      AND list_contains($mimes, content_mime_detected)
      AND len(list_intersect(string_split(content_languages, ','), $langs)) > 0
      {only_warcs}
    ORDER BY warc_filename, warc_record_offset
"""


@contextlib.contextmanager
def _index(cfg: PipelineConfig, crawl: str, warcs: list[str] | None):
    """DuckDB over the crawl's index parquet: (count, iterator of sorted records), streamed in batches."""
    import duckdb

    table = f"{cfg.source.index_url.rstrip('/')}/crawl={crawl}/subset=warc/*.parquet"
    con = duckdb.connect()
    try:
        if not paths.is_local(table):
            # DuckDB's own httpfs cannot be installed here; fsspec (s3fs...) reads for it.
            fs, _ = io.fs_for(table, cfg.source.storage_options or cfg.storage_options)
            con.register_filesystem(fs)
        only = ""
        if warcs is not None:
            import pyarrow as pa

            con.register("wanted", pa.table({"warc_filename": warcs}))
            only = "AND warc_filename IN (SELECT warc_filename FROM wanted)"
        params = {"table": table.removeprefix("file://"), "mimes": cfg.source.index_mimes,
                  "langs": cfg.extract.languages}
        batches = iter(con.sql(_QUERY.format(only_warcs=only), params=params).to_arrow_reader(100_000))
        first = next(batches, None)
        n = first.column(4)[0].as_py() if first is not None and first.num_rows else 0

        def records() -> Iterator[tuple[str, int, int, str]]:
            for batch in itertools.chain([first] if first is not None else [], batches):
                yield from zip(*(batch.column(i).to_pylist() for i in range(4)), strict=True)

        yield n, records()
    finally:
        con.close()


def write_plan(cfg: PipelineConfig, crawl: str, shards: Iterable[tuple[list[str], dict]]) -> int:
    """One file per shard (what a task reads: inputs and record languages), then shards.json
    (inputs only): the plan is complete once it exists.

    Streams: memory holds a few shards, not the plan. Returns the number of shards.
    """
    from concurrent.futures import ThreadPoolExecutor

    so = cfg.storage_options
    count, pending = 0, []
    with io.atomic_write(paths.plan_uri(cfg.root, crawl), "wb", so) as f, ThreadPoolExecutor(16) as pool:
        f.write(b"[")
        for i, (inputs, languages) in enumerate(shards):
            entry = {"shard": i, "inputs": inputs}
            # each per-shard write waits on fsync or an upload: overlap them, a bounded number at a time
            pending.append(pool.submit(io.write_json, {**entry, "languages": languages},
                                       paths.plan_shard_uri(cfg.root, crawl, i), so))
            if len(pending) >= 64:
                pending.pop(0).result()
            f.write(f"{',' if i else ''}\n{json.dumps(entry)}".encode())
            count = i + 1
        f.write(b"\n]\n")
        for fut in pending:
            fut.result()
    return count
