"""Stage 0b: cut a crawl into shards Airflow can map over (never more than max_shards).

Without a columnar index a shard is a few whole WARCs. With one (the default for Common
Crawl runs), DuckDB selects the HTML records in the wanted languages and a shard is byte
ranges of those records only, which skips the ~95% of a crawl that is not Chinese.

A crawl's Chinese share is ~150M index records. DuckDB sorts them under a memory cap
(spilling to disk past it), and each (shard, WARC) run of sorted records becomes a range
spec and a language map through Arrow's vectorised kernels: planning a whole crawl costs
minutes and bounded memory (`make bench-plan`).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import tempfile
from collections.abc import Iterable, Iterator

from danqing import io, paths, warcsource
from danqing.config import PipelineConfig, SourceConfig
from danqing.stages.discover import source_base

RANGES_MARK = "#ranges="  # warcsource's spec syntax: <uri>#ranges=<offset>-<length>,...
BATCH_ROWS = 200_000


def plan(cfg: PipelineConfig, crawl: str, index_uri: str) -> list[int]:
    """Write the crawl's shard plan and return the shard numbers (a small XCom)."""
    warcs = read_paths(index_uri, cfg)
    if cfg.source.max_warcs:
        warcs = warcs[: cfg.source.max_warcs]
    base = source_base(cfg)
    if uses_index(cfg):
        with _index(cfg, crawl, warcs if cfg.source.max_warcs else None) as (n, batches):
            count = write_plan(cfg, crawl, range_shards(batches, n, base, cfg.source))
    else:
        chunks = split(warcs, cfg.source.warcs_per_shard, cfg.source.max_shards)
        count = write_plan(cfg, crawl, (([base + p for p in chunk], "{}") for chunk in chunks))
    return list(range(count))


def uses_index(cfg: PipelineConfig) -> bool:
    """Byte ranges from the columnar index for Common Crawl runs; whole WARCs for the sample, or when
    source.index_url is empty."""
    return cfg.source.kind == "commoncrawl" and bool(cfg.source.index_url)


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


def range_shards(batches: Iterable, n: int, base: str, src: SourceConfig) -> Iterator[tuple[list[str], str]]:
    """Shards of balanced size from record batches sorted by (warc_filename, offset): per shard, one range
    spec per WARC, and each record's languages as JSON object text ({warc: {offset: languages}})."""
    shard, inputs, languages = 0, [], []
    for run_shard, run in _runs(batches, n, shard_count(n, src.ranges_per_shard, src.max_shards)):
        if run_shard != shard:
            yield inputs, "{" + ",".join(languages) + "}"
            shard, inputs, languages = run_shard, [], []
        name = run.column(0)[0].as_py()
        spec, langs = _run_texts(run)
        inputs.append(f"{base}{name}{RANGES_MARK}{spec}")
        languages.append(f"{json.dumps(name)}:{{{langs}}}")
    if inputs:
        yield inputs, "{" + ",".join(languages) + "}"


def _runs(batches: Iterable, n: int, k: int) -> Iterator[tuple[int, object]]:
    """(shard, the records of one WARC in that shard) in order. Record i of n goes to shard s where
    s*n//k <= i < (s+1)*n//k; a run that reaches the end of a batch waits for the next one."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if not k:
        return
    bounds = np.array([i * n // k for i in range(1, k)], dtype=np.int64)
    pending, first = None, 0  # rows held back, and the index of the first row of `table` in the plan
    for batch in batches:
        table = pa.Table.from_batches([batch])
        if pending is not None:
            table = pa.concat_tables([pending, table])
        table = table.combine_chunks()
        shards = np.searchsorted(bounds, np.arange(first, first + table.num_rows), side="right")
        names = table.column(0)
        cuts = np.flatnonzero((shards[1:] != shards[:-1])
                              | pc.not_equal(names.slice(1), names.slice(0, len(names) - 1)).to_numpy(
                                  zero_copy_only=False)) + 1
        starts = [0, *cuts.tolist()]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            yield int(shards[a]), table.slice(a, b - a)
        pending, first = table.slice(starts[-1]), first + starts[-1]
    if pending is not None and pending.num_rows:
        shards = np.searchsorted(bounds, np.array([first]), side="right")
        yield int(shards[0]), pending


def _run_texts(run) -> tuple[str, str]:
    """One WARC's records -> its coalesced range list "o-n,..." and its '"offset":"languages",...' members."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    offsets = run.column(1).to_numpy()
    ends = offsets + run.column(2).to_numpy()
    # warcsource.coalesce, vectorised: a range starts where a record begins past every earlier one's end
    new = np.ones(len(offsets), dtype=bool)
    new[1:] = offsets[1:] > np.maximum.accumulate(ends)[:-1]
    first = np.flatnonzero(new)
    lo, hi = offsets[first], np.maximum.reduceat(ends, first)
    spec = pc.binary_join_element_wise(pc.cast(pa.array(lo), pa.string()), pc.cast(pa.array(hi - lo), pa.string()),
                                       "-")
    langs = run.column(3).fill_null("").dictionary_encode().combine_chunks()
    quoted = pa.array([json.dumps(v) for v in langs.dictionary.to_pylist()], pa.string())
    members = pc.binary_join_element_wise(pc.cast(run.column(1), pa.string()), pc.take(quoted, langs.indices),
                                          '":')
    return ",".join(spec.to_pylist()), ",".join('"' + m for m in members.to_pylist())


def select_records(cfg: PipelineConfig, crawl: str, warcs: list[str] | None = None
                   ) -> list[tuple[str, int, int, str]]:
    """(warc_filename, offset, length, content_languages) of 200 HTML records in the wanted languages, sorted."""
    with _index(cfg, crawl, warcs) as (_, batches):
        return [row for batch in batches for row in zip(*(batch.column(i).to_pylist() for i in range(4)),
                                                        strict=True)]


_WHERE = """
    FROM read_parquet($table, hive_partitioning = false)
    WHERE fetch_status = 200
      AND list_contains($mimes, content_mime_detected)
      AND len(list_intersect(string_split(content_languages, ','), $langs)) > 0
      {only_warcs}
"""


@contextlib.contextmanager
def _index(cfg: PipelineConfig, crawl: str, warcs: list[str] | None):
    """DuckDB over the crawl's index parquet: (count, iterator of record batches sorted by WARC and offset).

    Two scans (a count, then the sorted records), so no window holds the whole selection in memory;
    the sort spills to a scratch folder past source.index_memory_mb.
    """
    import duckdb

    table = index_files(cfg, crawl)
    scratch = tempfile.TemporaryDirectory(prefix="danqing-plan-")
    con = duckdb.connect(config={"memory_limit": f"{cfg.source.index_memory_mb}MB",
                                 "temp_directory": scratch.name, "preserve_insertion_order": False})
    try:
        if not all(paths.is_local(t) for t in table):
            # DuckDB's own httpfs cannot be installed here; fsspec (s3fs, http) reads for it.
            fs, _ = io.fs_for(table[0], cfg.source.storage_options or cfg.storage_options)
            if "http" in fs.protocol:
                # DuckDB asks for a file's mtime, which fsspec's http filesystem cannot tell: the index never changes
                import datetime as dt

                fs.modified = lambda path: dt.datetime.fromtimestamp(0, dt.UTC)
            con.register_filesystem(fs)
        only = ""
        if warcs is not None:
            import pyarrow as pa

            con.register("wanted", pa.table({"warc_filename": warcs}))
            only = "AND warc_filename IN (SELECT warc_filename FROM wanted)"
        params = {"table": [t.removeprefix("file://") for t in table], "mimes": cfg.source.index_mimes,
                  "langs": cfg.extract.languages}
        where = _WHERE.format(only_warcs=only)
        n = con.execute(f"SELECT count(*) {where}", params).fetchall()[0][0]
        query = (f"SELECT warc_filename, warc_record_offset, warc_record_length, content_languages {where} "
                 "ORDER BY warc_filename, warc_record_offset")
        yield n, iter(con.sql(query, params=params).to_arrow_reader(BATCH_ROWS))
    finally:
        con.close()
        scratch.cleanup()


def index_files(cfg: PipelineConfig, crawl: str) -> list[str]:
    """The parquet files of the crawl's `warc` subset. Object stores and folders are globbed; over
    http(s), where nothing can be listed, Common Crawl's cc-index-table.paths.gz names them."""
    root = cfg.source.index_url.rstrip("/")
    part = f"crawl={crawl}/subset=warc/"
    if root.startswith(("http://", "https://")):
        listing = f"{cfg.source.commoncrawl_url.rstrip('/')}/crawl-data/{crawl}/cc-index-table.paths.gz"
        with warcsource.open_input(listing, cfg) as f:
            lines = gzip.decompress(f.read()).decode().split()
        files = [f"{root}/{line[line.index(part):]}" for line in lines if part in line and line.endswith(".parquet")]
        if not files:
            raise ValueError(f"{listing} names no {part} parquet files")
        return files
    return [f"{root}/{part}*.parquet"]


def write_plan(cfg: PipelineConfig, crawl: str, shards: Iterable[tuple[list[str], str]]) -> int:
    """One file per shard (what a task reads: inputs and record languages), then shards.json
    (inputs only): the plan is complete once it exists.

    shards: (input specs, the languages map as JSON object text). Streams: memory holds a few
    shards, not the plan. Returns the number of shards.
    """
    from concurrent.futures import ThreadPoolExecutor

    so = cfg.storage_options
    count, pending = 0, []
    with io.atomic_write(paths.plan_uri(cfg.root, crawl), "wb", so) as f, ThreadPoolExecutor(16) as pool:
        f.write(b"[")
        for i, (inputs, languages) in enumerate(shards):
            entry = json.dumps({"shard": i, "inputs": inputs})
            # each per-shard write waits on fsync or an upload: overlap them, a bounded number at a time
            text = f'{entry[:-1]}, "languages": {languages}}}'.encode()
            pending.append(pool.submit(_write_bytes, text, paths.plan_shard_uri(cfg.root, crawl, i), so))
            if len(pending) >= 64:
                pending.pop(0).result()
            f.write(f"{',' if i else ''}\n{entry}".encode())
            count = i + 1
        f.write(b"\n]\n")
        for fut in pending:
            fut.result()
    return count


def _write_bytes(data: bytes, uri: str, storage_options: dict) -> None:
    with io.atomic_write(uri, "wb", storage_options) as f:
        f.write(data)
