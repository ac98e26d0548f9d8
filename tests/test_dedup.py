"""Dedup: union-find groups, centroid keeper, exact/phash/embedding/released levels, crawl run."""

from __future__ import annotations

import io as _io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image
from score_helpers import examples, write_download_shard

from danqing import io, lineage, paths
from danqing.config import DedupConfig, PipelineConfig
from danqing.embed import cells
from danqing.embed import index as emb_index
from danqing.embed.unionfind import components, keep_nearest_centroid
from danqing.shard import run_shard
from danqing.stages import dedup

D = 16


def unit(*coords) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[: len(coords)] = coords
    return v / np.linalg.norm(v)


def at_angle(axis: int, other: int, degrees: float) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[axis], v[other] = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return v


def cands(emb, sha=None, phash=None, batch=None) -> dedup.Candidates:
    n = len(emb)
    return dedup.Candidates([f"r{i}" for i in range(n)], sha or [f"s{i}" for i in range(n)],
                            phash or [""] * n, np.asarray(emb, np.float32),
                            np.asarray(batch if batch is not None else [0] * n))


def test_components_chains_and_singletons():
    labels = components(7, np.array([0, 1, 4, 6]), np.array([1, 2, 3, 4]))
    assert labels.tolist() == [0, 0, 0, 3, 3, 5, 3]


def test_components_long_chain_reversed():
    n = 1000
    labels = components(n, np.arange(n - 1)[::-1], np.arange(1, n)[::-1])
    assert (labels == 0).all()


def test_keeper_is_nearest_the_centroid():
    x = np.stack([at_angle(0, 1, 0), at_angle(0, 1, 20), at_angle(0, 1, 40), at_angle(2, 3, 0)])
    keep = keep_nearest_centroid(x, np.array([0, 0, 0, 3]))
    assert keep.tolist() == [False, True, False, True]


def test_decide_chain_exact_phash_singletons():
    emb = [
        at_angle(0, 1, 0), at_angle(0, 1, 20), at_angle(0, 1, 40),  # a chain: 0~1~2 but 0 !~ 2
        at_angle(2, 3, 0),  # exact copy of row 4 (same sha256), kept as the first
        at_angle(2, 3, 0),
        at_angle(4, 5, 0), at_angle(6, 7, 0),  # perceptual near-duplicates (3 bits apart)
        at_angle(8, 9, 0),  # phash 10 bits from row 5: a different image
        at_angle(10, 11, 0),  # singleton
    ]
    sha = ["a", "b", "c", "same", "same", "f", "g", "h", "i"]
    phash = ["", "", "", "", "", "00000000000000ff", "00000000000000f8", "0000000000ffff03", "zz"]
    d = dedup.decide(cands(emb, sha, phash), DedupConfig())
    assert list(d.reasons) == ["duplicate_embedding", "", "duplicate_embedding", "", "duplicate_exact", "",
                               "duplicate_phash", "", ""]
    assert d.duplicate_of == ["r1", "", "r1", "", "r3", "", "r5", "", ""]


def test_threshold_is_strict():
    # cosine distance 1 - cos(25.9 deg) = 0.1004 is past the 0.1 threshold; 25.7 deg (0.0989) is not
    far = dedup.decide(cands([at_angle(0, 1, 0), at_angle(0, 1, 25.9)]), DedupConfig())
    assert list(far.reasons) == ["", ""]
    near = dedup.decide(cands([at_angle(0, 1, 0), at_angle(0, 1, 25.7)]), DedupConfig())
    assert list(near.reasons) == ["", "duplicate_embedding"]  # a tie on the centroid: lowest index stays


def test_cross_batch_after_in_batch():
    emb = [at_angle(0, 1, 0), at_angle(0, 1, 5), at_angle(0, 1, 2), at_angle(2, 3, 0)]
    d = dedup.decide(cands(emb, batch=[0, 0, 1, 1]), DedupConfig())
    # batch 0 keeps one of rows 0/1; batch 1 keeps row 2; across batches one of the survivors goes
    assert sorted(d.reasons) == ["", "", "duplicate_cross_batch", "duplicate_embedding"]
    assert d.reasons[3] == ""


def test_ivf_matches_exact_search():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((3000, 32)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    dups = base[:100] + 0.15 * rng.standard_normal((100, 32)).astype(np.float32) / np.sqrt(32)
    x = np.concatenate([base, dups / np.linalg.norm(dups, axis=1, keepdims=True)])
    exact = emb_index.close_pairs(x, DedupConfig())
    ivf = emb_index.close_pairs(x, DedupConfig(ivf_min_rows=100, ivf_nprobe=8))
    assert len(exact[0]) >= 100
    assert set(zip(*exact, strict=True)) == set(zip(*ivf, strict=True))


def test_released_match():
    released = emb_index.Released(["old1", "old2"], ["x", "y"], np.stack([at_angle(0, 1, 0), at_angle(2, 3, 0)]))
    d = dedup.decide(cands([at_angle(0, 1, 3), at_angle(4, 5, 0), at_angle(6, 7, 0)], sha=["n", "o", "y"]),
                     DedupConfig(), [released])
    assert list(d.reasons) == ["duplicate_released", "", "duplicate_released"]
    assert d.duplicate_of == ["old1", "", "old2"]


def test_released_index_streams_in_chunks_with_the_same_decisions(cfg):
    """Two released crawls read one row at a time decide exactly as when read whole."""
    rng = np.random.default_rng(3)
    old = rng.standard_normal((40, 32)).astype(np.float32)
    old /= np.linalg.norm(old, axis=1, keepdims=True)
    for crawl, rows in (("CC-MAIN-2024-10", slice(0, 25)), ("CC-MAIN-2024-18", slice(25, 40))):
        ids = [f"{crawl}-{i}" for i in range(rows.start, rows.stop)]
        table = pa.table({"id": ids, "sha256": [f"s{i}" for i in range(rows.start, rows.stop)],
                          "model": ["m"] * len(ids)})
        emb_index.save_released(cfg, crawl, table, old[rows])
    new = rng.standard_normal((30, 32)).astype(np.float32)
    new[:6] = old[[0, 3, 24, 25, 30, 39]] + 0.002 * rng.standard_normal((6, 32)).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    sha = [""] * 30
    sha[10] = "s7"  # a byte-identical re-crawl whose embedding is not close to anything
    whole = dedup.decide(cands(list(new), sha=sha), DedupConfig(), emb_index.iter_released(cfg, "CC-MAIN-2024-22", "m"))
    one_by_one = dedup.decide(cands(list(new), sha=sha), DedupConfig(),
                              emb_index.iter_released(cfg, "CC-MAIN-2024-22", "m", chunk_rows=1))
    assert list(whole.reasons) == list(one_by_one.reasons) and whole.duplicate_of == one_by_one.duplicate_of
    assert whole.duplicate_of[:6] == [f"CC-MAIN-2024-10-{i}" for i in (0, 3, 24)] + [
        f"CC-MAIN-2024-18-{i}" for i in (25, 30, 39)]
    assert whole.duplicate_of[10] == "CC-MAIN-2024-10-7"
    assert sum(r == dedup.DUPLICATE_RELEASED for r in whole.reasons) == 7
    assert list(emb_index.iter_released(cfg, "CC-MAIN-2024-22", "other-model")) == []
    own_skipped = emb_index.iter_released(cfg, "CC-MAIN-2024-10", "m", chunk_rows=10)
    assert [len(c.ids) for c in own_skipped] == [10, 5]


def test_shard_of():
    assert paths.shard_of("s3://b/c/score/00003.parquet") == 3
    with pytest.raises(ValueError):
        paths.shard_of("s3://b/c/score/x.parquet")


def _reencode(data: bytes) -> bytes:
    buf = _io.BytesIO()
    Image.open(_io.BytesIO(data)).convert("RGB").save(buf, "JPEG", quality=60)
    return buf.getvalue()


def _score(cfg: PipelineConfig, crawl: str, shard: int, pairs) -> str:
    return run_shard("score", crawl, shard, [write_download_shard(cfg, crawl, shard, pairs)], cfg)["uri"]


def test_crawl_run_then_recrawl_adds_only_new(cfg):
    pairs = [(n.split(".")[0], c, d) for n, c, d in examples(12)]
    a0 = _score(cfg, "CC-MAIN-2024-10", 0, pairs[:6])
    # shard 1 repeats image 0 byte for byte (new id) and image 1 re-encoded
    extra = [("copy0", "同一张图", pairs[0][2]), ("re1", "再编码", _reencode(pairs[1][2]))]
    a1 = _score(cfg, "CC-MAIN-2024-10", 1, pairs[6:] + extra)
    summaries = dedup.run(cfg, "CC-MAIN-2024-10", [a1, a0], lineage.Attempt("run-a", 1))
    assert [(s["shard"], s["total"], s["kept"]) for s in summaries] == [(0, 6, 6), (1, 8, 6)]
    out = io.read_parquet(paths.shard_uri(cfg.root, "CC-MAIN-2024-10", "dedup", 1)).to_pylist()
    by_id = {r["id"]: r for r in out}
    assert (by_id["copy0"]["drop_reason"], by_id["copy0"]["duplicate_of"]) == ("duplicate_exact", pairs[0][0])
    assert by_id["re1"]["drop_reason"] in ("duplicate_phash", "duplicate_embedding", "duplicate_cross_batch")
    assert sum(r["drop_reason"] == "" for r in out) == 6
    runs = [r for r in lineage.latest(cfg.lineage, "CC-MAIN-2024-10") if r["stage"] == "dedup"]
    assert sorted(r["shard"] for r in runs) == [0, 1] and all(r["run_id"] == "run-a" for r in runs)
    # a second run skips every shard
    assert all(s["skipped"] for s in dedup.run(cfg, "CC-MAIN-2024-10", [a0, a1]))

    a_dedup = [paths.shard_uri(cfg.root, "CC-MAIN-2024-10", "dedup", s) for s in (0, 1)]
    released = dedup.add_release(cfg, "CC-MAIN-2024-10", a_dedup)
    assert released["images"] == 12

    # the next crawl re-crawls two released images (one re-encoded) and brings two new ones
    new = [(n.split(".")[0], c, d) for n, c, d in examples(2, start=20)]
    again = [("again", "旧图", pairs[3][2]), ("again2", "旧图再编码", _reencode(pairs[4][2]))]
    b0 = _score(cfg, "CC-MAIN-2024-18", 0, again + new)
    dedup.run(cfg, "CC-MAIN-2024-18", [b0])
    rows = io.read_parquet(paths.shard_uri(cfg.root, "CC-MAIN-2024-18", "dedup", 0)).to_pylist()
    assert [(r["id"], r["drop_reason"], r["duplicate_of"]) for r in rows] == [
        ("again", "duplicate_released", pairs[3][0]), ("again2", "duplicate_released", pairs[4][0]),
        (new[0][0], "", ""), (new[1][0], "", "")]
    # rerunning crawl A does not dedup it against its own release
    cfg2 = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"batch_shards": 1})})
    assert sum(s["kept"] for s in dedup.run(cfg2, "CC-MAIN-2024-10", [a0, a1])) == 12


def test_cell_join_finds_near_pairs_in_random_vectors():
    """Soft-assigned cell join: planted pairs up to the threshold found, nothing else, as exact search."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6000, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base, copy = np.arange(0, 400, 2), np.arange(1, 400, 2)
    noise = rng.standard_normal((len(base), 64)).astype(np.float32)
    noise -= np.sum(noise * x[base], axis=1, keepdims=True) * x[base]
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = 1.0 - rng.uniform(0.0, 0.09, len(base))[:, None]
    x[copy] = cos * x[base] + np.sqrt(1 - cos**2) * noise
    exact = emb_index.close_pairs(x, DedupConfig())
    joined = emb_index.close_pairs(x, DedupConfig(ivf_min_rows=1000))
    assert set(zip(*exact, strict=True)) == set(zip(*joined, strict=True))
    assert {(int(a), int(b)) for a, b in zip(base, copy, strict=True)} <= set(zip(*joined, strict=True))
    assert all(a < b for a, b in zip(*joined, strict=True))


def _near(x: np.ndarray, rng, distance: np.ndarray) -> np.ndarray:
    """Unit rows at exactly the given cosine distances from the rows of x."""
    noise = rng.standard_normal(x.shape)
    noise -= np.sum(noise * x, axis=1, keepdims=True) * x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = 1.0 - distance[:, None]
    return (cos * x + np.sqrt(1 - cos**2) * noise).astype(np.float32)


def test_sketch_join_is_exact_at_the_threshold_edge():
    """512-d join through the projection: same pairs as brute force, edge pairs (0.1 +- 2e-4) included."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4000, 512))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dist = np.r_[np.zeros(50), rng.uniform(0, 0.1, 150), np.full(100, 0.0998), np.full(100, 0.1002)]
    base, copy = np.arange(0, 800, 2), np.arange(1, 800, 2)
    rng.shuffle(dist)
    x[copy] = _near(x[base], rng, dist)
    x = x.astype(np.float32)
    sims = x @ x.T
    a, b = np.nonzero(np.triu(sims >= 1.0 - 0.1, k=1))
    joined = emb_index.close_pairs(x, DedupConfig(ivf_min_rows=1000))
    assert set(zip(a, b, strict=True)) == set(zip(*joined, strict=True))
    assert len(a) == 300  # the 0.0998 pairs in, the 0.1002 ones out, no random pair


def test_sketch_bound_holds_for_the_chi_square_tail():
    """Sketch squared distances of pairs at the threshold stay under jl_bound at its quantile."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((20000, 512))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = _near(x, rng, np.full(len(x), 0.1))
    d2 = np.sum((cells.sketch(x.astype(np.float32), 64) - cells.sketch(y, 64)) ** 2, axis=1)
    assert np.mean(d2) == pytest.approx(0.2, rel=0.02)  # unbiased: E chi2(k)/k = 1
    assert np.mean(d2 > cells.jl_bound(0.2, 64, 0.01)) == pytest.approx(0.01, abs=0.003)
    assert d2.max() < cells.jl_bound(0.2, 64, 1e-9)


@pytest.mark.parametrize("max_bits", [0, 1, 2, 4, 7])
def test_phash_pairs_match_brute_force(max_bits):
    rng = np.random.default_rng(max_bits)
    h = rng.integers(0, 2**63, 3000, dtype=np.int64).astype(np.uint64)
    for i in range(0, 600, 2):  # neighbours at 0..8 bits, anywhere in the 64
        flips = rng.choice(64, size=i % 9, replace=False)
        h[i + 1] = h[i] ^ np.uint64(sum(1 << int(f) for f in flips))
    bits = np.unpackbits(h.astype(">u8").view(np.uint8).reshape(-1, 8), axis=1).astype(np.int16)
    dist = bits @ (1 - bits).T + (1 - bits) @ bits.T
    a, b = np.nonzero(np.triu(dist <= max_bits, k=1))
    got = emb_index.phash_pairs(h, max_bits)
    assert set(zip(a, b, strict=True)) == set(zip(*got, strict=True))
    assert len(a) >= 30 * (max_bits + 1)
