"""Alignment band: the drop table, per-model bands, a shard run, and the calibration histogram."""

from __future__ import annotations

import pytest

from danqing import io, paths
from danqing.config import AlignConfig
from danqing.shard import run_shard
from danqing.stages import align

CRAWL = "CC-MAIN-2099-01"

DQ = AlignConfig().bands["chinese-clip-L14"]


@pytest.mark.parametrize(("similarity", "expected"), [
    (0.10, align.SIMILARITY_LOW),
    (0.2299, align.SIMILARITY_LOW),
    (0.23, None),
    (0.35, None),
    (0.44, None),
    (0.45, align.SIMILARITY_HIGH),
])
def test_check_danqing_band(similarity, expected):
    assert align.check(similarity, *DQ) == expected


def test_band_lookup():
    cfg = AlignConfig(bands={"m": (0.1, 0.2), "m:v2": (0.3, 0.4)})
    assert align.band("m:v1", cfg) == (0.1, 0.2)
    assert align.band("m:v2", cfg) == (0.3, 0.4)
    assert align.band("danqing-tiny:random-seed0", AlignConfig()) == AlignConfig().bands["danqing-tiny"]
    with pytest.raises(ValueError, match="no similarity band"):
        align.band("other:x", cfg)


def _dedup_shard(cfg, crawl: str, shard: int, rows: list[tuple[float, str, str]]) -> str:
    uri = paths.shard_uri(cfg.root, crawl, "dedup", shard)
    io.write_parquet([{"id": f"{shard}-{i}", "similarity": s, "model": m, "drop_reason": r}
                      for i, (s, m, r) in enumerate(rows)], uri)
    return uri


def test_shard_run_and_histogram(cfg):
    tiny = "danqing-tiny:random-seed0"
    lo, hi = AlignConfig().bands["danqing-tiny"]
    uri = _dedup_shard(cfg, CRAWL, 0, [
        (0.3, "chinese-clip-L14", ""), (0.1, "chinese-clip-L14", ""), (0.5, "chinese-clip-L14", ""),
        (0.9, "chinese-clip-L14", "duplicate_exact"),  # dropped upstream: not judged here
        (lo - 0.01, tiny, ""), ((lo + hi) / 2, tiny, ""), (hi + 0.01, tiny, ""),
    ])
    summary = run_shard("align", CRAWL, 0, [uri], cfg)
    assert (summary["total"], summary["kept"]) == (6, 2)
    out = io.read_parquet(summary["uri"])
    assert out["drop_reason"].to_pylist() == ["", "similarity_low", "similarity_high",
                                              "similarity_low", "", "similarity_high"]
    stats = io.read_json(paths.stats_uri(cfg.root, CRAWL, "align", 0))["stats"]
    assert stats["total"] == stats["kept"] + sum(stats["dropped"].values())

    hist = align.histogram(cfg, CRAWL, [summary["uri"]])
    assert hist["crawl"] == CRAWL and set(hist["models"]) == {"chinese-clip-L14", tiny}
    dq = hist["models"]["chinese-clip-L14"]
    assert (dq["pairs"], dq["in_band"], dq["below"], dq["above"]) == (3, 1, 1, 1)
    assert sum(dq["counts"]) == 3 and len(dq["bin_edges"]) == len(dq["counts"]) + 1
    assert dq["band"] == [0.23, 0.44]
    # the align inputs give the same distribution (upstream drops excluded)
    assert align.histogram(cfg, CRAWL, [uri])["models"]["chinese-clip-L14"]["counts"] == dq["counts"]
