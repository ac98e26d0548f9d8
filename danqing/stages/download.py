"""Stage 3: fetch every kept pair's image, decode it safely, apply the visual filters, store a tar.

Architecture (danqing/download/): engine (event loops: one, or one per process on a big shard),
fetcher (async HTTP, limits, retries), hosts (per-host budget, pauses, breaker), coord (the store
workers share them through), dns (resolver cache), guard (SSRF), robots (opt-outs), decode (sniff,
bomb guard, resize, hashes), visual (the visual filters decode applies), pool + worker (decode
threads, or processes fed over pipes by the event loop; frames: what goes over the pipes), cache (resume).
Each distinct URL is fetched once per shard; rows sharing it share the result.
"""

from __future__ import annotations

import json
from collections import defaultdict

import pyarrow as pa

from danqing import tario
from danqing.download import decode as dec
from danqing.download import engine
from danqing.download.cache import ResultCache
from danqing.records import IMAGE_SPAN_COLUMNS
from danqing.shard import ShardJob, kept_rows, with_reasons
from danqing.stats import StageStats

DOWNLOAD_DUPLICATE_ID = "download_duplicate_id"

# Columns this stage adds, in order (img2dataset's names where they exist), then IMAGE_SPAN_COLUMNS:
# where each row's image lies in the tar, known only once it is written (so not in its .json).
COLUMNS = [
    ("status", pa.string()), ("error_class", pa.string()), ("http_status", pa.int32()),
    ("attempts", pa.int32()), ("bytes", pa.int64()), ("format", pa.string()),
    ("width", pa.int32()), ("height", pa.int32()),  # the source image, after EXIF orientation
    ("stored_width", pa.int32()), ("stored_height", pa.int32()),  # the JPEG in the tar
    ("sha256", pa.string()), ("phash", pa.string()),  # of the stored JPEG
    ("pixel_std", pa.float64()), ("laplacian_var", pa.float64()), ("entropy_bits", pa.float64()),
]
# How this run went, not what the image is: kept out of the tar so reruns give identical bytes.
_RUN_COLUMNS = ("status", "error_class", "attempts")


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    """Every upstream row, in order, with its download status, sizes, hashes and drop_reason."""
    cfg = job.cfg
    rows = kept_rows(job.inputs[0], cfg, needs=("id", "url"))
    settings = dec.Settings.of(cfg)
    # Removed by shard.py once the parquet, the tar and the stats are written: only a failed run leaves it.
    cache = ResultCache(job.scratch("_cache"), settings.fingerprint(), cfg.storage_options)
    cached = cache.load() if cfg.download.resume != "off" else {}
    urls = [u or "" for u in rows["url"].to_pylist()]
    distinct = set(urls)
    todo = [u for u in distinct if not _reusable(cached.get(u), cfg.download.resume)]
    if len(distinct) > len(todo):
        stats.error("download_cached", len(distinct) - len(todo))
    fresh = engine.fetch(todo, cfg.download, settings, stats, cache, job.crawl) if todo else {}
    results = {**cached, **fresh}

    records = rows.to_pylist()
    seen: set[str] = set()
    reasons, extra, members = [], defaultdict(list), []
    for rec in records:
        r = results[rec["url"] or ""]
        reason = r["reason"]
        if rec["id"] in seen:
            reason = DOWNLOAD_DUPLICATE_ID
        seen.add(rec["id"])
        reasons.append(reason)
        for name, _ in COLUMNS:
            extra[name].append(r.get(name))
        extra["status"][-1] = _status(r["reason"])
        if not reason:
            members += _members(rec, r)
    spans = tario.write_tar(job.side(".tar"), sorted(members), cfg.storage_options)
    for rec, reason in zip(records, reasons, strict=True):
        span = (None, None) if reason else spans[f"{rec['id']}.jpg"]
        for (name, _), value in zip(IMAGE_SPAN_COLUMNS, span, strict=True):
            extra[name].append(value)
    columns = COLUMNS + IMAGE_SPAN_COLUMNS
    table = rows.drop_columns([name for name, _ in columns if name in rows.column_names])
    for name, typ in columns:
        table = table.append_column(name, pa.array(extra[name], typ))
    return with_reasons(table, reasons)


def _reusable(r: dict | None, mode: str) -> bool:
    """May a cached result stand? transient: all but transient failures; failed: successes and visual verdicts."""
    if r is None or mode == "off":
        return False
    if mode == "failed":
        return r["reason"] == "" or r["reason"].startswith("visual_")
    return r["error_class"] != "transient"


def _status(reason: str) -> str:
    if not reason:
        return "success"
    if reason.startswith("visual_"):
        return "filtered"
    if reason.startswith("robots_"):
        return "opted_out"
    return "failed"


def _members(rec: dict, r: dict) -> list[tuple[str, bytes]]:
    key = rec["id"]
    caption = rec.get("caption") or rec.get("alt_text") or ""
    meta = {"key": key, "url": rec["url"], "caption": caption, "page_url": rec.get("page_url"),
            **{name: r.get(name) for name, _ in COLUMNS if name not in _RUN_COLUMNS}}
    return [(f"{key}.jpg", r["jpg"]), (f"{key}.txt", caption.encode()),
            (f"{key}.json", json.dumps(meta, ensure_ascii=False, sort_keys=True).encode())]
