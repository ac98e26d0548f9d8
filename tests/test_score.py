"""Scoring: the drop table, a real shard through the tiny open_clip model, determinism, NSFW floor,
and the input path: image offsets from the download parquet, scaled JPEG decode, uint8 pixels, thread sharing."""

from __future__ import annotations

import io as _io

import numpy as np
import pytest
import torch
from PIL import Image
from score_helpers import examples, write_download_shard

from danqing import io
from danqing.config import PipelineConfig, ScoreConfig
from danqing.embed import model as embed_model
from danqing.shard import run_local, run_shard
from danqing.stages import score

CRAWL = "CC-MAIN-2099-01"


@pytest.mark.parametrize(("readable", "nsfw", "expected"), [
    (True, 0.1, None),
    (True, 0.9, None),  # at the threshold: kept
    (True, 0.91, score.IMAGE_NSFW),
    (False, 0.0, score.IMAGE_UNREADABLE),
])
def test_check(readable, nsfw, expected):
    assert score.check(readable, nsfw, ScoreConfig()) == expected


def _pairs(n: int, start: int = 0):
    return [(name.split(".")[0], caption, data) for name, caption, data in examples(n, start)]


def _load(uri: str) -> np.ndarray:
    return np.load(uri)


def test_shard_scores_every_kept_row(cfg):
    pairs = _pairs(12)
    uri = write_download_shard(cfg, CRAWL, 3, pairs, dropped=2, corrupt={pairs[4][0]}, missing={pairs[5][0]})
    summary = run_shard("score", CRAWL, 3, [uri], cfg)
    assert (summary["total"], summary["kept"]) == (10, 8)
    table = io.read_parquet(summary["uri"])
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == [p[0] for p in pairs[2:]]
    assert [r["drop_reason"] for r in rows[2:4]] == [score.IMAGE_UNREADABLE] * 2
    assert {r["model"] for r in rows} == {"danqing-tiny:random-seed0"}
    assert [r["emb_row"] for r in rows] == list(range(10))
    img = _load(summary["uri"].removesuffix(".parquet") + "_img.npy")
    txt = _load(summary["uri"].removesuffix(".parquet") + "_txt.npy")
    assert img.dtype == np.float16 and img.shape == txt.shape == (10, 64)
    ok = np.array([r["drop_reason"] == "" for r in rows])
    assert np.allclose(np.linalg.norm(img[ok].astype(np.float32), axis=1), 1, atol=1e-2)
    assert not img[~ok].any()  # unreadable images carry no embedding
    sims = np.array([r["similarity"] for r in rows])
    assert np.allclose(sims, np.sum(img.astype(np.float32) * txt.astype(np.float32), axis=1), atol=1e-2)
    assert all(0.0 <= r["nsfw_score"] <= 1.0 for r in rows)
    stats = io.read_json(summary["uri"].removesuffix(".parquet") + "_stats.json")["stats"]
    assert stats["dropped"] == {score.IMAGE_UNREADABLE: 2} and stats["errors"] == {score.IMAGE_UNREADABLE: 2}


def test_deterministic_across_runs_and_workers(tmp_path):
    pairs = _pairs(10, start=10)
    outs = []
    for i, workers in enumerate([0, 0, 2]):
        cfg = PipelineConfig.from_overrides({"root": str(tmp_path / f"r{i}"),
                                             "score": {"workers": workers, "batch_size": 4}})
        uri = write_download_shard(cfg, CRAWL, 0, pairs)
        run_local("score", [uri], str(tmp_path / f"out{i}"), cfg)
        outs.append(tmp_path / f"out{i}")
    tables = [io.read_parquet(f"{o}.parquet") for o in outs]
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])
    embs = [(_load(f"{o}_img.npy"), _load(f"{o}_txt.npy")) for o in outs]
    assert all(np.array_equal(a, b) for e in embs[1:] for a, b in zip(embs[0], e, strict=True))


def test_nsfw_floor_drops_the_highest_risk(cfg):
    uri = write_download_shard(cfg, CRAWL, 0, _pairs(8))
    scores = [r["nsfw_score"] for r in io.read_parquet(run_shard("score", CRAWL, 0, [uri], cfg)["uri"]).to_pylist()]
    floor = float(np.median(scores))
    strict = cfg.model_copy(update={"score": cfg.score.model_copy(update={"nsfw_max_prob": floor})})
    out = run_local("score", [uri], str(cfg.root) + "/strict", strict)
    rows = io.read_parquet(out["uri"]).to_pylist()
    assert [r["drop_reason"] == score.IMAGE_NSFW for r in rows] == [s > floor for s in scores]
    assert 0 < out["kept"] < 8


def test_empty_shard(cfg):
    uri = write_download_shard(cfg, CRAWL, 0, _pairs(2), dropped=2)
    summary = run_shard("score", CRAWL, 0, [uri], cfg)
    assert (summary["total"], summary["kept"]) == (0, 0)
    assert _load(summary["uri"].removesuffix(".parquet") + "_img.npy").shape == (0, 64)


def test_a_download_shard_without_image_offsets_asks_for_a_rerun(cfg):
    uri = write_download_shard(cfg, CRAWL, 0, _pairs(3))
    io.write_parquet(io.read_parquet(uri).drop_columns(["tar_offset", "tar_size"]), uri)  # an older download stage
    with pytest.raises(ValueError, match=r"no tar_offset/tar_size columns.*Rerun the download.*00000_stats\.json"):
        run_shard("score", CRAWL, 0, [uri], cfg)


def test_xcom_file(tmp_path):
    path = tmp_path / "xcom" / "return.json"
    score.write_xcom({"shard": 1, "kept": 3}, str(path))
    assert io.read_json(str(path)) == {"shard": 1, "kept": 3}


def test_decode_shrinks_jpegs_only_down_to_the_model_size():
    big = max(examples(), key=lambda e: len(e[2]))[2]
    with Image.open(_io.BytesIO(big)) as img:
        full = img.size
    assert score._decode(big).size == full
    small = score._decode(big, (64, 64)).size
    assert min(small) >= 64 and small[0] < full[0] / 4  # 1/8 scale here: the fixture is >= 512 px a side
    png = _io.BytesIO()
    Image.new("RGB", full).save(png, "PNG")
    assert score._decode(png.getvalue(), (64, 64)).size == full  # only JPEG has a scaled decode


def test_uint8_pixels_embed_as_the_float_preprocess_does():
    embedder = embed_model.load(ScoreConfig())
    images = [score._decode(data) for _, _, data in examples(4)]
    floats = torch.stack([embedder.preprocess(i) for i in images])
    pixels = torch.stack([embedder.pixels(i) for i in images])
    assert pixels.dtype == torch.uint8
    np.testing.assert_allclose(embedder.encode_images(pixels), embedder.encode_images(floats), atol=1e-6)
