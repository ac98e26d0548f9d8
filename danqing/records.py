"""The record shape that flows between stages, and the id that follows a sample to release."""

from __future__ import annotations

import hashlib

import pyarrow as pa

# Columns every candidate pair carries from extraction to release; each stage adds its own.
PAIR_SCHEMA = pa.schema([
    ("id", pa.string()),
    ("page_url", pa.string()),
    ("url", pa.string()),
    ("alt_text", pa.string()),
    ("page_language", pa.string()),
    ("charset", pa.string()),
    ("warc_filename", pa.string()),
    ("warc_record_offset", pa.int64()),
    ("warc_record_length", pa.int64()),
    ("drop_reason", pa.string()),
])

# Where a row's image lies in its download shard's tar: the offset of the member's data and its size,
# null where the row has no image. Written by the download stage, read by scoring.
IMAGE_SPAN_COLUMNS = [("tar_offset", pa.int64()), ("tar_size", pa.int64())]

KEPT = ""  # drop_reason of a kept row
# Columns with a value of their own on (nearly) every row: Parquet dictionary encoding only costs time there.
ROW_UNIQUE_COLUMNS = frozenset({"id", "url", "alt_text"})


def sample_id(warc_filename: str, offset: int, url: str, alt_text: str) -> str:
    """Stable id: the same WARC record, image and alt give the same id on every rerun."""
    return sample_ids(warc_filename, offset, [url], [alt_text])[0]


def sample_ids(warc_filename: str, offset: int, urls: list[str], alt_texts: list[str]) -> list[str]:
    """sample_id of each (url, alt) of one WARC record: SHA-1 of "file<TAB>offset<TAB>url<TAB>alt", 16 hex digits."""
    record = hashlib.sha1(f"{warc_filename}\t{offset}\t".encode())  # hashed once per record, copied per pair
    ids = []
    for url, alt_text in zip(urls, alt_texts, strict=True):
        h = record.copy()
        h.update(f"{url}\t{alt_text}".encode())
        ids.append(h.hexdigest()[:16])
    return ids


def kept(table: pa.Table) -> pa.Table:
    """Rows this stage kept, without its drop_reason so the next stage can set its own.

    A table with no drop_reason (a list of pairs from elsewhere) is kept whole.
    """
    import pyarrow.compute as pc

    if "drop_reason" not in table.column_names:
        return table
    rows = table.filter(pc.equal(table["drop_reason"], KEPT))
    return rows.drop_columns(["drop_reason"])
