"""Dedup 1M random 512-d embeddings with planted near-duplicates: time, peak memory, recall.

Usage: .venv/bin/python scripts/bench_dedup.py [--n 1000000] [--dim 512] [--planted 10000]
Planted: pairs (base, copy) at cosine distance 0..0.09 and chains of three (each link 0..0.09),
plus exact (sha256) and perceptual (phash 1-3 bits) copies. Recall = share of planted duplicates
that end in the same group as their original; false drops = random rows dropped. --check rows:
the planted rows plus random ones, joined exactly (flat index) and by the cell join, compared.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import faiss
import numpy as np
import torch

from danqing.config import DedupConfig
from danqing.embed import cells
from danqing.embed import index as emb_index
from danqing.stages import dedup


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def near(base: np.ndarray, rng, distance: np.ndarray) -> np.ndarray:
    """Unit vectors at the given cosine distance from each base row."""
    noise = unit(rng.standard_normal(base.shape).astype(np.float32))
    noise = unit(noise - np.sum(noise * base, axis=1, keepdims=True) * base)  # orthogonal to base
    cos = 1.0 - distance[:, None]
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32)


def build(n: int, dim: int, planted: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    emb = unit(rng.standard_normal((n, dim), dtype=np.float32))
    sha = [f"{i:016x}" for i in range(n)]
    phash = [f"{h:016x}" for h in rng.integers(0, 2**63, n, dtype=np.int64)]
    slots = rng.choice(n, size=4 * planted, replace=False)
    bases, copies, chain_mid, chain_end = np.split(slots, 4)
    pairs = []
    half = planted // 2
    # embedding near-duplicates: copies at distance 0..0.09; chains base -> mid -> end
    emb[copies[:half]] = near(emb[bases[:half]], rng, rng.uniform(0.0, 0.09, half))
    emb[chain_mid[:half]] = near(emb[bases[half:2 * half]], rng, rng.uniform(0.0, 0.09, half))
    emb[chain_end[:half]] = near(emb[chain_mid[:half]], rng, rng.uniform(0.0, 0.09, half))
    pairs += zip(bases[:half], copies[:half], strict=True)
    pairs += zip(bases[half:2 * half], chain_mid[:half], strict=True)
    pairs += zip(chain_mid[:half], chain_end[:half], strict=True)
    # exact copies (same bytes) and perceptual copies (1-3 bits of the phash flipped)
    quarter = half // 2
    for b, c in zip(chain_mid[half:half + quarter], chain_end[half:half + quarter], strict=True):
        sha[c] = sha[b]
        pairs.append((b, c))
    for b, c in zip(copies[half:half + quarter], copies[half + quarter:half + 2 * quarter], strict=True):
        flips = rng.choice(64, size=rng.integers(1, 4), replace=False)
        phash[c] = f"{int(phash[b], 16) ^ int(sum(1 << int(f) for f in flips)):016x}"
        pairs.append((b, c))
    return dedup.Candidates([str(i) for i in range(n)], sha, phash, emb, np.zeros(n, np.int64)), pairs


def check(emb: np.ndarray, pairs: list, rows: int) -> None:
    """Exact (flat) range search against the cell join on the planted rows plus random fill."""
    rng = np.random.default_rng(1)
    planted = np.unique(np.asarray(pairs).ravel())[:rows]
    rest = np.setdiff1d(np.arange(len(emb)), planted)
    sub = emb[np.sort(np.r_[planted, rng.choice(rest, rows - len(planted), replace=False)])]
    t0 = time.perf_counter()
    exact = set(zip(*emb_index.close_pairs(sub, DedupConfig(ivf_min_rows=len(sub) + 1)), strict=True))
    t_exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    join = set(zip(*emb_index.close_pairs(sub, DedupConfig(ivf_min_rows=1)), strict=True))
    t_join = time.perf_counter() - t0
    print(f"check {rows:,} rows: exact {len(exact):,} pairs in {t_exact:.1f} s, cell join {len(join):,} "
          f"in {t_join:.1f} s, missed {len(exact - join)}, extra {len(join - exact)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--planted", type=int, default=10_000)
    parser.add_argument("--nprobe", type=int, default=DedupConfig().join_nprobe)
    parser.add_argument("--tables", type=int, default=DedupConfig().jl_tables)
    parser.add_argument("--jl-dims", type=int, default=DedupConfig().jl_dims)
    parser.add_argument("--db-cells", type=int, default=DedupConfig().ivf_db_cells)
    parser.add_argument("--check", type=int, default=50_000, help="rows for the exact comparison (0: skip)")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    cands, pairs = build(args.n, args.dim, args.planted)
    built = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    cfg = DedupConfig(join_nprobe=args.nprobe, ivf_db_cells=args.db_cells, jl_tables=args.tables, jl_dims=args.jl_dims)
    decisions = dedup.decide(cands, cfg)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    keeper = np.arange(args.n)
    index = {str(i): i for i in range(args.n)}
    for i in np.flatnonzero(decisions.reasons != ""):
        keeper[i] = index[decisions.duplicate_of[i]]
    for _ in range(4):  # follow chains of "duplicate of a duplicate" to the image that stayed
        keeper = keeper[keeper]
    found = sum(keeper[a] == keeper[b] for a, b in pairs)
    planted_rows = {int(x) for p in pairs for x in p}
    false_drops = sum(1 for i in np.flatnonzero(decisions.reasons != "") if int(i) not in planted_rows)
    reasons, counts = np.unique(decisions.reasons[decisions.reasons != ""], return_counts=True)
    print(f"rows {args.n:,} x {args.dim}d, planted duplicate pairs {len(pairs):,} (built in {built:.1f} s)")
    print(f"dedup time      {seconds:.1f} s (cells: each row in {args.db_cells}, probing {args.nprobe}; "
          f"{args.tables} sketches of {args.jl_dims} dims; products in {cells.product_dtype()})")
    bound = cells.jl_bound(2 * cfg.max_cosine_distance, cfg.jl_dims, cfg.jl_miss)
    print(f"sketch bound    |d|^2 {2 * cfg.max_cosine_distance:.2f} -> {bound:.3f} in {cfg.jl_dims} dims; chi-square "
          f"misses expected over the planted pairs <= {cfg.jl_miss * len(pairs):.1e} per sketch")
    print(f"peak memory     {peak:.2f} GiB (inputs alone {rss_before:.2f} GiB)")
    print(f"recall          {found / len(pairs):.5f} ({found:,}/{len(pairs):,} planted pairs grouped)")
    print(f"false drops     {false_drops}")
    print(f"load average    {' '.join(f'{v:.1f}' for v in os.getloadavg())} (2 cores)")
    if args.check:
        check(cands.emb, pairs, args.check)
    print("dropped         " + ", ".join(f"{r}={c:,}" for r, c in zip(reasons, counts, strict=True)))


if __name__ == "__main__":
    main()
