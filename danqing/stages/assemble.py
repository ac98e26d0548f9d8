"""Shape one shard's surviving pairs into release rows and a WebDataset tar of their images."""

from __future__ import annotations

import json

import pyarrow as pa

from danqing import paths, tario
from danqing.shard import ShardJob, kept_rows, with_column, with_reasons
from danqing.stats import StageStats

IMAGE_MISSING = "image_missing"

# Release columns, in order (PIPELINE.md stage 5); those an upstream stage did not produce are skipped.
RELEASE_COLUMNS = [
    "id", "url", "caption", "alt_text", "page_url", "width", "height", "sha256", "phash",
    "similarity", "model", "crawl", "warc_filename", "warc_record_offset", "warc_record_length",
]


def process(job: ShardJob, stats: StageStats) -> pa.Table:
    rows = kept_rows(job.inputs[0], job.cfg).sort_by("id")
    rows = with_column(rows, "crawl", pa.array([job.crawl] * rows.num_rows, pa.string()))
    rows = rows.select([c for c in RELEASE_COLUMNS if c in rows.column_names])
    download_tar = paths.shard_uri(job.cfg.root, job.crawl, "download", job.shard, ".tar")
    images = {name.rsplit(".", 1)[0]: data for name, data in tario.read_tar(download_tar, job.cfg.storage_options)
              if name.endswith(".jpg")}
    records = rows.to_pylist()
    reasons = ["" if r["id"] in images else IMAGE_MISSING for r in records]
    tario.write_tar(job.side(".tar"), _members(records, reasons, images), job.cfg.storage_options)
    return with_reasons(rows, reasons)


def _members(records: list[dict], reasons: list[str], images: dict[str, bytes]):
    for record, reason in zip(records, reasons, strict=True):
        if reason:
            continue
        key = record["id"]
        yield f"{key}.jpg", images[key]
        yield f"{key}.txt", record["caption"].encode()
        yield f"{key}.json", json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
