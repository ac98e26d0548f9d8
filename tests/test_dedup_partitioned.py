"""Partitioned dedup: the same decisions as the single-process rules, groups that span cells and
shards, and reruns after a kill that give the same files."""

from __future__ import annotations

import io as _io
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pytest
from conftest import ROOT

from danqing import io, paths
from danqing.config import PipelineConfig
from danqing.dedup import partitions, rules
from danqing.embed import cells
from danqing.embed import index as emb_index
from danqing.stages import dedup

CRAWL, OLD = "CC-MAIN-2024-30", "CC-MAIN-2024-22"
MODEL = "bench-model"
DIM = 128
SHARDS = 6


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(x: np.ndarray, rng, distance: np.ndarray) -> np.ndarray:
    """Unit rows at exactly the given cosine distances from the rows of x."""
    noise = rng.standard_normal(x.shape)
    noise -= np.sum(noise * x, axis=1, keepdims=True) * x
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    cos = 1.0 - distance[:, None]
    return cos * x + np.sqrt(1 - cos**2) * noise


def crawl_data(n: int = 3000, seed: int = 0):
    """Rows with duplicates of every kind, the embedding ones at the threshold's edge (0.1 +- 2e-4)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    slots = rng.permutation(n)  # duplicates land in any shard, far apart
    base, copy = slots[:300], slots[300:600]
    dist = np.r_[rng.uniform(0, 0.09, 100), np.full(100, 0.0998), np.full(100, 0.1002)]
    x[copy] = near(x[base], rng, dist)
    # a chain along a great circle, 15 degrees a link (cosine distance 0.034), its ends 90 degrees
    # apart: one group, though its ends sit in different cells
    chain = slots[600:607]
    a, z = x[chain[0]], x[chain[-1]] - (x[chain[-1]] @ x[chain[0]]) * x[chain[0]]
    z /= np.linalg.norm(z)
    x[chain] = [np.cos(t) * a + np.sin(t) * z for t in np.radians(np.arange(0, 91, 15))]
    x = x.astype(np.float16).astype(np.float32)  # as scoring stores them
    sha = [f"sha{i}" for i in range(n)]
    for a, b in zip(slots[610:630], slots[630:650], strict=True):
        sha[b] = sha[a]
        x[b] = x[a]
    phash = [f"{h:016x}" for h in rng.integers(0, 2**63, n, dtype=np.int64)]
    for a, b in zip(slots[650:680], slots[680:710], strict=True):
        flips = rng.choice(64, size=rng.integers(1, 5), replace=False)
        phash[b] = f"{int(phash[a], 16) ^ int(sum(1 << int(f) for f in flips)):016x}"
    return x, sha, phash, {"close": list(zip(base[:200], copy[:200], strict=True)),
                           "far": list(zip(base[200:], copy[200:], strict=True)), "chain": chain}


def write_crawl(cfg: PipelineConfig, x, sha, phash) -> list[str]:
    uris = []
    for shard, rows in enumerate(np.array_split(np.arange(len(x)), SHARDS)):
        uri = paths.shard_uri(cfg.root, CRAWL, "score", shard)
        order = np.arange(len(rows))[::-1]  # emb_row is not the row number
        table = pa.table({"id": [f"img{i}" for i in rows], "emb_row": order, "model": [MODEL] * len(rows),
                          "sha256": [sha[i] for i in rows], "phash": [phash[i] for i in rows],
                          "drop_reason": [""] * len(rows)})
        io.write_parquet(table, uri)
        buf = _io.BytesIO()
        emb = np.empty((len(rows), DIM), np.float16)
        emb[order] = x[rows]
        np.save(buf, emb)
        with io.atomic_write(partitions.score_npy(uri)) as f:
            f.write(buf.getvalue())
        uris.append(uri)
    return uris


def release_old(cfg: PipelineConfig, x: np.ndarray, rng) -> np.ndarray:
    """An earlier crawl's release: copies of 40 crawl rows (close ones, and byte-equal ones) and fill."""
    old = unit(rng.standard_normal((500, DIM)))
    picked = rng.choice(len(x), 40, replace=False)
    old[:20] = near(x[picked[:20]], rng, rng.uniform(0, 0.09, 20))
    sha = [f"old{i}" for i in range(500)]
    for j, i in enumerate(picked[20:], start=20):
        sha[j] = f"sha{i}"
    table = pa.table({"id": [f"old{i}" for i in range(500)], "sha256": sha, "model": [MODEL] * 500})
    emb_index.save_released(cfg, OLD, table, old)
    return picked


@pytest.fixture
def scale_cfg(cfg) -> PipelineConfig:
    """Join mode from 500 rows, small groups: many cells per crawl, many groups, ivf exact for released."""
    return cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={
        "ivf_min_rows": 500, "group_entries": 1000, "chunk_rows": 200, "ivf_nprobe": 4096, "batch_shards": 2})})


def decisions(cfg: PipelineConfig) -> dict[str, tuple[str, str]]:
    out = {}
    for shard in range(SHARDS):
        for r in io.read_parquet(paths.shard_uri(cfg.root, CRAWL, "dedup", shard)).to_pylist():
            out[r["id"]] = (r["drop_reason"], r["duplicate_of"])
    return out


def in_memory(cfg: PipelineConfig, x, sha, phash) -> dict[str, tuple[str, str]]:
    rows = np.array_split(np.arange(len(x)), SHARDS)
    order = np.concatenate(rows)
    batch = np.concatenate([np.full(len(r), s // cfg.dedup.batch_shards) for s, r in enumerate(rows)])
    c = dedup.Candidates([f"img{i}" for i in order], [sha[i] for i in order], [phash[i] for i in order],
                         x[order], batch)
    d = dedup.decide(c, cfg.dedup, emb_index.iter_released(cfg, CRAWL, MODEL))
    return {i: (r, k) for i, r, k in zip(c.ids, d.reasons, d.duplicate_of, strict=True)}


def test_partitioned_equals_single_process_at_the_edge(scale_cfg):
    x, sha, phash, truth = crawl_data()
    picked = release_old(scale_cfg, x, np.random.default_rng(9))
    summaries = dedup.run(scale_cfg, CRAWL, write_crawl(scale_cfg, x, sha, phash))
    plan = partitions.load_plan(scale_cfg, f"{partitions.work_dir(scale_cfg, CRAWL)}/plan.json")
    assert plan["mode"] == "join" and plan["groups"] >= 8  # really partitioned
    assert len(plan["sources"]) == SHARDS + 3  # the released index in slices of 200
    got = decisions(scale_cfg)
    assert got == in_memory(scale_cfg, x, sha, phash)
    assert sum(s["total"] - s["kept"] for s in summaries) == sum(r != "" for r, _ in got.values())

    # against brute force: each just-inside pair is one group, no just-outside pair is (pairs with a
    # released image aside: the released rule comes first and names the released image instead)
    def stays(i: int) -> str:
        reason, keeper = got[f"img{i}"]
        return f"img{i}" if not reason else keeper if keeper.startswith("old") else stays(int(keeper[3:]))

    close = [(a, b) for a, b in truth["close"] if a not in picked and b not in picked]
    assert len(close) > 150 and all(stays(a) == stays(b) for a, b in close)
    far = [(a, b) for a, b in truth["far"] if stays(a) == stays(b)]
    assert far == []
    assert len({stays(i) for i in truth["chain"]}) == 1
    reasons = [r for r, _ in got.values()]
    for reason in (dedup.DUPLICATE_EXACT, dedup.DUPLICATE_PHASH, dedup.DUPLICATE_RELEASED,
                   dedup.DUPLICATE_EMBEDDING, dedup.DUPLICATE_CROSS_BATCH):
        assert reason in reasons, reason
    assert {got[f"img{i}"] for i in picked[20:]} == {(dedup.DUPLICATE_RELEASED, f"old{j}") for j in range(20, 40)}


def test_a_group_split_across_cells_and_shards_is_one_group(scale_cfg):
    # one batch: in-batch groups first would keep one image per batch, breaking the chain on purpose
    scale_cfg = scale_cfg.model_copy(update={"dedup": scale_cfg.dedup.model_copy(update={"batch_shards": 16})})
    x, sha, phash, truth = crawl_data(seed=4)
    uris = write_crawl(scale_cfg, x, sha, phash)
    dedup.run(scale_cfg, CRAWL, uris)
    plan = partitions.load_plan(scale_cfg, f"{partitions.work_dir(scale_cfg, CRAWL)}/plan.json")
    chain = truth["chain"]
    shards = {int(np.searchsorted(np.cumsum([len(r) for r in np.array_split(np.arange(len(x)), SHARDS)]), i,
                                  side="right")) for i in chain}
    trees = partitions.load_cells(f"{partitions.work_dir(scale_cfg, CRAWL)}/cells.npz", {})
    nearest = emb_index.entries(x[chain], scale_cfg.dedup, 0, trees[0]).cells[:, 0]
    groups = set((np.searchsorted(plan["bounds"], nearest, side="right") - 1).tolist())
    assert len(shards) > 1 and len(groups) > 1  # the chain spans shards and groups of cells
    got = decisions(scale_cfg)
    members = [f"img{i}" for i in chain]
    kept = [m for m in members if got[m][0] == ""]
    assert len(kept) == 1 and all(got[m][1] == kept[0] for m in members if m not in kept)


def _files(cfg: PipelineConfig) -> dict[str, bytes]:
    fs, root = io.fs_for(partitions.work_dir(cfg, CRAWL))
    return {p: open(p, "rb").read() for p in sorted(fs.find(root)) if ".tmp" not in p}


def test_rerun_after_a_kill_gives_the_same_files(scale_cfg, tmp_path):
    x, sha, phash, _ = crawl_data(seed=2)
    uris = write_crawl(scale_cfg, x, sha, phash)
    plan = partitions.plan(scale_cfg, CRAWL, uris)
    for source in plan["sources"]:
        partitions.partition(scale_cfg, plan, source)
    pair_uris = [partitions.find_pairs(scale_cfg, plan, g) for g in range(plan["groups"])]
    clean = _files(scale_cfg)
    assert sum("/emb/" in p for p in clean) == SHARDS * scale_cfg.dedup.jl_tables  # one file per source and sketch
    assert sum("/pairs/" in p for p in clean) == plan["groups"]
    # a worker killed anywhere in a partition or a pair task, then the task run again
    code = ("import sys; from danqing.config import PipelineConfig; from danqing.dedup import partitions;"
            f"cfg = PipelineConfig.model_validate_json({scale_cfg.model_dump_json()!r});"
            "plan = partitions.load_plan(cfg, sys.argv[1]);"
            "[partitions.partition(cfg, plan, s) for s in plan['sources']];"
            "[partitions.find_pairs(cfg, plan, g) for g in range(plan['groups'])]")
    for delay in (1.5, 3.0, 4.5):
        proc = subprocess.Popen([sys.executable, "-c", code, plan["uri"]], cwd=ROOT)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        for source in plan["sources"]:
            partitions.partition(scale_cfg, plan, source)
        assert [partitions.find_pairs(scale_cfg, plan, g) for g in range(plan["groups"])] == pair_uris
        assert _files(scale_cfg) == clean
    # and the merge after them decides as one run of every step does
    decided = dedup.merge(scale_cfg, plan, pair_uris)
    assert decided.rsplit("/", 1)[-1].startswith("decisions-")
    dedup.run(scale_cfg, CRAWL, uris)
    first = decisions(scale_cfg)
    assert any(r for r, _ in first.values())
    rules_only = in_memory(scale_cfg, x, sha, phash)
    assert first == rules_only


def test_gid_order_is_crawl_then_release_order():
    g = rules.gid(np.array([0, 0, 1, 7]), np.array([5, 9, 0, 3]))
    assert (np.diff(g) > 0).all()
    assert rules.released_gid(0, 0) > g.max()
    shard, row = rules.split(np.r_[g, rules.released_gid(2, 11)])
    assert shard.tolist() == [0, 0, 1, 7, 2] and row.tolist() == [5, 9, 0, 3, 11]


def test_cell_tree_finds_the_nearest_cells_among_its_probed_coarse_cells(monkeypatch):
    """train makes exactly nlist cells, nested in sqrt(nlist) coarse ones; nearest gives a row's k
    nearest fine cells, nearest first: exactly those of all cells when every coarse cell is probed,
    and those of its probed coarse cells otherwise."""
    import faiss

    rng = np.random.default_rng(3)
    sample, p = rng.standard_normal((40 * 300, 16)), rng.standard_normal((5000, 16)).astype(np.float32)
    tree = cells.train(sample, 300, 0)
    assert tree.fine.shape == (300, 16) and len(tree.coarse) == 17 and tree.start[-1] == 300
    assert (np.diff(tree.start) > 0).all()
    monkeypatch.setattr(cells, "NEAREST_CHUNK", 1000)  # several chunks of rows
    exact = faiss.knn(p, tree.fine, 8)[1]
    assert (tree.nearest(p, 8, probes=17).astype(np.int64) == exact).all()
    got = tree.nearest(p, 8, probes=3).astype(np.int64)
    owner = np.searchsorted(tree.start, np.arange(300), side="right") - 1
    allowed = [np.flatnonzero(np.isin(owner, row)) for row in faiss.knn(p, tree.coarse, 3)[1]]
    want = np.stack([a[faiss.knn(p[i:i + 1], tree.fine[a], 8)[1][0]] for i, a in enumerate(allowed)])
    assert (got == want).all()
    assert 0.5 < (got[:, 0] == exact[:, 0]).mean() < 1  # an approximation, and a good one


def test_cells_join_a_range_equals_the_whole():
    """Joining cells in ranges finds the same candidates as all cells at once."""
    rng = np.random.default_rng(1)
    x = unit(rng.standard_normal((2000, 64)))
    x[1::2] = near(x[::2], rng, rng.uniform(0, 0.09, 1000))
    cfg = PipelineConfig().dedup
    nlist = cells.cell_count(len(x))
    cent = cells.train(cells.sketch(x[cells.training_rows(len(x), nlist, 0)], cfg.jl_dims, 0), nlist, 0)
    e = emb_index.entries(x, cfg, 0, cent)

    def pairs(found):
        a, b = found
        return set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))

    whole = pairs(cells.join(e, range(nlist), cfg))
    bounds = np.linspace(0, nlist, 6).astype(int)
    parts = set().union(*(pairs(cells.join(e, range(lo, hi), cfg)) for lo, hi in zip(bounds[:-1], bounds[1:],
                                                                                        strict=True)))
    assert whole == parts and len(whole) >= 1000


@pytest.mark.parametrize("product", ["bfloat16", "float32"])
def test_cells_join_finds_the_pairs_that_share_a_cell_within_the_bound(monkeypatch, product):
    """The join's candidates are exactly the pairs where one row probes a cell the other sits in
    and the sketch distance passes the bound (up to the products' rounding at the bound), whether
    the blocks are multiplied in bfloat16 (CPUs that have it) or in float32."""
    import torch

    rng = np.random.default_rng(2)
    x = unit(rng.standard_normal((2000, 64)))
    x[1::4] = near(x[::4], rng, rng.uniform(0, 0.12, 500))
    cfg = PipelineConfig().dedup
    nlist = 24
    monkeypatch.setattr(cells, "JOIN_CHUNK", 64)  # cells hold several blocks: the triangle spans blocks
    monkeypatch.setattr(cells, "product_dtype", lambda: getattr(torch, product))
    cent = cells.train(cells.sketch(x[cells.training_rows(len(x), nlist, 0)], cfg.jl_dims, 0), nlist, 0)
    e = emb_index.entries(x, cfg, 0, cent)
    a, b = cells.join(e, range(nlist), cfg)
    found = set(zip(np.minimum(a, b).tolist(), np.maximum(a, b).tolist(), strict=True))

    bits = torch.from_numpy(e.sketch.view(np.int16)).view(torch.bfloat16).double().numpy()
    p, half = bits[:, :-1], bits[:, -1]  # what the join reads: bfloat16 sketches and half norms
    half_d2 = half[:, None] + half[None, :] - p @ p.T
    probe, sit = e.cells[:, :cfg.join_nprobe], e.cells[:, :cfg.ivf_db_cells]
    share = (probe[:, None, :, None] == sit[None, :, None, :]).any(axis=(2, 3))
    share |= share.T
    limit = 0.5 * cells.jl_bound(2.0 * cfg.max_cosine_distance, cfg.jl_dims, cfg.jl_miss) + cells.JOIN_MARGIN
    upper = np.triu(np.ones_like(share), k=1)
    # bfloat16 products round by up to JOIN_MARGIN, float32 ones (of bfloat16 rows) hardly at all
    rounding = cells.JOIN_MARGIN if product == "bfloat16" else 1e-4
    surely = set(zip(*np.nonzero(share & upper & (half_d2 <= limit - rounding)), strict=True))
    maybe = set(zip(*np.nonzero(share & upper & (half_d2 <= limit + rounding)), strict=True))
    assert np.bincount(sit.ravel(), minlength=nlist).max() > cells.JOIN_CHUNK
    assert len(surely) > 400 and surely <= found <= maybe


@pytest.mark.parametrize("ivf_min_rows", [1, 50_000])
def test_shards_with_nothing_kept_pass_through(cfg, ivf_min_rows):
    """A crawl whose score shards kept nothing (or some kept nothing) still writes every dedup shard."""
    cfg = cfg.model_copy(update={"dedup": cfg.dedup.model_copy(update={"ivf_min_rows": ivf_min_rows})})
    x, sha, phash, _ = crawl_data(n=1000)
    uris = write_crawl(cfg, x, sha, phash)
    empty = paths.shard_uri(cfg.root, CRAWL, "score", SHARDS)
    io.write_parquet(pa.table({"id": ["gone"], "emb_row": [0], "model": [MODEL], "sha256": ["z"], "phash": [""],
                               "drop_reason": ["image_nsfw"]}), empty)
    buf = _io.BytesIO()
    np.save(buf, np.zeros((1, DIM), np.float16))
    with io.atomic_write(partitions.score_npy(empty)) as f:
        f.write(buf.getvalue())
    summaries = dedup.run(cfg, CRAWL, [*uris, empty])
    assert [s["shard"] for s in summaries] == list(range(SHARDS + 1))
    assert summaries[-1]["total"] == 0 and sum(s["total"] for s in summaries) == 1000
    assert dedup.run(cfg, CRAWL, [empty])[0]["total"] == 0
