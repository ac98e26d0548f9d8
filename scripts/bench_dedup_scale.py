"""Partitioned dedup at crawl scale, run as the DAG runs it: one process per task, two at a time.

Usage: .venv/bin/python scripts/bench_dedup_scale.py [--n 5000000] [--baseline 1000000] [--dim 512]
Writes --n random unit 512-d float16 embeddings as score shards (--shard-rows each) on local disk,
with planted duplicates: embedding near-copies (cosine distance 0..0.09) and chains of three, exact
(sha256) and perceptual (1-3 bits of the pHash) copies, and near and exact copies of an earlier
crawl's release (--released rows). The other pHashes are words of a random linear code at least 11
bits apart, so no two are within the 4-bit rule by chance: the planted pairs are all there are.
Then plan -> partition per source -> pairs per group -> merge -> per-shard writes, each task in a
fresh process. Prints rows, dedup time (wall, all tasks), peak task RSS (the largest single task),
recall (planted pairs that end in one group) and false drops (unplanted rows dropped); then the
same for a --baseline run, and time per million rows against it.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import io as _io
import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from danqing import io, paths
from danqing.config import PipelineConfig
from danqing.dedup import partitions
from danqing.embed import cells
from danqing.embed import index as emb_index

CRAWL, OLD, MODEL = "CC-MAIN-2099-05", "CC-MAIN-2099-01", "bench-model"


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(base: np.ndarray, rng, distance: np.ndarray) -> np.ndarray:
    """Unit vectors at the given cosine distance from each base row."""
    noise = unit(rng.standard_normal(base.shape).astype(np.float32))
    noise = unit(noise - np.sum(noise * base, axis=1, keepdims=True) * base)  # orthogonal to base
    cos = 1.0 - distance[:, None]
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32)


class HashCode:
    """Words of a random binary linear code, 64 bits long, one per row number below 2**k, any two at
    least min_distance bits apart: random-looking perceptual hashes without chance near pairs."""

    def __init__(self, n: int, min_distance: int = 11, seed: int = 0):
        k = max(2, (n - 1).bit_length())
        self.low = k // 2
        for attempt in range(100):  # most random codes of this size qualify (Gilbert-Varshamov)
            rng = np.random.default_rng([seed, attempt])
            rows = rng.integers(0, 2**64, k, dtype=np.uint64)
            self.a, self.b = self._span(rows[:self.low]), self._span(rows[self.low:])
            weights = np.bitwise_count(self.a[None, :] ^ self.b[:, None]).ravel()
            if weights[1:].min() >= min_distance:  # a linear code's distance is its least nonzero weight
                self.mask = rng.integers(0, 2**64, dtype=np.uint64)
                return
        raise RuntimeError("no code found")

    @staticmethod
    def _span(rows: np.ndarray) -> np.ndarray:
        """All XOR combinations of rows, indexed by the bits of the message."""
        out = np.zeros(1, np.uint64)
        for r in rows:
            out = np.r_[out, out ^ r]
        return out

    def __call__(self, messages: np.ndarray) -> np.ndarray:
        m = np.asarray(messages, np.int64)
        return self.a[m & ((1 << self.low) - 1)] ^ self.b[m >> self.low] ^ self.mask  # XOR keeps distances


@dataclass
class Planted:
    pairs: list[tuple[int, int]]  # crawl rows that must end in one group
    released: list[tuple[int, int]]  # (crawl row, released row) the crawl row must be dropped for
    rows: set[int]


def build(root: str, n: int, dim: int, planted: int, released: int, shard_rows: int, seed: int = 0) -> Planted:
    """Score shards and a released index on disk; the planted vectors are made first, the rest per shard."""
    rng = np.random.default_rng(seed)
    slots = rng.choice(n, size=6 * planted, replace=False)
    bases, copies, mids, ends, rel_near, rel_exact = np.split(slots, 6)
    half, quarter = planted // 2, planted // 4
    vec: dict[int, np.ndarray] = {}
    sha: dict[int, str] = {}
    phash: dict[int, int] = {}
    base = unit(rng.standard_normal((half, dim), dtype=np.float32))
    chain = unit(rng.standard_normal((half, dim), dtype=np.float32))
    mid = near(chain, rng, rng.uniform(0.0, 0.09, half))
    vec.update(zip(bases[:half].tolist(), base, strict=True))
    vec.update(zip(copies[:half].tolist(), near(base, rng, rng.uniform(0.0, 0.09, half)), strict=True))
    vec.update(zip(bases[half:].tolist(), chain, strict=True))
    vec.update(zip(mids[:half].tolist(), mid, strict=True))
    vec.update(zip(ends[:half].tolist(), near(mid, rng, rng.uniform(0.0, 0.09, half)), strict=True))
    pairs = [*zip(bases[:half].tolist(), copies[:half].tolist(), strict=True),
             *zip(bases[half:].tolist(), mids[:half].tolist(), strict=True),
             *zip(mids[:half].tolist(), ends[:half].tolist(), strict=True)]
    for b, c in zip(mids[half:half + quarter].tolist(), ends[half:half + quarter].tolist(), strict=True):
        sha[c] = f"exact{b}"
        sha[b] = f"exact{b}"
        pairs.append((b, c))
    code = HashCode(n, seed=seed)
    for b, c in zip(copies[half:half + quarter].tolist(), copies[half + quarter:half + 2 * quarter].tolist(),
                    strict=True):
        phash[b] = int(code(np.array([b]))[0])
        flips = rng.choice(64, size=rng.integers(1, 4), replace=False)
        phash[c] = phash[b] ^ int(sum(1 << int(f) for f in flips))
        pairs.append((b, c))
    # the earlier release: random fill, then near copies and byte copies of crawl rows
    old = unit(rng.standard_normal((released, dim), dtype=np.float32))
    old_sha = [f"old{j}" for j in range(released)]
    targets = rng.choice(released, size=2 * planted, replace=False)
    vec.update(zip(rel_near.tolist(), near(old[targets[:planted]], rng, rng.uniform(0.0, 0.09, planted)),
                   strict=True))
    for i, j in zip(rel_exact.tolist(), targets[planted:].tolist(), strict=True):
        sha[i] = old_sha[j]
    rel_pairs = [*zip(rel_near.tolist(), targets[:planted].tolist(), strict=True),
                 *zip(rel_exact.tolist(), targets[planted:].tolist(), strict=True)]
    cfg = PipelineConfig.from_overrides({"root": root})
    emb_index.save_released(cfg, OLD, pa.table({"id": [f"old{j}" for j in range(released)], "sha256": old_sha,
                                               "model": [MODEL] * released}), old)
    del old
    for shard, start in enumerate(range(0, n, shard_rows)):
        rows = np.arange(start, min(n, start + shard_rows))
        x = np.random.default_rng([seed, shard]).standard_normal((len(rows), dim), dtype=np.float32)
        x = unit(x)
        for k, i in enumerate(rows.tolist()):
            if i in vec:
                x[k] = vec[i]
        h = code(rows)
        uri = paths.shard_uri(root, CRAWL, "score", shard)
        io.write_parquet(pa.table({
            "id": [f"i{i}" for i in rows], "emb_row": np.arange(len(rows)), "model": [MODEL] * len(rows),
            "sha256": [sha.get(i, f"s{i}") for i in rows.tolist()],
            "phash": [f"{phash.get(i, int(v)):016x}" for i, v in zip(rows.tolist(), h.tolist(), strict=True)],
            "drop_reason": [""] * len(rows)}), uri)
        buf = _io.BytesIO()
        np.save(buf, x.astype(np.float16))
        with io.atomic_write(partitions.score_npy(uri)) as f:
            f.write(buf.getvalue())
    return Planted(pairs, rel_pairs, {int(v) for p in pairs for v in p} | {i for i, _ in rel_pairs})


# --- tasks, each in a fresh process ------------------------------------------------------------

def bench_config(root: str) -> PipelineConfig:
    """One in-batch group over the whole crawl: a planted chain split across batches would, by the
    rules, keep one image per batch, and recall here measures the pair finding (tests cover batches)."""
    return PipelineConfig.from_overrides({"root": root, "dedup": {"batch_shards": 1_000_000}})


def _task(step: str, root: str, arg) -> tuple[float, float, object]:
    import faiss
    import torch

    alone = step in ("plan", "merge")  # the single tasks have the machine; mapped ones run two at a time
    faiss.omp_set_num_threads(2 if alone else 1)
    torch.set_num_threads(2 if alone else 1)
    cfg = bench_config(root)
    t0 = time.perf_counter()
    if step == "plan":
        out = partitions.plan(cfg, CRAWL, arg)["uri"]
    elif step == "partition":
        plan_uri, source = arg
        partitions.partition(cfg, partitions.load_plan(cfg, plan_uri, sources=False), source)
        out = None
    elif step == "pairs":
        plan_uri, group = arg
        out = partitions.find_pairs(cfg, partitions.load_plan(cfg, plan_uri), group)
    elif step == "merge":
        from danqing.stages import dedup

        plan_uri, pair_uris = arg
        out = dedup.merge(cfg, partitions.load_plan(cfg, plan_uri), pair_uris)
    else:  # write
        from danqing.shard import run_shard

        shard, score_uri, decisions = arg
        out = run_shard("dedup", CRAWL, shard, [score_uri, decisions], cfg)["kept"]
    return time.perf_counter() - t0, peak_rss_gib(), out


def peak_rss_gib() -> float:
    """This process's peak RSS. Not ru_maxrss: Linux carries that across exec from the forking parent."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**20


def run_tasks(root: str, score_uris: list[str]) -> dict:
    ctx = multiprocessing.get_context("spawn")
    peak, wall = {}, {}
    busy = 0.0

    def wave(pool, step: str, args: list) -> list:
        nonlocal busy
        t0 = time.perf_counter()
        results = list(pool.map(_task, [step] * len(args), [root] * len(args), args))
        wall[step] = time.perf_counter() - t0
        busy += sum(r[0] for r in results)
        peak[step] = max([peak.get(step, 0.0)] + [r[1] for r in results])
        return [r[2] for r in results]

    t0 = time.perf_counter()
    with cf.ProcessPoolExecutor(2, mp_context=ctx, max_tasks_per_child=1) as pool:
        plan_uri = wave(pool, "plan", [score_uris])[0]
        plan = partitions.load_plan(bench_config(root), plan_uri)
        wave(pool, "partition", [(plan_uri, s) for s in plan["sources"]])
        pair_uris = wave(pool, "pairs", [(plan_uri, g) for g in range(plan["groups"])])
        decisions = wave(pool, "merge", [(plan_uri, pair_uris)])[0]
        wave(pool, "write", [(u["ordinal"], u["uri"], decisions) for u in partitions.units(plan, "shard")])
    return {"seconds": time.perf_counter() - t0, "busy": busy, "peak": peak, "wall": wall, "plan": plan}


def score(root: str, n_shards: int, planted: Planted) -> tuple[int, int, dict[str, int], int]:
    """(planted pairs grouped, planted pairs, false drops by reason, drops)."""
    keeper: dict[str, str] = {}
    reason_of: dict[str, str] = {}
    for shard in range(n_shards):
        t = io.read_parquet(paths.shard_uri(root, CRAWL, "dedup", shard), ["id", "drop_reason", "duplicate_of"])
        for i, reason, dup in zip(*(t[c].to_pylist() for c in ("id", "drop_reason", "duplicate_of")), strict=True):
            if reason:
                keeper[i] = dup
                reason_of[i] = reason

    def stays(i: str) -> str:
        for _ in range(8):  # follow "duplicate of a duplicate" to the image that stayed
            if i not in keeper:
                break
            i = keeper[i]
        return i

    found = sum(stays(f"i{a}") == stays(f"i{b}") for a, b in planted.pairs)
    found += sum(stays(f"i{a}") == f"old{j}" for a, j in planted.released)
    false: dict[str, int] = {}
    for i in keeper:
        if int(i[1:]) not in planted.rows:
            false[reason_of[i]] = false.get(reason_of[i], 0) + 1
    return found, len(planted.pairs) + len(planted.released), false, len(keeper)


def one_run(n: int, args) -> float:
    root = tempfile.mkdtemp(prefix="bench-dedup-", dir=args.dir)
    try:
        t0 = time.perf_counter()
        planted = build(root, n, args.dim, args.planted, max(args.planted * 4, n // 10), args.shard_rows)
        built = time.perf_counter() - t0
        uris = [paths.shard_uri(root, CRAWL, "score", s) for s in range(-(-n // args.shard_rows))]
        r = run_tasks(root, uris)
        found, total, false, dropped = score(root, len(uris), planted)
        plan = r["plan"]
        print(f"rows            {n:,} x {args.dim}d float16 in {len(uris)} shards, released index "
              f"{sum(u['stop'] - u['start'] for u in partitions.units(plan, 'released')):,} rows "
              f"(built in {built:.0f} s)")
        print(f"dedup time      {r['seconds']:.1f} s wall, two tasks at a time ({r['busy']:.1f} s in tasks); "
              f"{len(plan['sources'])} partition, {plan['groups']} pair tasks, {plan['mode']} mode, "
              f"{plan['bounds'][-1]:,} cells")
        print("  by step       " + ", ".join(f"{k} {v:.0f} s" for k, v in r["wall"].items()))
        print(f"peak task RSS   {max(r['peak'].values()):.2f} GiB (" +
              ", ".join(f"{k} {v:.2f}" for k, v in r["peak"].items()) + ")")
        print(f"recall          {found / total:.5f} ({found:,}/{total:,} planted pairs grouped)")
        print(f"false drops     {sum(false.values())} (of {dropped:,} dropped"
              + "".join(f"; {k} {v}" for k, v in false.items()) + ")")
        return r["seconds"]
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=5_000_000)
    parser.add_argument("--baseline", type=int, default=1_000_000, help="rows of the comparison run (0: none)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--planted", type=int, default=10_000)
    parser.add_argument("--shard-rows", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="where the shards go (default: the system temp dir)")
    args = parser.parse_args()
    print(f"load average    {' '.join(f'{v:.1f}' for v in os.getloadavg())} (2 cores)")
    print(f"join products   {cells.product_dtype()}")
    seconds = one_run(args.n, args)
    if args.baseline:
        print(f"-- baseline: {args.baseline:,} rows")
        base = one_run(args.baseline, args)
        per_m, base_per_m = seconds / args.n * 1e6, base / args.baseline * 1e6
        print(f"time per M rows {per_m:.1f} s vs {base_per_m:.1f} s at {args.baseline:,}: "
              f"{per_m / base_per_m:.2f}x")


if __name__ == "__main__":
    main()
