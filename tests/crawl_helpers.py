"""Lineage of constructed crawls: shards whose stages keep what a normal crawl keeps (with binomial noise),
or one shard that goes wrong in a chosen way. For the alert and crawl page tests."""

from __future__ import annotations

import random

from danqing import lineage

# A normal shard: the share of rows in that each stage keeps, and what the rest is dropped as.
NORMAL = [
    ("extract", 0.75, {"caption_too_short": 0.7, "page_not_chinese": 0.3}),
    ("refine", 0.85, {"caption_boilerplate": 0.6, "lang_japanese": 0.4}),
    ("download", 0.80, {"download_not_found": 0.35, "download_timeout": 0.15, "visual_blurry": 0.4,
                        "robots_disallowed": 0.1}),
    ("score", 0.98, {"image_nsfw": 1.0}),
    ("dedup", 0.92, {"duplicate_exact": 0.7, "duplicate_phash": 0.3}),
    ("align", 0.90, {"similarity_low": 0.6, "similarity_high": 0.4}),
    ("assemble", 1.0, {}),
]


def record_crawl(url: str, crawl: str, shards: int = 6, rows: int = 2000, run_id: str = "scheduled__r1",
                 seed: int = 0, keep: dict | None = None, download_failed: dict | None = None) -> None:
    """Lineage for `shards` shards of `rows` candidate pairs each.

    keep: {(shard, stage): kept ratio} overrides a stage's ratio for one shard.
    download_failed: {shard: share of attempted downloads that fail} (timeouts and 404s).
    """
    rng = random.Random(seed)
    keep, download_failed = keep or {}, download_failed or {}
    for shard in range(shards):
        n_in = rows
        for stage, ratio, reasons in NORMAL:
            ratio = keep.get((shard, stage), ratio)
            if stage == "download" and shard in download_failed:
                share = download_failed[shard]
                failed = round(n_in * share)
                dropped = {"download_timeout": failed // 2, "download_not_found": failed - failed // 2}
                n_out = n_in - failed
            else:
                n_out = sum(rng.random() < ratio for _ in range(n_in))
                dropped = _split(n_in - n_out, reasons)
            errors = {"download_retry": rng.randrange(5, 30)} if stage == "download" else {}
            out = f"/data/{crawl}/{stage}/{shard:05d}.parquet"
            lineage.record(url, crawl=crawl, shard=shard, stage=stage, status="done", run_id=run_id, try_number=1,
                           inputs=[f"/data/{crawl}/in/{shard:05d}"], outputs={out: "0"},
                           count_in=n_in, count_out=n_out, dropped=dropped, errors=errors, seconds=1.0,
                           code_version="0", config_hash="h")
            n_in = n_out


def _split(total: int, shares: dict[str, float]) -> dict[str, int]:
    out, left = {}, total
    for i, (reason, share) in enumerate(shares.items()):
        n = left if i == len(shares) - 1 else round(total * share)
        out[reason] = min(n, left)
        left -= out[reason]
    return {k: v for k, v in out.items() if v}
