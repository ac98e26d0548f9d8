"""A small crawl as the publish stage finds it: assemble and align shards, lineage for its funnel."""

from __future__ import annotations

import io as _io
import json

from PIL import Image

from danqing import io, lineage, paths, tario

MODEL = "danqing-tiny:random-seed0"


def jpeg(seed: int, width: int, height: int) -> bytes:
    out = _io.BytesIO()
    Image.new("RGB", (width, height), ((seed * 37) % 256, (seed * 91) % 256, (seed * 53) % 256)).save(out, "JPEG")
    return out.getvalue()


def fake_crawl(cfg, crawl: str, shards: int = 2, rows: int = 5, variant: str = "") -> list[str]:
    """Assembled shards of `crawl` under cfg.root (captions differ by `variant`); returns their URIs."""
    uris = []
    for shard in range(shards):
        kept = []
        for i in range(rows):
            n = shard * 100 + i
            kept.append({"id": f"{crawl[-7:]}-{shard}-{i}", "url": f"https://img.example.cn/{n}.jpg",
                         "caption": f"{variant}一只小猫坐在窗台上看着外面的风景第{n}张", "alt_text": f"小猫 {n}",
                         "page_url": f"https://www.example.cn/p/{n}.html", "width": 200 + 10 * i, "height": 150 + 5 * i,
                         "sha256": f"{n:064x}", "phash": f"{n:016x}", "similarity": -0.05 + 0.01 * i, "model": MODEL,
                         "crawl": crawl, "warc_filename": f"crawl-data/{crawl}/w{shard}.warc.gz",
                         "warc_record_offset": 1000 * i, "warc_record_length": 900})
        low = dict(kept[0], id=f"{crawl[-7:]}-{shard}-low", similarity=-0.5)
        io.write_parquet([{**r, "drop_reason": ""} for r in kept] + [{**low, "drop_reason": "similarity_low"}],
                         paths.shard_uri(cfg.root, crawl, "align", shard))
        uri = paths.shard_uri(cfg.root, crawl, "assemble", shard)
        io.write_parquet([{**r, "drop_reason": ""} for r in kept], uri)
        members = []
        for j, r in enumerate(kept):
            members += [(f"{r['id']}.jpg", jpeg(shard * 10 + j, r["width"], r["height"])),
                        (f"{r['id']}.txt", r["caption"].encode()),
                        (f"{r['id']}.json", json.dumps(r, ensure_ascii=False, sort_keys=True).encode())]
        tario.write_tar(uri.removesuffix(".parquet") + ".tar", members)
        for stage in paths.STAGES[:-1]:
            dropped = {"similarity_low": 1} if stage == "align" else {"alt_too_short": 3} if stage == "extract" else {}
            lineage.record(cfg.lineage, crawl=crawl, shard=shard, stage=stage, status="done", run_id="test",
                           try_number=1, inputs=[], outputs={}, count_in=rows + sum(dropped.values()),
                           count_out=rows, dropped=dropped, errors={}, seconds=0.0, code_version="test",
                           config_hash=cfg.hash())
        uris.append(uri)
    return uris
