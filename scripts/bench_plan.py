"""`make bench-plan`: plan a whole crawl both ways; print each plan's time, peak memory and sizes.

- whole WARCs: the real CC-MAIN-2025-47 warc.paths.gz (tests/fixtures/commoncrawl, 100,000 WARCs);
- byte ranges: a synthetic columnar index the size of one crawl's Chinese share (150M selected
  records over the same 100,000 WARCs, plus a tenth more the plan must skip), written with DuckDB
  under /tmp (never committed; kept for the next run, `--fresh` rebuilds it).

Each plan runs in a child process, so the peak RSS printed is the plan's own (DuckDB included).

    python scripts/bench_plan.py [--records 150000000] [--memory-mb 2048] [--fresh]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CRAWL = "CC-MAIN-2025-47"
PATHS = REPO / "tests" / "fixtures" / "commoncrawl" / f"{CRAWL}.warc.paths.gz"
WORK = Path(os.environ.get("DANQING_BENCH_PLAN_DIR", "/tmp/danqing-bench-plan"))
# extract, refine, download, score, dedup_partition, dedup, align, assemble; plus SINGLE_TASKS: fetch_index,
# plan, dedup_plan, dedup_groups, dedup_merge, publish, approve_release, upload; and dedup_pairs, one per group
# of cells (set by the crawl's kept images, not by the plan)
MAPPED_STAGES = 8
SINGLE_TASKS = 8


def make_index(records: int, memory_mb: int) -> Path:
    """The synthetic index: `records` zho HTML records (and records/9 English ones) spread over the
    real 100,000 WARCs, in stride order (the real index is sorted by URL, not by WARC)."""
    import duckdb

    table = WORK / f"index-{records}"
    part = table / f"crawl={CRAWL}" / "subset=warc"
    if (table / "DONE").exists():
        return table
    shutil.rmtree(table, ignore_errors=True)
    part.parent.mkdir(parents=True)
    import gzip

    warcs = gzip.decompress(PATHS.read_bytes()).decode().split()
    total = records + records // 9
    t0 = time.monotonic()
    con = duckdb.connect(config={"memory_limit": f"{memory_mb}MB", "temp_directory": str(WORK / "duckdb-tmp")})
    import pyarrow as pa

    con.register("warcs", pa.table({"idx": range(len(warcs)), "name": warcs}))
    # slot j of a WARC is 60,000 bytes; a record takes up to 41,000 of it, so records never overlap
    con.execute(f"""
        COPY (
          SELECT w.name AS warc_filename,
                 (t.i // {len(warcs)}) * 60000 + (hash(t.i) % 19000)::BIGINT AS warc_record_offset,
                 (1000 + hash(t.i * 3) % 40000)::INTEGER AS warc_record_length,
                 CASE WHEN t.i % 10 = 0 THEN 'eng' WHEN t.i % 10 = 1 THEN 'zho,eng' ELSE 'zho' END
                   AS content_languages,
                 200::SMALLINT AS fetch_status, 'text/html' AS content_mime_detected
          FROM range({total}) t(i) JOIN warcs w ON w.idx = (t.i * 7919) % {len(warcs)}
        ) TO '{part}' (FORMAT parquet, FILE_SIZE_BYTES '512MB')""")
    con.close()
    (table / "DONE").write_text(f"{total}\n")
    size = sum(f.stat().st_size for f in part.rglob("*.parquet"))
    print(f"synthetic index: {total:,} rows ({records:,} selected) over {len(warcs):,} WARCs, "
          f"{size / 2**30:.1f} GiB of parquet, written in {time.monotonic() - t0:.0f} s", flush=True)
    return table


def child(mode: str, table: str, out: str, memory_mb: int) -> None:
    """One plan in this process; prints its figures as JSON."""
    sys.path.insert(0, str(REPO))
    from danqing import paths
    from danqing.config import PipelineConfig
    from danqing.stages import plan

    source = {"kind": "commoncrawl", "commoncrawl_url": "https://data.commoncrawl.org/",
              "index_url": table if mode == "ranges" else "", "index_memory_mb": memory_mb}
    cfg = PipelineConfig.from_overrides({"root": out, "source": source})
    t0 = time.monotonic()
    shards = plan.plan(cfg, CRAWL, str(PATHS))
    seconds = time.monotonic() - t0
    xcom = [{"shard": s} for s in shards]  # what operators.stage.plan returns
    sizes = [os.path.getsize(paths.plan_shard_uri(out, CRAWL, s)) for s in (0, len(shards) // 2, len(shards) - 1)]
    first = plan.shard_inputs(cfg, CRAWL, 0)
    print(json.dumps({
        "mode": mode, "seconds": seconds, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "shards": len(shards), "xcom_bytes": len(json.dumps(xcom)),
        "plan_mb": sum(f.stat().st_size for f in Path(paths.index_dir(out, CRAWL)).rglob("*.json")) / 2**20,
        "shard_file_kb": [round(s / 1024) for s in sizes], "inputs_of_shard_0": len(first),
    }), flush=True)


def run_child(mode: str, table: Path | None, memory_mb: int) -> dict:
    out = WORK / f"plan-{mode}"
    shutil.rmtree(out, ignore_errors=True)
    res = subprocess.run([sys.executable, __file__, "--child", mode, str(table or ""), str(out), str(memory_mb)],
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    shutil.rmtree(out, ignore_errors=True)
    if res.returncode:
        raise SystemExit(f"{mode} plan failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=150_000_000)
    ap.add_argument("--memory-mb", type=int, default=2048, help="source.index_memory_mb (DuckDB's cap)")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        mode, table, out, memory_mb = args.child
        return child(mode, table, out, int(memory_mb))
    WORK.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(WORK / f"index-{args.records}", ignore_errors=True)
    table = make_index(args.records, args.memory_mb)
    print(f"{'mode':<12}{'shards':>8}{'time':>9}{'peak RSS':>10}{'plan XCom':>11}{'plan files':>12}  per shard")
    for mode in ("whole-warc", "ranges"):
        r = run_child(mode, table if mode == "ranges" else None, args.memory_mb)
        unit = "WARCs" if mode == "whole-warc" else "WARC range specs"
        print(f"{mode:<12}{r['shards']:>8,}{r['seconds']:>8.1f}s{r['peak_mb']:>8.0f}MB{r['xcom_bytes'] / 1024:>9.0f}KB"
              f"{r['plan_mb']:>10.0f}MB  {r['inputs_of_shard_0']} {unit} in shard 0; files "
              f"{'/'.join(str(k) for k in r['shard_file_kb'])} KB (first/middle/last)", flush=True)
        tis = r["shards"] * MAPPED_STAGES + SINGLE_TASKS
        print(f"{'':<12}one DAG run: {r['shards']:,} map indices per mapped stage, {tis:,} task instances "
              "and one per group of cells")


if __name__ == "__main__":
    main()
