"""Build small download-stage shards (parquet + WebDataset tar) from the DanQing fixture images."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import imagehash
from PIL import Image

from danqing import io as dio
from danqing import paths, tario

EXAMPLES = Path(__file__).parent / "fixtures" / "danqing_examples"


def examples(n: int | None = None, start: int = 0) -> list[tuple[str, str, bytes]]:
    """(file name, caption, jpeg bytes) of fixture pairs, in file order."""
    lines = (EXAMPLES / "danqing_examples_captions.tsv").read_text(encoding="utf-8").splitlines()
    out = []
    for line in lines[start:]:
        name, caption = line.split("\t", 1)
        out.append((name, caption, (EXAMPLES / "images" / name).read_bytes()))
        if n is not None and len(out) == n:
            break
    return out


def row(key: str, caption: str, data: bytes, crawl: str = "test") -> dict:
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        phash = str(imagehash.phash(img))
    return {"id": key, "url": f"http://127.0.0.1/{crawl}/{key}.jpg", "caption": caption, "alt_text": caption,
            "page_url": f"http://127.0.0.1/{crawl}/page.html", "width": width, "height": height,
            "sha256": hashlib.sha256(data).hexdigest(), "phash": phash,
            "warc_filename": f"crawl-data/{crawl}/x.warc.gz", "warc_record_offset": 0,
            "warc_record_length": len(data), "drop_reason": ""}


def write_download_shard(cfg, crawl: str, shard: int, pairs: list[tuple[str, str, bytes]],
                         dropped: int = 0, corrupt: set[str] = frozenset(), missing: set[str] = frozenset()) -> str:
    """A download-stage parquet + tar in the pipeline layout; returns the parquet URI.

    The first `dropped` pairs are rows the download stage dropped (no image in the tar);
    ids in `corrupt` get garbage bytes in the tar, ids in `missing` no member at all.
    """
    rows, members = [], []
    for i, (key, caption, data) in enumerate(pairs):
        r = row(key, caption, data, crawl)
        if i < dropped:
            r["drop_reason"] = "download_http_404"
        rows.append(r)
        if i < dropped or key in missing:
            continue
        members += [(f"{key}.jpg", b"not a jpeg" if key in corrupt else data), (f"{key}.txt", caption.encode()),
                    (f"{key}.json", json.dumps(r, ensure_ascii=False).encode())]
    uri = paths.shard_uri(cfg.root, crawl, "download", shard)
    spans = tario.write_tar(uri.removesuffix(".parquet") + ".tar", members)
    for r in rows:  # where the download stage records each image's bytes
        r["tar_offset"], r["tar_size"] = spans.get(f"{r['id']}.jpg", (None, None))
    dio.write_parquet(rows, uri)
    return uri
